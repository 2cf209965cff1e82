"""The DMP's audience as arrays: devices, geos, consent, segments, activity, propensity."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dmp.sampling import AliasTable, alias_draw, alias_table
from rtb.scenario import DmpSpec
from rtb.seeding import stream
from rtb.types import DEVICES


class Audience(NamedTuple):
    device: np.ndarray  # u1[nu]: code in types.DEVICES
    geo: np.ndarray  # u1[nu]: index into geo_names
    geo_names: tuple[str, ...]
    consent: np.ndarray  # bool[nu]: may be targeted with data
    segments: np.ndarray  # u8[nu]: true memberships, bit s = segment s
    visible_segments: np.ndarray  # u8[nu]: what DSPs can target (matched, consented)
    ctr_propensity: np.ndarray  # f4[nu]: true click propensity, mean 1
    by_device: tuple[np.ndarray, ...]  # per device code: the user ids with that device
    samplers: tuple[AliasTable | None, ...]  # per device: draws a user by activity


def _normalised_mix(mix: dict[str, float], names: tuple[str, ...]) -> np.ndarray:
    weights = np.array([mix.get(name, 0.0) for name in names], dtype=np.float64)
    return weights / weights.sum()


def build_audience(spec: DmpSpec, user_ctr_sigma: float, root_seed: int) -> Audience:
    """Draw the population once per run; every attribute has its own named stream."""
    n = spec.users
    device_p = _normalised_mix(dict(spec.devices), DEVICES)
    device = stream(root_seed, "dmp/device").choice(len(DEVICES), size=n, p=device_p).astype(np.uint8)
    # Every device with a share has a user (validation asks for users >= such devices),
    # so a slot never finds its device empty in a small audience; changes nothing when
    # the draw already gave each one, as in any audience of more than a few users.
    for d in np.flatnonzero(device_p > 0):
        if not (device == d).any():
            device[d] = d

    geo_names = tuple(spec.geos)
    geo_p = _normalised_mix(dict(spec.geos), geo_names)
    geo = stream(root_seed, "dmp/geo").choice(len(geo_names), size=n, p=geo_p).astype(np.uint8)

    consent = stream(root_seed, "dmp/consent").random(n) < spec.consent_rate

    segments = np.zeros(n, dtype=np.uint64)
    visible = np.zeros(n, dtype=np.uint64)
    for bit, seg in enumerate(spec.segments):
        rng = stream(root_seed, f"dmp/segment/{seg.id}")
        member = rng.random(n) < seg.share
        matched = rng.random(n) < seg.match_rate
        # Shifted 0/1 words rather than masked assignment: one pass, no index lists.
        segments |= member.astype(np.uint64) << np.uint64(bit)
        visible |= (member & matched & consent).astype(np.uint64) << np.uint64(bit)

    # Lognormal with mean 1, so the base CTR of a format stays the population average.
    sigma = user_ctr_sigma
    ctr = stream(root_seed, "dmp/ctr").lognormal(-0.5 * sigma * sigma, sigma, n).astype(np.float32)

    skew = spec.activity_skew
    activity = stream(root_seed, "dmp/activity").lognormal(0.0, skew, n)
    by_device = tuple(np.flatnonzero(device == d) for d in range(len(DEVICES)))
    samplers = tuple(alias_table(activity[ids]) if ids.size else None for ids in by_device)
    return Audience(device, geo, geo_names, consent, segments, visible, ctr, by_device, samplers)


def draw_users(audience: Audience, device: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A user per request, of the request's device, in proportion to activity.

    Draws two uniforms per request whatever the devices, so the stream's position
    never depends on the traffic mix.
    """
    u_index = rng.random(device.size)
    u_keep = rng.random(device.size)
    users = np.zeros(device.size, dtype=np.int64)
    for d, (ids, sampler) in enumerate(zip(audience.by_device, audience.samplers)):
        rows = np.flatnonzero(device == d)
        if rows.size == 0:
            continue
        if sampler is None:
            raise ValueError(f"requests for {DEVICES[d]} slots but the DMP has no {DEVICES[d]} users")
        users[rows] = ids[alias_draw(sampler, u_index[rows], u_keep[rows])]
    return users
