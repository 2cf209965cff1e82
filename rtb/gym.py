"""A Gymnasium environment: one campaign's bidding in a scenario, as an episode.

    from rtb.gym import BiddingEnv
    env = BiddingEnv("scenarios/quickstart.toml", campaign="gadgets-cpc")

An episode is one whole run of the scenario (rtb.engine.Run). Every decision step the
agent picks a bid multiplier; the campaign's own strategy bids as the scenario says,
its pacing throttles as the scenario says, and its bids are multiplied by the action
(at most its max_bid_cpm; 0 = no bids) for the next `step_seconds` of simulated time.
Every other campaign, the market, the users and the random streams run as in
`rtb run`: a multiplier of 1 throughout gives the campaign exactly the figures of
simulate() with the same seed.

Observation, float32[6] (OBSERVATION_FIELDS), "last step" = the step just simulated:

    0 time_left     share of the run's time still to come, 1 -> 0
    1 budget_left   share of the campaign's total budget not yet spent
    2 win_rate      impressions won / bids sent to the exchange in the last step (0: none)
    3 cost          the last step's spend (media + fees + data), as a share of the budget
    4 clicks        the last step's clicks
    5 conversions   conversions credited to the campaign in the last step (last touch,
                    as the report's `conversions`; they come hours after the click)

Reward per step (reward=): "conversions" (the default) or "clicks" gained in the step;
"profit" = conversions x value_per_conversion x margin - spend, in the scenario's
currency (the numerator of the report's ROMI).

Needs gymnasium: pip install 'rtbsim[gym]'.
"""

from __future__ import annotations

import math
from os import PathLike
from pathlib import Path

import numpy as np

try:
    import gymnasium
    from gymnasium import spaces
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("rtb.gym needs gymnasium, an optional dependency of rtbsim:"
                      " pip install 'rtbsim[gym]' (or pip install gymnasium)") from exc

from rtb.engine import Run
from rtb.scenario import Scenario, load_scenario
from rtb.types import FIRST_SUBMITTED, WON

OBSERVATION_FIELDS = ("time_left", "budget_left", "win_rate", "cost", "clicks", "conversions")
REWARDS = ("conversions", "clicks", "profit")
MAX_MULTIPLIER = 10.0


