"""The command path's plain-Python schema predicate gives jsonschema's verdict on every schema of
its subset (generated), for each draft it claims; outside the subset it declines."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nxg_mqtt.services.manifests import schema_errors
from nxg_mqtt.services.schema_check import CompiledSchema, predicate

DRAFTS = [
    jsonschema.Draft6Validator,
    jsonschema.Draft7Validator,
    jsonschema.Draft201909Validator,
    jsonschema.Draft202012Validator,
]
NAMES = st.sampled_from(["a", "b", "level", "mode"])
NUMBERS = st.one_of(st.integers(-50, 50), st.floats(-50, 50, allow_nan=False), st.sampled_from([0.0, 1.0, -2.0, 2**70]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(alphabet="abé0", max_size=5))
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3), max_leaves=8
)
TYPES = st.sampled_from(["null", "boolean", "integer", "number", "string", "array", "object"])


@st.composite
def schemas(draw: st.DrawFn, depth: int = 2) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.booleans())
    schema: dict[str, Any] = {}
    if draw(st.booleans()):
        types = draw(st.lists(TYPES, min_size=1, max_size=3, unique=True))
        schema["type"] = types[0] if len(types) == 1 and draw(st.booleans()) else types
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if draw(st.integers(0, 3)) == 0:
            schema[key] = draw(NUMBERS)
    for key in ("minLength", "maxLength"):
        if draw(st.integers(0, 3)) == 0:
            schema[key] = draw(st.integers(0, 4))
    if draw(st.integers(0, 4)) == 0:
        schema["enum"] = draw(st.lists(st.text(alphabet="abé0", max_size=3), min_size=1, max_size=3))
    if draw(st.integers(0, 4)) == 0:
        schema["description"] = "annotation"
    if depth > 0 and draw(st.booleans()):
        properties = draw(st.dictionaries(NAMES, schemas(depth - 1), max_size=3))
        schema["properties"] = properties
        if draw(st.booleans()):
            schema["required"] = draw(st.lists(NAMES, unique=True, max_size=3))
        extra = draw(st.integers(0, 3))
        if extra == 1:
            schema["additionalProperties"] = draw(st.booleans())
        elif extra == 2:
            schema["additionalProperties"] = draw(schemas(depth - 1))
    return schema


@settings(max_examples=400, deadline=None)
@given(schema=schemas(), value=VALUES, draft=st.sampled_from(DRAFTS))
def test_the_predicate_gives_jsonschemas_verdict(schema: Any, value: Any, draft: Any) -> None:
    validator = draft(schema)
    fast = predicate(validator)
    assert fast is not None, schema
    assert fast(value) == validator.is_valid(value)
    # and through the command path's error list: empty exactly when valid
    assert (schema_errors(CompiledSchema.of(validator), value) == []) == validator.is_valid(value)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "integer", "multipleOf": 2},
        {"type": "string", "pattern": "^a"},
        {"type": "array", "items": {"type": "integer"}},
        {"enum": [1, 2]},
        {"properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {}}},
        {"type": "string", "format": "email"},
        {"patternProperties": {"^a": {}}},
    ],
)
def test_outside_the_subset_only_jsonschema_judges(schema: dict[str, Any]) -> None:
    assert predicate(jsonschema.Draft202012Validator(schema)) is None


def test_draft_4_is_left_to_jsonschema() -> None:
    # its `exclusiveMinimum` is a boolean and its `integer` refuses 1.0
    assert predicate(jsonschema.Draft4Validator({"type": "integer"})) is None


def test_an_invalid_value_gets_jsonschemas_own_errors() -> None:
    compiled = CompiledSchema.of(
        jsonschema.Draft202012Validator(
            {"type": "object", "properties": {"b": {"type": "integer", "maximum": 100}}, "required": ["b"]}
        )
    )
    assert compiled.fast is not None
    assert schema_errors(compiled, {"b": 50}) == []
    assert schema_errors(compiled, {"b": 1.0}) == []  # an integer in these drafts
    assert schema_errors(compiled, {"b": True}) == [{"path": "$.b", "message": "True is not of type 'integer'"}]
    assert schema_errors(compiled, {"b": 101}) == [{"path": "$.b", "message": "101 is greater than the maximum of 100"}]
    assert schema_errors(compiled, {}) == [{"path": "$", "message": "'b' is a required property"}]
