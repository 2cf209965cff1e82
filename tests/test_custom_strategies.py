"""A user's own strategy: kind = "python" in a scenario, rtb compare --strategy, and
rtb.simulate(strategies=...): read-time checks, run-time checks, folder identity."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from rtb.compare import compare
from rtb.engine import simulate
from rtb.errors import InputError, StrategyError
from rtb.scenario import load_scenario, parse_scenario
from rtb.sweep import FolderOfAnotherSweep, plan, prepare_folder, scenario_digest
from test_cli import rtb_in_process

CAMPAIGN = "sneakers-prospecting"  # the quickstart's campaigns[1]: fixed at 2.2 CPM
INDEX = 1

BIDDERS = '''
import numpy as np

made = []  # the params of every instance built, in order


class Constant:
    """kind = "fixed" written by hand."""

    def __init__(self, bid_cpm):
        self.bid_cpm = bid_cpm
        made.append({"bid_cpm": bid_cpm})

    def bid(self, view):
        return np.full(len(view.floor_cpm), self.bid_cpm)

    def observe(self, feedback):
        pass


class Returns:
    """Bids whatever `what` says, to test the run-time checks."""

    def __init__(self, what):
        self.what = what

    def bid(self, view):
        n = len(view.floor_cpm)
        return {"list": [1.0] * n, "shape": np.ones((n, 2)), "negative": np.full(n, -1.0),
                "inf": np.full(n, np.inf), "text": np.full(n, "a")}[self.what]

    def observe(self, feedback):
        pass


class NoObserve:
    def bid(self, view):
        return np.zeros(len(view.floor_cpm))


def not_a_class():
    pass
'''


def scenario_with(folder: Path, two_hour_scenario: Path, strategy: dict | None = None,
                  source: str = BIDDERS) -> Path:
    """The two-hour quickstart in `folder`, beside my_bidders.py, with campaigns[1]'s
    strategy replaced (written as TOML, as a user would)."""
    folder.mkdir(exist_ok=True)
    (folder / "my_bidders.py").write_text(source)
    text = two_hour_scenario.read_text()
    if strategy is not None:
        old = 'strategy = { kind = "fixed", bid_cpm = 2.2 }'
        assert old in text
        text = text.replace(old, "strategy = " + _inline(strategy), 1)
    path = folder / "scenario.toml"
    path.write_text(text)
    return path


def _inline(table: dict) -> str:
    def value(v):
        return _inline(v) if isinstance(v, dict) else json.dumps(v)
    return "{ " + ", ".join(f"{k} = {value(v)}" for k, v in table.items()) + " }"


def constant(bid_cpm: float = 2.2) -> dict:
    return {"kind": "python", "class": "my_bidders:Constant", "params": {"bid_cpm": bid_cpm}}


@pytest.fixture(scope="module")
def builtin_report(two_hour_spec) -> bytes:
    return simulate(two_hour_spec, 3).to_json()


def test_a_class_that_bids_as_fixed_gives_the_same_report(tmp_path, two_hour_scenario,
                                                          builtin_report) -> None:
    spec = load_scenario(scenario_with(tmp_path, two_hour_scenario, constant()))
    assert spec.campaigns[INDEX].strategy.folder == str(tmp_path.resolve())
    assert simulate(spec, 3).to_json() == builtin_report


def test_params_reach_a_fresh_instance_per_run(tmp_path, two_hour_scenario) -> None:
    spec = load_scenario(scenario_with(tmp_path, two_hour_scenario, constant(2.5)))
    import my_bidders

    assert my_bidders.made == [{"bid_cpm": 2.5}]  # built once when read, to check the params
    simulate(spec, 1)
    simulate(spec, 2)
    assert my_bidders.made == [{"bid_cpm": 2.5}] * 3  # and once for each run


def test_api_strategies_replace_a_campaigns_strategy(two_hour_spec, builtin_report) -> None:
    class Counting:
        calls = 0

        def bid(self, view):
            self.calls += 1
            return np.full(len(view.floor_cpm), 2.2)

        def observe(self, feedback):
            pass

    bidder = Counting()
    assert simulate(two_hour_spec, 3, strategies={CAMPAIGN: bidder}).to_json() == builtin_report
    first = bidder.calls
    assert first > 0
    simulate(two_hour_spec, 3, strategies={CAMPAIGN: bidder})
    assert bidder.calls == 2 * first  # used as given: its state carries over


def test_api_strategies_are_checked(two_hour_spec) -> None:
    with pytest.raises(ValueError, match="no campaign 'nope'; the scenario has sneakers"):
        simulate(two_hour_spec, strategies={"nope": object()})

    class BidOnly:
        def bid(self, view):
            return np.zeros(len(view.floor_cpm))

    with pytest.raises(TypeError, match=f"strategies\\['{CAMPAIGN}'\\]: BidOnly has no observe"):
        simulate(two_hour_spec, strategies={CAMPAIGN: BidOnly()})
    with pytest.raises(TypeError, match="must be a dict"):
        simulate(two_hour_spec, strategies=[BidOnly()])


@pytest.mark.parametrize(("strategy", "field", "message"), [
    ({"kind": "python", "class": "nowhere:Bidder"}, "class",
     "no module 'nowhere' in {folder} or the Python path"),
    ({"kind": "python", "class": "broken:Bidder"}, "class",
     "importing 'broken' failed: ZeroDivisionError: division by zero"),
    ({"kind": "python", "class": "my_bidders:Missing"}, "class",
     "module 'my_bidders' ({folder}/my_bidders.py) has no 'Missing'"),
    ({"kind": "python", "class": "my_bidders:not_a_class"}, "class",
     "my_bidders:not_a_class is a function, not a class"),
    ({"kind": "python", "class": "my_bidders:NoObserve"}, "class",
     "class my_bidders:NoObserve has no observe method; a strategy needs bid(view) and"
     " observe(feedback)"),
    ({"kind": "python", "class": "my_bidders:Constant", "params": {"bid": 2}}, "params",
     "my_bidders:Constant(**params) failed: TypeError: Constant.__init__() got an unexpected"
     " keyword argument 'bid'"),
    ({"kind": "python", "class": "my_bidders:Constant"}, "params",
     "my_bidders:Constant(**params) failed: TypeError: Constant.__init__() missing 1 required"
     " positional argument: 'bid_cpm'"),
    ({"kind": "python", "class": "my_bidders"}, "class",
     "'my_bidders' is not module:Class, e.g. my_bidders:Shaded"),
])
def test_a_class_that_cannot_bid_fails_when_read(tmp_path, two_hour_scenario, strategy, field,
                                                 message) -> None:
    (tmp_path / "broken.py").write_text("1 / 0\n")
    path = scenario_with(tmp_path, two_hour_scenario, strategy)
    with pytest.raises(InputError) as bad:
        load_scenario(path)
    folder = str(tmp_path.resolve())
    assert bad.value.lines() == [f"{path}: campaigns[{INDEX}].strategy.{field}: "
                                 + message.format(folder=folder)]


@pytest.mark.parametrize(("what", "problem"), [
    ("list", r"returned a list, not a numpy array of (\d+) CPM bids"),
    ("shape", r"returned an array of shape \((\d+), 2\) for \1 requests; expected \(\1,\)"),
    ("negative", r"returned (\d+) bid\(s\) that are negative or infinite \(request 0: -1.0\);"
                 r" a bid is a CPM >= 0, or NaN for no bid"),
    ("inf", r"returned (\d+) bid\(s\) that are negative or infinite \(request 0: inf\)"),
    ("text", r"returned an array of <U1; expected float CPMs"),
])
def test_bad_bids_stop_the_run_naming_the_class(tmp_path, two_hour_scenario, what, problem) -> None:
    strategy = {"kind": "python", "class": "my_bidders:Returns", "params": {"what": what}}
    spec = load_scenario(scenario_with(tmp_path, two_hour_scenario, strategy))
    with pytest.raises(StrategyError, match=r"^my_bidders:Returns\.bid\(\) " + problem):
        simulate(spec, 1)


def test_the_cli_reports_bad_bids_and_bad_classes_in_one_line(tmp_path, two_hour_scenario) -> None:
    strategy = {"kind": "python", "class": "my_bidders:Returns", "params": {"what": "negative"}}
    path = scenario_with(tmp_path, two_hour_scenario, strategy)
    done = rtb_in_process("run", path, "--out", tmp_path / "report.json")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: my_bidders:Returns.bid() returned ")

    path = scenario_with(tmp_path, two_hour_scenario, {"kind": "python", "class": "my_bidders:Nope"})
    done = rtb_in_process("validate", path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"{path}: campaigns[{INDEX}].strategy.class: module 'my_bidders'")


def test_compare_runs_a_class_named_on_the_command_line(tmp_path, two_hour_scenario) -> None:
    path = scenario_with(tmp_path, two_hour_scenario)
    out = tmp_path / "out"
    done = rtb_in_process("compare", path, "--campaign", CAMPAIGN, "--seeds", "1,2",
                          "--strategy", "python:class=my_bidders:Constant,bid_cpm=2.2",
                          "--strategy", '{ kind = "python", class = "my_bidders:Constant",'
                                        ' params = { bid_cpm = 4.0 } }',
                          "--out-dir", out, "--quiet")
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "compare.json").read_text())
    same, higher = summary["differences"]
    assert same["spend"]["mean"] == 0 and same["clicks"]["mean"] == 0  # the same as fixed 2.2
    assert higher["spend"]["mean"] > 0
    assert summary["strategies"][1]["strategy"]["class"] == "my_bidders:Constant"

    done = rtb_in_process("compare", path, "--campaign", CAMPAIGN, "--seeds", "1,2",
                          "--strategy", "python:class=my_bidders:Nope", "--out-dir", out)
    assert done.returncode == 2
    assert done.stderr.startswith("command line: --strategy 1.class: module 'my_bidders'")


def test_compare_imports_the_class_in_worker_processes(tmp_path, two_hour_scenario) -> None:
    spec = load_scenario(scenario_with(tmp_path, two_hour_scenario))
    summary = compare(spec, CAMPAIGN, [constant()], [1, 2], tmp_path / "out", workers=2)
    assert summary["differences"][0]["spend"]["mean"] == 0


def test_editing_the_class_file_changes_the_folder_identity(tmp_path, two_hour_scenario) -> None:
    path = scenario_with(tmp_path, two_hour_scenario, constant())
    spec = load_scenario(path)
    runs = plan([1.0], [1])
    before = prepare_folder(spec, runs, tmp_path / "sweep")
    assert scenario_digest(spec) == before
    (tmp_path / "my_bidders.py").write_text(BIDDERS.replace("kind = \"fixed\" written by hand",
                                                            "edited"))
    edited = load_scenario(path)
    assert edited == spec  # the same scenario text ...
    assert scenario_digest(edited) != before  # ... but another class
    with pytest.raises(FolderOfAnotherSweep):
        prepare_folder(edited, runs, tmp_path / "sweep")
    # The edited module is the one imported from now on.
    import my_bidders

    assert "edited" in my_bidders.Constant.__doc__


def test_the_params_and_the_class_are_part_of_the_identity(tmp_path, two_hour_scenario) -> None:
    spec = load_scenario(scenario_with(tmp_path, two_hour_scenario, constant(2.2)))
    other = load_scenario(scenario_with(tmp_path, two_hour_scenario, constant(2.3)))
    assert scenario_digest(spec) != scenario_digest(other)


def test_a_module_of_the_same_name_in_another_folder_is_imported_from_there(
        tmp_path, two_hour_scenario, builtin_report) -> None:
    first = load_scenario(scenario_with(tmp_path / "a", two_hour_scenario, constant()))
    source = BIDDERS.replace("return np.full(len(view.floor_cpm), self.bid_cpm)",
                             "return np.full(len(view.floor_cpm), 2 * self.bid_cpm)")
    second = load_scenario(scenario_with(tmp_path / "b", two_hour_scenario, constant(1.1), source))
    assert simulate(second, 3).to_json() == builtin_report  # 2 x 1.1 = 2.2
    assert simulate(first, 3).to_json() == builtin_report


def test_a_scenario_given_as_data_imports_from_its_base_dir(tmp_path, two_hour_scenario) -> None:
    path = scenario_with(tmp_path, two_hour_scenario)
    data = tomllib.loads(path.read_text())
    data["campaigns"][INDEX]["strategy"] = constant()
    spec = parse_scenario(data, "api", base_dir=tmp_path)
    assert spec.campaigns[INDEX].strategy.folder == str(tmp_path.resolve())
