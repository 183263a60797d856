"""Handshake-era sessions: the state machine, ids and the bounded, expiring registry."""

from __future__ import annotations

import pytest

from sp00ky_mcp.engine.sessions import (
    TRANSITIONS,
    Session,
    SessionEvent,
    SessionRegistry,
    SessionState,
    new_session_id,
)

INITIALIZING, READY, CLOSED = SessionState.INITIALIZING, SessionState.READY, SessionState.CLOSED
INITIALIZED, REQUEST, CLOSE = SessionEvent.INITIALIZED, SessionEvent.REQUEST, SessionEvent.CLOSE


def make_session(session_id: str, owner: str | None = "alice", last_seen: float = 0.0) -> Session:
    return Session(
        id=session_id,
        owner=owner,
        protocol_version="2025-11-25",
        client_capabilities={},
        client_info=None,
        last_seen=last_seen,
    )


def registry(
    max_sessions: int = 10, max_per_owner: int = 10, ttl: float = 100.0
) -> SessionRegistry:
    return SessionRegistry(max_sessions=max_sessions, max_per_owner=max_per_owner, idle_ttl=ttl)


# the state machine


def test_the_transition_table_is_exactly_the_documented_machine() -> None:
    assert TRANSITIONS == {
        (INITIALIZING, INITIALIZED): READY,
        (INITIALIZING, REQUEST): INITIALIZING,
        (INITIALIZING, CLOSE): CLOSED,
        (READY, INITIALIZED): READY,
        (READY, REQUEST): READY,
        (READY, CLOSE): CLOSED,
    }


def test_a_closed_session_has_no_transitions() -> None:
    assert [key for key in TRANSITIONS if key[0] is CLOSED] == []


def test_a_new_session_is_initializing_with_no_subscriptions() -> None:
    session = make_session("s")
    assert session.state is INITIALIZING
    assert session.subscriptions == set()
    assert session.log_level is None
    assert session.runtime is None


@pytest.mark.parametrize(
    ("start", "event", "end"), [(*key, value) for key, value in TRANSITIONS.items()]
)
def test_advance_follows_the_transition_table(
    start: SessionState, event: SessionEvent, end: SessionState
) -> None:
    session = make_session("s")
    session.state = start
    assert session.advance(event) is True
    assert session.state is end


@pytest.mark.parametrize("event", list(SessionEvent))
def test_advance_from_closed_is_refused_and_stays_closed(event: SessionEvent) -> None:
    session = make_session("s")
    session.state = CLOSED
    assert session.advance(event) is False
    assert session.state is CLOSED


def test_requests_are_allowed_before_initialized() -> None:
    session = make_session("s")
    assert session.advance(REQUEST) is True
    assert session.state is INITIALIZING


def test_initialized_then_close_walks_the_whole_lifecycle() -> None:
    session = make_session("s")
    assert [session.advance(e) for e in (INITIALIZED, REQUEST, CLOSE, REQUEST)] == [
        True,
        True,
        True,
        False,
    ]
    assert session.state is CLOSED


def test_the_session_states_and_events_have_stable_values() -> None:
    assert [s.value for s in SessionState] == ["initializing", "ready", "closed"]
    assert [e.value for e in SessionEvent] == ["initialized", "request", "close"]


# session ids


def test_session_ids_are_visible_ascii_only() -> None:
    for _ in range(200):
        session_id = new_session_id()
        assert session_id
        assert all(0x21 <= ord(char) <= 0x7E for char in session_id), session_id


def test_session_ids_are_long_enough_to_be_unguessable() -> None:
    assert len(new_session_id()) >= 32


def test_session_ids_are_unique() -> None:
    ids = [new_session_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)


# the registry: add, get, peek, remove


def test_an_added_session_can_be_found() -> None:
    sessions = registry()
    session = make_session("a")
    assert sessions.add(session) == []
    assert len(sessions) == 1
    assert sessions.get("a", 0.0) is session
    assert sessions.peek("a") is session
    assert sessions.ids() == ["a"]


def test_an_unknown_session_is_none() -> None:
    sessions = registry()
    assert sessions.get("nope", 0.0) is None
    assert sessions.peek("nope") is None
    assert sessions.remove("nope") is None


def test_removing_a_session_closes_it_and_forgets_it() -> None:
    sessions = registry()
    session = make_session("a")
    sessions.add(session)
    assert sessions.remove("a") is session
    assert session.state is CLOSED
    assert sessions.get("a", 0.0) is None
    assert len(sessions) == 0


def test_remove_owner_closes_and_returns_only_that_owners_sessions() -> None:
    sessions = registry()
    a1, b1, a2 = make_session("a1", "alice"), make_session("b1", "bob"), make_session("a2", "alice")
    for session in (a1, b1, a2):
        sessions.add(session)
    assert sessions.remove_owner("alice") == [a1, a2]
    assert (a1.state, a2.state, b1.state) == (CLOSED, CLOSED, INITIALIZING)
    assert sessions.ids() == ["b1"]


