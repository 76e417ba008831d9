"""SessionSerializer: round trips that keep value and exact type, the register() hook, refusals."""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import enum
import math
import uuid
import zoneinfo
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from replisession.core.serializer import SessionSerializer, UnsupportedTypeError

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
UNSUPPORTED_HINT = "is not serializable (register it with SessionSerializer.register)"

# Stateless until something is registered, so one instance serves every example
# (hypothesis refuses function-scoped fixtures in @given tests).
SERIALIZER = SessionSerializer()


def roundtrip(value: Any, serializer: SessionSerializer = SERIALIZER) -> Any:
    return serializer.loads(serializer.dumps(value))


def unpack_raw(data: bytes) -> Any:
    """The msgpack structure without our ext hook: what goes on the wire."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def assert_identical(expected: Any, actual: Any, path: str = "value") -> None:
    """Equal value and the very same type, all the way down (``==`` alone would let
    a tuple come back as a list, 1 as True, or a Decimal lose its exponent)."""
    assert type(actual) is type(expected), f"{path}: {type(actual)} is not {type(expected)}"
    if isinstance(expected, float):
        assert repr(actual) == repr(expected), path  # tells -0.0 from 0.0
    elif isinstance(expected, decimal.Decimal):
        assert str(actual) == str(expected), path  # keeps the exponent: 1.0 vs 1.00
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected), path
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            assert_identical(want, got, f"{path}[{index}]")
    elif isinstance(expected, set | frozenset):
        assert actual == expected, path
        by_value = {item: item for item in actual}
        for item in expected:
            assert_identical(item, by_value[item], f"{path}{{{item!r}}}")
    elif isinstance(expected, dict):
        assert list(actual) == list(expected), path  # same keys, same order
        for (want_key, want), (got_key, got) in zip(expected.items(), actual.items(), strict=True):
            assert_identical(want_key, got_key, f"{path} key {want_key!r}")
            assert_identical(want, got, f"{path}[{want_key!r}]")
    elif isinstance(expected, dt.datetime | dt.time):
        assert actual == expected, path
        assert type(actual.tzinfo) is type(expected.tzinfo), path
        assert actual.tzinfo == expected.tzinfo, path
        assert actual.utcoffset() == expected.utcoffset(), path
        assert actual.fold == expected.fold, path
    else:
        assert actual == expected, path


# -- strategies ------------------------------------------------------------------------

BIG_INTS = st.one_of(st.integers(min_value=2**64), st.integers(max_value=-(2**63) - 1))
INTS = st.one_of(st.integers(), BIG_INTS)
# Whole seconds: sub-second offsets under one second are lost (see test_sub_second_utc_offset_survives).
FIXED_OFFSETS = st.integers(min_value=-86399, max_value=86399).map(lambda s: dt.timezone(dt.timedelta(seconds=s)))
TIMEZONES = st.one_of(st.just(dt.UTC), FIXED_OFFSETS, st.just(PARIS))
# fold=0 only: the fold is lost on the way (see test_ambiguous_paris_datetime_keeps_its_fold).
DATETIMES = st.one_of(st.datetimes(), st.datetimes(timezones=TIMEZONES)).map(lambda d: d.replace(fold=0))
TIMES = st.one_of(st.times(), st.times(timezones=TIMEZONES)).map(lambda t: t.replace(fold=0))
HASHABLE_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    INTS,
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    DATETIMES,
    st.dates(),
    TIMES,
    st.uuids(),
    st.decimals(allow_nan=False),
)
HASHABLES = st.recursive(
    HASHABLE_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3).map(tuple), st.frozensets(inner, max_size=3)),
    max_leaves=6,
)
DICT_KEYS = st.one_of(st.text(), INTS, st.lists(HASHABLES, max_size=3).map(tuple), HASHABLES)
VALUES = st.recursive(
    HASHABLE_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(DICT_KEYS, inner, max_size=4),
        st.sets(HASHABLES, max_size=4),
        st.frozensets(HASHABLES, max_size=4),
    ),
    max_leaves=12,
)


# -- round trips -----------------------------------------------------------------------


@given(VALUES)
def test_nested_values_round_trip_with_their_exact_types(value: Any) -> None:
    assert_identical(value, roundtrip(value))


@given(st.dictionaries(st.one_of(st.text(), INTS, st.lists(HASHABLES, max_size=3).map(tuple)), VALUES, max_size=5))
def test_dicts_with_str_int_and_tuple_keys_round_trip(value: dict[Any, Any]) -> None:
    assert_identical(value, roundtrip(value))


@given(INTS)
@example(2**63 - 1)
@example(2**63)
@example(2**64 - 1)
@example(2**64)
@example(-(2**63))
@example(-(2**63) - 1)
@example(10**100)
@example(-(10**100))
def test_ints_of_any_size_round_trip(value: int) -> None:
    assert_identical(value, roundtrip(value))


@pytest.mark.parametrize(
    ("value", "expected_wire"),
    [
        (2**64 - 1, 2**64 - 1),  # the largest native msgpack uint
        (-(2**63), -(2**63)),  # the smallest native msgpack int
        (2**64, msgpack.ExtType(9, b"18446744073709551616")),
        (-(2**63) - 1, msgpack.ExtType(9, b"-9223372036854775809")),
    ],
)
def test_ints_beyond_64_bits_travel_as_decimal_text(value: int, expected_wire: Any) -> None:
    assert unpack_raw(SERIALIZER.dumps(value)) == expected_wire


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -1,
        1.5,
        -0.0,
        math.inf,
        -math.inf,
        "",
        "héllo ✓",
        b"",
        b"\x00\xff",
        [],
        (),
        (1,),
        {},
        set(),
        frozenset(),
        [1, (2, [3, {4: (5,)}])],
        {(1, "a"): frozenset({(2, 3)}), 7: {"x"}, "k": None},
        {True: "bool key", 2: "int key", 2.5: "float key", b"b": "bytes key", None: "none key"},
        dt.datetime(2024, 3, 31, 2, 30),
        dt.datetime(2024, 7, 14, 12, 0, 0, 123456, tzinfo=dt.UTC),
        dt.datetime(2024, 7, 14, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5, minutes=-30))),
        dt.datetime(2024, 7, 14, 12, 0, tzinfo=dt.timezone(dt.timedelta(seconds=1, microseconds=5))),
        dt.datetime(2024, 7, 14, 12, 0, tzinfo=PARIS),
        dt.datetime(2024, 1, 14, 12, 0, tzinfo=PARIS),
        dt.datetime.min,
        dt.datetime.max,
        dt.date(2024, 2, 29),
        dt.date.min,
        dt.time(0, 0),
        dt.time(23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=14))),
        dt.time(8, 15, tzinfo=PARIS),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        decimal.Decimal("1.00"),
        decimal.Decimal("-0"),
        decimal.Decimal("1E+2"),
        decimal.Decimal("-Infinity"),
        decimal.Decimal("123456789012345678901234567890.123456789"),
    ],
    ids=repr,
)
def test_each_supported_type_round_trips(value: Any) -> None:
    assert_identical(value, roundtrip(value))


def test_paris_datetimes_keep_the_zone_not_just_the_offset() -> None:
    value = dt.datetime(2024, 3, 30, 12, 0, tzinfo=PARIS)  # the day before the spring change
    restored = roundtrip(value)
    assert restored.tzinfo is PARIS
    assert restored + dt.timedelta(days=1) == dt.datetime(2024, 3, 31, 12, 0, tzinfo=PARIS)
    assert (restored + dt.timedelta(days=1)).utcoffset() == dt.timedelta(hours=2)


@pytest.mark.parametrize(
    ("value", "expected_wire"),
    [
        ((1, "a"), msgpack.ExtType(1, msgpack.packb([1, "a"]))),
        ({7}, msgpack.ExtType(2, msgpack.packb([7]))),
        (frozenset({7}), msgpack.ExtType(3, msgpack.packb([7]))),
        (dt.datetime(2024, 1, 2, 3, 4, 5), msgpack.ExtType(4, msgpack.packb(["2024-01-02T03:04:05", None, None, 0]))),
        (
            dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=PARIS),
            msgpack.ExtType(4, msgpack.packb(["2024-01-02T03:04:05", 3600.0, "Europe/Paris", 0])),
        ),
        (dt.date(2024, 1, 2), msgpack.ExtType(5, b"2024-01-02")),
        (dt.time(3, 4, 5), msgpack.ExtType(6, msgpack.packb(["03:04:05", None, None, 0]))),
        (uuid.UUID(int=1), msgpack.ExtType(7, uuid.UUID(int=1).bytes)),
        (decimal.Decimal("1.50"), msgpack.ExtType(8, b"1.50")),
    ],
    ids=repr,
)
def test_wire_format_of_the_extension_types(value: Any, expected_wire: Any) -> None:
    """The bytes are what peers exchange, so the codes and payloads are a protocol."""
    assert unpack_raw(SERIALIZER.dumps(value)) == expected_wire


def test_ambiguous_paris_datetime_keeps_its_fold() -> None:
    second_half_past_two = dt.datetime(2023, 10, 29, 2, 30, tzinfo=PARIS, fold=1)  # CET, +01:00
    restored = roundtrip(second_half_past_two)
    assert (restored.fold, restored.utcoffset(), restored.timestamp()) == (
        1,
        dt.timedelta(hours=1),
        second_half_past_two.timestamp(),
    )


@pytest.mark.parametrize("offset", [dt.timedelta(microseconds=500000), dt.timedelta(microseconds=-1)], ids=str)
def test_sub_second_utc_offset_survives(offset: dt.timedelta) -> None:
    value = [dt.datetime(2000, 1, 1, tzinfo=dt.timezone(offset)), dt.time(1, tzinfo=dt.timezone(offset))]
    assert [v.utcoffset() for v in roundtrip(value)] == [offset, offset]


# -- register() ------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    x: int
    y: int


@dataclass
class Cart:
    items: list[str]


class Color(enum.IntEnum):
    RED = 1
    GREEN = 2


def point_serializer() -> SessionSerializer:
    serializer = SessionSerializer()
    serializer.register(Point, "tests.Point", lambda p: [p.x, p.y], lambda data: Point(*data), immutable=True)
    return serializer


def test_registered_dataclass_round_trips_alone_and_nested() -> None:
    serializer = point_serializer()
    serializer.register(Cart, "tests.Cart", lambda c: c.items, Cart)
    value = {"origin": Point(0, 0), "path": [Point(1, 2), (Point(3, 4),)], "cart": Cart(["apple", "pear"])}
    assert_identical(value, roundtrip(value, serializer))
    assert unpack_raw(serializer.dumps(Point(1, 2))) == msgpack.ExtType(32, msgpack.packb(["tests.Point", [1, 2]]))


def test_registered_types_may_be_builtin_subclasses() -> None:
    serializer = SessionSerializer()
    serializer.register(Color, "tests.Color", int, Color, immutable=True)
    serializer.register(
        collections.OrderedDict, "collections.OrderedDict", lambda d: list(d.items()), collections.OrderedDict
    )
    value = [Color.GREEN, collections.OrderedDict([("b", 1), ("a", Color.RED)])]
    assert_identical(value, roundtrip(value, serializer))


def test_registered_encoder_may_return_other_registered_types() -> None:
    serializer = point_serializer()
    serializer.register(Cart, "tests.Cart", lambda c: [Point(len(c.items), 0), c.items], lambda d: Cart(d[1]))
    assert_identical(Cart(["x"]), roundtrip(Cart(["x"]), serializer))


def test_registering_a_name_twice_for_another_type_raises() -> None:
    serializer = point_serializer()
    with pytest.raises(ValueError, match=r"^the serializer name 'tests.Point' is already registered$"):
        serializer.register(Cart, "tests.Point", lambda c: c.items, Cart)
    assert_identical(Point(1, 2), roundtrip(Point(1, 2), serializer))  # the first registration stands


def test_re_registering_the_same_type_under_its_name_replaces_the_codec() -> None:
    serializer = point_serializer()
    serializer.register(Point, "tests.Point", lambda p: {"x": p.x, "y": p.y}, lambda d: Point(d["x"], d["y"]))
    assert unpack_raw(serializer.dumps(Point(1, 2))) == msgpack.ExtType(
        32, msgpack.packb(["tests.Point", {"x": 1, "y": 2}])
    )
    assert_identical(Point(1, 2), roundtrip(Point(1, 2), serializer))


@pytest.mark.parametrize("name", ["", None, 7])
def test_register_needs_a_non_empty_string_name(name: Any) -> None:
    with pytest.raises(ValueError, match=r"^a registered type needs a non-empty string name$"):
        SessionSerializer().register(Point, name, list, list)


def test_decoding_an_unregistered_name_raises_value_error() -> None:
    data = point_serializer().dumps({"p": Point(1, 2)})
    with pytest.raises(ValueError, match=r"^session data holds an unregistered type 'tests.Point'$"):
        SessionSerializer().loads(data)


def test_decoding_an_unknown_extension_code_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"^unknown msgpack extension code 20$"):
        SERIALIZER.loads(msgpack.packb([1, msgpack.ExtType(20, b"")]))


# -- refusals --------------------------------------------------------------------------


class Unknown:
    pass


class MyFloat(float):
    pass


@pytest.mark.parametrize(
    ("value", "bad_type", "name"),
    [
        (object(), object, "object"),
        ([{1, 2}, object()], object, "object"),  # after a set, inside a list
        ([{Unknown()}], Unknown, f"{__name__}.Unknown"),  # inside a set, inside a list
        ({"k": (1, [Unknown()])}, Unknown, f"{__name__}.Unknown"),
        ({Unknown(): 1}, Unknown, f"{__name__}.Unknown"),  # as a dict key
        (Color.RED, Color, f"{__name__}.Color"),  # strict types: an IntEnum is not an int
        (collections.OrderedDict(a=1), collections.OrderedDict, "collections.OrderedDict"),
        (MyFloat(1.5), MyFloat, f"{__name__}.MyFloat"),
        (bytearray, type, "type"),  # a class object, not an instance
        (dt.timedelta(seconds=1), dt.timedelta, "datetime.timedelta"),
    ],
    ids=repr,
)
def test_unsupported_types_raise_type_error_naming_the_type(value: Any, bad_type: type, name: str) -> None:
    with pytest.raises(UnsupportedTypeError) as info:
        SERIALIZER.dumps(value)
    assert isinstance(info.value, TypeError)
    assert info.value.value_type is bad_type
    assert str(info.value) == f"{name} {UNSUPPORTED_HINT}"


def test_unsupported_value_returned_by_a_registered_encoder_names_that_value_type() -> None:
    serializer = SessionSerializer()
    serializer.register(Cart, "tests.Cart", lambda c: [Unknown()], Cart)
    with pytest.raises(UnsupportedTypeError, match=rf"^{__name__}\.Unknown is not serializable"):
        serializer.dumps(Cart([]))


def test_a_self_referencing_list_raises_type_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(TypeError, match=r"^value cannot be serialized: ") as info:
        SERIALIZER.dumps(loop)
    assert not isinstance(info.value, UnsupportedTypeError)
    assert isinstance(info.value.__cause__, ValueError)


def test_a_lone_surrogate_raises_type_error() -> None:
    with pytest.raises(TypeError, match=r"^value cannot be serialized: 'utf-8' codec can't encode character"):
        SERIALIZER.dumps(["ok", "\ud800"])


def test_a_cycle_through_a_tuple_raises_type_error() -> None:
    loop: list[Any] = []
    loop.append((loop,))
    with pytest.raises(TypeError, match=r"^value cannot be serialized: "):
        SERIALIZER.dumps(loop)


@pytest.mark.parametrize("value", [bytearray(b"buf"), memoryview(b"buf")], ids=["bytearray", "memoryview"])
def test_bytes_like_values_come_back_as_bytes_as_documented(value: Any) -> None:
    # msgpack packs them natively, before any hook runs; the module docstring says so.
    restored = roundtrip(value)
    assert (type(restored), restored) == (bytes, b"buf")


# -- is_immutable ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "immutable"),
    [
        (None, True),
        (True, True),
        (10**30, True),
        (1.5, True),
        ("s", True),
        (b"b", True),
        (dt.datetime(2024, 1, 1, tzinfo=PARIS), True),
        (dt.date(2024, 1, 1), True),
        (dt.time(1, 2), True),
        (uuid.UUID(int=3), True),
        (decimal.Decimal("1.5"), True),
        ((), True),
        ((1, ("a", frozenset({b"x"}))), True),
        (frozenset({(1, 2)}), True),
        ((1, [2]), False),  # a tuple holding a list can change in place
        ([], False),
        ({}, False),
        (set(), False),
        (Point(1, 2), False),  # not registered with this serializer
        (Color.RED, False),  # a subclass of int is not int
        (bytearray(b"x"), False),
    ],
    ids=repr,
)
def test_is_immutable_classifies_builtin_values(value: Any, immutable: bool) -> None:
    assert SERIALIZER.is_immutable(value) is immutable


def test_is_immutable_follows_the_registration_flag() -> None:
    serializer = point_serializer()  # Point registered immutable=True
    serializer.register(Cart, "tests.Cart", lambda c: c.items, Cart)  # immutable defaults to False
    assert [
        serializer.is_immutable(Point(1, 2)),
        serializer.is_immutable((Point(1, 2), "a")),
        serializer.is_immutable(frozenset({Point(1, 2)})),
        serializer.is_immutable(Cart([])),
        serializer.is_immutable((Point(1, 2), Cart([]))),
    ] == [True, True, True, False, False]
