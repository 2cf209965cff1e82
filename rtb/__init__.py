"""rtbsim: a programmatic advertising market with a real-time bidding engine.

Public API: load_scenario(path), simulate(scenario, seed=None) -> Report.
Imported lazily so that the leaf modules (rtb.types, rtb.auction) can be imported by
dsp/ssp/dmp without pulling in the engine that sits on top of them.
"""

from __future__ import annotations

__all__ = ["load_scenario", "simulate"]


def __getattr__(name: str):
    if name == "load_scenario":
        from rtb.scenario import load_scenario

        return load_scenario
    if name == "simulate":
        from rtb.engine import simulate

        return simulate
    raise AttributeError(name)
