"""Hostile input and killed runs: no file hangs or crashes a parser, outputs are checked
before any work, and a run killed at any moment leaves nothing behind that the next
run does not clean (rtb.files, rtb.atomic, rtb.sweep, the `rtb` command)."""

from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rtb.atomic import AtomicFile, remove_leftovers
from rtb.errors import InputError
from rtb.files import MAX_INPUT_BYTES, MAX_NESTING, read_input
from test_cli import assert_clean_failure, rtb, rtb_command, rtb_in_process
from test_scenario import scenario as scenario_dict

TEMP = re.compile(r"\.rtbtmp-")
SWEEP_ARGS = ("--budget-scales", "1", "--seeds", "1,2", "--workers", "2", "-q")


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if TEMP.search(p.name))


# ---- 1. inputs that cannot hang or crash a parser ---------------------------------------

@pytest.fixture
def hostile(tmp_path) -> dict[str, Path]:
    """Files no parser should read: a FIFO (no writer: a plain open() would block), devices,
    a folder, a sparse file over the size limit, brackets nested far too deep."""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(MAX_INPUT_BYTES + 1)
    deep_toml = tmp_path / "deep.toml"
    deep_toml.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    deep_json = tmp_path / "deep.json"
    deep_json.write_text("[" * 100_000 + "]" * 100_000)
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    return {"fifo": fifo, "/dev/zero": Path("/dev/zero"), "/dev/urandom": Path("/dev/urandom"),
            "folder": folder, "too large": big, "deep TOML": deep_toml, "deep JSON": deep_json}


REFUSAL = {"fifo": "is a pipe", "/dev/zero": "is a device", "/dev/urandom": "is a device",
           "folder": "is a directory", "too large": "is too large",
           "deep TOML": f"nested more than {MAX_NESTING}", "deep JSON": f"nested more than {MAX_NESTING}"}


def test_scenario_loader_refuses_hostile_files(hostile):
    from rtb.scenario import load_scenario

    for case, path in hostile.items():
        with pytest.raises(InputError) as info:
            load_scenario(path)
        assert info.value.file == str(path), case
        assert REFUSAL[case] in info.value.lines()[0], (case, info.value.lines())


def test_histogram_and_info_and_bidlog_refuse_hostile_files(hostile, tmp_path):
    from rtb.bidlog import read_bidlog
    from rtb.replay import load_info
    from rtb.scenario import parse_scenario, read_histogram

    for case, path in hostile.items():
        with pytest.raises(ValueError, match=re.escape(REFUSAL[case])):
            read_histogram(path, "price_counter_train")
        with pytest.raises(InputError, match=re.escape(REFUSAL[case])):
            load_info(path)
        if case not in ("too large", "deep TOML", "deep JSON"):  # a log has no size limit
            with pytest.raises(InputError, match=re.escape(REFUSAL[case])):
                read_bidlog(path)
    # Through a scenario: the problem is the histogram's field.
    data = scenario_dict(**{"exchange.market": {"kind": "histogram", "file": str(hostile["fifo"])}})
    with pytest.raises(InputError) as info:
        parse_scenario(data, "s.toml", base_dir=tmp_path)
    assert info.value.problems[0][0] == "exchange.market.file"
    assert "is a pipe" in info.value.problems[0][1]


def test_size_limit_is_checked_before_reading(tmp_path):
    path = tmp_path / "s.json"
    path.write_bytes(b"{}")
    assert read_input(path) == b"{}"
    with pytest.raises(InputError, match="too large"):
        read_input(path, limit=1)


def test_cli_on_fifo_and_device_exits_2_at_once(hostile):
    for case in ("fifo", "/dev/zero"):
        started = time.monotonic()
        proc = rtb("validate", hostile[case], timeout=30)
        assert_clean_failure(proc, [str(hostile[case]), REFUSAL[case]])
        assert time.monotonic() - started < 20


# ---- 2. replay's options bounded --------------------------------------------------------

@pytest.fixture
def tiny_log(tmp_path) -> tuple[Path, Path]:
    log = tmp_path / "log.txt"
    log.write_text("".join(f"{k % 7 == 0:d} {50 + k % 200} 0.001\n" for k in range(3000)))
    info = tmp_path / "info.json"
    info.write_text(json.dumps({"imp_train": 1000, "clk_train": 3, "cost_train": 80_000}))
    return log, info


