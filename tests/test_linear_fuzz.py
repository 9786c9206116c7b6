"""Fuzzing the linear agents' entry points: right shapes, any values and element types.

Every call either succeeds with a finite state or raises ValueError/TypeError naming an
argument, with the state exactly as it was, and no warning escapes on the way (warnings are
errors here: under warnings-as-errors a user would get the warning instead of the named error).
"""

from __future__ import annotations

import numpy as np
import pytest

import ensemblepp as epp

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

pytestmark = pytest.mark.filterwarnings("error")

D = 4
NAMES = ("actions", "mask", "x:", "r:", "state")
CLASSES = {"LinearEnsemble": 3, "LinearTS": None, "LinearEnsembleSampling": 3, "LinUCB": None, "LinearGreedy": None}
# Element types a user may hold: other float widths, the other byte order, integers.
VALUE_TYPES = st.sampled_from([np.float64, np.float32, np.dtype(">f8"), np.dtype(">f4"), np.float16,
                               np.longdouble, np.int64])


@st.composite
def calls(draw: st.DrawFn) -> tuple:
    cls = draw(st.sampled_from(sorted(CLASSES)))
    B = draw(st.sampled_from([1, 3]))  # 1: the single-agent fast paths
    K = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(["float64", "float32"]))
    actions = draw(hnp.arrays(draw(VALUE_TYPES), (B, K, D) if B > 1 and draw(st.booleans()) else (K, D)))
    mask = draw(st.one_of(st.none(), hnp.arrays(st.sampled_from([np.bool_, np.int64, np.uint8]),
                                                 (B, K) if B > 1 and draw(st.booleans()) else (K,),
                                                 elements=st.integers(0, 1))))
    x = draw(hnp.arrays(draw(VALUE_TYPES), (B, D) if B > 1 else (D,)))
    r = draw(hnp.arrays(draw(VALUE_TYPES), (B,))) if B > 1 else draw(st.floats())
    what = draw(st.sampled_from(["act", "act_probability", "action_probabilities", "update", "update_then_act"]))
    return cls, B, dtype, actions, mask, x, r, what


def _state(agent) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in agent._state_arrays().items()}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call=calls())
def test_any_values_give_a_finite_state_or_a_named_error(call: tuple) -> None:
    cls, B, dtype, actions, mask, x, r, what = call
    options = {"dtype": dtype, "seed": 1} | ({"n_agents": B} if B > 1 else {})
    if CLASSES[cls] is not None:
        options["ensemble_size"] = CLASSES[cls]
    agent = getattr(epp, cls)(D, **options)
    if what in ("act_probability", "action_probabilities") and cls == "LinUCB":
        what = "act"  # LinUCB is deterministic: no probabilities to give
    before = _state(agent)
    try:
        if what == "act":
            agent.act(actions, mask)
        elif what == "act_probability":
            agent.act(actions, mask, return_probability=True)
        elif what == "action_probabilities":
            agent.action_probabilities(actions, mask, n_samples=16)
        elif what == "update":
            agent.update(x, r)
        else:
            agent.update(x, r)
            before = _state(agent)
            agent.act(actions, mask)
    except (ValueError, TypeError) as err:
        assert any(name in str(err) for name in NAMES), str(err)
        after = _state(agent)
        for k, v in before.items():
            np.testing.assert_array_equal(after[k], v, err_msg=f"{k} changed by a refused call: {err}")
    else:
        for k, v in _state(agent).items():
            if v.dtype.kind == "f":
                assert np.isfinite(v).all(), f"{k} is not finite after a call that succeeded"
