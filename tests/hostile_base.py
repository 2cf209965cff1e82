"""A tiny valid scenario as a dict, for the hostile-input and fuzz tests: one hour,
two slots, two campaigns, 200 users; a run takes well under a second."""

from __future__ import annotations

import copy


def tiny_scenario() -> dict:
    return copy.deepcopy(_TINY)


_TINY = {
    "name": "tiny",
    "simulation": {"seed": 3, "start": "2026-11-27T00:00:00Z", "duration": "1h", "tick": "60s"},
    "exchange": {"auction": "second", "fee": 0.1,
                 "market": {"kind": "lognormal", "median_cpm": 1.0, "sigma": 0.5,
                            "participation": 0.8}},
    "ssps": [{"id": "ssp", "fee": 0.1}],
    "publishers": [{"id": "pub", "ssp": "ssp", "domain": "pub.example", "category": "news",
                    "slots": [{"id": "top", "format": "banner", "device": "desktop",
                               "daily_requests": 20000, "floor_cpm": 0.5},
                              {"id": "feed", "format": "native", "device": "mobile",
                               "daily_requests": 20000, "floor_cpm": 0.5}]}],
    "dsps": [{"id": "dsp"}],
    "advertisers": [{"id": "adv", "domain": "adv.example", "value_per_conversion": 40.0}],
    "campaigns": [{"id": "c1", "advertiser": "adv", "dsp": "dsp", "budget": 50.0,
                   "strategy": {"kind": "fixed", "bid_cpm": 2.0},
                   "frequency_cap": {"impressions": 3, "window": "1h"}},
                  {"id": "c2", "advertiser": "adv", "dsp": "dsp", "budget": 30.0,
                   "strategy": "linear:base_cpm=2,avg_ctr=0.002", "pacing": "asap"}],
    "dmp": {"users": 200, "segments": [{"id": "seg", "share": 0.3, "data_cpm": 0.2}]},
    "behaviour": {"fatigue": 0.2},
}


# ---- mutation: a scenario's paths and hostile values for them ----------------------------

def paths(node, prefix: tuple = ()) -> list[tuple]:
    """Every path into nested dicts and lists (down to 12 levels), the root's children first."""
    found = []
    if len(prefix) >= 12:
        return found
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        found.append(prefix + (key,))
        found += paths(child, prefix + (key,))
    return found


def apply(data: dict, path: tuple, op: str, value) -> dict:
    """data with one mutation at path: "set" the value, "delete" the key or element,
    "extra" (an unknown key beside it), "duplicate" it in its list, or "append" the
    value to the list it names. Mutates and returns data."""
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    key = path[-1]
    if op == "set":
        parent[key] = value
    elif op == "delete":
        del parent[key]
    elif op == "extra" and isinstance(parent, dict):
        parent[value if isinstance(value, str) else type(value).__name__] = value
    elif op == "duplicate" and isinstance(parent, list):
        parent.append(parent[key])  # the same object: a copy could be too deep to make
    elif op == "append" and isinstance(parent[key], list):
        parent[key].append(value)
    else:
        parent[key] = value
    return data


def nested(depth: int, leaf=1.0):
    """A list `depth` deep, the leaf at the bottom."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


HOSTILE_FLOATS = [0.0, -0.0, -1.0, 1e-300, 5e-324, 1e-12, 1e300, 1.7976931348623157e308, -1e308,
                  float("nan"), float("inf"), float("-inf"), 2**63, 2**64, -(2**63) - 1, 10**400]
HOSTILE_TEXT = ["", " ", "nan", "inf", "-inf", "1e999", "1e999s", "0s", "-1h", "[/bold]", "\x1b[2J",
                "a\x00b", "\u202e", "x" * 10_000, "1d" * 100, "2026-13-45", "9999-12-31T23:59:59",
                "0001-01-01", "*", "../../etc/passwd", "first", "second", "fixed"]
# Values at or near the documented bounds that still validate in most fields: mutants
# that pass validation and are then simulated.
PLAUSIBLE = [0.0, 1e-9, 0.001, 0.5, 1.0, 2.0, 60.0, 250, 1000.0, 1e6, 1e9, "1s", "1m", "1h",
             True, False, [], {}, "banner", "mobile", "calendar", "rolling", "first", "asap"]
