"""`CompactJSONResponse` (the 202 of a command) writes Starlette's `JSONResponse` bytes exactly."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from starlette.responses import JSONResponse

from bridge.v1.responses import CompactJSONResponse
from tests.test_messages import JSON


@given(JSON)
def test_the_same_bytes_and_headers_as_starlettes(value: Any) -> None:
    ours, theirs = CompactJSONResponse(value, status_code=202), JSONResponse(value, status_code=202)
    assert ours.body == theirs.body
    assert ours.raw_headers == theirs.raw_headers


def test_nan_is_refused_as_starlette_refuses_it() -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        CompactJSONResponse({"x": float("nan")})
