"""The DMP's audience as arrays: devices, geos, consent, segments, activity, propensity."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from dmp.identity import (
    Identity,
    build_identity,
    first_ids,
    group_people,
    per_id,
    trivial_identity,
)
from dmp.sampling import AliasTable, alias_draw_ids_nb, alias_table
from rtb.prefetch import GATHER_AHEAD, prefetch_item
from rtb.scenario import DmpSpec
from rtb.seeding import stream
from rtb.types import DEVICES


class Audience(NamedTuple):
    """The audience: device-users (the truth: who requests, with what propensity) and
    the id rows the run indexes by `user` (dmp/identity.py; one per device-user when
    the scenario has no identity model)."""

    device: np.ndarray  # u1[n_dev]: each device-user's device, code in types.DEVICES
    geo: np.ndarray  # u1[n_rows]: each id's geo, index into geo_names (a no-id row: its geo)
    geo_names: tuple[str, ...]
    consent: np.ndarray  # bool[n_rows]: the id's person may be targeted with data
    segments: np.ndarray  # u4/u8[n_rows]: true memberships of the id's device-user, bit s =
    # segment s (u4 when the DMP has at most 32 segments: segment_dtype())
    visible_segments: np.ndarray  # u4/u8[n_rows]: what DSPs can target (matched, consented; a
    # churned id has none: a new cookie has no third-party profile)
    ctr_propensity: np.ndarray  # f4[n_rows]: the id's device-user's true click propensity, mean 1
    by_device: tuple[np.ndarray, ...]  # i4 per device code: the device-users with that device
    samplers: tuple[AliasTable | None, ...]  # per device: draws a device-user by activity
    identity: Identity  # people and ids (trivial: id row = device-user)
    user_geo: np.ndarray  # u1[n_dev]: the truth per device-user (its person's geo)
    user_segments: np.ndarray  # u4/u8[n_dev]
    user_ctr: np.ndarray  # f4[n_dev]

    @property
    def n_people(self) -> int:
        return self.identity.n_people

    @property
    def n_device_users(self) -> int:
        return self.device.size


def segment_dtype(n_segments: int) -> type:
    """The segment words' type: u4 for at most 32 segments (4 bytes a user and row less,
    the same bits), else u8."""
    return np.uint32 if n_segments <= 32 else np.uint64


def _normalised_mix(mix: dict[str, float], names: tuple[str, ...]) -> np.ndarray:
    weights = np.array([mix.get(name, 0.0) for name in names], dtype=np.float64)
    return weights / weights.sum()


def build_audience(spec: DmpSpec, user_ctr_sigma: float, root_seed: int,
                   duration_s: float = 0.0) -> Audience:
    """Draw the population once per run; every attribute has its own named stream.

    duration_s: the run's length, for which ids are precomputed (with dmp.identity).
    """
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

    ident = spec.identity
    device_person = None
    if ident is not None:
        # A person's devices share the person's geo and consent: the first device's draws.
        device_person = group_people(ident.device_weights(), n, root_seed)
        first_device = np.flatnonzero(np.diff(device_person, prepend=-1))
        geo = geo[first_device[device_person]]
    u_consent = stream(root_seed, "dmp/consent").random(n)
    if ident is not None:
        u_consent = u_consent[first_device[device_person]]
    consent = u_consent < np.asarray(spec.consent_by_geo())[geo]

    word = segment_dtype(len(spec.segments))
    segments = np.zeros(n, dtype=word)
    visible = np.zeros(n, dtype=word)
    for bit, seg in enumerate(spec.segments):
        rng = stream(root_seed, f"dmp/segment/{seg.id}")
        member = rng.random(n) < seg.share
        matched = rng.random(n) < seg.match_rate
        # Shifted 0/1 words rather than masked assignment: one pass, no index lists.
        segments |= member.astype(word) << word(bit)
        visible |= (member & matched & consent).astype(word) << word(bit)

    # Lognormal with mean 1, so the base CTR of a format stays the population average.
    sigma = user_ctr_sigma
    ctr = stream(root_seed, "dmp/ctr").lognormal(-0.5 * sigma * sigma, sigma, n).astype(np.float32)

    skew = spec.activity_skew
    activity = stream(root_seed, "dmp/activity").lognormal(0.0, skew, n)
    # i4: device-users number below 2**31 (validation), half the bytes of flatnonzero's i8.
    by_device = tuple(np.flatnonzero(device == d).astype(np.int32) for d in range(len(DEVICES)))
    samplers = tuple(alias_table(activity[ids]) if ids.size else None for ids in by_device)
    if ident is None:
        identity = trivial_identity(n)
        return Audience(device, geo, geo_names, consent, segments, visible, ctr, by_device,
                        samplers, identity, geo, segments, ctr)
    identity = build_identity(ident.id_lifetime, ident.device_weights(), ident.login_share,
                              duration_s, n, consent, geo, len(geo_names), root_seed, device_person)
    id_geo = per_id(identity, geo, 0)
    id_geo[identity.no_id_row:] = np.arange(len(geo_names))
    # A churned id starts with no visible segments; a login id keeps its device's.
    id_visible = np.where(first_ids(identity), per_id(identity, visible, 0), word(0))
    return Audience(device, id_geo, geo_names, per_id(identity, consent, False),
                    per_id(identity, segments, 0), id_visible.astype(word),
                    per_id(identity, ctr, 1.0), by_device, samplers, identity, geo, segments, ctr)


def draw_users(audience: Audience, device: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A device-user per request, of the request's device, in proportion to activity
    (dmp.identity.current_ids then says which id the request carries).

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
        alias_draw_ids_nb(sampler.threshold, sampler.alias, ids, u_index, u_keep, rows, users)
    return users


class UserTruth(NamedTuple):
    """What the audience knows of each request's device-user (the truth, not its id)."""

    geo: np.ndarray  # u1[n]
    ctr: np.ndarray  # f4[n]: the user's click propensity
    segments: np.ndarray  # u4/u8[n]


def user_truth(audience: Audience, device_user: np.ndarray) -> UserTruth:
    """The requests' device-users' geo, propensity and segments: one pass that reads
    the three per-user arrays (millions of entries) with their lines requested ahead."""
    n = device_user.size
    out = UserTruth(np.empty(n, audience.user_geo.dtype), np.empty(n, audience.user_ctr.dtype),
                    np.empty(n, audience.user_segments.dtype))
    _gather_nb(device_user, audience.user_geo, audience.user_ctr, audience.user_segments, *out)
    return out


@njit(cache=True, nogil=True)
def _gather_nb(device_user, geo_of, ctr_of, segments_of, geo, ctr, segments):
    n = device_user.size
    for i in range(n):
        if i + GATHER_AHEAD < n:
            v = device_user[i + GATHER_AHEAD]
            prefetch_item(geo_of, v)
            prefetch_item(ctr_of, v)
            prefetch_item(segments_of, v)
        v = device_user[i]
        geo[i] = geo_of[v]
        ctr[i] = ctr_of[v]
        segments[i] = segments_of[v]
