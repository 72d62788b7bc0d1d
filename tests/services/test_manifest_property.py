"""Property: the command path's verdict on generated params against generated `paramSchema`s
(through manifest validation, compilation and the cached validator) is jsonschema's reference
validator's verdict, and every error it reports names a path that exists in the params."""

from __future__ import annotations

from typing import Any

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from nxg_mqtt.models import ManifestRecord
from nxg_mqtt.services.manifests import check_manifest, compile_manifest, schema_errors

NAMES = st.sampled_from(["a", "b", "level", "mode"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.text(max_size=6),
)
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3), max_leaves=6
)


@st.composite
def leaf_schemas(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["integer", "number", "string", "boolean", "enum", "array", "any"]))
    if kind in ("integer", "number"):
        schema: dict[str, Any] = {"type": kind}
        if draw(st.booleans()):
            schema["minimum"] = draw(st.integers(-100, 100))
        if draw(st.booleans()):
            schema["maximum"] = draw(st.integers(-100, 100))
        if draw(st.booleans()):
            schema["multipleOf"] = draw(st.integers(1, 5))
        return schema
    if kind == "string":
        schema = {"type": "string"}
        if draw(st.booleans()):
            schema["maxLength"] = draw(st.integers(0, 5))
        if draw(st.booleans()):
            schema["pattern"] = draw(st.sampled_from(["^[a-z]*$", "[0-9]", "^.{2}$"]))
        return schema
    if kind == "enum":
        return {"enum": draw(st.lists(SCALARS, min_size=1, max_size=3))}
    if kind == "array":
        return {"type": "array", "items": draw(st.deferred(leaf_schemas)), "maxItems": draw(st.integers(0, 3))}
    if kind == "boolean":
        return {"type": "boolean"}
    return {}


@st.composite
def param_schemas(draw: st.DrawFn) -> dict[str, Any]:
    properties: dict[str, Any] = draw(st.dictionaries(NAMES, leaf_schemas(), max_size=3))
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    with_required: bool = draw(st.booleans())
    if properties and with_required:
        schema["required"] = draw(st.lists(st.sampled_from(sorted(properties)), unique=True))
    if draw(st.booleans()):
        schema["additionalProperties"] = draw(st.booleans())
    return schema


def resolves(params: Any, path: str) -> bool:
    """Whether a `$.a[0].b` path (jsonschema's json_path) names a value inside `params`."""
    node = params
    for part in path[1:].replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("["):
            index = int(part[1:-1])
            if not isinstance(node, list) or index >= len(node):
                return False
            node = node[index]
        else:
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
    return True


@settings(max_examples=150, deadline=None)
@given(schema=param_schemas(), params=st.dictionaries(NAMES, VALUES, max_size=4))
def test_the_command_check_agrees_with_the_reference_validator(schema: dict[str, Any], params: dict[str, Any]) -> None:
    capabilities = check_manifest({"capabilities": [{"action": "go", "paramSchema": schema}]})
    compiled = compile_manifest(ManifestRecord("d", 1, capabilities, "api", 0))
    validator = compiled.capabilities["go"].params
    assert validator is not None
    errors = schema_errors(validator, params)
    assert (not errors) == jsonschema.Draft202012Validator(schema).is_valid(params)
    for error in errors:
        assert error["message"] and resolves(params, error["path"]), error
