"""The `rtb` command's conventions, run for real in subprocesses: --version, `python -m rtb`,
shell completion, `rtb schema` and its shipped copy, and a start-up that leaves numba alone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import version

import pytest

from test_cli import QUICKSTART, REPO, rtb, rtb_command

SCHEMA_FILE = REPO / "scenarios" / "scenario.schema.json"


def python_m_rtb(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rtb", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "COLUMNS": "200", **(env or {})},
                          timeout=60)


def test_version_prints_the_installed_version():
    result = rtb("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"rtbsim {version('rtbsim')}\n"
    assert re.fullmatch(r"rtbsim \d+\.\d+\.\d+\n", result.stdout)


def test_python_m_rtb_works_like_rtb():
    for args in [("validate", QUICKSTART), ("validate", REPO / "no-such.toml")]:
        script, module = rtb(*args), python_m_rtb(*args)
        assert (module.returncode, module.stdout, module.stderr) == \
               (script.returncode, script.stdout, script.stderr), args
    assert "Usage: rtb " in python_m_rtb("--help").stdout  # not "python -m rtb"


def test_completion_options_are_offered_and_print_a_script():
    assert {"--install-completion", "--show-completion"} <= set(rtb("--help").stdout.split())
    # Typer's switch for naming the shell instead of detecting the one running the test.
    script = python_m_rtb("--show-completion", "bash",
                          env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert script.returncode == 0, script.stderr
    assert "_RTB_COMPLETE=complete_bash" in script.stdout
    assert "complete -o default -F _rtb_completion rtb" in script.stdout


def test_completion_completes_commands_and_options():
    def complete(words: str) -> list[str]:
        env = {**os.environ, "_RTB_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split()) - 1)}
        done = subprocess.run(rtb_command(), capture_output=True, text=True, env=env,
                              cwd=REPO, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("rtb va") == ["validate"]
    assert complete("rtb sch") == ["schema"]
    assert "--budget-scale" in complete("rtb run --bu")


def test_schema_prints_json_schema_and_the_shipped_copy_is_current():
    result = subprocess.run([*rtb_command(), "schema"], capture_output=True, cwd=REPO,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == SCHEMA_FILE.read_bytes(), \
        "scenarios/scenario.schema.json is stale: rtb schema > scenarios/scenario.schema.json"
    schema = json.loads(result.stdout)
    assert schema["title"] == "Scenario" and schema["additionalProperties"] is False
    assert set(tomllib.loads(QUICKSTART.read_text())) <= set(schema["properties"])
    # pydantic's own names for bounds (gt, le) mean nothing to editors: JSON Schema's only.
    assert not re.search(rb'"(gt|ge|lt|le)":', result.stdout)


def test_quickstart_points_editors_at_the_schema():
    text = QUICKSTART.read_text()
    directive = text.splitlines()[0]
    assert directive == "#:schema ./scenario.schema.json"  # taplo / Even Better TOML, tombi
    assert (QUICKSTART.parent / directive.split()[1]).resolve() == SCHEMA_FILE
    assert tomllib.loads(text)["name"] == "quickstart"  # the directive is a comment to TOML


def test_schema_accepts_the_shipped_scenarios_and_rejects_typos():
    jsonschema = pytest.importorskip("jsonschema")  # not a dependency: checked where installed
    schema = json.loads(SCHEMA_FILE.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for path in (QUICKSTART, REPO / "scenarios" / "large.toml"):
        errors = [e.message for e in validator.iter_errors(tomllib.loads(path.read_text()))]
        assert errors == [], path
    data = tomllib.loads(QUICKSTART.read_text())
    data["exchange"]["fees"] = data["exchange"].pop("fee")
    data["simulation"]["duration"] = "1 day"
    data["campaigns"][0]["strategy"] = "value:shading=0.7"  # the short form is allowed
    paths = sorted("/".join(map(str, e.absolute_path)) for e in validator.iter_errors(data))
    assert paths == ["exchange", "simulation/duration"]


HEAVY = ("numba", "rtb.engine", "rtb.kernel")

IMPORTS_AFTER = """
import json, sys
from typer.testing import CliRunner
from rtb.cli import app
seen = {}
for name, args in [("--help", ["--help"]), ("--version", ["--version"]),
                   ("validate", ["validate", sys.argv[1]]), ("schema", ["schema"])]:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
    seen[name] = sorted(m for m in sys.modules if m in %r or m.startswith("numba."))
    seen[name + " pydantic"] = "pydantic" in sys.modules
print(json.dumps(seen))
""" % (HEAVY,)


def test_help_validate_and_schema_do_not_import_the_engine():
    """numba alone costs 0.3 s warm and seconds cold: only the commands that simulate load it."""
    done = subprocess.run([sys.executable, "-c", IMPORTS_AFTER, str(QUICKSTART)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert {name: seen[name] for name in ("--help", "--version", "validate", "schema")} == \
           {"--help": [], "--version": [], "validate": [], "schema": []}
    assert seen["--help pydantic"] is False  # help and completion need no scenario models
    assert seen["validate pydantic"] is True  # the check above did run the validate path
