"""A JSON Schema (2020-12) subset validator for tool arguments.  Pure.

It covers the keywords our tool schemas use; an unknown keyword is ignored, as the
specification asks of validators (JSON Schema Core section 4.3.1).  It returns the first
problem as a sentence that names the argument, so a model can correct its call.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

Schema = dict[str, Any]

_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


@lru_cache(maxsize=256)
def _pattern(source: str) -> re.Pattern[str]:
    return re.compile(source)


def _where(path: str) -> str:
    return f"Argument '{path}'" if path else "The arguments"


def _same(a: Any, b: Any) -> bool:
    """JSON equality: a boolean never equals a number, unlike Python's True == 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def validate(value: Any, schema: Schema, path: str = "") -> str | None:
    """The first way `value` breaks `schema`, as a sentence; None when it conforms."""
    for check in _CHECKS:
        problem = check(value, schema, path)
        if problem is not None:
            return problem
    return None


def _check_type(value: Any, schema: Schema, path: str) -> str | None:
    expected = schema.get("type")
    if expected is None:
        return None
    names = expected if isinstance(expected, list) else [expected]
    if any(_TYPE_CHECKS[name](value) for name in names if name in _TYPE_CHECKS):
        return None
    return f"{_where(path)} must be of type {' or '.join(names)}."


def _check_enum(value: Any, schema: Schema, path: str) -> str | None:
    if "const" in schema and not _same(value, schema["const"]):
        return f"{_where(path)} must be {schema['const']!r}."
    choices = schema.get("enum")
    if choices is None or any(_same(value, choice) for choice in choices):
        return None
    listed = ", ".join(repr(c) for c in choices)
    return f"{_where(path)} must be one of {listed}."


def _check_string(value: Any, schema: Schema, path: str) -> str | None:
    if not isinstance(value, str):
        return None
    if len(value) < schema.get("minLength", 0):
        return f"{_where(path)} must be at least {schema['minLength']} characters."
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return f"{_where(path)} must be at most {schema['maxLength']} characters."
    pattern = schema.get("pattern")
    if pattern is not None and not _pattern(pattern).search(value):
        return f"{_where(path)} does not match the required format."
    return None


def _check_number(value: Any, schema: Schema, path: str) -> str | None:
    if not _TYPE_CHECKS["number"](value):
        return None
    if "minimum" in schema and value < schema["minimum"]:
        return f"{_where(path)} must be at least {schema['minimum']}."
    if "maximum" in schema and value > schema["maximum"]:
        return f"{_where(path)} must be at most {schema['maximum']}."
    return None


def _check_array(value: Any, schema: Schema, path: str) -> str | None:
    if not isinstance(value, list):
        return None
    if len(value) < schema.get("minItems", 0):
        return f"{_where(path)} must have at least {schema['minItems']} items."
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        return f"{_where(path)} must have at most {schema['maxItems']} items."
    items = schema.get("items")
    if not isinstance(items, dict):
        return None
    for index, item in enumerate(value):
        problem = validate(item, items, f"{path}[{index}]")
        if problem is not None:
            return problem
    return None


def _check_object(value: Any, schema: Schema, path: str) -> str | None:
    if not isinstance(value, dict):
        return None
    for name in schema.get("required", ()):
        if name not in value:
            return f"Missing required argument '{_join(path, name)}'."
    return _check_properties(value, schema, path)


def _check_properties(value: dict[str, Any], schema: Schema, path: str) -> str | None:
    properties: dict[str, Schema] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        sub = properties.get(name)
        if sub is None and extra is False:
            return f"Unknown argument '{_join(path, name)}'; remove it."
        if sub is None:
            sub = extra if isinstance(extra, dict) else {}
        problem = validate(item, sub, _join(path, name))
        if problem is not None:
            return problem
    return None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


_CHECKS = (_check_type, _check_enum, _check_string, _check_number, _check_array, _check_object)
