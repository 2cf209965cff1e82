"""rtb.gym.BiddingEnv on the two-hour quickstart: the Gymnasium contract, seeding, and
that the environment is the simulation (a multiplier of 1 is simulate())."""

from __future__ import annotations

import importlib
import math
import sys
import warnings

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from rtb.engine import Run, simulate  # noqa: E402
from rtb.gym import OBSERVATION_FIELDS, BiddingEnv  # noqa: E402
from rtb.report import build_report  # noqa: E402

CAMPAIGN = "gadgets-cpc"  # no segments: bids on most requests, spends from the first tick


def constant(env: BiddingEnv, multiplier: float, seed: int | None = None):
    """A whole episode at one multiplier: (observations, rewards, last info)."""
    obs, info = env.reset(seed=seed)
    observations, rewards, done = [obs], [], False
    while not done:
        obs, reward, done, truncated, info = env.step(np.array([multiplier], dtype=np.float32))
        assert not truncated
        observations.append(obs)
        rewards.append(reward)
    return np.array(observations), np.array(rewards), info


def test_check_env_passes(two_hour_scenario):
    env = BiddingEnv(two_hour_scenario, campaign=CAMPAIGN, reward="clicks")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # advice (normalised spaces, make()), not checks
        check_env(env, skip_render_check=True)
    assert env.observation_space.shape == (len(OBSERVATION_FIELDS),)


def test_same_seed_same_trajectory_and_other_seed_another(two_hour_scenario):
    env = BiddingEnv(two_hour_scenario, campaign=CAMPAIGN, reward="profit", step_seconds=600)

    def varying(seed):
        obs, _ = env.reset(seed=seed)
        trajectory, done, k = [obs], False, 0
        while not done:
            obs, reward, done, _, _ = env.step(np.array([0.5 + (k % 4) * 0.5], dtype=np.float32))
            trajectory.append(np.append(obs, reward))
            k += 1
        return trajectory

    first, again, other = varying(5), varying(5), varying(6)
    assert len(first) == len(again) and all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    # reset() without a seed: the next seeds come from the generator the last seed set.
    env.reset(seed=5)
    seeds_a = [constant(env, 1.0)[2]["spend"] for _ in range(2)]
    env.reset(seed=5)
    seeds_b = [constant(env, 1.0)[2]["spend"] for _ in range(2)]
    assert seeds_a == seeds_b and seeds_a[0] != seeds_a[1]


def test_multiplier_one_is_simulate(two_hour_spec, two_hour_scenario):
    plain = simulate(two_hour_spec, 11).to_dict()
    env = BiddingEnv(two_hour_scenario, campaign=CAMPAIGN, reward="clicks")
    observations, rewards, info = constant(env, 1.0, seed=11)
    mine = next(c for c in plain["campaigns"] if c["id"] == CAMPAIGN)
    assert mine["spend"] > 0 and mine["clicks"] > 0
    assert (info["spend"], info["bids"], info["wins"], info["clicks"], info["conversions"]) == (
        mine["spend"], mine["bids"], mine["wins"], mine["clicks"], mine["conversions"])
    assert rewards.sum() == mine["clicks"]
    # Not only this campaign: the whole run is the plain one's, report for report.
    assert build_report(env.run.market, env.run.state).to_dict() == plain
    budget = mine["budget"]
    assert observations[-1][1] == pytest.approx(1 - mine["spend"] / budget, abs=1e-6)
    assert observations[1:, 3].sum() == pytest.approx(mine["spend"] / budget, rel=1e-5)


def test_multiplier_zero_spends_nothing(two_hour_scenario):
    env = BiddingEnv(two_hour_scenario, campaign=CAMPAIGN, reward="profit")
    observations, rewards, info = constant(env, 0.0, seed=3)
    assert info["spend"] == 0 and info["bids"] == 0 and info["wins"] == 0
    assert (rewards == 0).all()
    assert (observations[:, 1] == 1).all() and (observations[1:, 2:] == 0).all()


def test_higher_multiplier_spends_more(two_hour_scenario):
    env = BiddingEnv(two_hour_scenario, campaign=CAMPAIGN, reward="clicks")
    spend = [constant(env, m, seed=3)[2]["spend"] for m in (0.5, 1.0, 3.0)]
    assert spend[0] < spend[1] < spend[2]


def test_profit_reward_sums_to_the_reports_profit(two_hour_scenario):
    env = BiddingEnv(two_hour_scenario, campaign="mealkit-foodies", reward="profit")
    _, rewards, info = constant(env, 2.0, seed=4)
    report = build_report(env.run.market, env.run.state).to_dict()
    mine = next(c for c in report["campaigns"] if c["id"] == "mealkit-foodies")
    assert rewards.sum() == pytest.approx(mine["revenue"] * 0.35 - mine["spend"], abs=1e-9)


def test_episode_ends_at_the_runs_end(two_hour_scenario):
    env = BiddingEnv(two_hour_scenario, campaign=CAMPAIGN, step_seconds=500)  # 8 ticks
    assert env.step_seconds == 480
    observations, rewards, info = constant(env, 1.0, seed=2)
    assert len(rewards) == env.max_steps == math.ceil(7200 / 480)
    assert info["time_s"] == 7200 and observations[-1][0] == 0
    assert np.all(np.diff(observations[:, 0]) < 0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([1.0], dtype=np.float32))
    env.reset(seed=2)  # a new episode starts over
    assert env.run.now_s == 0


def test_bad_arguments_are_named(two_hour_scenario):
    with pytest.raises(ValueError, match="no campaign 'nope'"):
        BiddingEnv(two_hour_scenario, campaign="nope")
    with pytest.raises(ValueError, match="reward"):
        BiddingEnv(two_hour_scenario, campaign=CAMPAIGN, reward="revenue")
    with pytest.raises(ValueError, match="step_seconds"):
        BiddingEnv(two_hour_scenario, campaign=CAMPAIGN, step_seconds=0)


def test_run_advanced_in_pieces_is_simulate(two_hour_spec):
    run = Run(two_hour_spec, 9)
    for until in (1, 61, 200, 3600, 3601, 7000):
        run.advance(until)
    assert run.finish().to_dict() == simulate(two_hour_spec, 9).to_dict()


def test_without_gymnasium_the_message_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium", None)
    monkeypatch.delitem(sys.modules, "rtb.gym")
    with pytest.raises(ImportError, match=r"rtbsim\[gym\]"):
        importlib.import_module("rtb.gym")
