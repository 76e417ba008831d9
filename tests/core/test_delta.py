"""Deltas: per-key coalescing, versions, lifecycle flags, nested-mutation detection, SessionDelta validation."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from replisession import Session, SessionDelta, SessionSerializer
from replisession.core.store import SessionPolicy, SessionStore
from replisession.testing import FakeClock

dumps = SessionSerializer().dumps  # identically configured to the stores' own serializers


def sequential_ids() -> Callable[[], str]:
    counter: Iterator[int] = iter(range(1, 1_000_000))
    return lambda: f"id-{next(counter)}"


@pytest.fixture
def deltas() -> list[SessionDelta]:
    return []


def tracked_store(deltas: list[SessionDelta], policy: SessionPolicy | None = None, **kwargs: Any) -> SessionStore:
    store = SessionStore(policy, id_factory=sequential_ids(), **kwargs)
    store.change_sink = deltas.append
    return store


@pytest.fixture
def store(deltas: list[SessionDelta]) -> SessionStore:
    return tracked_store(deltas)


def create(store: SessionStore, now: float, **data: Any) -> Session:
    session = store.new_session(now)
    session.update(data)
    store.release(session, now)
    assert session.id is not None
    return session


def load(store: SessionStore, session_id: str, now: float) -> Session:
    session = store.load(session_id, now)
    assert session is not None
    return session


# -- SessionDelta itself -----------------------------------------------------------------------


def test_delta_defaults() -> None:
    delta = SessionDelta("id-1", 1)
    assert (
        delta.sets,
        delta.removes,
        delta.created,
        delta.destroyed,
        delta.previous_id,
        delta.max_inactive_interval,
    ) == ({}, frozenset(), False, False, None, None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"session_id": "", "version": 1}, "a delta needs a session id"),
        ({"session_id": "id-1", "version": 0}, "delta versions start at 1"),
        ({"session_id": "id-1", "version": -4}, "delta versions start at 1"),
        (
            {"session_id": "id-1", "version": 1, "sets": {"a": b"\x01", "b": b"\x02"}, "removes": frozenset("ba")},
            "keys both set and removed in one delta: ['a', 'b']",
        ),
        (
            {"session_id": "id-1", "version": 3, "sets": {"a": b"\x01"}, "destroyed": True},
            "a destroyed session's delta carries no sets",
        ),
    ],
)
def test_delta_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        SessionDelta(**kwargs)


def test_delta_is_frozen() -> None:
    delta = SessionDelta("id-1", 1)
    with pytest.raises(AttributeError):
        delta.version = 2  # type: ignore[misc]


# -- which changes make a delta ----------------------------------------------------------------


def test_no_tracking_no_deltas(clock: FakeClock) -> None:
    store = SessionStore(id_factory=sequential_ids())
    assert store.track_changes is False
    session = store.new_session(clock())
    session["user"] = "alice"
    assert store.release(session, clock()) is None
    session = load(store, "id-1", clock())
    session["user"] = "bob"
    session["cart"] = [1]
    session["cart"].append(2)
    assert store.release(session, clock()) is None
    assert session.version == 0


def test_first_delta_of_a_new_session_is_created(
    store: SessionStore, deltas: list[SessionDelta], clock: FakeClock
) -> None:
    assert store.track_changes is True
    session = store.new_session(clock())
    session["user"] = "alice"
    session["n"] = 1
    delta = store.release(session, clock())
    assert delta == SessionDelta("id-1", 1, sets={"user": dumps("alice"), "n": dumps(1)}, created=True)
    assert deltas == [delta]
    assert session.version == 1


def test_versions_increase_by_one_per_delta_and_only_on_change(
    store: SessionStore, deltas: list[SessionDelta], clock: FakeClock
) -> None:
    create(store, clock(), n=0)
    for n in (1, 2):
        session = load(store, "id-1", clock())
        session["n"] = n
        store.release(session, clock())
    session = load(store, "id-1", clock())
    _ = session["n"]
    session.mark_modified()  # a flag alone is no change
    assert store.release(session, clock()) is None
    session = load(store, "id-1", clock())
    session["n"] = 3
    store.release(session, clock())
    assert deltas == [
        SessionDelta("id-1", 1, sets={"n": dumps(0)}, created=True),
        SessionDelta("id-1", 2, sets={"n": dumps(1)}),
        SessionDelta("id-1", 3, sets={"n": dumps(2)}),
        SessionDelta("id-1", 4, sets={"n": dumps(3)}),
    ]


def test_setting_a_key_twice_keeps_only_the_last_value(store: SessionStore, clock: FakeClock) -> None:
    create(store, clock(), user="alice")
    session = load(store, "id-1", clock())
    session["theme"] = "light"
    session["theme"] = "dark"
    session["user"] = "bob"
    session["user"] = "carol"
    assert store.release(session, clock()) == SessionDelta(
        "id-1", 2, sets={"theme": dumps("dark"), "user": dumps("carol")}
    )


def test_set_then_delete_is_only_a_remove_and_delete_then_set_only_a_set(store: SessionStore, clock: FakeClock) -> None:
    create(store, clock(), user="alice", old="x")
    session = load(store, "id-1", clock())
    session["tmp"] = 1
    del session["tmp"]
    del session["old"]
    session["old"] = "y"
    session["gone"] = 1
    assert session.pop("gone") == 1
    assert store.release(session, clock()) == SessionDelta(
        "id-1", 2, sets={"old": dumps("y")}, removes=frozenset({"tmp", "gone"})
    )


def test_every_write_path_is_recorded(store: SessionStore, clock: FakeClock) -> None:
    create(store, clock(), a=1, b=2, c=3, d=4)
    session = load(store, "id-1", clock())
    session.update({"e": 5}, f=6)
    session |= {"g": 7}
    session.setdefault("h", 8)
    session.setdefault("a", "ignored")
    assert session.popitem() == ("h", 8)
    assert session.pop("b") == 2
    assert session.pop("zz", None) is None
    del session["c"]
    assert store.release(session, clock()) == SessionDelta(
        "id-1",
        2,
        sets={"e": dumps(5), "f": dumps(6), "g": dumps(7)},
        removes=frozenset({"h", "b", "c"}),
    )


def test_a_store_whose_sink_is_removed_still_returns_deltas(
    store: SessionStore, deltas: list[SessionDelta], clock: FakeClock
) -> None:
    create(store, clock(), n=0)
    session = load(store, "id-1", clock())
    store.change_sink = None
    assert store.track_changes is False
    session["n"] = 1
    assert store.release(session, clock()) == SessionDelta("id-1", 2, sets={"n": dumps(1)})
    assert deltas == [SessionDelta("id-1", 1, sets={"n": dumps(0)}, created=True)]


def late_tracked_store(deltas: list[SessionDelta], clock: FakeClock) -> SessionStore:
    """A store that served requests before anyone listened (Node.add_delta_listener comes later)."""
    store = SessionStore(id_factory=sequential_ids())
    create(store, clock(), user="alice")
    store.change_sink = deltas.append
    return store


LATE_TRACKING_BUG = (
    "SessionStore._attach sets _was_created at the first write, but only _take_delta() clears it, and that never "
    "runs while changes are not tracked: once tracking starts, an old session is still 'created'"
)


def test_first_delta_after_tracking_starts_is_not_created(deltas: list[SessionDelta], clock: FakeClock) -> None:
    store = late_tracked_store(deltas, clock)
    session = load(store, "id-1", clock())  # tracking starts with this request
    session["n"] = 1
    store.release(session, clock())
    assert deltas == [SessionDelta("id-1", 1, sets={"n": dumps(1)})]


def test_invalidating_a_session_created_before_tracking_sends_a_tombstone(
    deltas: list[SessionDelta], clock: FakeClock
) -> None:
    store = late_tracked_store(deltas, clock)
    load(store, "id-1", clock()).invalidate()
    assert deltas == [SessionDelta("id-1", 1, destroyed=True)]


def test_rotating_a_session_created_before_tracking_sends_previous_id(
    deltas: list[SessionDelta], clock: FakeClock
) -> None:
    store = late_tracked_store(deltas, clock)
    session = load(store, "id-1", clock())
    session.rotate_id()
    store.release(session, clock())
    assert deltas == [SessionDelta("id-2", 1, previous_id="id-1")]


def test_tracking_starts_with_the_next_load(deltas: list[SessionDelta], clock: FakeClock) -> None:
    store = late_tracked_store(deltas, clock)
    create(store, clock(), user="bob")  # id-2, created while tracked
    session = load(store, "id-2", clock())
    session["n"] = 1
    store.release(session, clock())
    assert deltas == [
        SessionDelta("id-2", 1, sets={"user": dumps("bob")}, created=True),
        SessionDelta("id-2", 2, sets={"n": dumps(1)}),
    ]


# -- rotate_id, max_inactive_interval ------------------------------------------------------------


def test_rotate_id_sends_previous_id_once(store: SessionStore, deltas: list[SessionDelta], clock: FakeClock) -> None:
    create(store, clock(), user="alice")
    session = load(store, "id-1", clock())
    assert session.rotate_id() == "id-2"
    assert session.rotate_id() == "id-3"  # replicas still know it as id-1
    assert store.release(session, clock()) == SessionDelta("id-3", 2, previous_id="id-1")
    session = load(store, "id-3", clock())
    session["user"] = "bob"
    assert store.release(session, clock()) == SessionDelta("id-3", 3, sets={"user": dumps("bob")})
    assert len(deltas) == 3


def test_rotating_a_session_created_in_the_same_request_needs_no_previous_id(
    store: SessionStore, clock: FakeClock
) -> None:
    session = store.new_session(clock())
    session["user"] = "alice"
    assert session.rotate_id() == "id-2"
    assert store.release(session, clock()) == SessionDelta("id-2", 1, sets={"user": dumps("alice")}, created=True)


def test_max_inactive_interval_is_carried_when_overridden(store: SessionStore, clock: FakeClock) -> None:
    create(store, clock(), user="alice")
    session = load(store, "id-1", clock())
    session.max_inactive_interval = 60
    assert store.release(session, clock()) == SessionDelta("id-1", 2, max_inactive_interval=60.0)
    session = load(store, "id-1", clock())
    session["n"] = 1
    assert store.release(session, clock()) == SessionDelta("id-1", 3, sets={"n": dumps(1)})


def test_resetting_the_override_sends_the_store_default(store: SessionStore, clock: FakeClock) -> None:
    create(store, clock(), user="alice")
    session = load(store, "id-1", clock())
    session.max_inactive_interval = 60
    store.release(session, clock())
    session = load(store, "id-1", clock())
    session.max_inactive_interval = None
    assert store.release(session, clock()) == SessionDelta("id-1", 3, max_inactive_interval=1800.0)


def test_resetting_the_override_to_no_limit_is_visible_in_the_delta(
    deltas: list[SessionDelta], clock: FakeClock
) -> None:
    store = tracked_store(deltas, SessionPolicy(max_inactive_interval=None))
    create(store, clock(), user="alice")
    session = load(store, "id-1", clock())
    session.max_inactive_interval = 60
    assert store.release(session, clock()) == SessionDelta("id-1", 2, max_inactive_interval=60.0)
    session = load(store, "id-1", clock())
    session.max_inactive_interval = None
    delta = store.release(session, clock())
    assert delta is not None
    assert delta != SessionDelta("id-1", 3)


def test_max_inactive_interval_set_before_the_first_write_rides_on_the_created_delta(
    store: SessionStore, clock: FakeClock
) -> None:
    session = store.new_session(clock())
    session.max_inactive_interval = 90
    session["user"] = "alice"
    assert store.release(session, clock()) == SessionDelta(
        "id-1", 1, sets={"user": dumps("alice")}, created=True, max_inactive_interval=90.0
    )


# -- destroyed deltas ---------------------------------------------------------------------------


def test_invalidate_sends_a_destroyed_delta_at_once(
    store: SessionStore, deltas: list[SessionDelta], clock: FakeClock
) -> None:
    create(store, clock(), user="alice")
    session = load(store, "id-1", clock())
    session["n"] = 1  # pending changes are dropped with the session
    session.invalidate()
    assert deltas[-1] == SessionDelta("id-1", 2, destroyed=True)
    assert store.release(session, clock()) is None
    assert len(deltas) == 2


def test_writing_after_invalidate_sends_a_created_delta_for_the_new_id(
    store: SessionStore, deltas: list[SessionDelta], clock: FakeClock
) -> None:
    create(store, clock(), user="alice", n=1)
    session = load(store, "id-1", clock())
    session.invalidate()
    session["user"] = "bob"
    store.release(session, clock())
    assert deltas[1:] == [
        SessionDelta("id-1", 2, destroyed=True),
        SessionDelta("id-2", 1, sets={"user": dumps("bob")}, created=True),
    ]


def test_tombstone_after_rotate_names_the_id_replicas_know(
    store: SessionStore, deltas: list[SessionDelta], clock: FakeClock
) -> None:
    create(store, clock(), user="alice")
    session = load(store, "id-1", clock())
    session.rotate_id()
    session.invalidate()
    assert deltas[-1] == SessionDelta("id-1", 2, destroyed=True)


def test_clear_to_empty_sends_a_destroyed_delta(
    store: SessionStore, deltas: list[SessionDelta], clock: FakeClock
) -> None:
    create(store, clock(), user="alice", n=1)
    session = load(store, "id-1", clock())
    session.clear()
    delta = store.release(session, clock())
    assert delta == SessionDelta("id-1", 2, destroyed=True)
    assert deltas[-1] is delta


def test_expiry_sends_a_destroyed_delta(deltas: list[SessionDelta], clock: FakeClock) -> None:
    store = tracked_store(deltas, SessionPolicy(max_inactive_interval=10))
    create(store, clock(), user="alice")
    create(store, clock(), user="bob")
    session = load(store, "id-2", clock())
    session["n"] = 1
    store.release(session, clock())  # id-2 now at version 2
    clock.advance(10)
    assert store.load("id-1", clock()) is None
    assert store.sweep(clock()) == 1
    assert deltas[-2:] == [
        SessionDelta("id-1", 2, destroyed=True, expired=True),
        SessionDelta("id-2", 3, destroyed=True, expired=True),
    ]


def test_a_session_that_never_reached_replicas_leaves_no_tombstone(
    store: SessionStore, deltas: list[SessionDelta], clock: FakeClock
) -> None:
    session = store.new_session(clock())
    session["user"] = "alice"
    session.invalidate()
    other = store.new_session(clock())
    other["tmp"] = 1
    del other["tmp"]
    assert store.release(other, clock()) is None
    assert (deltas, len(store)) == ([], 0)


# -- nested mutations ----------------------------------------------------------------------------


def test_in_place_mutation_of_a_read_list_is_sent(
    store: SessionStore, deltas: list[SessionDelta], clock: FakeClock
) -> None:
    create(store, clock(), cart=["apple"], user="alice")
    session = load(store, "id-1", clock())
    session["cart"].append("pear")
    assert store.release(session, clock()) == SessionDelta("id-1", 2, sets={"cart": dumps(["apple", "pear"])})
    session = load(store, "id-1", clock())
    session["cart"]  # read, not changed
    assert store.release(session, clock()) is None
    assert len(deltas) == 2


def test_value_set_then_mutated_in_the_same_request_sends_the_mutated_bytes(
    store: SessionStore, clock: FakeClock
) -> None:
    create(store, clock(), user="alice")
    session = load(store, "id-1", clock())
    cart = ["apple"]
    session["cart"] = cart
    cart.append("pear")
    session["prefs"] = {"theme": "light"}
    session["prefs"]["theme"] = "dark"
    assert store.release(session, clock()) == SessionDelta(
        "id-1", 2, sets={"cart": dumps(["apple", "pear"]), "prefs": dumps({"theme": "dark"})}
    )


def test_mutation_in_the_creating_request_is_sent(store: SessionStore, clock: FakeClock) -> None:
    session = store.new_session(clock())
    cart: list[str] = []
    session["cart"] = cart
    cart.append("apple")
    assert store.release(session, clock()) == SessionDelta("id-1", 1, sets={"cart": dumps(["apple"])}, created=True)


@pytest.mark.parametrize(
    "read",
    [
        lambda session: session["prefs"],
        lambda session: session.get("prefs"),
        lambda session: session.setdefault("prefs", {}),
        lambda session: next(iter(session.values())),
        lambda session: dict(session.items())["prefs"],
        lambda session: session.copy()["prefs"],
    ],
    ids=["getitem", "get", "setdefault", "values", "items", "copy"],
)
def test_every_read_path_snapshots(read: Callable[[Session], Any], store: SessionStore, clock: FakeClock) -> None:
    create(store, clock(), prefs={"tags": {"a"}})
    session = load(store, "id-1", clock())
    read(session)["tags"].add("b")
    assert store.release(session, clock()) == SessionDelta("id-1", 2, sets={"prefs": dumps({"tags": {"a", "b"}})})


def test_a_mutation_reverted_before_release_sends_nothing(store: SessionStore, clock: FakeClock) -> None:
    create(store, clock(), cart=["apple"])
    session = load(store, "id-1", clock())
    session["cart"].append("pear")
    session["cart"].pop()
    assert store.release(session, clock()) is None


def test_a_read_value_that_is_then_removed_or_replaced_is_not_resent(store: SessionStore, clock: FakeClock) -> None:
    create(store, clock(), cart=["apple"], tags=["x"], keep=1)
    session = load(store, "id-1", clock())
    session["cart"].append("pear")
    del session["cart"]
    session["tags"].append("y")
    session["tags"] = "frozen"
    assert store.release(session, clock()) == SessionDelta(
        "id-1", 2, sets={"tags": dumps("frozen")}, removes=frozenset({"cart"})
    )


def test_a_key_dropped_behind_the_sessions_back_is_skipped(store: SessionStore, clock: FakeClock) -> None:
    create(store, clock(), cart=["apple"], keep=1)
    session = load(store, "id-1", clock())
    session["cart"].append("pear")
    dict.__delitem__(session, "cart")  # bypasses tracking; the snapshot must not crash or resurrect it
    assert store.release(session, clock()) is None


@dataclass(frozen=True)
class Money:
    cents: int


@dataclass
class Basket:
    items: list[str]


def test_reading_immutable_values_takes_no_snapshot_and_sends_nothing(
    deltas: list[SessionDelta], clock: FakeClock
) -> None:
    encoded: list[str] = []

    def encode_money(value: Money) -> int:
        encoded.append("money")
        return value.cents

    def encode_basket(value: Basket) -> list[str]:
        encoded.append("basket")
        return value.items

    serializer = SessionSerializer()
    serializer.register(Money, "tests.Money", encode_money, Money, immutable=True)
    serializer.register(Basket, "tests.Basket", encode_basket, Basket)
    store = tracked_store(deltas, serializer=serializer)
    create(store, clock(), price=Money(100), basket=Basket([]), name="x", when=(1, "a"), tags=frozenset({"t"}))
    session = load(store, "id-1", clock())
    encoded.clear()
    _ = (session["price"], session.get("price"), session["name"], session["when"], session["tags"])
    assert encoded == []  # immutable: no snapshot was taken
    session["basket"]
    assert encoded == ["basket"]  # a mutable value costs one encode on read...
    assert store.release(session, clock()) is None  # ...and one at release, and sends nothing unchanged
    assert encoded == ["basket", "basket"]
    assert len(deltas) == 1


def test_a_value_is_snapshotted_once_per_request(deltas: list[SessionDelta], clock: FakeClock) -> None:
    encoded: list[list[str]] = []

    def encode_basket(value: Basket) -> list[str]:
        encoded.append(list(value.items))
        return value.items

    serializer = SessionSerializer()
    serializer.register(Basket, "tests.Basket", encode_basket, Basket)
    store = tracked_store(deltas, serializer=serializer)
    create(store, clock(), basket=Basket(["a"]))
    session = load(store, "id-1", clock())
    encoded.clear()
    session["basket"].items.append("b")
    _ = (session["basket"], session.get("basket"), list(session.values()), list(session.items()), session.copy())
    assert encoded == [["a"]]  # the first read's snapshot stands: later reads take none
    assert store.release(session, clock()) == SessionDelta(
        "id-1", 2, sets={"basket": serializer.dumps(Basket(["a", "b"]))}
    )
    assert encoded == [["a"], ["a", "b"], ["a", "b"]]  # the check at release, then the expected bytes here


def test_detect_mutations_false_sends_explicit_writes_only(deltas: list[SessionDelta], clock: FakeClock) -> None:
    store = tracked_store(deltas, SessionPolicy(detect_mutations=False))
    create(store, clock(), cart=["apple"])
    session = load(store, "id-1", clock())
    session["cart"].append("pear")
    assert store.release(session, clock()) is None
    session = load(store, "id-1", clock())
    session["cart"] = session["cart"]  # the documented way without detection: set it again
    cart = session["cart"]
    cart.append("plum")  # after the set: not seen either
    assert store.release(session, clock()) == SessionDelta("id-1", 2, sets={"cart": dumps(["apple", "pear"])})


def test_mutation_by_the_last_of_two_holders_is_detected(store: SessionStore, clock: FakeClock) -> None:
    create(store, clock(), cart=["apple"])
    first = load(store, "id-1", clock())
    second = load(store, "id-1", clock())
    first["cart"]  # both requests read the cart...
    cart = second["cart"]
    assert store.release(first, clock()) is None  # ...the first ends without a change...
    cart.append("pear")  # ...then the second changes it in place
    assert store.release(second, clock()) == SessionDelta("id-1", 2, sets={"cart": dumps(["apple", "pear"])})


def test_mutation_seen_by_the_first_releaser_is_not_sent_twice(store: SessionStore, clock: FakeClock) -> None:
    create(store, clock(), cart=["apple"])
    first = load(store, "id-1", clock())
    second = load(store, "id-1", clock())
    first["cart"].append("pear")
    assert store.release(first, clock()) == SessionDelta("id-1", 2, sets={"cart": dumps(["apple", "pear"])})
    assert store.release(second, clock()) is None
    session = load(store, "id-1", clock())
    session["cart"].append("plum")  # snapshots were dropped when the last holder left and retaken now
    assert store.release(session, clock()) == SessionDelta("id-1", 3, sets={"cart": dumps(["apple", "pear", "plum"])})


@pytest.mark.parametrize(
    "read",
    [
        lambda session: dict(session)["cart"],
        lambda session: {**session}["cart"],
        lambda session: (session | {})["cart"],
    ],
    ids=["dict", "unpack", "or"],
)
def test_shallow_copies_made_by_dict_snapshot_too(
    read: Callable[[Session], Any], store: SessionStore, clock: FakeClock
) -> None:
    create(store, clock(), cart=["apple"])
    session = load(store, "id-1", clock())
    read(session).append("pear")
    assert store.release(session, clock()) == SessionDelta("id-1", 2, sets={"cart": dumps(["apple", "pear"])})


def test_an_unserializable_in_place_change_does_not_poison_the_session(store: SessionStore, clock: FakeClock) -> None:
    create(store, clock(), cart=["apple"], n=0)
    session = load(store, "id-1", clock())
    session["cart"].append(object())
    with contextlib.suppress(TypeError):
        store.release(session, clock())
    session = load(store, "id-1", clock())
    session["n"] = 1  # a later request that does not touch the cart
    delta = store.release(session, clock())
    assert delta is not None
    assert dict(delta.sets) == {"n": dumps(1)}