class BiddingEnv(gymnasium.Env):
    """One campaign's bidding in a scenario (module docstring: spaces and reward).

    scenario_path: a scenario file (or a loaded rtb.Scenario); campaign: the id of the
    campaign the agent bids for; step_seconds: simulated time per decision step, rounded
    to whole ticks (default: one tick); reward: "conversions", "clicks" or "profit";
    seed: the run seed of the first episode when reset() is given none (default: the
    scenario's). reset(seed=s) runs the episode with seed s (same seed, same episode);
    reset() without a seed draws the next episode's seed from the env's generator.
    max_multiplier: the action space's upper bound.
    """

    metadata = {"render_modes": []}

    def __init__(self, scenario_path: str | PathLike | Scenario, campaign: str, *,
                 step_seconds: float | None = None, reward: str = "conversions",
                 seed: int | None = None, max_multiplier: float = MAX_MULTIPLIER):
        super().__init__()
        self.scenario = (scenario_path if isinstance(scenario_path, Scenario)
                         else load_scenario(Path(scenario_path)))
        ids = [c.id for c in self.scenario.campaigns]
        if campaign not in ids:
            raise ValueError(f"campaign: no campaign {campaign!r}; the scenario has {', '.join(ids)}")
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {', '.join(REWARDS)}, not {reward!r}")
        if not (math.isfinite(max_multiplier) and max_multiplier > 0):
            raise ValueError(f"max_multiplier must be positive and finite, got {max_multiplier}")
        sim = self.scenario.simulation
        tick, duration = float(sim.tick), float(sim.duration)
        if step_seconds is None:
            step_seconds = tick
        if not (math.isfinite(step_seconds) and step_seconds > 0):
            raise ValueError(f"step_seconds must be positive and finite, got {step_seconds}")
        self.campaign, self.reward_kind = campaign, reward
        self._c = ids.index(campaign)
        self.step_seconds = max(1, round(step_seconds / tick)) * tick  # whole ticks
        self.max_steps = math.ceil(duration / self.step_seconds)
        self._first_seed = seed if seed is not None else sim.seed
        self.action_space = spaces.Box(0.0, float(max_multiplier), shape=(1,), dtype=np.float32)
        high = np.array([1, 1, 1, np.inf, np.inf, np.inf], dtype=np.float32)
        self.observation_space = spaces.Box(np.zeros(6, dtype=np.float32), high, dtype=np.float32)
        self.run: Run | None = None
        self._episodes = 0

    # ---- the episode ------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            super().reset(seed=seed)
            run_seed = int(seed)
        elif self._episodes == 0:
            super().reset(seed=self._first_seed)
            run_seed = int(self._first_seed)
        else:
            super().reset()
            run_seed = int(self.np_random.integers(0, 2**63 - 1))
        self._episodes += 1
        self.close()
        self.run = Run(self.scenario, run_seed)
        self.run.exchange.bid_scale = np.ones(len(self.run.market.campaigns.ids))
        self._budget = float(self.run.market.campaigns.budget_micros[self._c])
        c = self._c
        a = int(self.run.market.campaigns.advertiser[c])
        self._profit_per_conversion = float(self.run.market.advertiser_value[a]
                                            * self.run.market.advertiser_margin[a])
        self._figures = self._read()
        self._multiplier = 1.0
        return self._observation(self._figures, self._figures), self._info(self._figures)

    def step(self, action):
        if self.run is None:
            raise RuntimeError("call reset() before step()")
        if self.run.done:
            raise RuntimeError("the episode has ended: call reset()")
        m = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], 0.0,
                          self.action_space.high[0]))
        if not math.isfinite(m):
            raise ValueError(f"the action must be a finite multiplier, got {action!r}")
        self._multiplier = m
        self.run.exchange.bid_scale[self._c] = m
        self.run.advance(self.run.now_s + self.step_seconds)
        before, after = self._figures, self._read()
        self._figures = after
        gained = after - before
        if self.reward_kind == "conversions":
            reward = float(gained[4])
        elif self.reward_kind == "clicks":
            reward = float(gained[3])
        else:
            reward = gained[4] * self._profit_per_conversion - gained[0] / 1e6
        terminated = self.run.done
        if terminated:
            self.run.close()
        return self._observation(before, after), float(reward), terminated, False, self._info(after)

    def close(self) -> None:
        if self.run is not None:
            self.run.close()

    # ---- reading the run ----------------------------------------------------------

    def _read(self) -> np.ndarray:
        """The campaign's totals so far: spend micros, bids, wins, clicks, conversions."""
        c, state = self._c, self.run.state
        book, tally = state.book, state.tally
        return np.array([int(book.media_micros[c] + book.fee_micros[c] + book.data_cost_micros[c]),
                         int(book.outcomes[c, FIRST_SUBMITTED:].sum()), int(book.outcomes[c, WON]),
                         int(tally.clicks[c]), int(tally.attributed_conversions[c])],
                        dtype=np.int64)

    def _observation(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        duration = self.run.market.duration_s
        spent, bids, wins, clicks, conversions = (after - before).tolist()
        return np.array([
            max(0.0, (duration - self.run.now_s) / duration),
            min(1.0, max(0.0, 1.0 - after[0] / self._budget)) if self._budget > 0 else 0.0,
            wins / bids if bids else 0.0,
            spent / self._budget if self._budget > 0 else 0.0,
            clicks,
            conversions,
        ], dtype=np.float32)

    def _info(self, figures: np.ndarray) -> dict:
        spend, bids, wins, clicks, conversions = figures.tolist()
        return {"time_s": self.run.now_s, "multiplier": self._multiplier, "spend": spend / 1e6,
                "bids": bids, "wins": wins, "clicks": clicks, "conversions": conversions}
