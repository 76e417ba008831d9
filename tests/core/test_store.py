"""SessionStore and SessionPolicy: creation on first write, ids, expiry, sweep, limits, lifecycle, listeners."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from replisession import Session, SessionDelta
from replisession.core.ids import SESSION_ID_LENGTH, new_session_id
from replisession.core.listeners import DestroyReason, SessionListener
from replisession.core.store import SessionPolicy, SessionStore
from replisession.errors import ConfigError, TooManySessionsError
from replisession.testing import FakeClock

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{24}")


def sequential_ids() -> Callable[[], str]:
    counter: Iterator[int] = iter(range(1, 1_000_000))
    return lambda: f"id-{next(counter)}"


def make_store(policy: SessionPolicy | None = None, **kwargs: Any) -> SessionStore:
    return SessionStore(policy, id_factory=sequential_ids(), **kwargs)


def create(store: SessionStore, now: float, **data: Any) -> Session:
    """One request that creates a session holding ``data`` and ends."""
    session = store.new_session(now)
    session.update(data)
    store.release(session, now)
    assert session.id is not None
    return session


def contents(session: Session) -> dict[str, Any]:
    return dict(dict.items(session))


class Recorder(SessionListener):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def session_created(self, session: Session) -> None:
        self.events.append(("created", session.id))

    def session_destroyed(self, session: Session, reason: DestroyReason) -> None:
        self.events.append(("destroyed", session.id, reason, contents(session)))

    def attribute_added(self, session: Session, key: str, value: Any) -> None:
        self.events.append(("added", session.id, key, value))

    def attribute_replaced(self, session: Session, key: str, old_value: Any, new_value: Any) -> None:
        self.events.append(("replaced", session.id, key, old_value, new_value))

    def attribute_removed(self, session: Session, key: str, value: Any) -> None:
        self.events.append(("removed", session.id, key, value))


# -- ids ---------------------------------------------------------------------------------


def test_new_session_ids_are_24_url_safe_characters_without_dots() -> None:
    ids = {new_session_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert SESSION_ID_LENGTH == 24
    assert [i for i in ids if not ID_PATTERN.fullmatch(i) or "." in i] == []


def test_store_issues_ids_of_that_form(clock: FakeClock) -> None:
    store = SessionStore()
    sessions = [create(store, clock(), n=n) for n in range(50)]
    assert [s.id for s in sessions if s.id is None or not ID_PATTERN.fullmatch(s.id)] == []
    assert len({s.id for s in sessions}) == len(store) == 50


def test_store_skips_an_id_already_in_use(clock: FakeClock) -> None:
    ids = iter(["same", "same", "other", "other", "third"])
    store = SessionStore(id_factory=lambda: next(ids))
    first = create(store, clock(), n=1)
    second = create(store, clock(), n=2)
    assert (first.id, second.id) == ("same", "other")
    assert first.rotate_id() == "third"  # rotation also skips ids in use ("other")


# -- creation on first write ---------------------------------------------------------------


def test_new_session_is_not_stored_until_first_write(clock: FakeClock) -> None:
    store = make_store()
    session = store.new_session(clock())
    assert (session.id, session.new, session.created_at, session.last_accessed, len(store)) == (
        None,
        True,
        1000.0,
        1000.0,
        0,
    )
    assert session.get("user") is None
    session.mark_accessed()
    assert store.release(session, clock.advance(1)) is None
    assert (session.id, len(store)) == (None, 0)

    session = store.new_session(clock())
    session["user"] = "alice"
    assert (session.id, session.new, len(store), "id-1" in store, store.peek("id-1")) == (
        "id-1",
        True,
        1,
        True,
        session,
    )
    assert store.release(session, clock()) is None  # no delta: changes are not tracked
    assert store.peek("id-1") is session


def test_load_of_an_unknown_id_returns_none(clock: FakeClock) -> None:
    store = make_store()
    create(store, clock(), user="alice")
    assert [store.load(i, clock()) for i in ("", "id-2", "ID-1", "id-1.node1")] == [None, None, None, None]
    assert (store.peek("nope"), "nope" in store, len(store)) == (None, False, 1)


def test_load_resets_flags_for_the_first_request_only(clock: FakeClock) -> None:
    store = make_store()
    session = create(store, clock(), user="alice")
    assert (session.new, session.accessed, session.modified) == (True, True, True)
    first = store.load("id-1", clock())
    assert first is session
    assert (first.new, first.accessed, first.modified) == (False, False, False)
    first["n"] = 1
    second = store.load("id-1", clock())  # a concurrent request: same object, shared flags
    assert second is first
    assert (second.new, second.accessed, second.modified) == (False, True, True)


def test_two_requests_share_one_object_and_both_writes_survive(clock: FakeClock) -> None:
    store = make_store()
    create(store, clock(), user="alice")
    first = store.load("id-1", clock.advance(1))
    second = store.load("id-1", clock())
    assert first is second
    first["theme"] = "dark"
    second["lang"] = "fr"
    store.release(first, clock.advance(1))
    store.release(second, clock.advance(1))
    again = store.load("id-1", clock())
    assert again is not None
    assert contents(again) == {"user": "alice", "theme": "dark", "lang": "fr"}


def test_release_ignores_sessions_it_does_not_hold(clock: FakeClock) -> None:
    store, other = make_store(), make_store()
    foreign = create(other, clock(), user="bob")
    assert store.release(foreign, clock.advance(5)) is None
    assert (foreign.last_accessed, len(store)) == (1000.0, 0)
    assert store.release(Session({"a": 1}), clock()) is None


# -- expiry ------------------------------------------------------------------------------


def test_idle_expiry_at_exactly_the_interval(clock: FakeClock) -> None:
    store = make_store(SessionPolicy(max_inactive_interval=100))
    session = create(store, clock(), user="alice")  # last_accessed = 1000
    alive = store.load("id-1", 1099.5)
    assert alive is session
    store.release(alive, 1099.5)  # not accessed: no touch
    assert session.last_accessed == 1000.0
    assert store.load("id-1", 1100.0) is None  # 1100 - 1000 >= 100
    assert (len(store), session.id, contents(session)) == (0, None, {})


def test_touch_only_when_accessed(clock: FakeClock) -> None:
    store = make_store(SessionPolicy(max_inactive_interval=100))
    session = create(store, clock(), user="alice")
    loaded = store.load("id-1", 1050.0)
    assert loaded is not None
    assert loaded["user"] == "alice"  # a plain read is not an access (Starlette marks in request.session)
    store.release(loaded, 1050.0)
    assert session.last_accessed == 1000.0
    loaded = store.load("id-1", 1090.0)
    assert loaded is not None
    loaded.mark_accessed()
    store.release(loaded, 1090.0)
    assert session.last_accessed == 1090.0
    assert store.load("id-1", 1189.5) is session
    store.release(session, 1189.5)
    assert store.load("id-1", 1190.0) is None


def test_per_session_interval_override(clock: FakeClock) -> None:
    store = make_store(SessionPolicy(max_inactive_interval=1800))
    session = store.new_session(clock())
    session["user"] = "alice"
    session.max_inactive_interval = 60
    store.release(session, clock())
    other = create(store, clock(), user="bob")
    assert store.load("id-1", 1059.5) is session
    store.release(session, 1059.5)
    assert store.load("id-1", 1060.0) is None
    assert store.load("id-2", 1060.0) is other


def test_interval_none_never_idles_out(clock: FakeClock) -> None:
    store = make_store(SessionPolicy(max_inactive_interval=None))
    session = create(store, clock(), user="alice")
    assert store.load("id-1", 1e12) is session


def test_absolute_lifetime_ends_even_an_active_session(clock: FakeClock) -> None:
    store = make_store(SessionPolicy(max_inactive_interval=100, max_lifetime=250))
    session = create(store, clock(), user="alice")  # created at 1000
    for now in (1090.0, 1180.0, 1249.5):
        loaded = store.load("id-1", now)
        assert loaded is session
        loaded.mark_accessed()
        store.release(loaded, now)
    assert session.last_accessed == 1249.5
    assert store.load("id-1", 1250.0) is None  # idle for 0.5 s only, but 250 s old


def test_an_expired_session_cannot_be_read_even_before_sweep(clock: FakeClock) -> None:
    recorder = Recorder()
    store = make_store(SessionPolicy(max_inactive_interval=10), listeners=[recorder])
    session = create(store, clock(), user="alice")
    clock.advance(10)
    assert store.peek("id-1") is session  # still in memory: nobody swept
    assert store.load("id-1", clock()) is None
    assert (store.peek("id-1"), len(store), session.id, contents(session), session.new) == (None, 0, None, {}, True)
    assert recorder.events[-1] == ("destroyed", "id-1", DestroyReason.EXPIRED, {"user": "alice"})
    assert store.load("id-1", clock()) is None


def test_sweep_removes_expired_sessions_not_held_by_a_request(clock: FakeClock) -> None:
    recorder = Recorder()
    store = make_store(SessionPolicy(max_inactive_interval=100), listeners=[recorder])
    idle = create(store, clock(), user="idle")  # id-1, last_accessed 1000
    held = create(store, clock(), user="held")  # id-2, last_accessed 1000
    fresh = create(store, clock.advance(50), user="fresh")  # id-3, last_accessed 1050
    assert store.load("id-2", 1099.0) is held  # an in-flight request
    recorder.events.clear()

    assert store.sweep(1100.0) == 1
    assert (store.peek("id-1"), store.peek("id-2"), store.peek("id-3")) == (None, held, fresh)
    assert (idle.id, contents(idle)) == (None, {})
    assert recorder.events == [("destroyed", "id-1", DestroyReason.EXPIRED, {"user": "idle"})]

    store.release(held, 1101.0)  # not accessed: still idle since 1000
    assert store.sweep(1101.0) == 1
    assert store.sweep(1149.5) == 0
    assert store.sweep(1150.0) == 1
    assert len(store) == 0


def test_sweep_of_an_empty_store_returns_zero(clock: FakeClock) -> None:
    assert make_store().sweep(clock()) == 0


def test_load_does_not_wipe_a_session_another_request_still_holds(clock: FakeClock) -> None:
    store = make_store(SessionPolicy(max_inactive_interval=100))
    create(store, clock(), user="alice")
    holder = store.load("id-1", 1090.0)  # a long request (or a websocket) is still running...
    assert holder is not None
    store.load("id-1", 1100.0)  # ...when a second request with the same cookie arrives
    assert (holder.id, contents(holder)) == ("id-1", {"user": "alice"})


# -- max_active_sessions ---------------------------------------------------------------------


def test_max_active_sessions_refuses_the_first_write_of_a_new_session(clock: FakeClock) -> None:
    store = make_store(SessionPolicy(max_active_sessions=2))
    first = create(store, clock(), user="a")
    create(store, clock(), user="b")
    refused = store.new_session(clock())
    assert refused.get("x") is None  # reading a new session is fine
    with pytest.raises(TooManySessionsError) as info:
        refused["x"] = 1
    assert str(info.value) == "max_active_sessions (2) reached; new sessions are refused"
    assert (refused.id, contents(refused), len(store)) == (None, {}, 2)
    assert refused._refused is True  # what the adapters turn into a 503
    assert store.release(refused, clock()) is None

    existing = store.load("id-1", clock())  # existing sessions keep working
    assert existing is first
    existing["more"] = 1
    del existing["user"]
    store.release(existing, clock())
    assert (contents(first), len(store)) == ({"more": 1}, 2)

    first.invalidate()
    accepted = store.new_session(clock())
    accepted["x"] = 1
    assert (accepted.id, len(store), accepted._refused) == ("id-3", 2, False)


# -- invalidate, rotate_id, clear ----------------------------------------------------------------


def test_invalidate_removes_the_session_now(clock: FakeClock) -> None:
    store = make_store()
    create(store, clock(), user="alice", cart=[1])
    session = store.load("id-1", clock())
    assert session is not None
    session.invalidate()
    assert (session.id, contents(session), session.new, session.version) == (None, {}, True, 0)
    assert (session.accessed, session.modified) == (True, True)
    assert (len(store), store.load("id-1", clock())) == (0, None)
    assert store.release(session, clock()) is None
    assert len(store) == 0


def test_writing_after_invalidate_starts_a_fresh_session(clock: FakeClock) -> None:
    store = make_store()
    create(store, clock(), user="alice")
    session = store.load("id-1", clock())
    assert session is not None
    session.invalidate()
    session["user"] = "bob"
    assert (session.id, session.new, contents(session)) == ("id-2", True, {"user": "bob"})
    store.release(session, clock())
    assert store.load("id-1", clock()) is None
    assert store.load("id-2", clock()) is session
    assert len(store) == 1


def test_invalidate_of_a_never_written_session_just_empties_it(clock: FakeClock) -> None:
    store = make_store()
    session = store.new_session(clock())
    session.invalidate()
    assert (session.id, contents(session), len(store)) == (None, {}, 0)


def test_rotate_id_keeps_data_and_retires_the_old_id(clock: FakeClock) -> None:
    store = make_store()
    create(store, clock(), user="alice")
    session = store.load("id-1", clock())
    assert session is not None
    assert session.rotate_id() == "id-2"
    assert (session.id, contents(session), session.modified) == ("id-2", {"user": "alice"}, True)
    store.release(session, clock())
    assert store.load("id-1", clock()) is None
    assert store.load("id-2", clock()) is session
    assert (len(store), "id-1" in store) == (1, False)


def test_rotate_id_of_a_new_session_returns_none(clock: FakeClock) -> None:
    store = make_store()
    session = store.new_session(clock())
    assert session.rotate_id() is None
    assert (session.id, len(store), session.modified) == (None, 0, True)


def test_clear_then_release_removes_the_server_copy(clock: FakeClock) -> None:
    recorder = Recorder()
    store = make_store(listeners=[recorder])
    create(store, clock(), user="alice", n=1)
    session = store.load("id-1", clock())
    assert session is not None
    session.clear()
    assert store.peek("id-1") is session  # removed at request end, not at clear()
    recorder.events.clear()
    assert store.release(session, clock()) is None
    assert (len(store), store.load("id-1", clock()), session.id) == (0, None, None)
    assert recorder.events == [("destroyed", "id-1", DestroyReason.INVALIDATED, {})]


def test_deleting_the_last_key_removes_the_server_copy(clock: FakeClock) -> None:
    store = make_store()
    create(store, clock(), user="alice")
    session = store.load("id-1", clock())
    assert session is not None
    del session["user"]
    store.release(session, clock())
    assert (len(store), store.load("id-1", clock())) == (0, None)


# -- listeners -------------------------------------------------------------------------------


def test_listeners_see_every_lifecycle_and_attribute_event(clock: FakeClock) -> None:
    recorder = Recorder()
    store = make_store(listeners=[recorder])
    session = store.new_session(clock())
    session["a"] = 1
    session["a"] = 2
    session.update(b=[3])
    session.setdefault("b", "unused")
    session.setdefault("c", 4)
    del session["a"]
    assert session.pop("b") == [3]
    session.pop("missing", None)
    assert session.popitem() == ("c", 4)
    session["d"] = 5
    session["e"] = 6
    session.clear()
    store.release(session, clock())
    assert recorder.events == [
        ("created", "id-1"),
        ("added", "id-1", "a", 1),
        ("replaced", "id-1", "a", 1, 2),
        ("added", "id-1", "b", [3]),
        ("added", "id-1", "c", 4),
        ("removed", "id-1", "a", 2),
        ("removed", "id-1", "b", [3]),
        ("removed", "id-1", "c", 4),
        ("added", "id-1", "d", 5),
        ("added", "id-1", "e", 6),
        ("removed", "id-1", "d", 5),
        ("removed", "id-1", "e", 6),
        ("destroyed", "id-1", DestroyReason.INVALIDATED, {}),
    ]


def test_destroyed_listeners_can_still_read_the_attributes(clock: FakeClock) -> None:
    recorder = Recorder()
    store = make_store(SessionPolicy(max_inactive_interval=10), listeners=[recorder])
    create(store, clock(), user="alice")  # id-1
    create(store, clock(), user="bob")  # id-2
    create(store, clock(), user="carol")  # id-3
    invalidated = store.load("id-1", clock())
    assert invalidated is not None
    invalidated.invalidate()
    store.release(invalidated, clock())
    recorder.events.clear()
    assert store.load("id-2", clock.advance(10)) is None
    assert store.sweep(clock()) == 1
    assert recorder.events == [
        ("destroyed", "id-2", DestroyReason.EXPIRED, {"user": "bob"}),
        ("destroyed", "id-3", DestroyReason.EXPIRED, {"user": "carol"}),
    ]


def test_invalidate_fires_destroyed_with_reason_invalidated(clock: FakeClock) -> None:
    recorder = Recorder()
    store = make_store(listeners=[recorder])
    create(store, clock(), user="alice")
    session = store.load("id-1", clock())
    assert session is not None
    recorder.events.clear()
    session.invalidate()
    session["user"] = "bob"
    assert recorder.events == [
        ("destroyed", "id-1", DestroyReason.INVALIDATED, {"user": "alice"}),
        ("created", "id-2"),
        ("added", "id-2", "user", "bob"),
    ]


class Broken(SessionListener):
    def session_created(self, session: Session) -> None:
        raise RuntimeError("created boom")

    def attribute_added(self, session: Session, key: str, value: Any) -> None:
        raise RuntimeError("added boom")

    def session_destroyed(self, session: Session, reason: DestroyReason) -> None:
        raise RuntimeError("destroyed boom")


def test_a_raising_listener_is_logged_and_the_others_still_run(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    broken, recorder = Broken(), Recorder()
    store = make_store(listeners=[broken, recorder])
    with caplog.at_level(logging.ERROR, logger="replisession.listeners"):
        session = store.new_session(clock())
        session["user"] = "alice"
        session["user"] = "bob"  # Broken inherits the no-op attribute_replaced
        store.release(session, clock())
        session.invalidate()
    assert (session.id, contents(session), len(store)) == (None, {}, 0)
    assert recorder.events == [
        ("created", "id-1"),
        ("added", "id-1", "user", "alice"),
        ("replaced", "id-1", "user", "alice", "bob"),
        ("destroyed", "id-1", DestroyReason.INVALIDATED, {"user": "bob"}),
    ]
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("replisession.listeners", "ERROR", f"session listener {broken!r} failed in session_created"),
        ("replisession.listeners", "ERROR", f"session listener {broken!r} failed in attribute_added"),
        ("replisession.listeners", "ERROR", f"session listener {broken!r} failed in session_destroyed"),
    ]
    assert [str(r.exc_info[1]) for r in caplog.records if r.exc_info] == [
        "created boom",
        "added boom",
        "destroyed boom",
    ]


def test_the_base_listener_methods_are_no_ops(clock: FakeClock) -> None:
    store = make_store(SessionPolicy(max_inactive_interval=10), listeners=[SessionListener()])
    session = store.new_session(clock())
    session["a"] = 1
    session["a"] = 2
    del session["a"]
    session["b"] = 1
    store.release(session, clock())
    assert store.load("id-1", clock.advance(10)) is None


# -- SessionPolicy ---------------------------------------------------------------------------


def test_policy_defaults() -> None:
    assert SessionPolicy() == SessionPolicy(
        max_inactive_interval=1800.0, max_lifetime=None, max_active_sessions=None, detect_mutations=True
    )
    store = SessionStore()
    assert (store.policy, len(store), store.listeners, store.session_class, store.track_changes) == (
        SessionPolicy(),
        0,
        [],
        Session,
        False,
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"max_inactive_interval": float("nan")},
            "max_inactive_interval must be a number of seconds >= 0 or None, not nan",
        ),
        (
            {"max_inactive_interval": "1800"},
            "max_inactive_interval must be a number of seconds >= 0 or None, not '1800'",
        ),
        ({"max_lifetime": float("nan")}, "max_lifetime must be a number of seconds >= 0 or None, not nan"),
        ({"max_lifetime": [1]}, "max_lifetime must be a number of seconds >= 0 or None, not [1]"),
        ({"max_active_sessions": 0}, "max_active_sessions must be a positive integer or None, not 0"),
        ({"max_active_sessions": -3}, "max_active_sessions must be a positive integer or None, not -3"),
        ({"max_active_sessions": 2.5}, "max_active_sessions must be a positive integer or None, not 2.5"),
        ({"max_active_sessions": "10"}, "max_active_sessions must be a positive integer or None, not '10'"),
    ],
)
def test_policy_rejects_invalid_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        SessionPolicy(**kwargs)
    assert str(info.value) == message


def test_policy_accepts_valid_values() -> None:
    policy = SessionPolicy(max_inactive_interval=0, max_lifetime=86400.5, max_active_sessions=1)
    assert (policy.max_inactive_interval, policy.max_lifetime, policy.max_active_sessions) == (0, 86400.5, 1)


@pytest.mark.parametrize("name", ["max_inactive_interval", "max_lifetime"])
def test_policy_rejects_negative_seconds(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        SessionPolicy(**{name: -1.0})


# -- the lock ------------------------------------------------------------------------------


class InterleavingLock:
    """A lock for one thread that can let "another request" run first, as a real lock would
    when a second thread got there first: ``before_next`` runs once, just before the next
    acquisition is granted."""

    def __init__(self) -> None:
        self.depth = 0
        self.before_next: Callable[[], object] | None = None

    def __enter__(self) -> None:
        hook, self.before_next = self.before_next, None
        if hook is not None:
            hook()
        self.depth += 1

    def __exit__(self, *exc_info: object) -> None:
        self.depth -= 1


class LockProbe(SessionListener):
    """Records whether the store held its lock when each event fired."""

    def __init__(self, lock: InterleavingLock) -> None:
        self.lock = lock
        self.seen: list[tuple[str, int]] = []

    def session_created(self, session: Session) -> None:
        self.seen.append(("created", self.lock.depth))

    def session_destroyed(self, session: Session, reason: DestroyReason) -> None:
        self.seen.append((f"destroyed {reason.value}", self.lock.depth))


def test_the_store_holds_its_lock_for_every_change_to_the_set_of_sessions(clock: FakeClock) -> None:
    lock = InterleavingLock()
    probe = LockProbe(lock)
    issued: list[int] = []
    ids = sequential_ids()

    def id_factory() -> str:
        issued.append(lock.depth)
        return ids()

    store = SessionStore(SessionPolicy(max_inactive_interval=10), listeners=[probe], id_factory=id_factory, lock=lock)
    session = store.new_session(clock())
    session["user"] = "alice"  # first write: id issued and session stored under the lock
    store.release(session, clock())
    loaded = store.load("id-1", clock())
    assert loaded is session
    session.rotate_id()
    store.release(session, clock())
    session = store.load("id-2", clock())
    assert session is not None
    session.invalidate()
    store.release(session, clock())
    create(store, clock(), user="bob")  # id-3
    create(store, clock(), user="carol")  # id-4
    assert store.load("id-3", clock.advance(10)) is None  # expired on load
    assert store.sweep(clock()) == 1  # id-4
    emptied = create(store, clock(), user="dave")  # id-5
    assert store.load("id-5", clock()) is emptied
    emptied.clear()
    store.release(emptied, clock())  # removed at release
    assert (issued, lock.depth, len(store)) == ([1, 1, 1, 1, 1], 0, 0)
    assert probe.seen == [
        ("created", 1),
        ("destroyed invalidated", 1),
        ("created", 1),
        ("created", 1),
        ("destroyed expired", 1),
        ("destroyed expired", 1),
        ("created", 1),
        ("destroyed invalidated", 1),
    ]


def test_invalidate_after_a_concurrent_invalidate_destroys_once(clock: FakeClock) -> None:
    lock = InterleavingLock()
    recorder = Recorder()
    sent: list[Any] = []
    store = SessionStore(listeners=[recorder], id_factory=sequential_ids(), lock=lock)
    store.change_sink = sent.append
    create(store, clock(), user="alice")
    first = store.load("id-1", clock())
    second = store.load("id-1", clock())
    assert first is second is not None
    recorder.events.clear()
    lock.before_next = second.invalidate  # the other request gets the lock first
    first.invalidate()
    assert (first.id, contents(first), len(store)) == (None, {}, 0)
    assert recorder.events == [("destroyed", "id-1", DestroyReason.INVALIDATED, {"user": "alice"})]
    assert sent[1:] == [SessionDelta("id-1", 2, destroyed=True)]  # one tombstone
    assert store.release(first, clock()) is None
    assert store.release(second, clock()) is None


def test_rotate_id_after_a_concurrent_invalidate_returns_none(clock: FakeClock) -> None:
    lock = InterleavingLock()
    store = SessionStore(id_factory=sequential_ids(), lock=lock)
    create(store, clock(), user="alice")
    first = store.load("id-1", clock())
    second = store.load("id-1", clock())
    assert first is second is not None
    lock.before_next = second.invalidate
    assert first.rotate_id() is None
    assert (first.id, contents(first), len(store), store.load("id-1", clock())) == (None, {}, 0, None)
