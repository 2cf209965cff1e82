"""People, their devices and their ids: what the exchange sees of the audience.

The DMP draws device-users (dmp/audience.py); with `dmp.identity` they are grouped
into people (consecutive device-users, group sizes from `devices_per_person`), and
each device-user shows up under a sequence of ids: an id lives for an exponential
lifetime (cookie churn, mean `id_lifetime`), then the device appears under a new one.
A person with a login id (`login_share`) has one id on all their devices for the
whole run. Every id is a row of the per-user arrays the run indexes by `user`
(targeting, caps, exposures, touches), so the kernel knows ids only.

Without consent a request carries no id: it maps to a no-id row, one per geo (the
row's targeting words must still say which campaigns target its geo), at the end of
the id rows, from `no_id_row` on. No per-user book is ever written on those rows.

Everything is precomputed for the run from named streams (dmp/identity/people,
dmp/identity/churn, dmp/identity/login), so ids never depend on decisions.
Without `dmp.identity` the identity is trivial: one id per device-user, id row =
device-user, and no no-id rows (a run is then exactly what it was before people).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from rtb.prefetch import GATHER_AHEAD, prefetch_item
from rtb.seeding import stream
from rtb.types import on_clock


class Identity(NamedTuple):
    """Who is behind each id (index = id row; no-id rows at the end, from no_id_row)."""

    person: np.ndarray  # i8[n_rows]: the person of each id; -1 on the no-id rows
    n_people: int
    first_id: np.ndarray  # i8[n_dev + 1]: device-user u's churning ids are rows first_id[u] ..
    # first_id[u + 1] - 1, in time order (empty for a device of a person with a login id)
    id_start_s: np.ndarray  # f8[n_rows]: when each id appears (seconds since the start; 0 for
    # ids alive at the start, on the clock)
    login: np.ndarray  # bool[n_people]: the person has a login id
    device_person: np.ndarray  # i8[n_dev]: the person of each device-user
    id_device: np.ndarray  # i8[n_rows]: the device-user of each id (a login id: the person's
    # first device); -1 on the no-id rows
    login_id: np.ndarray  # i8[n_dev]: the login id of the device-user's person, or -1
    no_id: np.ndarray  # i8[n_dev]: the no-id row a request of the device-user maps to (no
    # consent, identity model on), or -1: it carries an id
    no_id_row: int  # first no-id row (= n_rows when there are none)
    trivial: bool  # id row = device-user for every request (no identity model)

    @property
    def n_rows(self) -> int:
        return self.person.size


def trivial_identity(n_dev: int) -> Identity:
    """One stable id per device-user, one person per device-user, no no-id rows.

    One shared index array (first_id is a view of it; i4, as device-users number below
    2**31); the constant arrays are broadcast views that take no memory: a run without
    the identity model costs 4 bytes per user (the full arrays took 41). Nothing indexes
    these arrays in a trivial run (its id row is the device-user).
    """
    rows = np.arange(n_dev + 1, dtype=np.int32)

    def constant(value, dtype):
        return np.broadcast_to(np.asarray(value, dtype=dtype), (n_dev,))

    return Identity(person=rows[:n_dev], n_people=n_dev, first_id=rows,
                    id_start_s=constant(0.0, np.float64), login=constant(False, np.bool_),
                    device_person=rows[:n_dev], id_device=rows[:n_dev],
                    login_id=constant(-1, np.int64), no_id=constant(-1, np.int64),
                    no_id_row=n_dev, trivial=True)


def group_people(devices_per_person: list[float], n_dev: int, root_seed: int) -> np.ndarray:
    """i8[n_dev]: the person of each device-user; consecutive device-users form a person,
    group sizes drawn from the weights of 1, 2, ... devices (the last group is cut at n_dev)."""
    w = np.asarray(devices_per_person, dtype=np.float64)
    if w.size == 1 or (w[1:] == 0).all():
        return np.arange(n_dev, dtype=np.int64)
    # n_dev sizes always cover n_dev devices: one draw per device-user, whatever the sizes.
    sizes = stream(root_seed, "dmp/identity/people").choice(w.size, size=n_dev, p=w / w.sum()) + 1
    starts = np.cumsum(sizes) - sizes
    n_people = int(np.searchsorted(starts, n_dev, side="left"))
    return np.searchsorted(starts[:n_people], np.arange(n_dev), side="right").astype(np.int64) - 1


def churn_starts(id_lifetime_s: float | None, duration_s: float, n_dev: int,
                 root_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each device-user's id changes over the run: (count i8[n_dev], start_s f8[sum]).

    Lifetimes are exponential, so the changes of one device are a Poisson process (the
    id alive at the start has an exponential remaining life too: memoryless): a Poisson
    count with mean duration / lifetime per device, then that many uniform times in the
    run, sorted. Expected ids per device over the run: 1 + duration / lifetime.
    """
    if id_lifetime_s is None:
        return np.zeros(n_dev, dtype=np.int64), np.empty(0)
    rng = stream(root_seed, "dmp/identity/churn")
    count = rng.poisson(duration_s / id_lifetime_s, n_dev).astype(np.int64)
    times = on_clock(rng.uniform(0.0, duration_s, int(count.sum())))
    owner = np.repeat(np.arange(n_dev), count)
    order = np.lexsort((times, owner))
    return count, times[order]


