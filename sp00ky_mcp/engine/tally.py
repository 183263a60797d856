"""Counts per key of what is held at once (connections of a peer, calls and streams of a
token), with no entry kept for a key that holds nothing, so that the table stays as small as
what is held.  Pure."""

from __future__ import annotations


class Tally(dict[str, int]):
    def add(self, key: str) -> None:
        self[key] = self.get(key, 0) + 1

    def remove(self, key: str) -> None:
        remaining = self.pop(key) - 1
        if remaining:
            self[key] = remaining
