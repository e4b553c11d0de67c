"""[bus] (issue 12): reading it, checking it, the followers' `remote`, whose tokens each host
needs, the credentials file, and what `config show` and `follow` make of it."""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path

import certifi
import pytest

from copytrade.cli.app import run
from copytrade.cli.exit_codes import ExitCode
from copytrade.config import load_config, redacted, require_valid, resolve_tokens, validate
from copytrade.config.bus import (
    BusConfig,
    connect_options,
    consumer_name,
    read_bus_credentials,
    refuse_served_elsewhere,
)
from copytrade.config.model import Problem, accounts
from copytrade.errors import ConfigError
from copytrade.home import write_private_file

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")

PASSWORD = "pw-BUS-SECRET-7d3f1c0a9b8e6d5c4b3a2f1e"  # distinctive: any leak is a substring
LEADER_TOKEN = "tok-LEADER-5f2a9c"
A_TOKEN = "tok-FOLLOWER-A-8d1e07"
B_TOKEN = "tok-FOLLOWER-B-c3b6a4"

LEADER = '[leader]\nclient_id = "1000000001"\naccess_token_env = "T_LEADER"\n'
FOLLOWER_A = ('[[followers]]\nname = "A"\nclient_id = "1000000002"\naccess_token_env = "T_A"\n'
              'multiplier = 1.0\nsource_address = "192.0.2.11"\n')
FOLLOWER_B = ('[[followers]]\nname = "B"\nclient_id = "1000000003"\naccess_token_env = "T_B"\n'
              'fixed_lots = 1\nsource_address = "192.0.2.12"\n')
LEADER_BUS = '[bus]\nmode = "nats"\nurl = "nats://127.0.0.1:4222"\nrole = "leader"\n'
AGENT_BUS = ('[bus]\nmode = "nats"\nurl = "nats://127.0.0.1:4222"\nrole = "agent"\n'
             'follower = "A"\n')


def config(path: Path, *parts: str) -> Path:
    path.write_text("\n".join(parts))
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tmp_path / "copytrade.toml"


def errors(problems: list[Problem]) -> list[str]:
    return [f"{p.where}: {p.message}" for p in problems if p.level == "error"]


def warnings(problems: list[Problem]) -> list[str]:
    return [f"{p.where}: {p.message}" for p in problems if p.level == "warning"]


def creds(path: Path, text: str, mode: int = 0o600) -> Path:
    write_private_file(path, text)
    path.chmod(mode)
    return path


# --- reading [bus] ---------------------------------------------------------------------------


def test_without_bus_the_mode_is_embedded_and_nothing_changes(config_file: Path) -> None:
    loaded = load_config(config(config_file, LEADER, FOLLOWER_A))
    assert loaded.bus == BusConfig()
    assert loaded.bus.mode == "embedded" and not loaded.bus.is_nats
    assert [where for where, _account, _required in accounts(loaded)] == [
        "leader", "followers[0] (A)"]
    assert loaded.local_followers == loaded.enabled_followers
    assert loaded.remote_followers == ()


def test_every_key_is_read_and_paths_are_relative_to_the_config(config_file: Path) -> None:
    text = (LEADER_BUS.replace("nats://127.0.0.1", "tls://bus.example") +
            'creds_file = "leader.creds"\nca_file = "~/ca.pem"\nstream = "CT_2"\n'
            'subject_prefix = "family.ct"\n')
    loaded = load_config(config(config_file, LEADER, FOLLOWER_A + "remote = true\n", text))
    assert loaded.bus == BusConfig(
        mode="nats", url="tls://bus.example:4222", role="leader",
        creds_file=config_file.parent / "leader.creds",
        ca_file=Path("~/ca.pem").expanduser(), stream="CT_2", subject_prefix="family.ct")
    assert loaded.followers[0].remote is True
    assert loaded.remote_followers == loaded.followers
    assert loaded.local_followers == ()
    bus = loaded.bus
    assert (bus.results_stream, bus.leader_subjects, bus.results_subjects) == (
        "CT_2_RESULTS", "family.ct.leader.>", "family.ct.results.>")
    assert bus.leader_subject("2026-11-30", "5001") == "family.ct.leader.20261130.5001"
    assert (bus.results_subject("A"), consumer_name("A")) == ("family.ct.results.A", "agent-A")