def build_identity(id_lifetime_s: float | None, devices_per_person: list[float], login_share: float,
                   duration_s: float, n_dev: int, dev_consent: np.ndarray, dev_geo: np.ndarray,
                   n_geo: int, root_seed: int, device_person: np.ndarray | None = None) -> Identity:
    """The ids of a run with the identity model on (see the module's docstring).

    dev_consent bool[n_dev] and dev_geo u1[n_dev] are per device-user (already the
    person's: a person's devices share them). device_person: the grouping, if already
    drawn (group_people).
    """
    if device_person is None:
        device_person = group_people(devices_per_person, n_dev, root_seed)
    n_people = int(device_person[-1]) + 1 if n_dev else 0
    login = stream(root_seed, "dmp/identity/login").random(n_people) < login_share
    changes, change_s = churn_starts(id_lifetime_s, duration_s, n_dev, root_seed)
    has_login = login[device_person]
    # Churning ids: a login person's devices have none (their login id never churns).
    n_churning = np.where(has_login, 0, 1 + changes)
    first_id = np.zeros(n_dev + 1, dtype=np.int64)
    np.cumsum(n_churning, out=first_id[1:])
    n_device_ids = int(first_id[-1])
    id_start_s = np.zeros(n_device_ids)
    id_device = np.repeat(np.arange(n_dev, dtype=np.int64), n_churning)
    # Each churning device's first id starts at 0; its changes fill the rows after it.
    later = np.ones(n_device_ids, dtype=np.bool_)
    later[first_id[:-1][~has_login]] = False
    change_owner = np.repeat(np.arange(n_dev), changes)
    id_start_s[later] = change_s[~has_login[change_owner]]

    # Login ids after the devices' ids, one per login person, on its first device.
    login_people = np.flatnonzero(login)
    first_device = np.searchsorted(device_person, login_people, side="left")
    login_row = np.full(n_people, -1, dtype=np.int64)
    login_row[login_people] = n_device_ids + np.arange(login_people.size)
    n_ids = n_device_ids + login_people.size
    no_id_row = n_ids
    person = np.concatenate([device_person[id_device], login_people.astype(np.int64),
                             np.full(n_geo, -1, dtype=np.int64)])
    id_device = np.concatenate([id_device, first_device.astype(np.int64),
                                np.full(n_geo, -1, dtype=np.int64)])
    id_start_s = np.concatenate([id_start_s, np.zeros(login_people.size + n_geo)])
    no_id = np.where(dev_consent, -1, no_id_row + dev_geo.astype(np.int64))
    return Identity(person=person, n_people=n_people, first_id=first_id, id_start_s=id_start_s,
                    login=login, device_person=device_person, id_device=id_device,
                    login_id=login_row[device_person], no_id=no_id, no_id_row=no_id_row,
                    trivial=False)


@njit(cache=True, nogil=True)
def _current_ids_nb(device_user, time_s, first_id, id_start_s, login_id, no_id, out):
    n = device_user.size
    # Four arrays of millions, read at random: a device-user's own entries requested two
    # steps ahead, then, with its first id in cache, its next id's start one step ahead.
    for i in range(n):
        if i + 2 * GATHER_AHEAD < n:
            v = device_user[i + 2 * GATHER_AHEAD]
            prefetch_item(no_id, v)
            prefetch_item(login_id, v)
            prefetch_item(first_id, v)
        if i + GATHER_AHEAD < n:
            nxt = first_id[device_user[i + GATHER_AHEAD]] + 1
            prefetch_item(id_start_s, min(nxt, id_start_s.size - 1))
        u = device_user[i]
        r = no_id[u]
        if r < 0:
            r = login_id[u]
        if r < 0:
            # The device's ids in time order: a few at most, so a linear walk.
            r = first_id[u]
            end = first_id[u + 1]
            t = time_s[i]
            while r + 1 < end and id_start_s[r + 1] <= t:
                r += 1
        out[i] = r
    return out


def current_ids(identity: Identity, device_user: np.ndarray, time_s: np.ndarray) -> np.ndarray:
    """i8[n]: the id row each request (device-user, time on the clock) carries: the
    no-id row of its geo without consent, the person's login id, or the device's id
    alive at that time."""
    if identity.trivial:
        return device_user
    out = np.empty(device_user.size, dtype=np.int64)
    return _current_ids_nb(np.ascontiguousarray(device_user, dtype=np.int64),
                           np.ascontiguousarray(time_s, dtype=np.float64), identity.first_id,
                           identity.id_start_s, identity.login_id, identity.no_id, out)


def per_id(identity: Identity, per_device: np.ndarray, no_id_value) -> np.ndarray:
    """A device-user attribute as an id-row attribute (login ids: the person's first
    device's), no_id_value on the no-id rows."""
    if identity.trivial:
        return per_device
    out = per_device[np.maximum(identity.id_device, 0)]
    out[identity.no_id_row:] = no_id_value
    return out


def first_ids(identity: Identity) -> np.ndarray:
    """bool[n_rows]: the ids that are a device's first (alive at the start) or a login id."""
    out = np.zeros(identity.n_rows, dtype=np.bool_)
    out[identity.first_id[:-1][identity.login_id < 0]] = True
    out[identity.login_id[identity.login_id >= 0]] = True
    return out