@pytest.mark.parametrize("option, value, words", [
    ("--budget-fraction", "1e18", ["--budget-fraction", "must be <= 1e+06"]),
    ("--episode", str(10**18), ["--episode", "must be <= 1099511627776"]),
])
def test_replay_refuses_huge_episode_or_budget(tiny_log, option, value, words):
    log, info = tiny_log
    args = {"--budget-fraction": "1/2", "--episode": "1000", option: value}
    proc = rtb_in_process("replay", log, "--info", info, "--strategy", "mcpc", *sum(args.items(), ()))
    assert_clean_failure(proc, words)


def test_replay_refuses_an_episode_budget_beyond_int64(tiny_log):
    from rtb.bidlog import read_bidlog
    from rtb.replay import MAX_EPISODE, load_info, replay, strategy_for_replay

    log, info = tiny_log
    with pytest.raises(InputError, match="episode budget over"):
        replay(read_bidlog(log), load_info(info), strategy_for_replay("mcpc"),
               episode=MAX_EPISODE, budget_fraction=1e6)


# ---- 3. outputs checked before any work ---------------------------------------------------

def test_outputs_must_differ_and_spare_the_inputs(two_hour_scenario, tmp_path, tiny_log):
    same = tmp_path / "same.json"
    for args, words in [
        (("--out", same, "--log", same), ["--log", "is also the output of --out"]),
        (("--out", tmp_path / "a.json", "--csv", tmp_path / "a.json"), ["--csv", "--out"]),
        (("--out", two_hour_scenario), ["--out", "is the scenario"]),
        (("--log", two_hour_scenario.parent / "." / two_hour_scenario.name), ["--log", "the scenario"]),
    ]:
        proc = rtb_in_process("run", two_hour_scenario, *args, "-q")
        assert_clean_failure(proc, words)
    log, info = tiny_log
    assert sorted(tmp_path.iterdir()) == sorted([info, log])  # nothing written
    for target, words in [(log, ["the bid log"]), (info, ["--info"])]:
        proc = rtb_in_process("replay", log, "--info", info, "--strategy", "mcpc",
                              "--budget-fraction", "1/2", "--out", target)
        assert_clean_failure(proc, ["--out", *words])


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_output_folder_must_be_writable(two_hour_scenario, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    proc = rtb("run", two_hour_scenario, "--out", locked / "r.json", "-q", timeout=60)
    assert_clean_failure(proc, ["--out", "not writable"])


# ---- 4. temporary files --------------------------------------------------------------------

def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_temporary_names_and_leftovers(tmp_path):
    out = AtomicFile(tmp_path / "r.json")
    assert re.fullmatch(rf"\.r\.json\.rtbtmp-{os.getpid()}-\w+", Path(out.tmp).name)
    dead = tmp_path / f".r.json.rtbtmp-{dead_pid()}-abc123"
    dead.write_bytes(b"partial")
    other = tmp_path / ".r.json.something-else"
    other.write_bytes(b"not ours")
    assert remove_leftovers(tmp_path) == [dead]
    assert Path(out.tmp).exists() and other.exists()  # a live run's file is kept
    out.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name]


def test_log_path_a_folder_fails_before_the_run(two_hour_spec, tmp_path):
    from rtb.engine import simulate

    with pytest.raises(IsADirectoryError):
        simulate(two_hour_spec, log_path=tmp_path)
    assert list(tmp_path.iterdir()) == [] and temp_files(tmp_path.parent) == []


