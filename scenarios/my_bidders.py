"""Example bidders of your own: each a class with bid(view) and observe(feedback).

Shaded bids in a simulation (it values an impression by pCTR x pCVR, which a scenario
has); Paced bids on pCTR alone, so it also replays an iPinYou log (`rtb replay`, whose
view has no pCVR). The fields of `view` and `feedback`: docs/strategies.md, "What a
bidder sees"; in a replay: docs/replay.md, "Strategies that learn".
"""

import numpy as np


class Shaded:
    """Bid a share of each impression's expected value; raise the share while winning
    less than a target share of the bids, lower it while winning more."""

    def __init__(self, value_per_conversion: float, shade: float = 0.7,
                 target_win_rate: float = 0.3):
        self.value = value_per_conversion
        self.shade = shade
        self.target = target_win_rate
        self.bids_made = 0

    def bid(self, view) -> np.ndarray:
        value_cpm = view.pctr * view.pcvr * self.value * 1000.0  # expected value, CPM
        bids = self.shade * value_cpm
        bids[bids < view.floor_cpm] = np.nan  # under the floor: no bid
        self.bids_made = int(np.count_nonzero(~np.isnan(bids)))
        return bids

    def observe(self, feedback) -> None:
        if self.bids_made:
            win_rate = feedback.price_cpm.size / self.bids_made
            step = 1.05 if win_rate < self.target else 0.98
            self.shade = min(1.0, max(0.1, self.shade * step))


class Paced:
    """For rtb replay: bid base_cpm x pCTR / avg_ctr x scale; after each chunk, raise the
    scale when the episode's money goes slower than its requests, lower it when faster."""

    def __init__(self, base_cpm: float = 80.0, avg_ctr: float = 0.00444, step: float = 1.1):
        self.per_ctr, self.step, self.scale = base_cpm / avg_ctr, step, 1.0
        self.money_share = self.request_share = 0.0

    def bid(self, view) -> np.ndarray:
        if view.requests_left is None:
            raise ValueError("Paced needs view.requests_left: use it with rtb replay")
        if view.spend == 0.0:  # an episode starts: note its size
            self.budget, self.requests = view.budget_left, view.requests_left
        self.money_share = 1 - view.budget_left / self.budget
        self.request_share = 1 - (view.requests_left - len(view.pctr)) / self.requests
        return view.pctr * self.per_ctr * self.scale

    def observe(self, feedback) -> None:
        spent = self.money_share + feedback.cost.sum() / self.budget
        self.scale *= self.step if spent < self.request_share else 1 / self.step