@pytest.mark.parametrize(("text", "message"), [
    ('[bus]\nrol = "leader"\n', "bus.rol: unknown key (did you mean 'role'?)"),
    ('[bus]\ntoken = "x"\n', "bus.token: tokens do not belong in copytrade.toml"),
    ('[bus]\nmode = "kafka"\n', "bus.mode: must be 'embedded' or 'nats', not 'kafka'"),
    ('[bus]\nmode = 1\n', "bus.mode: must be 'embedded' or 'nats', not a non-string"),
    ('[bus]\nmode = "nats"\nrole = "leader"\n', 'bus.url: missing (required with mode = "nats")'),
    ('[bus]\nmode = "nats"\nurl = "nats://h:1"\n', 'bus.role: missing (required with mode'),
    ('[bus]\nmode = "nats"\nurl = "nats://h:1"\nrole = "boss"\n', "bus.role: must be 'leader'"),
    (LEADER_BUS + 'follower = "A"\n', "bus.follower: only an agent names its follower"),
    (AGENT_BUS.replace('follower = "A"\n', ""), "bus.follower: missing (required)"),
    (AGENT_BUS.replace('"A"', '"a.b"'), "bus.follower: must be the name of a follower"),
    (LEADER_BUS + 'stream = "A.B"\n', "bus.stream: must be 1-32 letters"),
    (LEADER_BUS + 'stream = ""\n', "bus.stream: must not be empty"),
    (LEADER_BUS + 'subject_prefix = "ct.>"\n', "bus.subject_prefix: must be 1-4 words"),
    (LEADER_BUS + 'subject_prefix = "ct..x"\n', "bus.subject_prefix: must be 1-4 words"),
    (LEADER_BUS + f'subject_prefix = "{"x" * 65}"\n', "bus.subject_prefix: must be 1-4 words"),
    (LEADER_BUS + "creds_file = 5\n", "bus.creds_file: must be a string"),
    (LEADER_BUS + 'creds_file = "a\\u0000b"\n', "bus.creds_file: must be a file path without"),
    (LEADER_BUS + 'ca_file = "ca\\npem"\n', "bus.ca_file: must be a file path without"),
    (LEADER_BUS + 'ca_file = "~no-such-user-7f3a/ca.pem"\n', "bus.ca_file: starts with a ~"),
    (LEADER_BUS + "url = 4222\n", None),  # a duplicate key: the TOML itself is refused
    ("bus = 1\n", "bus: must be a table"),
    ('[bus]\nurl = ["nats://h:1"]\n', "bus.url: must be a string"),
])
def test_structural_mistakes_are_one_line_naming_the_key(
    config_file: Path, text: str, message: str | None
) -> None:
    body = [text, LEADER, FOLLOWER_A] if text.startswith("bus =") else [LEADER, FOLLOWER_A, text]
    with pytest.raises(ConfigError) as raised:
        load_config(config(config_file, *body))
    assert "\n" not in raised.value.message
    if message is not None:
        assert message in raised.value.message


def test_remote_is_a_follower_option_read_like_the_others(config_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"followers\[0\] \(A\)\.remote: must be true or false"):
        load_config(config(config_file, LEADER, FOLLOWER_A + 'remote = "yes"\n'))


# --- config validate: [bus] ---------------------------------------------------------------


@pytest.mark.parametrize(("url", "message"), [
    ("http://127.0.0.1:4222", "must be a tls:// (or nats://) URL with a host"),
    ("nats://", "must be a tls:// (or nats://) URL with a host"),
    ("nats://127.0.0.1:0", "port 0"),
    ("nats://127.0.0.1:99999", "not a valid URL"),
    ("nats://127.0.0.1:4222/path", "without a path or query"),
    ("nats://bus\x07host:4222", "control character at position 11"),
    (f"nats://leader:{PASSWORD}@127.0.0.1:4222", "holds a user or password"),
    (f"ftp://leader:{PASSWORD}@127.0.0.1:4222", "must be a tls:// (or nats://)"),
])
def test_a_bad_url_is_an_error_that_quotes_no_password(
    config_file: Path, url: str, message: str
) -> None:
    bus = LEADER_BUS.replace('"nats://127.0.0.1:4222"', json.dumps(url))
    loaded = load_config(config(config_file, LEADER, FOLLOWER_A + "remote = true\n", bus))
    found = errors(validate(loaded, {"T_LEADER": LEADER_TOKEN}))
    assert len(found) == 1 and found[0].startswith("bus.url: ")
    assert message in found[0]
    assert PASSWORD not in found[0]


def test_plain_nats_to_another_host_is_a_warning(config_file: Path) -> None:
    bus = LEADER_BUS.replace("127.0.0.1", "203.0.113.9")
    loaded = load_config(config(config_file, LEADER, FOLLOWER_A + "remote = true\n", bus))
    found = validate(loaded, {"T_LEADER": LEADER_TOKEN})
    assert errors(found) == []
    assert warnings(found) == [
        "bus.url: nats:// to 203.0.113.9 is unencrypted: the NATS password and every leader "
        "order travel in clear; use tls://",
        "bus.creds_file: not set: the server is reached without a user; `copytrade bus init` "
        "writes one file per user"]