def test_full_disk_and_failing_cleanup_give_one_line(two_hour_scenario, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import rtb.atomic
    from rtb.cli import app

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rtb.atomic.os, "fsync", full)
    result = CliRunner().invoke(app, ["run", str(two_hour_scenario), "--out",
                                      str(tmp_path / "r.json"), "-q"])
    assert result.exit_code == 1, result.output
    assert "No space left on device" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []

    def cannot_unlink(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(rtb.atomic.os, "unlink", cannot_unlink)
    result = CliRunner().invoke(app, ["run", str(two_hour_scenario), "--out",
                                      str(tmp_path / "r.json"), "-q"])
    assert result.exit_code == 1 and "No space left on device" in result.output
    assert "Traceback" not in result.output
    monkeypatch.undo()
    # The temporary file left behind is this (live) process's: the next run of another
    # process keeps it; once this process is gone, a run removes it.
    assert temp_files(tmp_path) and not (tmp_path / "r.json").exists()


# ---- 5. sweeps --------------------------------------------------------------------------

def test_damaged_sweep_report_is_named_and_redone(sweep_reference, tmp_path):
    args, reference, _ = sweep_reference
    out_dir = tmp_path / "sw"
    out_dir.mkdir()
    for name, data in reference.items():
        (out_dir / name).write_bytes(data)
    damaged = out_dir / "scale-1.0_seed-2.json"
    damaged.write_bytes(reference[damaged.name][:100])  # cut short
    proc = rtb(*args, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if damaged.name in line]
    assert len(lines) == 1 and "not valid JSON" in lines[0] and "run again" in lines[0]
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == reference


# ---- 6. killed at a random moment ---------------------------------------------------------

RNG = random.Random(20261127)  # the "random" moments, reproducible


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (psutil if installed, else /proc)."""
    try:
        import psutil

        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except ImportError:
        pass
    except Exception:  # the process is gone
        return []
    children, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for entry in Path("/proc").iterdir():
            try:
                stat = (entry / "stat").read_text()
            except (OSError, ValueError):
                continue
            if entry.name.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                children.append(int(entry.name))
                frontier.append(int(entry.name))
    return children


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def kill_at_random(args: list, cwd: Path, sig: int, latest_s: float) -> tuple[int, float, list[int]]:
    """Start `rtb ARGS`, send `sig` at a random moment; its exit code, the moment and the
    processes it had started just before."""
    proc = subprocess.Popen([*rtb_command(), *map(str, args)], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "200"})
    moment = RNG.uniform(0.3, latest_s)
    time.sleep(moment)
    children = descendants(proc.pid)
    proc.send_signal(sig)
    return proc.wait(timeout=60), moment, children


def assert_no_orphans(children: list[int], within_s: float = 15.0) -> None:
    deadline = time.monotonic() + within_s
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in children), [p for p in children if alive(p)]


@pytest.fixture(scope="module")
def run_reference(tmp_path_factory, two_hour_scenario):
    folder = tmp_path_factory.mktemp("run-ref")
    args = ["run", two_hour_scenario, "--out", "r.json", "--log", "imps.csv", "-q"]
    started = time.monotonic()
    assert rtb(*args, cwd=folder, timeout=120).returncode == 0
    return args, {p.name: p.read_bytes() for p in folder.iterdir()}, time.monotonic() - started


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_leaves_nothing_partial(run_reference, tmp_path, sig):
    args, reference, duration = run_reference
    code, moment, children = kill_at_random(args, tmp_path, sig, duration)
    note = f"{sig.name} at {moment:.2f} s"
    assert code in (-sig, 128 + sig, 0), (note, code)  # 0: it had finished
    for path in tmp_path.iterdir():  # a file under an output's name is a finished one
        if not TEMP.search(path.name):
            assert path.read_bytes() == reference[path.name], (note, path.name)
    if sig == signal.SIGTERM:
        assert temp_files(tmp_path) == [], note  # removed on the way out
    assert_no_orphans(children)
    assert rtb(*args, cwd=tmp_path, timeout=120).returncode == 0
    assert temp_files(tmp_path) == [], note
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == reference, note


@pytest.fixture(scope="module")
def sweep_reference(tmp_path_factory, two_hour_scenario):
    folder = tmp_path_factory.mktemp("sweep-ref")
    args = ["sweep", two_hour_scenario, "--out-dir", "sw", *SWEEP_ARGS]
    started = time.monotonic()
    assert rtb(*args, cwd=folder, timeout=120).returncode == 0
    return args, {p.name: p.read_bytes() for p in (folder / "sw").iterdir()}, time.monotonic() - started


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_sweep_leaves_no_worker_and_resumes_to_the_same_bytes(sweep_reference, tmp_path, sig):
    args, reference, duration = sweep_reference
    code, moment, children = kill_at_random(args, tmp_path, sig, duration)
    note = f"{sig.name} at {moment:.2f} s"
    assert code in (-sig, 128 + sig, 0), (note, code)
    out_dir = tmp_path / "sw"
    for path in out_dir.iterdir() if out_dir.exists() else []:
        if path.name != "sweep.json" and not TEMP.search(path.name):  # a finished run
            assert path.read_bytes() == reference[path.name], (note, path.name)
    assert_no_orphans(children)
    assert rtb(*args, cwd=tmp_path, timeout=120).returncode == 0
    assert temp_files(tmp_path) == [], note
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == reference, note


def test_sigterm_before_a_command_guards_its_work_still_exits_143():
    """A SIGTERM that strikes outside input_errors() (e.g. during a command's lazy
    imports) reaches typer, which reports any KeyboardInterrupt as 130: main() still
    exits 128 + SIGTERM."""
    code = ("import os, signal, sys; import rtb.cli as cli\n"
            "def guard():\n"
            "    os.kill(os.getpid(), signal.SIGTERM)  # the handler raises KeyboardInterrupt\n"
            "cli.input_errors = guard\n"
            "sys.argv = ['rtb', 'validate', 'scenarios/quickstart.toml']\n"
            "cli.main()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, proc.stderr[-500:])
