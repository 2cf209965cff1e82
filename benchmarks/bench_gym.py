"""Benchmark of rtb.gym.BiddingEnv: decision steps per second on the quickstart.

Run (from the repository root): python -m pytest benchmarks/bench_gym.py --benchmark-only -s

The quickstart (one day, 60 s ticks) with gadgets-cpc as the agent's campaign and a
constant policy (multiplier 1.5). A first episode warms numba's kernels up; then
whole episodes are timed, reset() included, at the default step (one tick: 1,440
steps an episode) and at a pacing interval (15 minutes: 96 steps of 15 ticks each).
The issue's number: at least 100 decision steps per second at the default step.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rtb.gym import BiddingEnv

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "scenarios" / "quickstart.toml"
CAMPAIGN = "gadgets-cpc"
TARGET_STEPS_PER_S = 100.0


def episode(env: BiddingEnv, seed: int, multiplier: float = 1.5) -> tuple[int, float]:
    """One episode under a constant policy: (steps, total reward)."""
    env.reset(seed=seed)
    action = np.array([multiplier], dtype=np.float32)
    steps, total, done = 0, 0.0, False
    while not done:
        _, reward, done, _, _ = env.step(action)
        steps, total = steps + 1, total + reward
    return steps, total


def steps_per_second(step_seconds: float | None, episodes: int = 2) -> tuple[float, int]:
    env = BiddingEnv(SCENARIO, campaign=CAMPAIGN, step_seconds=step_seconds, reward="clicks")
    episode(env, seed=1)  # JIT warm-up (and the first run's memory)
    start, steps = time.perf_counter(), 0
    for seed in range(2, 2 + episodes):
        steps += episode(env, seed)[0]
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed, steps // episodes


def test_gym_steps_per_second(benchmark):
    rates = {}

    def measure() -> None:
        rates["tick"] = steps_per_second(None)
        rates["15m"] = steps_per_second(900.0)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    (rate, per_episode), (coarse, coarse_episode) = rates["tick"], rates["15m"]
    benchmark.extra_info.update({"steps_per_s": rate, "steps_per_s_15m": coarse})
    print(f"\nBiddingEnv on the quickstart, one tick a step ({per_episode} steps an episode):"
          f" {rate:,.0f} steps/s (target >= {TARGET_STEPS_PER_S:.0f})")
    print(f"BiddingEnv on the quickstart, 15 minutes a step ({coarse_episode} steps an episode):"
          f" {coarse:,.0f} steps/s")
    assert rate >= TARGET_STEPS_PER_S