def test_embedded_mode_warns_of_ignored_keys_and_refuses_remote_followers(
    config_file: Path,
) -> None:
    bus = '[bus]\nurl = "nats://127.0.0.1:4222"\nstream = "X"\n'
    loaded = load_config(config(config_file, LEADER, FOLLOWER_A + "remote = true\n", bus))
    found = validate(loaded, {"T_LEADER": LEADER_TOKEN, "T_A": A_TOKEN})
    assert errors(found) == [
        'followers[0] (A).remote: remote = true needs [bus] mode = "nats" with role = '
        '"leader"; set remote = false to mirror it from this host (its token is then needed '
        "here)"]
    assert warnings(found)[-2:] == ['bus.url: read only with mode = "nats"; ignored',
                                    'bus.stream: read only with mode = "nats"; ignored']


def test_a_leader_with_no_remote_follower_is_warned(config_file: Path) -> None:
    loaded = load_config(config(config_file, LEADER, FOLLOWER_A, LEADER_BUS))
    found = validate(loaded, {"T_LEADER": LEADER_TOKEN, "T_A": A_TOKEN})
    assert errors(found) == []
    assert warnings(found) == ["bus.role: no enabled follower has remote = true: every "
                               "follower is mirrored from this host, no agent is fed"]


def test_a_remote_follower_name_with_a_dot_is_refused(config_file: Path) -> None:
    dotted = FOLLOWER_A.replace('name = "A"', 'name = "a.b"') + "remote = true\n"
    loaded = load_config(config(config_file, LEADER, dotted, LEADER_BUS))
    assert errors(validate(loaded, {"T_LEADER": LEADER_TOKEN}))[0].startswith(
        "followers[0] (a.b).name: a follower served by an agent names its NATS consumer")


# --- whose tokens each host needs ---------------------------------------------------------


def test_a_leader_needs_no_token_for_a_remote_follower(config_file: Path) -> None:
    loaded = load_config(config(config_file, LEADER, FOLLOWER_A + "remote = true\n",
                                FOLLOWER_B, LEADER_BUS))
    environ = {"T_LEADER": LEADER_TOKEN, "T_B": B_TOKEN}  # no T_A: A's agent holds it
    assert [str(p) for p in validate(loaded, environ)] == []
    tokens = require_valid(loaded, environ)
    assert {cid: t.reveal() for cid, t in tokens.items()} == {
        "1000000001": LEADER_TOKEN, "1000000003": B_TOKEN}
    # Even a token that is there is not read for it: the leader's host does not use it.
    assert "1000000002" not in resolve_tokens(loaded, {**environ, "T_A": A_TOKEN})
    assert [f.name for f in loaded.local_followers] == ["B"]
    assert [f.name for f in loaded.remote_followers] == ["A"]


def test_a_local_follower_of_a_leader_still_needs_its_token(config_file: Path) -> None:
    loaded = load_config(config(config_file, LEADER, FOLLOWER_A + "remote = true\n",
                                FOLLOWER_B, LEADER_BUS))
    found = errors(validate(loaded, {"T_LEADER": LEADER_TOKEN}))
    assert len(found) == 1 and found[0].startswith("followers[1] (B): no access token")


def test_an_agent_needs_only_its_own_followers_token(config_file: Path) -> None:
    loaded = load_config(config(config_file, LEADER, FOLLOWER_A, AGENT_BUS))
    assert validate(loaded, {"T_A": A_TOKEN}) == []  # no leader token anywhere
    assert {cid: t.reveal() for cid, t in resolve_tokens(loaded, {"T_A": A_TOKEN}).items()} == {
        "1000000002": A_TOKEN}
    found = errors(validate(loaded, {}))
    assert len(found) == 1 and found[0].startswith("followers[0] (A): no access token")
    assert loaded.local_followers == loaded.followers


@pytest.mark.parametrize(("followers", "expected"), [
    ((FOLLOWER_B,), ["bus.follower: no [[followers]] table named 'A'"]),
    ((FOLLOWER_A + "enabled = false\n",), ["bus.follower: follower 'A' is disabled"]),
    ((FOLLOWER_A, FOLLOWER_B), ["followers[1] (B): an agent serves only its own follower"]),
])
def test_an_agent_serves_exactly_its_one_follower(
    config_file: Path, followers: tuple[str, ...], expected: list[str]
) -> None:
    loaded = load_config(config(config_file, LEADER, *followers, AGENT_BUS))
    found = errors(validate(loaded, {"T_A": A_TOKEN, "T_B": B_TOKEN}))
    for start in expected:
        assert any(line.startswith(start) for line in found), found


