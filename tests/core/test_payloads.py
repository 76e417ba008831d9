"""The written-out DELTA check accepts and refuses exactly what the schema walk does."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replisession.core.payloads import DELTA, check, check_delta
from replisession.errors import RemoteProtocolError

VALID: dict[str, Any] = {
    "id": "s1",
    "prev": None,
    "owner": "f" * 32,
    "stamp": [3, "f" * 32],
    "sets": {"cart": b"\x91\x01"},
    "removes": ["old"],
    "created": False,
    "destroyed": False,
    "expired": False,
    "mii": None,
    "age": 1.5,
}

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.binary(max_size=3),
    st.lists(st.one_of(st.integers(min_value=-1, max_value=5), st.text(max_size=2), st.binary(max_size=2)), max_size=3),
    st.dictionaries(
        st.one_of(st.text(max_size=2), st.integers()), st.one_of(st.binary(max_size=2), st.text(max_size=2))
    ),
)


def outcome(function: Any, payload: Any) -> Any:
    try:
        return ("ok", function(payload))
    except RemoteProtocolError as exc:
        return ("refused", str(exc))


def test_a_valid_delta_passes_both() -> None:
    assert check_delta(VALID) is VALID
    assert check(VALID, DELTA) is VALID


@given(st.sampled_from(sorted(DELTA)), values)
def test_a_delta_with_one_field_changed_gets_the_same_answer_from_both(name: str, value: Any) -> None:
    payload = {**VALID, name: value}
    assert outcome(check_delta, payload) == outcome(lambda p: check(p, DELTA), payload)


@pytest.mark.parametrize(
    "payload",
    [None, [], {}, {**VALID, "extra": 1}, {k: v for k, v in VALID.items() if k != "age"}, {**VALID, "stamp": (3, "x")}],
)
def test_the_wrong_shape_gets_the_same_answer_from_both(payload: Any) -> None:
    assert outcome(check_delta, payload) == outcome(lambda p: check(p, DELTA), payload)
    assert outcome(check_delta, payload)[0] == "refused"
