"""Fuzzing the off-policy estimators: any input gives a finite estimate or an error naming an argument."""

from __future__ import annotations

import numpy as np
import pytest

from ensemblepp import ope

pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

# A warning on the way to the named error (an overflowing sum) fails the run: with warnings as
# errors, a user would get the warning instead of the error.
pytestmark = pytest.mark.filterwarnings("error")

_anything = hnp.arrays(
    dtype=st.sampled_from([np.float64, np.float32, np.int64, np.bool_, np.complex128]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
)  # float elements include NaN and inf by default


@settings(max_examples=100, deadline=None)
@given(r=_anything, p=_anything, t=_anything, a=_anything, pol=_anything, q=_anything)
def test_arbitrary_input_is_an_estimate_or_a_named_error(r, p, t, a, pol, q) -> None:
    names = ("reward", "propensity", "target", "action", "policy", "predicted", "chosen", "level", "seed")
    for call in (lambda: ope.ips(r, p, t), lambda: ope.snips(r, p, t), lambda: ope.dm(pol, q),
                 lambda: ope.dr(r, p, a, pol, q), lambda: ope.replay(r, a, t)):
        try:
            est = call()
        except (ValueError, TypeError) as err:
            assert any(name in str(err) for name in names), str(err)
        else:
            assert np.isfinite([est.value, est.stderr, est.low, est.high]).all()


@st.composite
def _log(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    # Right shapes, any float64 values (NaN, inf, subnormal, 1e308): only the values are wrong, if anything.
    n = draw(st.integers(2, 6))
    k = draw(st.integers(1, 3))
    vec = hnp.arrays(np.float64, n)
    return (draw(vec), draw(vec), draw(vec), draw(hnp.arrays(np.int64, n, elements=st.integers(-1, k))),
            draw(hnp.arrays(np.float64, (n, k))), draw(hnp.arrays(np.float64, (n, k))))


@settings(max_examples=200, deadline=None)
@given(log=_log())
def test_well_shaped_logs_with_any_values(log: tuple[np.ndarray, ...]) -> None:
    r, p, t, a, pol, q = log
    before = [x.copy() for x in log]
    test_arbitrary_input_is_an_estimate_or_a_named_error.hypothesis.inner_test(r, p, t, a, pol, q)
    for x, y in zip(log, before):
        np.testing.assert_array_equal(x, y)  # inputs are never modified
