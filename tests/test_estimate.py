"""Resource estimates before work: requests, memory and time against measured runs, and
the commands that refuse a run that cannot fit (exit 2, before allocating anything).

Memory is measured in-process with tracemalloc (numpy reports its arrays to it): the
run's own arrays, which the estimate gives as run_bytes (peak RSS adds the process's
base, BASE_BYTES, measured once for docs/performance.md).
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
from test_cli import QUICKSTART, rtb_in_process

from rtb import simulate
from rtb.errors import InputError
from rtb.estimate import (
    LONG_RUN_S,
    Rows,
    available_memory,
    check_resources,
    estimate,
    expected_rows,
    padded_width,
    parse_size,
    per_person_bytes,
    per_user_bytes,
    user_row_layout,
)
from rtb.market import build_market
from rtb.scenario import load_scenario, parse_scenario
from rtb.engine import Run
from rtb.state import user_layout, user_rows

MEMORY_FACTOR = 1.5  # estimated run bytes within 1/1.5 .. 1.5 times tracemalloc's peak
REQUESTS_TOLERANCE = 0.05  # whole days: the shapes have mean 1, only Poisson noise remains


def minimal(users: int, duration: str = "60s", *, campaigns: int = 1, rolling: int = 0,
            daily_requests: float = 1000.0) -> dict:
    """One slot, `campaigns` campaigns (the first `rolling` with a rolling cap of 3)."""
    camps = []
    for c in range(campaigns):
        camp = {"id": f"c{c}", "advertiser": "a", "dsp": "d", "budget": 50.0,
                "strategy": {"kind": "fixed", "bid_cpm": 2.0}}
        if c < rolling:
            camp["frequency_cap"] = {"impressions": 3, "window": "1h", "kind": "rolling"}
        camps.append(camp)
    return {
        "name": "minimal",
        "simulation": {"start": "2026-11-27T00:00:00Z", "duration": duration, "tick": "60s"},
        "ssps": [{"id": "s"}],
        "publishers": [{"id": "p", "ssp": "s",
                        "slots": [{"id": "a", "daily_requests": daily_requests}]}],
        "dsps": [{"id": "d"}],
        "advertisers": [{"id": "a", "value_per_conversion": 10.0}],
        "campaigns": camps,
        "dmp": {"users": users},
    }


def with_identity(data: dict, id_lifetime: str = "30m", login_share: float = 0.2) -> dict:
    """data with the identity model on: ids churning (mean id_lifetime), 1 to 3 devices
    per person (mean 1.7), login ids, and two geos, one with consent 0.5 (no-id rows)."""
    data["dmp"].update(geos={"US": 0.5, "DE": 0.5}, consent_rate={"US": 1.0, "DE": 0.5},
                       identity={"id_lifetime": id_lifetime, "login_share": login_share,
                                 "devices_per_person": {"1": 0.5, "2": 0.3, "3": 0.2}})
    return data


def toml(data: dict) -> str:
    """A minimal() dict as TOML (inline tables are enough for its shapes)."""
    def value(v) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return f'"{v}"' if isinstance(v, str) else repr(v)

    return "".join(f"{k} = {value(v)}\n" for k, v in data.items())


# ---- the arithmetic ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.float64])
def test_padding_is_that_of_user_rows(dtype):
    for width in (0, 1, 2, 3, 5, 8, 9, 17, 60, 64, 65, 250):
        assert user_rows(3, width, dtype, 0).shape[1] == padded_width(width, np.dtype(dtype).itemsize)


def test_expected_requests_match_a_whole_day(quickstart_run):
    e = estimate(load_scenario(QUICKSTART))
    report = quickstart_run.report  # simulate() of the quickstart (tests/conftest.py)
    assert e.requests == pytest.approx(report["exchange"]["requests"], rel=REQUESTS_TOLERANCE)
    assert e.log_bytes == int(e.requests * 80)
    assert report["exchange"]["impressions_to_campaigns"] * 80 <= e.log_bytes


def measured_run_bytes(spec) -> int:
    """The run's peak allocations, less the user rows never handed out: the rows' buffer
    is allocated for every id (calloc), but only the rows the run writes are resident,
    and the estimate counts those."""
    simulate(spec)  # the kernels compiled and the first run's garbage gone
    tracemalloc.start()
    try:
        run = Run(spec)
        run.finish()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    rows = run.state.users
    never_handed_out = rows.exposures.shape[0] - int(rows.rows_in_use[0])
    return peak - never_handed_out * user_layout(run.market).row_bytes


@pytest.mark.parametrize("data", [
    minimal(400_000, "2h", campaigns=3, rolling=1),
    minimal(150_000, "1h", campaigns=70, rolling=10, daily_requests=2_000_000),
    # 150,000 devices show up under about 620,000 ids (2 h, a 30 min lifetime), each id
    # with its rows, and 88,000 people with their people book.
    with_identity(minimal(150_000, "2h", campaigns=3, rolling=1)),
], ids=["many-users", "many-campaigns-big-ticks", "identity"])
def test_memory_estimate_within_a_factor_of_measured(data):
    spec = parse_scenario(data, "minimal.toml")
    measured = measured_run_bytes(spec)
    estimated = estimate(spec).run_bytes
    assert measured / MEMORY_FACTOR <= estimated <= measured * MEMORY_FACTOR, (estimated, measured)


def test_expected_rows_are_those_of_the_market():
    """Ids (churn: 1 + duration / lifetime per device without a login, one per login
    person), people (devices over mean devices per person) and no-id rows (one per
    geo) as the market draws them, within a few standard errors."""
    spec = parse_scenario(with_identity(minimal(20_000, "4h", campaigns=1)), "i.toml")
    rows = expected_rows(spec)
    identity = build_market(spec).audience.identity
    assert rows.devices == 20_000 and rows.no_id == 2
    assert rows.ids == pytest.approx(20_000 * 0.8 * (1 + 8) + rows.people * 0.2)
    assert identity.n_people == pytest.approx(rows.people, rel=0.02)
    assert identity.no_id_row == pytest.approx(rows.ids, rel=0.02)
    assert identity.n_rows - identity.no_id_row == rows.no_id
    plain = parse_scenario(minimal(20_000), "p.toml")
    assert expected_rows(plain) == Rows(20_000, 20_000.0, 20_000.0, 0)
    assert per_person_bytes(plain) == 0


def test_memory_grows_with_ids_people_and_churn():
    def bytes_of(**kw) -> int:
        return estimate(parse_scenario(with_identity(minimal(10_000, "1d"), **kw), "i.toml")).run_bytes

    plain = estimate(parse_scenario(minimal(10_000, "1d"), "p.toml")).run_bytes
    assert plain < bytes_of(id_lifetime="10d") < bytes_of(id_lifetime="1d") < bytes_of(id_lifetime="1h")
    assert bytes_of(id_lifetime="1h", login_share=0.9) < bytes_of(id_lifetime="1h", login_share=0.0)


def test_a_refusal_with_identity_names_ids_people_and_the_lifetime():
    spec = parse_scenario(with_identity(minimal(50_000_000, "1d"), id_lifetime="1d"), "big.toml")
    with pytest.raises(InputError) as exc:
        check_resources(spec, "big.toml", "2G")
    text = str(exc.value)
    assert "50,000,000 users at about " in text
    assert "(under about 85.9 million ids, 29.4 million people)" in text
    assert "a longer dmp.identity.id_lifetime makes fewer ids" in text
    assert "saves time, not memory" not in text


def test_memory_grows_with_users_and_campaigns():
    small = parse_scenario(minimal(1000), "s.toml")
    more_users = parse_scenario(minimal(2000), "u.toml")
    more_campaigns = parse_scenario(minimal(1000, campaigns=100, rolling=5), "c.toml")
    assert estimate(more_users).run_bytes > estimate(small).run_bytes
    # At least an exposure byte for each of its 100 campaigns in the row (a minute's run
    # counts its 1 h caps by them), which a user reached costs.
    assert user_row_layout(more_campaigns).row_bytes >= 100 > user_row_layout(small).row_bytes
    assert per_user_bytes(more_campaigns) > per_user_bytes(small)


def test_time_estimate_of_the_quickstart_is_seconds():
    e = estimate(load_scenario(QUICKSTART))
    assert 1 < e.seconds < 10
    assert e.summary().startswith("1.1 million requests, about ")


@pytest.mark.parametrize("text, size", [("2G", 2 * 2**30), ("512M", 512 * 2**20), ("1.5g", 3 * 2**29),
                                        ("800MB", 800 * 2**20), ("2GiB", 2 * 2**30), ("4096", 4096),
                                        (" 1T ", 2**40), ("64k", 65536)])
def test_sizes_parse(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "x", "2X", "0", "-1G", "inf", "nan", "1e400G", "2 G B"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


def test_a_long_sweep_is_announced_and_a_short_run_is_not():
    s = load_scenario(QUICKSTART)
    assert check_resources(s, "q.toml") is None
    runs = int(LONG_RUN_S / estimate(s).seconds) * 2 + 2
    line = check_resources(s, "q.toml", runs=runs, at_once=2)
    assert line is not None and line.startswith("q.toml: expected to take about ")
    assert f"{runs} runs of" in line


def test_runs_at_once_multiply_the_memory():
    s = load_scenario(QUICKSTART)
    one = estimate(s).memory_bytes
    check_resources(s, "q.toml", str(int(one * 1.5)), runs=4, at_once=1)
    with pytest.raises(InputError, match="2 runs at once.*fewer --workers"):
        check_resources(s, "q.toml", str(int(one * 1.5)), runs=4, at_once=2)


# ---- the commands -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def huge(tmp_path_factory):
    """100 million users, 60 s, one slot: a few requests, gigabytes of per-user state."""
    path = tmp_path_factory.mktemp("huge") / "huge.toml"
    path.write_text(toml(minimal(100_000_000)))
    return path


def test_validate_prints_the_estimate():
    proc = rtb_in_process("validate", QUICKSTART)
    assert proc.returncode == 0, proc.stderr
    valid, expected = proc.stdout.strip().splitlines()
    assert "valid" in valid
    assert expected.startswith("expected: 1.1 million requests, about ")
    assert "MiB of memory, about " in expected and "impression log of up to" in expected


@pytest.mark.parametrize("command", [
    ["run", "{s}", "--out", "{d}/r.json"],
    ["sweep", "{s}", "--out-dir", "{d}/sweep"],
    ["compare", "{s}", "--campaign", "c0", "--strategy", "fixed:bid_cpm=1", "--seeds", "1,2",
     "--out-dir", "{d}/cmp"],
])
def test_a_run_over_max_memory_is_refused_before_any_work(huge, tmp_path, command):
    args = [a.format(s=huge, d=tmp_path) for a in command]
    started = time.monotonic()
    proc = rtb_in_process(*args, "--max-memory", "2G", "--quiet")
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    line, = proc.stderr.strip().splitlines()
    assert line.startswith(f"{huge}: a run needs about ")
    assert "more than --max-memory allows (2.0 GiB)" in line
    assert "100,000,000 users" in line and "fewer users (dmp.users)" in line
    assert not list(tmp_path.iterdir()), "nothing is written"
    assert elapsed < 15  # building 100 million users would take half a minute


def test_a_run_over_the_available_memory_is_refused(tmp_path):
    """The default limit is the memory available now: a cap of 250 rolling impressions
    keeps 2 kB per user, 200 GB for 100 million users."""
    data = minimal(100_000_000)
    data["campaigns"][0]["frequency_cap"] = {"impressions": 250, "window": "1d", "kind": "rolling"}
    path = tmp_path / "huger.toml"
    path.write_text(toml(data))
    need = estimate(load_scenario(path)).memory_bytes
    if available_memory() is None or available_memory() >= need:
        pytest.skip("this machine has the memory")
    proc = rtb_in_process("run", path, "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert "more than the memory available now allows" in proc.stderr


@pytest.mark.parametrize("value", ["lots", "0", "-2G", "2X", ""])
def test_bad_max_memory_exits_2(value):
    proc = rtb_in_process("run", QUICKSTART, "--max-memory", value, "--quiet")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"command line: --max-memory: {value!r} is not a size" + (
        ": it must be positive, e.g. 2G" if value in ("0", "-2G") else
        ": a number with K, M or G, e.g. 2G")
    assert not proc.stdout


@pytest.mark.parametrize("quiet", [False, True])
def test_a_long_run_says_so_on_stderr_unless_quiet(monkeypatch, capsys, quiet):
    import rtb.cli
    import rtb.estimate

    monkeypatch.setattr(rtb.estimate, "LONG_RUN_S", 1.0)  # the quickstart takes about 3 s
    rtb.cli._check_resources(load_scenario(QUICKSTART), QUICKSTART, None, quiet)
    captured = capsys.readouterr()
    assert not captured.out
    if quiet:
        assert not captured.err
    else:
        line, = captured.err.strip().splitlines()
        assert line.startswith(f"{QUICKSTART}: expected to take about ")
        assert "1.1 million requests" in line
