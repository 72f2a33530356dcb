"""`json_text.dumps` writes exactly what `json.dumps(indent=2, ensure_ascii=False)` writes."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from stoneforge.json_text import dumps

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.text()
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=40,
)


@settings(max_examples=500, deadline=None)
@given(VALUES)
def test_same_text_as_the_standard_encoder(value: object) -> None:
    assert dumps(value) == json.dumps(value, indent=2, ensure_ascii=False)


def test_small_floats_and_odd_text_are_written_as_python_writes_them() -> None:
    for value in (
        [3e-06, 1.5e-05, 0.0001, 1e16, 1e-300],
        {"costUsd": 2.5e-05, "title": "0.00001 is not a float here"},
        {"t": "\ud800 lone surrogate", "n": -0.0},
        [float("inf"), float("-inf")],
        [],
        {},
    ):
        assert dumps(value) == json.dumps(value, indent=2, ensure_ascii=False)
