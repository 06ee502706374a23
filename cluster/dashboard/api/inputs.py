"""Reading request input the same way in every view: a JSON object body, bounded integer arguments.

Each refuses what it cannot use with InvalidInput (400), so no bad request reaches the store as a
Python error (500) or as an out-of-range Redis argument.
"""

from __future__ import annotations

from typing import Any, Literal, overload

from flask import request

from cluster.errors import InvalidInput

# Larger than any dataset or job can be, small enough for every Redis index argument.
MAX_INDEX = 2**31 - 1


def json_object(known: frozenset[str] | None = None) -> dict[str, Any]:
    """The request's JSON body as an object; an empty or missing body is {}. With ``known``, a field
    not in it is refused: a misspelt option ("treshold") is an error, not silently the default."""
    if not request.get_data(cache=True):
        return {}
    body = request.get_json(silent=True)
    if body is None:
        raise InvalidInput("the request body must be a JSON object (Content-Type: application/json)")
    if not isinstance(body, dict):
        raise InvalidInput(f"the request body must be a JSON object, got a {type(body).__name__}")
    unknown = sorted(set(body) - known) if known is not None else []
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(repr(k)[:80] for k in unknown[:5])}; "
                           f"known: {', '.join(sorted(known or ()))}")
    return body


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """Query argument ``name`` as an integer clipped to [low, high]; InvalidInput if it is not an integer."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"query argument {name!r} must be an integer, got {raw!r}") from None
    return min(high, max(low, value))


@overload
def string_field(body: dict[str, Any], name: str, required: Literal[True] = True) -> str: ...
@overload
def string_field(body: dict[str, Any], name: str, required: bool) -> str | None: ...
def string_field(body: dict[str, Any], name: str, required: bool = True) -> str | None:
    """``body[name]`` as a string; InvalidInput if it is missing (when required) or not a string."""
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidInput(f"{name!r} is required (a string)")
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name!r} must be a string, got {type(value).__name__} {value!r:.80}")
    return value


def bool_field(body: dict[str, Any], name: str) -> bool | None:
    """``body[name]`` as a JSON boolean, None when absent; InvalidInput for anything else ("true", 1)."""
    value = body.get(name)
    if value is None or isinstance(value, bool):
        return value
    raise InvalidInput(f"{name!r} must be true or false, got {type(value).__name__} {value!r:.80}")
