"""`copytrade --help` and every `copytrade CMD --help` load nothing only commands need.

Deterministic, not a timing test (timing is bench/'s job): a fresh interpreter imports
the CLI, builds the Click command and asks each command for --help, and after each step
none of the heavy libraries may be loaded. Whatever `import typer` loads by itself
(older Typer loads Rich) is Typer's cost, not ours, and is left out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

HEAVY = (
    "dhanhq",
    "pandas",
    "peewee",
    "pydantic",
    "pydantic_core",
    "pyrate_limiter",
    "pytz",
    "requests",
    "rich",
    "websockets",
)

PROBE = """
import contextlib, io, json, sys

HEAVY = set(json.loads(sys.argv[1]))

def heavy():
    return sorted({name.split(".")[0] for name in sys.modules} & HEAVY)

import typer

steps = {"import typer": heavy()}
codes = {}
import copytrade.cli.app as cli

steps["import copytrade.cli.app"] = heavy()
group = typer.main.get_command(cli.app)
steps["build the click command"] = heavy()

def paths(command, path=()):
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from paths(sub, (*path, name))

for path in paths(group):
    argv = [*path, "--help"]
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli.run(argv)
    steps[" ".join(["copytrade", *argv])] = heavy()
    codes[" ".join(["copytrade", *argv])] = code
print(json.dumps({"steps": steps, "codes": codes}))
"""


@pytest.fixture(scope="module")
def steps() -> dict[str, Any]:
    """Each step of the probe, in order, with the heavy modules loaded after it."""
    # COPYTRADE_DEBUG=1 would make Typer coerce the env value, through pydantic.
    env = {key: value for key, value in os.environ.items() if key != "COPYTRADE_DEBUG"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    probed = json.loads(result.stdout.splitlines()[-1])
    assert set(probed["codes"].values()) == {0}, probed["codes"]
    return probed["steps"]


def loaded_by_us(steps: dict[str, Any], step: str) -> list[str]:
    return sorted(set(steps[step]) - set(steps["import typer"]))


def test_importing_the_cli_loads_no_heavy_module(steps: dict[str, Any]) -> None:
    assert loaded_by_us(steps, "import copytrade.cli.app") == []


def test_building_the_click_command_loads_no_heavy_module(steps: dict[str, Any]) -> None:
    assert loaded_by_us(steps, "build the click command") == []


def test_no_help_loads_a_heavy_module(steps: dict[str, Any]) -> None:
    helps = [step for step in steps if step.endswith("--help")]
    assert {"copytrade --help", "copytrade follow --help"} <= set(helps)
    assert {"copytrade config validate --help", "copytrade replay-missed --help"} <= set(helps)
    # Modules only accumulate: the first step listed is the one that loaded them.
    loaded = {step: loaded_by_us(steps, step) for step in helps}
    assert {step: modules for step, modules in loaded.items() if modules} == {}