def test_remove_owner_of_an_unknown_owner_removes_nothing() -> None:
    sessions = registry()
    sessions.add(make_session("a"))
    assert sessions.remove_owner("mallory") == []
    assert sessions.ids() == ["a"]


# idle expiry


def test_a_session_used_within_the_idle_ttl_is_kept_and_refreshed() -> None:
    sessions = registry(ttl=100.0)
    session = make_session("a", last_seen=0.0)
    sessions.add(session)
    assert sessions.get("a", 100.0) is session
    assert session.last_seen == 100.0
    assert sessions.get("a", 200.0) is session


def test_a_session_idle_past_the_ttl_is_gone_and_closed() -> None:
    sessions = registry(ttl=100.0)
    session = make_session("a", last_seen=0.0)
    sessions.add(session)
    assert sessions.get("a", 100.5) is None
    assert session.state is CLOSED
    assert sessions.ids() == []


def test_peek_neither_refreshes_nor_expires() -> None:
    sessions = registry(ttl=100.0)
    session = make_session("a", last_seen=0.0)
    sessions.add(session)
    assert sessions.peek("a") is session
    assert session.last_seen == 0.0
    assert session.state is INITIALIZING


def test_expired_removes_and_returns_only_idle_sessions() -> None:
    sessions = registry(ttl=10.0)
    old = make_session("old", last_seen=0.0)
    sessions.add(old)
    sessions.add(make_session("new", last_seen=15.0))
    sessions.add(make_session("edge", last_seen=10.0))  # idle exactly the ttl: still alive
    assert sessions.expired(20.0) == [old]
    assert old.state is CLOSED
    assert sessions.ids() == ["new", "edge"]


# caps and least-recently-used eviction


def test_the_per_owner_cap_evicts_that_owners_least_recently_used_session() -> None:
    sessions = registry(max_per_owner=2)
    a1, a2, b1 = make_session("a1"), make_session("a2"), make_session("b1", "bob")
    for session in (a1, b1, a2):
        assert sessions.add(session) == []
    a3 = make_session("a3")
    assert sessions.add(a3) == [a1]
    assert a1.state is CLOSED
    assert sessions.ids() == ["b1", "a2", "a3"]


def test_using_a_session_protects_it_from_per_owner_eviction() -> None:
    sessions = registry(max_per_owner=2)
    a1, a2 = make_session("a1"), make_session("a2")
    sessions.add(a1)
    sessions.add(a2)
    sessions.get("a1", 1.0)
    assert sessions.add(make_session("a3")) == [a2]
    assert sessions.ids() == ["a1", "a3"]


def test_the_global_cap_evicts_the_least_recently_used_session_of_anyone() -> None:
    sessions = registry(max_sessions=3)
    a, b, c = make_session("a", "alice"), make_session("b", "bob"), make_session("c", "carol")
    for session in (a, b, c):
        sessions.add(session)
    sessions.get("a", 1.0)
    assert sessions.add(make_session("d", "dave")) == [b]
    assert b.state is CLOSED
    assert (a.state, c.state) == (INITIALIZING, INITIALIZING)
    assert sessions.ids() == ["c", "a", "d"]


def test_per_owner_eviction_makes_room_so_other_owners_keep_their_sessions() -> None:
    sessions = registry(max_sessions=3, max_per_owner=2)
    b1, a1, a2 = make_session("b1", "bob"), make_session("a1"), make_session("a2")
    for session in (b1, a1, a2):
        sessions.add(session)
    assert sessions.add(make_session("a3")) == [a1]
    assert b1.state is INITIALIZING
    assert sessions.ids() == ["b1", "a2", "a3"]


def test_a_full_registry_evicts_another_owners_session_when_the_newcomer_owns_none() -> None:
    sessions = registry(max_sessions=2, max_per_owner=2)
    y1, x1 = make_session("y1", "y"), make_session("x1", "x")
    sessions.add(y1)
    sessions.add(x1)
    assert sessions.add(make_session("x2", "x")) == [y1]
    assert sessions.ids() == ["x1", "x2"]


def test_anonymous_sessions_share_one_per_owner_cap() -> None:
    sessions = registry(max_per_owner=1)
    first, second = make_session("n1", None), make_session("n2", None)
    sessions.add(first)
    assert sessions.add(second) == [first]
    assert sessions.ids() == ["n2"]


def test_eviction_never_exceeds_either_cap() -> None:
    sessions = registry(max_sessions=5, max_per_owner=2)
    evicted_total = 0
    for index in range(20):
        evicted_total += len(sessions.add(make_session(f"s{index}", f"owner{index % 3}")))
        owners = [s.owner for i in sessions.ids() if (s := sessions.peek(i)) is not None]
        assert len(sessions) <= 5
        assert max(owners.count(o) for o in set(owners)) <= 2
    assert evicted_total == 20 - len(sessions)


def test_an_evicted_session_can_no_longer_be_found() -> None:
    sessions = registry(max_sessions=1)
    sessions.add(make_session("old"))
    sessions.add(make_session("new"))
    assert sessions.get("old", 0.0) is None
    assert sessions.peek("new") is not None
