"""Digests of JSON values that never fail.  Pure.

orjson refuses to encode values nested deeper than 254 levels and integers beyond 64 bits;
a digest taken of a client's arguments must not fail on them, so those fall back to an
explicit-stack canonical encoding with no depth limit.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson


def canonical_digest(value: Any) -> str:
    """SHA-256 (hex) of `value`'s canonical JSON: keys sorted, whatever its depth."""
    try:
        material = orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str)
    except orjson.JSONEncodeError:
        material = _deep_material(value)
    return hashlib.sha256(material).hexdigest()


def _deep_material(value: Any) -> bytes:
    """A canonical encoding of any JSON-like value, by an explicit stack: no depth limit."""
    out: list[bytes] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):  # a closing mark pushed below; JSON values hold no bytes
            out.append(item)
        elif isinstance(item, dict):
            out.append(b"{")
            stack.append(b"},")
            for key in sorted(item, key=str, reverse=True):
                stack += [item[key], orjson.dumps(str(key)) + b":"]
        elif isinstance(item, list):
            out.append(b"[")
            stack += [b"],", *reversed(item)]
        elif isinstance(item, int) and not isinstance(item, bool):
            out.append(b"%d," % item)  # orjson refuses integers beyond 64 bits
        else:
            out.append(orjson.dumps(item, default=str) + b",")
    return b"".join(out)
