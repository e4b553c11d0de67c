"""Secrets never reach stdout, stderr, logs, the database or an export.

A realistic `copytrade follow` session runs as a real process against the emulator (orders
mirrored, a server error on a follower's place, a follower's token expiring mid-session,
a run whose leader token is refused with --debug tracebacks on, `config show`), with
distinctive tokens. Then every file under COPYTRADE_HOME and everything the processes
printed is searched for each token, its base64 and its SHA-256 digest: none may appear.
The files copytrade created must be private: 0600 files, 0700 directories.

`copytrade demo` makes up its own tokens (32 hex characters) and keeps them internal: its
output must hold nothing that looks like one.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest
from dhanhq import DhanContext, dhanhq
from simtools import sim_dialect

from copytrade.sim.server import Emulator

LEADER_ID, F1_ID, F2_ID = "1000000001", "1000000002", "1000000003"
EXIT_WAIT = 60


def _wait(predicate: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition not met within {timeout}s"
        time.sleep(0.05)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(seed=5, dialect=sim_dialect()) as sim:
        yield sim


@pytest.fixture
def tokens() -> dict[str, str]:
    return {name: f"tok-LEAK-CHECK-{secrets.token_hex(12)}"
            for name in ("LEAK_LEADER", "LEAK_F1", "LEAK_F2")}


def _config(sim: Emulator) -> str:
    def account(client_id: str, env: str) -> str:
        return (f'client_id = "{client_id}"\naccess_token_env = "{env}"\n'
                f'api_url = "{sim.rest_url}"\norder_ws_url = "{sim.ws_url}"\n')
    return (f"[leader]\n{account(LEADER_ID, 'LEAK_LEADER')}\n"
            f'[settings]\ninstruments_url = "{sim.scrip_master_url}"\n'
            f"http_timeout_seconds = 2\nmarket_hours = false\n\n"
            f'[[followers]]\nname = "f1"\nmultiplier = 1.0\n{account(F1_ID, "LEAK_F1")}\n'
            f'[[followers]]\nname = "f2"\nfixed_lots = 2\n{account(F2_ID, "LEAK_F2")}')


def _api(sim: Emulator, client_id: str, token: str) -> dhanhq:
    context = DhanContext(client_id, token)
    context.get_dhan_http().base_url = sim.rest_url
    context.get_dhan_http().timeout = 5
    return dhanhq(context)


def _forms(token: str) -> dict[str, bytes]:
    raw = token.encode()
    return {"raw": raw,
            "base64": base64.b64encode(raw).rstrip(b"="),
            "urlsafe base64": base64.urlsafe_b64encode(raw).rstrip(b"="),
            "sha256 hex": hashlib.sha256(raw).hexdigest().encode(),
            "sha256 base64": base64.b64encode(hashlib.sha256(raw).digest()).rstrip(b"=")}


def _leaks(tokens: dict[str, str], where: str, data: bytes) -> list[str]:
    found = []
    for name, token in tokens.items():
        for form, needle in _forms(token).items():
            if needle in data or needle.lower() in data.lower():
                found.append(f"{name} ({form}) in {where}")
    return found


def _run(args: list[str], env: dict[str, str],
         timeout: float = EXIT_WAIT) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "copytrade", *args], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)


def _modes(home: Path) -> dict[str, int]:
    modes = {}
    for path in [home, *home.rglob("*")]:
        try:
            modes[path.relative_to(home).as_posix()] = path.stat().st_mode
        except FileNotFoundError:  # a -wal or -shm checkpointed away meanwhile
            continue
    return modes


def _not_private(modes: dict[str, int]) -> dict[str, str]:
    return {name: f"{stat.S_IMODE(mode):04o}" for name, mode in modes.items()
            if stat.S_IMODE(mode) != (0o700 if stat.S_ISDIR(mode) else 0o600)}


def _rejected_with(database: Path, code: str) -> bool:
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return db.execute("SELECT COUNT(*) FROM mirrororder WHERE state = 'REJECTED' "
                          "AND reason LIKE ?", (f"%{code}%",)).fetchone()[0] > 0


def _follow_session(sim: Emulator, config: Path, env: dict[str, str], tokens: dict[str, str],
                    home: Path) -> tuple[bytes, bytes, int, dict[str, int]]:
    proc = subprocess.Popen([sys.executable, "-m", "copytrade", "follow", "--config",
                             str(config), "--duration", "6"], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        _wait(lambda: proc.poll() is None and all(
            sim.snapshot()["stream"]["connections"].get(cid) for cid in
            (LEADER_ID, F1_ID, F2_ID)), timeout=30)
        leader = _api(sim, LEADER_ID, tokens["LEAK_LEADER"])
        # a server error on f1's first place: unknown outcome, lookup, a second attempt
        sim.fail_next("5xx", "/orders", method="POST", client_id=F1_ID, status=502)
        assert leader.place_order("1333", "NSE_EQ", "BUY", 10, "MARKET", "CNC", 0)[
            "status"] == "success"
        _wait(lambda: len(sim.snapshot()["accounts"].get(F1_ID, {}).get("orders", [])) == 1
              and sim.snapshot()["accounts"].get(F2_ID, {}).get("orders"), timeout=15)
        # f2's token expires mid-session: its stream is refused, its next place gets DH-901
        sim.expire_token(F2_ID)
        assert leader.place_order("2885", "NSE_EQ", "BUY", 5, "LIMIT", "CNC", 1390.0)[
            "status"] == "success"
        _wait(lambda: len(sim.snapshot()["accounts"][F1_ID]["orders"]) == 2, timeout=15)
        # a broker error that quotes f1's access-token header back (issue 7, row 5)
        sim.fail_next("echo_token", "/orders", method="POST", client_id=F1_ID)
        assert leader.place_order("1333", "NSE_EQ", "BUY", 3, "MARKET", "CNC", 0)[
            "status"] == "success"
        _wait(lambda: _rejected_with(home / "copytrade.db", "DH-905"), timeout=15)
        running_modes = _modes(home)  # while it runs: the databases' -wal and -shm too
        out, err = proc.communicate(timeout=EXIT_WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=EXIT_WAIT)
    return out, err, proc.returncode, running_modes


def test_follow_session_leaks_no_token_and_keeps_its_files_private(
        emulator: Emulator, tokens: dict[str, str], tmp_path: Path,
        copytrade_home: Path) -> None:
    # the detector finds what it looks for
    assert _leaks(tokens, "probe", b"x" + base64.b64encode(tokens["LEAK_F1"].encode()))
    config = tmp_path / "copytrade.toml"  # outside the home: the home holds only ours
    config.write_text(_config(emulator))
    # f2's token comes from secrets.toml in the home (the one file meant to hold tokens)
    secrets_file = copytrade_home / "secrets.toml"
    secrets_file.write_text(f'[tokens]\n"{F2_ID}" = "{tokens["LEAK_F2"]}"\n')
    secrets_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k != "COPYTRADE_DEBUG"}
    env |= {"LEAK_LEADER": tokens["LEAK_LEADER"], "LEAK_F1": tokens["LEAK_F1"]}
    printed: dict[str, bytes] = {}

    out, err, code, running_modes = _follow_session(emulator, config, env, tokens,
                                                    copytrade_home)
    assert code == 0, err.decode()
    printed["follow stdout"], printed["follow stderr"] = out, err
    assert b"f2" in out and b"account_stopped" in out  # the session did what it should
    assert b"DH-905" in out and b"***" in out  # the echoed header, redacted

    for args in (["config", "show", "--config", str(config)],
                 ["config", "show", "--json", "--config", str(config)],
                 ["config", "validate", "--config", str(config)]):
        result = _run(args, env)
        assert result.returncode == 0, result.stderr.decode()
        printed[f"{' '.join(args[:2])} stdout"] = result.stdout
        printed[f"{' '.join(args[:2])} stderr"] = result.stderr
    assert b"LEAK_LEADER" in printed["config show stdout"]  # says where, not what
    assert b"secrets file" in printed["config show stdout"]

    # the leader's token refused, with --debug: a traceback goes to stderr
    emulator.expire_token(LEADER_ID)
    refused = _run(["--debug", "follow", "--config", str(config), "--duration", "5"], env)
    assert refused.returncode == 4, refused.stderr.decode()
    assert b"Traceback" in refused.stderr
    printed["refused follow stdout"], printed["refused follow stderr"] = (refused.stdout,
                                                                          refused.stderr)

    files = sorted(p for p in copytrade_home.rglob("*") if p.is_file() and p != secrets_file)
    names = {p.relative_to(copytrade_home).as_posix() for p in files}
    assert {"copytrade.db", "limits.db", "logs/copytrade.log"} <= names, names
    assert (copytrade_home / "logs" / "copytrade.log").stat().st_size > 0

    leaks = [leak for where, data in printed.items() for leak in _leaks(tokens, where, data)]
    for path in files:
        leaks += _leaks(tokens, str(path.relative_to(copytrade_home)), path.read_bytes())
    assert leaks == []

    assert any(name.endswith("-wal") for name in running_modes), running_modes
    assert _not_private(running_modes) == {}
    assert _not_private(_modes(copytrade_home)) == {}


def test_demo_prints_nothing_like_a_token(copytrade_home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COPYTRADE_DEBUG"}
    env["COLUMNS"] = "200"
    result = _run(["demo", "--duration", "10"], env)
    assert result.returncode == 0, result.stderr.decode()
    text = (result.stdout + result.stderr).decode()
    assert "leader session:" in text  # the demo ran to its summary
    # its follow lines tell their time in IST, and say so
    events = [line for line in text.splitlines()
              if re.search(r"  (leader|family-\d) +\d+  .+  (seen|placed|filled)", line)]
    assert events and all(re.match(r"\d{2}:\d{2}:\d{2} IST ", line) for line in events), events
    assert re.findall(r"[0-9a-fA-F]{32}", text) == []
    for path in copytrade_home.rglob("*"):  # the demo's files are its own, and gone
        assert not path.is_file() or not re.search(rb"[0-9a-f]{32}", path.read_bytes())
