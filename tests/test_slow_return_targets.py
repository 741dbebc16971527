"""Issue 14's two return targets on seed 0, each against its own stock SAC run made beside it: SAC +
``DynaCallback()`` reaches, within 5,000 real steps, stock SAC's return at 20,000 on Reacher-v5, and scores at least
1.5x stock SAC's return at 30,000 real steps on HalfCheetah-v5 (rl-zoo's SAC there: 10,000 random steps first).

Slow, and long: Reacher about 20 minutes on one core (stock 5, +dyna 15), HalfCheetah about 2 hours (the +dyna run);
run with ``python3 -m pytest -m slow tests/test_slow_return_targets.py``. The 5- and 3-seed figures, against the
median of the stock runs, are in docs/benchmarks.md (Targets); measured on seed 0: Reacher stock -5.72 at 20,000,
+dyna -5.30 at 4,000 and -4.76 at 5,000 (this test, 1,022 s); HalfCheetah stock 870 at 30,000, +dyna 4,627 (with the
fixed refit period, before refit_growth).
"""

import pytest

from sb3_plugins.benchmark import plan_runs, run_one

TARGETS = [  # (env, stock steps, +dyna steps, factor, kind: "reach" within the +dyna steps, or "at" them)
    ("Reacher-v5", 20_000, 5_000, 1.0, "reach"),
    ("HalfCheetah-v5", 30_000, 30_000, 1.5, "at"),
]


def _seed_0(env_id: str, algo: str, budget: int) -> dict:
    (spec,) = plan_runs(env_id, [algo], seeds=1, budget=budget, device="cpu", stop_at_threshold=False)
    return run_one(spec)


@pytest.mark.slow
@pytest.mark.parametrize("env_id, stock_steps, steps, factor, kind", TARGETS, ids=lambda v: str(v))
def test_dyna_callback_defaults_meet_the_return_targets(env_id, stock_steps, steps, factor, kind):
    stock = dict(_seed_0(env_id, "sac", stock_steps)["curve"])
    dyna = _seed_0(env_id, "sac+dyna", steps)
    assert dyna["reward_termination"] == "learned" and dyna["hyperparameters"]["dyna"] == {}
    bar = factor * stock[stock_steps]
    curve = dict(dyna["curve"])
    print(f"bar {bar:.2f}; +dyna {dyna['curve']}, {dyna['wall_seconds']:.0f} s")
    if kind == "reach":
        assert any(value >= bar for at, value in curve.items() if at <= steps), (bar, dyna["curve"])
    else:
        assert curve[steps] >= bar, (bar, dyna["curve"])