def test_remote_on_an_agent_is_only_a_warning(config_file: Path) -> None:
    loaded = load_config(config(config_file, LEADER, FOLLOWER_A + "remote = true\n", AGENT_BUS))
    found = validate(loaded, {"T_A": A_TOKEN})
    assert errors(found) == []
    assert warnings(found) == ["followers[0] (A).remote: read only by the leader; an agent "
                               "serves its follower itself"]


def test_an_agent_refuses_capital_ratio_sizing(config_file: Path) -> None:
    sized = FOLLOWER_A.replace("multiplier = 1.0", "capital_ratio = true")
    assert sized != FOLLOWER_A
    loaded = load_config(config(config_file, LEADER, sized, AGENT_BUS))
    assert errors(validate(loaded, {"T_A": A_TOKEN})) == [
        "followers[0] (A).sizing: capital_ratio needs the leader's funds, which an agent "
        "cannot read: use multiplier or fixed_lots"]


def test_replay_missed_on_an_agent_says_what_to_do_in_one_line(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config(config_file, LEADER, FOLLOWER_A, AGENT_BUS)
    monkeypatch.setenv("T_A", A_TOKEN)
    assert run(["replay-missed", "--since", "30m", "--config", str(config_file)]) == (
        ExitCode.USAGE)
    err = capsys.readouterr().err
    assert err.startswith("error: replay-missed reads the leader's account, which an agent "
                          "cannot: on an agent, restart follow") and err.count("\n") == 1


# --- the credentials file -----------------------------------------------------------------


@posix_only
def test_the_creds_file_must_exist_be_private_and_well_formed(
    config_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "leader.creds"
    bus = LEADER_BUS + 'creds_file = "leader.creds"\n'
    loaded = load_config(config(config_file, LEADER, FOLLOWER_A + "remote = true\n", bus))
    environ = {"T_LEADER": LEADER_TOKEN}

    def creds_errors() -> list[str]:
        return [e for e in errors(validate(loaded, environ)) if e.startswith("bus.creds_file")]

    assert creds_errors() == [f"bus.creds_file: {path} does not exist"]
    for text, message in [
        (f'user = "leader"\npassword = "{PASSWORD}"\n', None),
        (f'user = "leader"\npasword = "{PASSWORD}"\n', "pasword: unknown key (did you mean"),
        (f'user = "bad user"\npassword = "{PASSWORD}"\n', "user: must be 1-64 letters"),
        ('user = "leader"\n', "password: missing or not a string"),
        (f'user = "leader"\npassword = "{PASSWORD} x"\n', "must be printable ASCII"),
        (f'user = "leader"\npassword = "{PASSWORD}"\ninbox_prefix = "a.>"\n', "inbox_prefix"),
        (f'user = "leader"\npassword = "{PASSWORD}\n', "not a credentials file"),
        (b"\xff\xfe".decode("latin-1"), "not a credentials file"),
        ("#" * (70 * 1024), "bytes: not a credentials file"),
    ]:
        creds(path, text)
        found = creds_errors()
        assert found == [] if message is None else (len(found) == 1 and message in found[0])
        assert PASSWORD not in " ".join(found)
    path.chmod(0o644)
    assert "accessible to other users" in creds_errors()[0]


@posix_only
def test_three_creds_formats_and_what_nats_connect_is_given(tmp_path: Path) -> None:
    toml = creds(tmp_path / "a.creds", f'user = "agent-A"\npassword = "{PASSWORD}"\n'
                 'inbox_prefix = "_INBOX_agent-A"\n')
    line = creds(tmp_path / "b.creds", f"agent-B:{PASSWORD}\n")
    jwt = creds(tmp_path / "c.creds", "-----BEGIN NATS USER JWT-----\neyJ0...\n"
                "------END NATS USER JWT------\n")
    parsed = read_bus_credentials(toml)
    assert (parsed.user, parsed.inbox_prefix) == ("agent-A", "_INBOX_agent-A")
    assert PASSWORD not in repr(parsed)  # the password prints as ***
    assert read_bus_credentials(line).user == "agent-B"
    assert read_bus_credentials(jwt).nats_creds == jwt

    bus = BusConfig(mode="nats", url="nats://127.0.0.1:4222", role="agent", follower="A")
    assert connect_options(bus) == {"servers": ["nats://127.0.0.1:4222"]}
    assert connect_options(BusConfig(**{**bus.__dict__, "creds_file": toml})) == {
        "servers": ["nats://127.0.0.1:4222"], "user": "agent-A", "password": PASSWORD,
        "inbox_prefix": "_INBOX_agent-A"}
    assert connect_options(BusConfig(**{**bus.__dict__, "creds_file": jwt})) == {
        "servers": ["nats://127.0.0.1:4222"], "user_credentials": str(jwt)}


def test_a_ca_file_makes_a_tls_context_for_tls_urls_only() -> None:
    ca = Path(certifi.where())  # any CA bundle will do: ssl only has to read it
    tls = BusConfig(mode="nats", url="tls://bus.example:4222", role="leader", ca_file=ca)
    assert isinstance(connect_options(tls)["tls"], ssl.SSLContext)
    plain = BusConfig(**{**tls.__dict__, "url": "nats://127.0.0.1:4222"})
    assert "tls" not in connect_options(plain)


# --- config show --------------------------------------------------------------------------


@posix_only
def test_config_show_prints_bus_with_paths_never_file_contents(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    creds(tmp_path / "leader.creds", f'user = "leader"\npassword = "{PASSWORD}"\n')
    bus = LEADER_BUS + 'creds_file = "leader.creds"\n'
    config(config_file, LEADER, FOLLOWER_A + "remote = true\n", FOLLOWER_B, bus)
    assert run(["config", "show", "--config", str(config_file)]) == ExitCode.OK
    shown = capsys.readouterr().out
    assert PASSWORD not in shown
    assert "\n[bus]\nmode = \"nats\"\n" in shown
    assert f'creds_file = "{tmp_path / "leader.creds"}"' in shown
    assert "# follower: not set" in shown
    assert "# token: not needed here (served by another host)" in shown
    assert "remote = true" in shown
    copy = tmp_path / "shown.toml"
    copy.write_text(shown)
    assert load_config(copy).bus == load_config(config_file).bus  # still a valid config

    data = redacted(load_config(config_file), {})
    assert data["bus"]["creds_file"] == str(tmp_path / "leader.creds")
    assert PASSWORD not in json.dumps(data)


def test_config_show_on_an_agent_says_the_leader_token_is_not_needed(config_file: Path) -> None:
    data = redacted(load_config(config(config_file, LEADER, FOLLOWER_A, AGENT_BUS)), {})
    assert data["leader"]["token"].startswith("not needed on an agent")
    assert data["followers"][0]["token"] == "MISSING"
    assert data["bus"]["role"] == "agent" and data["bus"]["follower"] == "A"



def test_token_commands_name_only_the_accounts_whose_tokens_this_host_uses(
    config_file: Path,
) -> None:
    from copytrade.config.token_accounts import token_accounts

    leader = load_config(config(config_file, LEADER, FOLLOWER_A + "remote = true\n",
                                FOLLOWER_B, LEADER_BUS))
    assert [a.label for a in token_accounts(leader)] == ["leader", "follower B"]
    agent = load_config(config(config_file, LEADER, FOLLOWER_A, AGENT_BUS))
    assert [a.label for a in token_accounts(agent)] == ["follower A"]


@pytest.mark.parametrize("command", [
    ["cancel-mirror", "--all-open", "--follower", "a"],
    ["replay-missed", "--since", "30m", "--follower", "A"],
])
def test_a_command_for_a_follower_served_elsewhere_says_where_to_run_it(
        config_file: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    from copytrade.cli.app import run

    path = config(config_file, LEADER, FOLLOWER_A + "remote = true\n", FOLLOWER_B, LEADER_BUS)
    monkeypatch.setenv("T_LEADER", LEADER_TOKEN)
    monkeypatch.setenv("T_B", B_TOKEN)
    assert run([*command, "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == ("error: follower A is mirrored from another host ([bus] mode = \"nats\", "
                   "remote = true): run this command there\n")
    # a local follower is still taken: the check names only followers served elsewhere
    refuse_served_elsewhere(load_config(path), "B")


def test_token_set_on_an_agent_offers_only_the_accounts_it_holds(config_file: Path) -> None:
    from copytrade.config.token_accounts import find_account
    from copytrade.errors import NotFoundError

    loaded = load_config(config(config_file, LEADER, FOLLOWER_A, AGENT_BUS))
    assert find_account(loaded, "a").client_id == "1000000002"
    with pytest.raises(NotFoundError, match=r"name one of A, or a client id \(1000000002\)$"):
        find_account(loaded, "leader")
