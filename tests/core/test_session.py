"""Session: Starlette-identical flags, validation at set time, read-only sessions, access tracking."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.middleware.sessions import Session as StarletteSession

from replisession import Session
from replisession.core import session as session_module
from replisession.core.session import AccessTrackingSession
from replisession.core.store import SessionPolicy, SessionStore
from replisession.errors import SessionUnavailableError, TooManySessionsError

UNSUPPORTED_HINT = "is not serializable (register it with SessionSerializer.register)"


def flags(session: dict[str, Any]) -> tuple[bool, bool]:
    return session.accessed, session.modified  # type: ignore[attr-defined]


# -- differential test against Starlette's Session ---------------------------------------

KEYS = st.sampled_from(["a", "b", "c"])
VALUES = st.one_of(st.none(), st.integers(-2, 2), st.text(max_size=2), st.lists(st.integers(0, 3), max_size=2))
MAPPINGS = st.dictionaries(KEYS, VALUES, max_size=3)
OPERATIONS = st.one_of(
    st.tuples(st.just("setitem"), KEYS, VALUES),
    st.tuples(st.just("delitem"), KEYS),
    st.tuples(st.just("clear")),
    st.tuples(st.just("pop"), KEYS),
    st.tuples(st.just("pop_default"), KEYS, VALUES),
    st.tuples(st.just("popitem")),
    st.tuples(st.just("setdefault"), KEYS),
    st.tuples(st.just("setdefault_value"), KEYS, VALUES),
    st.tuples(st.just("update"), MAPPINGS),
    st.tuples(st.just("update_kwargs"), MAPPINGS),
    st.tuples(st.just("update_pairs"), st.lists(st.tuples(KEYS, VALUES), max_size=3)),
    st.tuples(st.just("ior"), MAPPINGS),
    st.tuples(st.just("mark_accessed")),
    st.tuples(st.just("mark_modified")),
    st.tuples(st.just("get"), KEYS),
    st.tuples(st.just("get_default"), KEYS, VALUES),
    st.tuples(st.just("getitem"), KEYS),
)


def apply(session: Any, operation: tuple[Any, ...]) -> tuple[str, Any]:
    """Run one operation; the outcome is its result or the exception it raised."""
    name, *args = operation
    try:
        if name == "setitem":
            session[args[0]] = args[1]
            result = None
        elif name == "delitem":
            del session[args[0]]
            result = None
        elif name == "clear":
            result = session.clear()
        elif name == "pop":
            result = session.pop(args[0])
        elif name == "pop_default":
            result = session.pop(args[0], args[1])
        elif name == "popitem":
            result = session.popitem()
        elif name == "setdefault":
            result = session.setdefault(args[0])
        elif name == "setdefault_value":
            result = session.setdefault(args[0], args[1])
        elif name == "update":
            result = session.update(args[0])
        elif name == "update_kwargs":
            result = session.update(**args[0])
        elif name == "update_pairs":
            result = session.update(args[0])
        elif name == "ior":
            before = session
            session |= args[0]
            result = "same object" if session is before else session
        elif name == "mark_accessed":
            result = session.mark_accessed()
        elif name == "mark_modified":
            result = session.mark_modified()
        elif name == "get":
            result = session.get(args[0])
        elif name == "get_default":
            result = session.get(args[0], args[1])
        else:
            assert name == "getitem"
            result = session[args[0]]
    except KeyError as exc:
        return "KeyError", exc.args
    return "ok", result


def standalone(initial: dict[str, Any]) -> Session:
    return Session(initial)


def from_tracking_store(initial: dict[str, Any]) -> Session:
    """A stored, loaded session of a store that tracks changes and snapshots reads."""
    store = SessionStore()
    store.change_sink = lambda delta: None
    session = store.new_session(0.0)
    session.update(initial)
    store.release(session, 0.0)
    if session.id is None:  # nothing written: a new session, flags as Starlette's fresh one
        session.accessed = session.modified = False
        return session
    loaded = store.load(session.id, 1.0)
    assert loaded is session
    return loaded


@pytest.mark.parametrize("make", [standalone, from_tracking_store], ids=["standalone", "stored"])
@given(initial=MAPPINGS, operations=st.lists(OPERATIONS, max_size=25))
def test_flags_and_contents_match_starlette_after_every_operation(
    make: Callable[[dict[str, Any]], Session], initial: dict[str, Any], operations: list[tuple[Any, ...]]
) -> None:
    ours, theirs = make(initial), StarletteSession(initial)
    assert flags(ours) == flags(theirs) == (False, False)
    for step, operation in enumerate(operations):
        assert apply(ours, operation) == apply(theirs, operation), (step, operation)
        assert flags(ours) == flags(theirs), (step, operation)
        assert list(dict.items(ours)) == list(dict.items(theirs)), (step, operation)


@pytest.mark.parametrize(
    ("operation", "expected_outcome", "expected_flags", "expected_contents"),
    [
        (("get", "a"), ("ok", 1), (False, False), {"a": 1}),
        (("getitem", "a"), ("ok", 1), (False, False), {"a": 1}),
        (("getitem", "zz"), ("KeyError", ("zz",)), (False, False), {"a": 1}),
        (("mark_accessed",), ("ok", None), (True, False), {"a": 1}),
        (("mark_modified",), ("ok", None), (True, True), {"a": 1}),
        (("setdefault", "a"), ("ok", 1), (False, False), {"a": 1}),
        (("setdefault_value", "b", 2), ("ok", 2), (True, True), {"a": 1, "b": 2}),
        (("pop", "zz"), ("KeyError", ("zz",)), (False, False), {"a": 1}),
        (("pop_default", "zz", 0), ("ok", 0), (False, False), {"a": 1}),
        (("pop", "a"), ("ok", 1), (True, True), {}),
        (("delitem", "zz"), ("KeyError", ("zz",)), (True, True), {"a": 1}),
        (("update", {}), ("ok", None), (True, True), {"a": 1}),
        (("ior", {"b": 2}), ("ok", "same object"), (True, True), {"a": 1, "b": 2}),
        (("popitem",), ("ok", ("a", 1)), (True, True), {}),
    ],
)
def test_flag_semantics_pinned(
    operation: tuple[Any, ...],
    expected_outcome: tuple[str, Any],
    expected_flags: tuple[bool, bool],
    expected_contents: dict[str, Any],
) -> None:
    """The differential test in fixed examples, so Starlette changing under us shows up here too."""
    session = Session({"a": 1})
    assert apply(session, operation) == expected_outcome
    assert (flags(session), dict(dict.items(session))) == (expected_flags, expected_contents)


def test_popitem_of_an_empty_session_raises_and_marks_nothing() -> None:
    session = Session()
    with pytest.raises(KeyError, match=r"popitem\(\): dictionary is empty"):
        session.popitem()
    assert flags(session) == (False, False)


# -- standalone sessions -------------------------------------------------------------------


def test_standalone_session_state() -> None:
    session = Session({"user": "alice"})
    assert (dict(session), session.id, session.new, session.version, session.max_inactive_interval) == (
        {"user": "alice"},
        None,
        True,
        0,
        None,
    )
    assert (session.created_at, session.last_accessed, session.cookie_issued_at) == (None, None, None)
    assert flags(session) == (False, False)


def test_standalone_rotate_id_returns_none_and_marks_modified() -> None:
    session = Session({"user": "alice"})
    assert session.rotate_id() is None
    assert (session.id, dict(session), flags(session)) == (None, {"user": "alice"}, (True, True))


def test_standalone_invalidate_empties_the_session() -> None:
    session = Session({"user": "alice", "n": 1})
    session.invalidate()
    assert (session.id, dict(session), session.new, flags(session)) == (None, {}, True, (True, True))


def test_copy_is_a_plain_shallow_dict() -> None:
    cart = ["apple"]
    session = Session({"cart": cart})
    copied = session.copy()
    assert type(copied) is dict
    assert copied == {"cart": ["apple"]}
    assert copied["cart"] is cart
    assert flags(session) == (False, False)


def test_plain_session_reads_do_not_mark_accessed() -> None:
    """Starlette marks the session in ``request.session``, not on each read."""
    session = Session({"a": 1})
    _ = (session["a"], session.get("a"), session.get("zz"), "a" in session, len(session), list(session))
    _ = (list(session.keys()), list(session.values()), list(session.items()), session.copy())
    assert flags(session) == (False, False)


def test_missing_sentinel_repr() -> None:
    assert repr(session_module._MISSING) == "<missing>"


# -- max_inactive_interval override ---------------------------------------------------------


def test_max_inactive_interval_override_is_a_float_and_marks_modified() -> None:
    session = Session()
    session.max_inactive_interval = 60
    assert (session.max_inactive_interval, type(session.max_inactive_interval), flags(session)) == (
        60.0,
        float,
        (True, True),
    )
    session.max_inactive_interval = 0
    assert session.max_inactive_interval == 0.0


@pytest.mark.parametrize("seconds", [-1, -0.5, float("nan")])
def test_max_inactive_interval_rejects_negative_and_nan(seconds: float) -> None:
    session = Session()
    with pytest.raises(ValueError, match=r"^max_inactive_interval must be a number of seconds >= 0, or None$"):
        session.max_inactive_interval = seconds
    assert (session.max_inactive_interval, flags(session)) == (None, (False, False))


def test_stored_session_inherits_the_policy_interval_until_overridden() -> None:
    store = SessionStore(SessionPolicy(max_inactive_interval=300))
    session = store.new_session(0.0)
    assert session.max_inactive_interval == 300
    session.max_inactive_interval = 60
    assert session.max_inactive_interval == 60.0
    session.accessed = session.modified = False
    session.max_inactive_interval = None  # back to the store's default
    assert (session.max_inactive_interval, flags(session)) == (300, (True, True))


def test_standalone_override_can_be_reset_to_none() -> None:
    session = Session()
    session.max_inactive_interval = 60
    session.max_inactive_interval = None
    assert session.max_inactive_interval is None


# -- validation at set time ----------------------------------------------------------------


class Unknown:
    pass


def test_setting_an_unserializable_value_raises_naming_key_and_type_and_changes_nothing() -> None:
    session = Session({"user": "alice"})
    with pytest.raises(TypeError) as info:
        session["cart"] = Unknown()
    assert str(info.value) == (f"cannot store session['cart'] = <Unknown>: {__name__}.Unknown {UNSUPPORTED_HINT}")
    assert dict(dict.items(session)) == {"user": "alice"}


def test_replacing_with_an_unserializable_value_keeps_the_old_value() -> None:
    session = Session({"cart": ["apple"]})
    with pytest.raises(TypeError) as info:
        session["cart"] = ["apple", object()]
    assert str(info.value) == f"cannot store session['cart'] = <list>: object {UNSUPPORTED_HINT}"
    assert dict(dict.items(session)) == {"cart": ["apple"]}


def test_constructor_validates_values() -> None:
    with pytest.raises(TypeError) as info:
        Session({"ok": 1, "x": object()})
    assert str(info.value) == f"cannot store session['x'] = <object>: object {UNSUPPORTED_HINT}"


@pytest.mark.parametrize(
    ("key", "shown"),
    [(1, "int (1)"), (b"k", "bytes (b'k')"), (None, "NoneType (None)"), (("a",), "tuple (('a',))")],
)
@pytest.mark.parametrize(
    "write",
    [
        lambda session, key: session.__setitem__(key, 1),
        lambda session, key: session.update({key: 1}),
        lambda session, key: session.__ior__({key: 1}),
        lambda session, key: session.setdefault(key, 1),
        lambda session, key: Session({key: 1}),
    ],
    ids=["setitem", "update", "ior", "setdefault", "constructor"],
)
def test_non_str_keys_raise_type_error(write: Callable[[Session, Any], Any], key: Any, shown: str) -> None:
    session = Session({"user": "alice"})
    with pytest.raises(TypeError) as info:
        write(session, key)
    assert str(info.value) == f"session keys must be str, not {shown}"
    assert dict(dict.items(session)) == {"user": "alice"}


class Key(str):
    __slots__ = ()


def test_str_subclass_keys_are_refused() -> None:
    with pytest.raises(TypeError, match=r"^session keys must be str, not Key \('k'\)$"):
        Session()[Key("k")] = 1


def test_update_with_one_bad_value_applies_nothing() -> None:
    session = Session({"user": "alice"})
    with pytest.raises(TypeError, match=r"^cannot store session\['bad'\] = <object>: "):
        session.update({"a": 1, "user": "bob", "bad": object(), "z": 2})
    assert dict(dict.items(session)) == {"user": "alice"}


def test_update_with_one_bad_value_creates_no_stored_session() -> None:
    store = SessionStore()
    session = store.new_session(0.0)
    with pytest.raises(TypeError, match=r"^cannot store session\['bad'\]"):
        session.update(a=1, bad=object())
    with pytest.raises(TypeError, match=r"^cannot store session\['bad'\]"):
        session["bad"] = object()
    assert (dict(dict.items(session)), session.id, len(store)) == ({}, None, 0)


def test_update_accepts_pairs_and_keywords() -> None:
    session = Session()
    session.update([("a", 1)], b=2)
    session |= [("c", 3)]
    assert dict(dict.items(session)) == {"a": 1, "b": 2, "c": 3}


def test_too_many_sessions_on_update_applies_nothing() -> None:
    store = SessionStore(SessionPolicy(max_active_sessions=1))
    store.new_session(0.0)["x"] = 1
    session = store.new_session(0.0)
    with pytest.raises(TooManySessionsError):
        session.update(a=1)
    assert (dict(dict.items(session)), session.id, len(store)) == ({}, None, 1)


# -- read-only sessions (static URLs) --------------------------------------------------------


def readonly_session(data: dict[str, Any], *, stored: bool) -> Session:
    # What SessionFront.static_session builds: the valve matched a static URL.
    session = SessionStore().new_session(0.0) if stored else Session()
    dict.update(session, data)
    session._readonly = True
    return session


@pytest.mark.parametrize("stored", [False, True], ids=["standalone", "store"])
@pytest.mark.parametrize(
    "write",
    [
        lambda session: session.__setitem__("a", 2),
        lambda session: session.__delitem__("a"),
        lambda session: session.clear(),
        lambda session: session.pop("a"),
        lambda session: session.popitem(),
        lambda session: session.setdefault("new", 1),
        lambda session: session.update(a=2),
        lambda session: session.__ior__({"a": 2}),
    ],
    ids=["setitem", "delitem", "clear", "pop", "popitem", "setdefault", "update", "ior"],
)
def test_readonly_session_refuses_every_write(write: Callable[[Session], Any], stored: bool) -> None:
    session = readonly_session({"a": 1}, stored=stored)
    with pytest.raises(SessionUnavailableError, match=r"^the session is not available on this URL"):
        write(session)
    assert (dict(dict.items(session)), session.id) == ({"a": 1}, None)


def test_readonly_session_can_be_read() -> None:
    session = readonly_session({"a": 1}, stored=True)
    assert (session["a"], session.get("a"), session.get("b", 0), session.pop("zz", None)) == (1, 1, 0, None)
    assert session.copy() == {"a": 1}


# -- AccessTrackingSession: reads mark accessed (WSGI) ---------------------------------------


@pytest.mark.parametrize(
    "read",
    [
        lambda session: session["a"],
        lambda session: session.get("a"),
        lambda session: session.get("missing"),
        lambda session: "a" in session,
        lambda session: len(session),
        lambda session: list(iter(session)),
        lambda session: session.keys(),
        lambda session: session.values(),
        lambda session: session.items(),
        lambda session: session.copy(),
    ],
    ids=["getitem", "get", "get_missing", "contains", "len", "iter", "keys", "values", "items", "copy"],
)
@pytest.mark.parametrize("stored", [False, True], ids=["standalone", "stored"])
def test_access_tracking_session_reads_mark_accessed_only(read: Callable[[Session], Any], stored: bool) -> None:
    if stored:
        store = SessionStore(session_class=AccessTrackingSession)
        store.change_sink = lambda delta: None
        session = store.new_session(0.0)
        session["a"] = [1]
        store.release(session, 0.0)
        assert session.id is not None
        loaded = store.load(session.id, 1.0)
        assert loaded is session
    else:
        session = AccessTrackingSession({"a": [1]})
    assert flags(session) == (False, False)
    read(session)
    assert flags(session) == (True, False)
    assert dict.copy(session) == {"a": [1]}


def test_access_tracking_session_results_are_dict_results() -> None:
    session = AccessTrackingSession({"a": 1, "b": 2})
    assert ("a" in session, "z" in session, len(session), list(session), list(session.keys())) == (
        True,
        False,
        2,
        ["a", "b"],
        ["a", "b"],
    )
