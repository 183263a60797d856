"""A JSON Schema (2020-12) subset validator for tool arguments.  Pure.

It covers the keywords our tool schemas use; an unknown keyword is ignored, as the
specification asks of validators (JSON Schema Core section 4.3.1).  It returns the first
problem as a sentence that names the argument, so a model can correct its call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

Schema = dict[str, Any]
# A compiled schema: the first problem of a value at a path, as a sentence, or None.
Check = Callable[[Any, str], str | None]

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

# Types whose test is one isinstance (no bool-versus-number exceptions).
_TYPE_CLASSES: dict[str, type] = {"object": dict, "array": list, "string": str}


def _where(path: str) -> str:
    return f"Argument '{path}'" if path else "The arguments"


def _same(a: Any, b: Any) -> bool:
    """JSON equality: a boolean never equals a number, unlike Python's True == 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def validate(value: Any, schema: Schema, path: str = "") -> str | None:
    """The first way `value` breaks `schema`, as a sentence; None when it conforms."""
    return compile_schema(schema)(value, path)


def compile_schema(schema: Schema) -> Check:
    """`schema` turned into one function, so that a tool's arguments are checked without
    looking its keywords up again on every call."""
    checks = [
        check
        for build in (_type, _enum, _string, _number, _array, _object)
        if (check := build(schema)) is not None
    ]
    if not checks:
        return _conforms
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:  # a type and its keywords: the usual property
        first, second = checks

        def check_both(value: Any, path: str) -> str | None:
            return first(value, path) or second(value, path)

        return check_both

    def check_all(value: Any, path: str) -> str | None:
        for check in checks:
            problem = check(value, path)
            if problem is not None:
                return problem
        return None

    return check_all


def _conforms(value: Any, path: str) -> str | None:
    return None


def _type(schema: Schema) -> Check | None:
    expected = schema.get("type")
    if expected is None:
        return None
    names = expected if isinstance(expected, list) else [expected]
    tests = tuple(_TYPE_CHECKS[name] for name in names if name in _TYPE_CHECKS)
    wrong = f"must be of type {' or '.join(names)}."
    if len(names) == 1 and names[0] in _TYPE_CLASSES:
        cls = _TYPE_CLASSES[names[0]]

        def check_class(value: Any, path: str) -> str | None:
            return None if isinstance(value, cls) else f"{_where(path)} {wrong}"

        return check_class

    def check(value: Any, path: str) -> str | None:
        for test in tests:
            if test(value):
                return None
        return f"{_where(path)} {wrong}"

    return check


def _enum(schema: Schema) -> Check | None:
    if "const" not in schema and schema.get("enum") is None:
        return None

    def check(value: Any, path: str) -> str | None:
        if "const" in schema and not _same(value, schema["const"]):
            return f"{_where(path)} must be {schema['const']!r}."
        choices = schema.get("enum")
        if choices is None or any(_same(value, choice) for choice in choices):
            return None
        listed = ", ".join(repr(c) for c in choices)
        return f"{_where(path)} must be one of {listed}."

    return check


def _string(schema: Schema) -> Check | None:
    shortest = schema.get("minLength", 0)
    longest = schema.get("maxLength")
    pattern = schema.get("pattern")
    if not shortest and longest is None and pattern is None:
        return None
    regex = None if pattern is None else re.compile(pattern)

    def check(value: Any, path: str) -> str | None:
        if not isinstance(value, str):
            return None
        if len(value) < shortest:
            return f"{_where(path)} must be at least {shortest} characters."
        if longest is not None and len(value) > longest:
            return f"{_where(path)} must be at most {longest} characters."
        if regex is not None and not regex.search(value):
            return f"{_where(path)} does not match the required format."
        return None

    return check


def _number(schema: Schema) -> Check | None:
    if "minimum" not in schema and "maximum" not in schema:
        return None
    lowest = schema.get("minimum", -math.inf)
    highest = schema.get("maximum", math.inf)
    is_number = _TYPE_CHECKS["number"]

    def check(value: Any, path: str) -> str | None:
        if not is_number(value):
            return None
        if value < lowest:
            return f"{_where(path)} must be at least {lowest}."
        if value > highest:
            return f"{_where(path)} must be at most {highest}."
        return None

    return check


def _array(schema: Schema) -> Check | None:
    fewest = schema.get("minItems", 0)
    most = schema.get("maxItems")
    items = schema.get("items")
    item_check = compile_schema(items) if isinstance(items, dict) else None
    if not fewest and most is None and item_check is None:
        return None

    def check(value: Any, path: str) -> str | None:
        if not isinstance(value, list):
            return None
        if len(value) < fewest:
            return f"{_where(path)} must have at least {fewest} items."
        if most is not None and len(value) > most:
            return f"{_where(path)} must have at most {most} items."
        if item_check is None:
            return None
        for index, item in enumerate(value):
            problem = item_check(item, f"{path}[{index}]")
            if problem is not None:
                return problem
        return None

    return check


def _object(schema: Schema) -> Check | None:
    required = tuple(schema.get("required", ()))
    properties = {name: compile_schema(sub) for name, sub in schema.get("properties", {}).items()}
    extra = schema.get("additionalProperties", True)
    closed = extra is False
    other = compile_schema(extra) if isinstance(extra, dict) else _conforms
    if not (required or properties or closed or other is not _conforms):
        return None

    def check(value: Any, path: str) -> str | None:
        if not isinstance(value, dict):
            return None
        for name in required:
            if name not in value:
                return f"Missing required argument '{_join(path, name)}'."
        for name, item in value.items():
            sub = properties.get(name)
            if sub is None:
                if closed:
                    return f"Unknown argument '{_join(path, name)}'; remove it."
                sub = other
            problem = sub(item, f"{path}.{name}" if path else name)
            if problem is not None:
                return problem
        return None

    return check


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
