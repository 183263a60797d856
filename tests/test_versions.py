"""Protocol revisions: which versions exist, negotiation, and what each revision allows."""

from __future__ import annotations

import pytest

from sp00ky_mcp.engine import versions
from sp00ky_mcp.engine.versions import (
    ASSUMED_WITHOUT_HEADER,
    HANDSHAKE_VERSIONS,
    LATEST_HANDSHAKE,
    MODERN_VERSIONS,
    SUPPORTED_VERSIONS,
    Era,
    batches_allowed,
    has_priming_events,
    is_modern,
    negotiate,
)


def test_the_supported_versions_are_modern_first_then_handshake_newest_first() -> None:
    assert MODERN_VERSIONS == ("2026-07-28",)
    assert HANDSHAKE_VERSIONS == ("2025-11-25", "2025-06-18", "2025-03-26")
    assert SUPPORTED_VERSIONS == ("2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26")


def test_the_latest_handshake_version_is_2025_11_25() -> None:
    assert LATEST_HANDSHAKE == "2025-11-25"


def test_a_missing_version_header_is_assumed_to_mean_2025_03_26() -> None:
    assert ASSUMED_WITHOUT_HEADER == "2025-03-26"


def test_the_meta_keys_live_under_the_modelcontextprotocol_prefix() -> None:
    assert versions.META_PREFIX == "io.modelcontextprotocol/"
    assert versions.META_PROTOCOL_VERSION == "io.modelcontextprotocol/protocolVersion"
    assert versions.META_CLIENT_INFO == "io.modelcontextprotocol/clientInfo"
    assert versions.META_CLIENT_CAPABILITIES == "io.modelcontextprotocol/clientCapabilities"
    assert versions.META_LOG_LEVEL == "io.modelcontextprotocol/logLevel"
    assert versions.META_SERVER_INFO == "io.modelcontextprotocol/serverInfo"


def test_the_eras_have_stable_values() -> None:
    assert [era.value for era in Era] == ["handshake", "modern"]


@pytest.mark.parametrize("requested", HANDSHAKE_VERSIONS)
def test_negotiate_answers_a_supported_handshake_version_with_itself(requested: str) -> None:
    assert negotiate(requested) == requested


@pytest.mark.parametrize(
    "requested", ["2024-11-05", "2099-01-01", "", "latest", None, 20251125, ["2025-06-18"]]
)
def test_negotiate_answers_an_unknown_version_with_the_latest_handshake_version(
    requested: object,
) -> None:
    assert negotiate(requested) == "2025-11-25"


def test_negotiate_never_offers_the_stateless_version_in_initialize() -> None:
    assert negotiate("2026-07-28") == "2025-11-25"


@pytest.mark.parametrize(
    ("version", "allowed"),
    [("2025-03-26", True), ("2025-06-18", False), ("2025-11-25", False), ("2026-07-28", False)],
)
def test_only_2025_03_26_allows_batches(version: str, allowed: bool) -> None:
    assert batches_allowed(version) is allowed


@pytest.mark.parametrize(
    ("version", "priming"),
    [("2025-03-26", False), ("2025-06-18", False), ("2025-11-25", True), ("2026-07-28", True)],
)
def test_priming_events_start_with_2025_11_25(version: str, priming: bool) -> None:
    assert has_priming_events(version) is priming


@pytest.mark.parametrize(
    ("version", "modern"),
    [
        ("2026-07-28", True),
        ("2025-11-25", False),
        ("2025-03-26", False),
        ("", False),
        (None, False),
    ],
)
def test_only_2026_07_28_is_modern(version: str | None, modern: bool) -> None:
    assert is_modern(version) is modern
