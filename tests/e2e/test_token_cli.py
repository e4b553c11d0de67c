"""`copytrade token set` and `copytrade token status` against the emulator, over the real
HTTP path (`GET /v2/profile`): saving, validity, refusal, no answer, the environment
variable that wins, hostile input; and a running follow that resumes on a token set
through the CLI. No token may reach stdout, stderr, a log or a file other than its own
line in secrets.toml.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from followtools import LEADER_ID, LEADER_TOKEN, config_text, follower, sdk
from test_token_renewal import follow_with_secrets

from copytrade.cli.app import run
from copytrade.config.tokens import read_secrets_file
from copytrade.sim.server import Emulator

F1 = follower("f1", "1000000002")
F2 = follower("f2", "1000000003", "fixed_lots = 2")
NEW_F1 = "tok-NEW-f1-set-by-cli-0b7e4a"
VALID = re.compile(r"valid until \d{4}-\d\d-\d\d \d\d:\d\d IST \(in 2[34] h \d+ min\)")
CLI_TIMEOUT = 60


@pytest.fixture(autouse=True)
def no_token_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LEADER_TOKEN", "TOKEN_F1", "TOKEN_F2"):
        monkeypatch.delenv(name, raising=False)


def write_config(home: Path, text: str) -> None:
    (home / "copytrade.toml").write_text(text)


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str,
        stdin: str = "") -> tuple[int, str, str]:
    """`copytrade token ARGS` in this process, stdin a pipe holding `stdin`."""
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
    code = run(["token", *args])
    out, err = capsys.readouterr()
    return code, out, err


def secrets(home: Path) -> dict[str, str]:
    return {cid: token.reveal() for cid, token in read_secrets_file(
        home / "secrets.toml").items()}


def assert_no_token_leaked(home: Path, tokens: list[str], *texts: str) -> None:
    """Each token only in secrets.toml, under its own client id; nowhere else."""
    for path in home.rglob("*"):
        if path.is_file() and path.name != "secrets.toml":
            assert not any(t.encode() in path.read_bytes() for t in tokens), path
    for text in texts:
        assert not any(t in text for t in tokens)


def test_set_then_status_over_the_emulator(
        live_sim: Emulator, copytrade_home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    write_config(copytrade_home, config_text(live_sim, [F1, F2]))
    monkeypatch.setenv("LEADER_TOKEN", LEADER_TOKEN)
    seen = []

    code, out, err = cli(monkeypatch, capsys, "status")
    seen += [out, err]
    assert code == 11
    assert re.search(r"follower f1 +1000000002 +MISSING", out)
    assert re.search(r"leader +1000000001 +env LEADER_TOKEN +" + VALID.pattern, out)
    assert err.startswith("error: 2 of 3 tokens need attention: follower f1: no token")

    code, out, err = cli(monkeypatch, capsys, "set", "F1", stdin=f"  {F1.token}\n")
    seen += [out, err]
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == (f"saved the token of follower f1 (1000000002) in "
                        f"{copytrade_home / 'secrets.toml'}")
    assert VALID.fullmatch(lines[1]), lines[1]
    assert "a running follow switches to it within seconds" in lines[2]
    code, out, err = cli(monkeypatch, capsys, "set", F2.client_id, stdin=F2.token)
    seen += [out, err]
    assert code == 0
    assert stat.S_IMODE((copytrade_home / "secrets.toml").stat().st_mode) == 0o600
    assert secrets(copytrade_home) == {F1.client_id: F1.token, F2.client_id: F2.token}

    code, out, err = cli(monkeypatch, capsys, "status")
    seen += [out, err]
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "ok: every token in use is valid for more than 30 min"
    assert len(VALID.findall(out)) == 3

    live_sim.book.set_token_validity(F1.client_id, 10 * 60)
    code, out, err = cli(monkeypatch, capsys, "status", "--json")
    seen += [out, err]
    data = json.loads(out)
    assert (code, data["exit_code"], data["ok"]) == (11, 11, False)
    states = {a["name"] or a["role"]: (a["state"], a["source"]) for a in data["accounts"]}
    assert states == {"leader": ("valid", "env"), "f1": ("expiring", "secrets file"),
                      "f2": ("valid", "secrets file")}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d\+05:30", data["accounts"][1]["valid_until"])
    assert err.startswith("error: 1 of 3 tokens need attention: follower f1: expires within")
    assert_no_token_leaked(copytrade_home, [LEADER_TOKEN, F1.token, F2.token], *seen)


def test_a_refused_token_is_not_saved_and_status_says_refused(
        live_sim: Emulator, copytrade_home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    write_config(copytrade_home, config_text(live_sim, [F1, F2]))
    monkeypatch.setenv("LEADER_TOKEN", LEADER_TOKEN)
    assert cli(monkeypatch, capsys, "set", "f1", stdin=F1.token)[0] == 0
    # f2's own token, pasted for f1 by mistake: the emulator (like Dhan) refuses it.
    assert sdk(live_sim, F2.client_id, F2.token).get_positions()["status"] == "success"
    code, out, err = cli(monkeypatch, capsys, "set", "f1", stdin=F2.token)
    assert (code, out) == (4, "")
    assert err.startswith("error: Dhan refused this token for follower f1 (1000000002, "
                          "DH-901): nothing was saved")
    assert "copytrade token set" in err
    assert secrets(copytrade_home) == {F1.client_id: F1.token}

    live_sim.expire_token(F1.client_id)
    code, out, err = cli(monkeypatch, capsys, "status")
    assert code == 11
    assert re.search(r"follower f1 +1000000002 +secrets file +REFUSED by Dhan \(DH-901\)", out)
    assert "follower f1: refused (DH-901)" in err
    assert_no_token_leaked(copytrade_home, [F1.token, F2.token, LEADER_TOKEN], out, err)


def test_no_answer_saves_with_a_warning_and_status_exits_5(
        copytrade_home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Port 1 on loopback refuses at once: nothing listens there.
    write_config(copytrade_home, f'''[leader]
client_id = "{LEADER_ID}"
access_token_env = "LEADER_TOKEN"
api_url = "http://127.0.0.1:1/v2"

[settings]
http_timeout_seconds = 2
''' + '\n[[followers]]\nname = "f1"\nclient_id = "1000000002"\nmultiplier = 1.0\n'
                 'access_token_env = "TOKEN_F1"\napi_url = "http://127.0.0.1:1/v2"\n')
    code, out, err = cli(monkeypatch, capsys, "set", "leader", stdin=LEADER_TOKEN)
    assert code == 0
    assert err == ("warning: validity unknown: no answer (ConnectionError); the token is "
                   "saved\n")
    assert out.startswith("saved the token of leader (1000000001)")
    assert cli(monkeypatch, capsys, "set", "f1", stdin=F1.token)[0] == 0
    code, out, err = cli(monkeypatch, capsys, "status")
    assert code == 5
    assert out.count("validity unknown: no answer (ConnectionError)") == 2
    assert err.startswith("error: token validity unknown for leader: no answer")
    assert_no_token_leaked(copytrade_home, [LEADER_TOKEN, F1.token], out, err)


def test_an_environment_variable_wins_and_is_named_never_shown(
        live_sim: Emulator, copytrade_home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    write_config(copytrade_home, config_text(live_sim, [F1]))
    monkeypatch.setenv("TOKEN_F1", F1.token)
    code, out, err = cli(monkeypatch, capsys, "set", "f1", stdin=NEW_F1)
    assert code == 0
    assert VALID.search(out)  # the token given is the one checked
    assert "a running follow switches" not in out
    assert err.startswith("warning: the environment variable TOKEN_F1 is set and copytrade "
                          "uses it before secrets.toml")
    assert secrets(copytrade_home) == {F1.client_id: NEW_F1}
    monkeypatch.setenv("LEADER_TOKEN", LEADER_TOKEN)
    code, out, _ = cli(monkeypatch, capsys, "status")
    assert code == 0
    assert re.search(r"follower f1 +1000000002 +env TOKEN_F1 ", out)
    assert_no_token_leaked(copytrade_home, [F1.token, NEW_F1, LEADER_TOKEN], out, err)


@pytest.mark.parametrize(("args", "stdin", "code", "message"), [
    (["set", "f1"], "tok-has a-space-in-it", 2, "contains a space at position 8"),
    (["set", "f1"], "tok-first-line-xx\ntok-second-line", 2, "a control character at"),
    (["set", "f1"], "short-tok\n", 2, "is 9 characters long"),
    (["set", "f1"], "", 2, "no token given for follower f1"),
    (["set", "f1"], "  \n \n", 2, "no token given for follower f1"),
    (["set", "nobody"], F1.token, 9, "no account 'nobody' in "),
    (["set", F1.token], F1.token, 9, f"(not shown: {len(F1.token)} characters, as long as"),
    (["set", "f1", F1.token], "", 2, "token set takes only ACCOUNT, but 1 more argument"),
    (["set", "f1", "--token", F1.token], "", 2, "2 more argument(s) were given (not shown"),
])
def test_hostile_input_saves_nothing_and_echoes_no_token(
        args: list[str], stdin: str, code: int, message: str, copytrade_home: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(copytrade_home, config_text_offline())
    result, out, err = cli(monkeypatch, capsys, *args, stdin=stdin)
    assert (result, out) == (code, "")
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (copytrade_home / "secrets.toml").exists()
    for part in [*stdin.split(), F1.token]:
        assert len(part) < 16 or part not in err


def test_without_a_configuration_both_exit_3(
        copytrade_home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["set", "leader"], ["status"], ["status", "--json"]):
        code, out, err = cli(monkeypatch, capsys, *args, stdin=F1.token)
        assert (code, out) == (3, "")
        assert err.startswith(f"error: no file at {copytrade_home / 'copytrade.toml'}")
    assert not (copytrade_home / "secrets.toml").exists()


def test_a_secrets_file_others_can_read_is_refused(
        copytrade_home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    write_config(copytrade_home, config_text_offline())
    secrets_file = copytrade_home / "secrets.toml"
    secrets_file.write_text(f'[tokens]\n"{LEADER_ID}" = "{LEADER_TOKEN}"\n')
    secrets_file.chmod(0o644)
    for args in (["status"], ["set", "f1"]):
        code, out, err = cli(monkeypatch, capsys, *args, stdin=F1.token)
        assert (code, out) == (3, "")
        assert f"chmod 600 {secrets_file}" in err
    assert LEADER_TOKEN in secrets_file.read_text() and F1.token not in secrets_file.read_text()


def config_text_offline() -> str:
    return (f'[leader]\nclient_id = "{LEADER_ID}"\naccess_token_env = "LEADER_TOKEN"\n'
            f'api_url = "http://127.0.0.1:1/v2"\n\n[[followers]]\nname = "f1"\n'
            f'client_id = "{F1.client_id}"\naccess_token_env = "TOKEN_F1"\nmultiplier = 1.0\n'
            f'api_url = "http://127.0.0.1:1/v2"\n')


# ---- a running follow picks up a token set through the CLI ----------------------------------


def test_follow_resumes_on_a_token_set_through_the_cli(
        live_sim: Emulator, copytrade_home: Path) -> None:
    new_f2 = "tok-NEW-f2-piped-to-token-set-91c3"
    # f1 and the leader from the environment, f2 from secrets.toml (watched by follow)
    with follow_with_secrets(live_sim, copytrade_home, {F2.client_id: F2.token}) as run:
        run.wait_for(run.connected)
        live_sim.expire_token(F2.client_id)
        reply = run.leader_api.place_order("1333", "NSE_EQ", "BUY", 10, "MARKET", "CNC", 0)
        first = reply["data"]["orderId"]
        run.wait_for(lambda: run.mirror_states("f1") == ["FILLED"]
                     and "f2" in run.engine.status.stopped_followers)
        # The real command, a process of its own, the token on a pipe.
        result = subprocess.run(
            [sys.executable, "-m", "copytrade", "token", "set", "f2"], input=new_f2 + "\n",
            capture_output=True, text=True, timeout=CLI_TIMEOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("TOKEN_")})
        assert result.returncode == 0, result.stderr
        assert VALID.search(result.stdout) and result.stderr == ""
        run.wait_for(lambda: [(m.leader_order_id, m.state) for m in run.mirrors("f2")]
                     == [(first, "FILLED")], timeout=15)
        assert "f2" not in run.engine.status.stopped_followers
        assert len(run.audit("account_resumed")) == 1
        assert len(run.follower_book(F2)) == 1  # the refused place was never doubled
    assert run.failure == []
    assert secrets(copytrade_home) == {F2.client_id: new_f2}
    assert_no_token_leaked(copytrade_home, [F2.token, new_f2, F1.token, LEADER_TOKEN],
                           result.stdout, result.stderr)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a POSIX pseudo-terminal")
def test_on_a_terminal_the_token_is_asked_for_hidden(
        live_sim: Emulator, copytrade_home: Path) -> None:
    import select

    write_config(copytrade_home, config_text(live_sim, [F1]))
    parent, child = os.openpty()
    # A session of its own: no controlling terminal, so the prompt uses the pty on stdin.
    proc = subprocess.Popen([sys.executable, "-m", "copytrade", "token", "set", "f1"],
                            stdin=child, stdout=child, stderr=child, start_new_session=True)
    os.close(child)
    seen, typed = b"", False
    try:
        for _ in range(600):  # bounded: at most 600 waits of up to 0.1 s
            if not select.select([parent], [], [], 0.1)[0]:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(parent, 4096)
            except OSError:  # the command has exited and closed the terminal
                break
            seen += chunk
            if not typed and b"Access token for follower f1 (1000000002): " in seen:
                os.write(parent, NEW_F1.encode() + b"\r")  # echo is off once this shows
                typed = True
        assert proc.wait(timeout=CLI_TIMEOUT) == 0, seen
    finally:
        os.close(parent)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=CLI_TIMEOUT)
    assert VALID.search(seen.decode())
    assert NEW_F1.encode() not in seen  # typed, never echoed
    assert secrets(copytrade_home) == {F1.client_id: NEW_F1}
