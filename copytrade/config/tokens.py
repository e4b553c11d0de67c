"""Access tokens: from each account's environment variable or the secrets file.

Tokens never live in copytrade.toml and never appear in an error message: a message
says where a token was looked for and what is wrong with its shape, not what it is.
"""

from __future__ import annotations

import os
import re
import tomllib
import unicodedata
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

from copytrade.config.model import AccountConfig, Config, Problem, TokenSource, accounts
from copytrade.config.table import key_path, read_toml, unknown_key_message
from copytrade.errors import ConfigError
from copytrade.home import check_private_file, home_paths, write_private_file
from copytrade.secret import Secret

# A Dhan access token is a JWT (a few hundred characters of base64url and dots). The
# floor is low because the emulator takes any token; it still catches a client id or
# a truncated paste. Anything outside printable ASCII would end up in HTTP headers.
TOKEN_LENGTH = (16, 4096)


def resolve_tokens(
    config: Config,
    environ: Mapping[str, str] | None = None,
    *,
    secrets_file: Path | None = None,
) -> dict[str, Secret]:
    """client_id -> token for the leader and every follower that has one.

    Each token comes from the environment variable named by access_token_env,
    else from the secrets file's [tokens] table. A token missing or malformed
    for the leader or an enabled follower is a ConfigError; a disabled follower
    may lack one (a malformed one is then left out).
    """
    environ = os.environ if environ is None else environ
    secrets_path = secrets_file or home_paths().secrets_file
    file_tokens = read_secrets_file(secrets_path)
    tokens: dict[str, Secret] = {}
    for where, account, required in accounts(config):
        try:
            token = _token_from(account, environ, file_tokens)[0]
        except ConfigError as exc:
            if required:
                raise ConfigError(f"{where}: {exc.message}") from None
            continue
        if token is not None:
            tokens[account.client_id] = token
        elif required:
            raise ConfigError(f"{where}: {_missing_token_message(account, secrets_path)}")
    return tokens


def token_sources(
    config: Config,
    environ: Mapping[str, str] | None = None,
    *,
    secrets_file: Path | None = None,
) -> dict[str, TokenSource | None]:
    """client_id -> where its token would come from ("env", "secrets file"), or None.

    A malformed token is a ConfigError naming the account, as in resolve_tokens.
    """
    environ = os.environ if environ is None else environ
    file_tokens = read_secrets_file(secrets_file or home_paths().secrets_file)
    sources: dict[str, TokenSource | None] = {}
    for where, account, _required in accounts(config):
        try:
            sources[account.client_id] = _token_from(account, environ, file_tokens)[1]
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc.message}") from None
    return sources


def token_problems(
    config: Config, environ: Mapping[str, str] | None, secrets_file: Path | None
) -> Iterator[Problem]:
    """validate()'s share: each token missing, malformed or shared, and the secrets file."""
    environ = os.environ if environ is None else environ
    secrets_path = secrets_file or home_paths().secrets_file
    try:
        file_tokens = read_secrets_file(secrets_path)
    except ConfigError as exc:
        # Tokens may well be in the unreadable file: one error, not one per account.
        yield Problem("error", secrets_path.name, exc.message)
        return
    seen_env: dict[str, str] = {}
    for where, account, required in accounts(config):
        # A disabled follower's token is not used: missing or malformed, only a warning.
        level: Literal["error", "warning"] = "error" if required else "warning"
        try:
            source = _token_from(account, environ, file_tokens)[1]
        except ConfigError as exc:
            yield Problem(level, where, exc.message)
        else:
            if source is None:
                yield Problem(level, where, _missing_token_message(account, secrets_path))
        other = seen_env.setdefault(account.access_token_env, account.client_id)
        if other != account.client_id:
            yield Problem(
                "error",
                f"{where}.access_token_env",
                f"{account.access_token_env} is also "
                f"the token variable of client {other}; each account has its own token",
            )


def account_token(
    account: AccountConfig, environ: Mapping[str, str], file_tokens: Mapping[str, Secret]
) -> tuple[Secret | None, TokenSource | None]:
    """One account's token and where it comes from ((None, None): it has none), chosen as
    resolve_tokens chooses; a ConfigError (not naming the account) if it is malformed."""
    return _token_from(account, environ, file_tokens)


def token_shape_problem(token: str) -> str | None:
    """What is wrong with a token's shape ("is 9 characters long"), quoting none of it;
    None if it could be a Dhan token. Check before wrapping it in a Secret."""
    return _token_problem(token)


def read_secrets_file(path: Path) -> dict[str, Secret]:
    """The [tokens] table of secrets.toml; {} if there is no such file.

    A file other users could read is refused: it holds live trading credentials.
    """
    if not path.exists():
        return {}
    check_private_file(path)
    data = read_toml(path, missing_hint="")
    unknown = [key for key in data if key != "tokens"]
    if unknown:
        raise ConfigError(
            f"{path}: {key_path('', unknown[0])}: {unknown_key_message(unknown[0], ['tokens'])}"
        )
    table = data.get("tokens", {})
    if not isinstance(table, dict):
        raise ConfigError(f'{path}: tokens: must be a table ([tokens]) of client_id = "token"')
    tokens = {}
    for client_id, token in table.items():
        if not isinstance(token, str) or not token.strip():
            raise ConfigError(
                f"{path}: {key_path('tokens', client_id)}: must be a non-empty string"
            )
        tokens[client_id] = Secret(token.strip())
    return tokens


def store_token(path: Path, client_id: str, token: Secret) -> None:
    """Write `token` as client_id's in secrets.toml: atomically (a temporary 0600 file,
    fsynced, renamed over), so a reader never sees half a file, and the file stays 0600.

    The other lines (other accounts, comments) are kept; a file that cannot be edited in
    place is written anew with every token it held."""
    problem = _token_problem(token.reveal())
    if problem:
        raise ConfigError(f"the new token for client {client_id} {problem}: not written")
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if old:
        check_private_file(path)
    text = _with_token(old, client_id, token.reveal())
    if _tokens_in(text).get(client_id) != token.reveal():
        current = {k: v.reveal() for k, v in read_secrets_file(path).items()}
        text = _secrets_text({**current, client_id: token.reveal()})
    write_private_file(path, text)


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _with_token(text: str, client_id: str, token: str) -> str:
    """`text` with client_id's line under [tokens] replaced, or added after [tokens]."""
    line = f"{_toml_string(client_id)} = {_toml_string(token)}"
    key = re.compile(rf"""^\s*(?:"{re.escape(client_id)}"|'{re.escape(client_id)}'|"""
                     rf"""{re.escape(client_id)})\s*=""")
    lines = text.splitlines()
    for index, existing in enumerate(lines):
        if key.match(existing):
            lines[index] = line
            return "\n".join(lines) + "\n"
    for index, existing in enumerate(lines):
        if existing.strip() == "[tokens]":
            lines.insert(index + 1, line)
            return "\n".join(lines) + "\n"
    return (text.rstrip("\n") + "\n\n" if text.strip() else "") + f"[tokens]\n{line}\n"


def _tokens_in(text: str) -> dict[str, str]:
    try:
        table = tomllib.loads(text).get("tokens", {})
    except tomllib.TOMLDecodeError:
        return {}
    return table if isinstance(table, dict) else {}


def _secrets_text(tokens: Mapping[str, str]) -> str:
    lines = ["# Access tokens by client id; copytrade follow writes renewed ones here.",
             "[tokens]"]
    lines += [f"{_toml_string(k)} = {_toml_string(v)}" for k, v in tokens.items()]
    return "\n".join(lines) + "\n"


def _token_from(
    account: AccountConfig, environ: Mapping[str, str], file_tokens: Mapping[str, Secret]
) -> tuple[Secret | None, TokenSource | None]:
    """The account's token and its source; a ConfigError (without `where`) if malformed."""
    # An empty variable counts as unset: `export DHAN_F1_TOKEN=` should not hide the file's.
    from_env = environ.get(account.access_token_env, "").strip()
    if from_env:
        # Checked before it becomes a Secret: a Secret registers its value for redaction.
        _check_token(from_env, f"in the environment variable {account.access_token_env}")
        return Secret(from_env), "env"
    if account.client_id in file_tokens:
        token = file_tokens[account.client_id]
        _check_token(token.reveal(), f'in secrets.toml under [tokens] "{account.client_id}"')
        return token, "secrets file"
    return None, None


def _check_token(token: str, source: str) -> None:
    """Refuse a token that cannot be a Dhan token; the message quotes none of it."""
    problem = _token_problem(token)
    if problem:
        low, high = TOKEN_LENGTH
        raise ConfigError(
            f"the access token {source} {problem}; a Dhan access token is {low} to {high} "
            "printable ASCII characters without spaces: copy it again (it is not shown here)"
        )


def _token_problem(token: str) -> str | None:
    """What is wrong with a token's shape, by position and kind, never by character."""
    for position, char in enumerate(token, start=1):
        if not "!" <= char <= "~":
            return f"contains {_char_kind(char)} at position {position}"
    low, high = TOKEN_LENGTH
    if not low <= len(token) <= high:
        return f"is {len(token)} characters long"
    return None


def _char_kind(char: str) -> str:
    if unicodedata.category(char) == "Cc":
        return "a control character"
    if char.isspace():
        return "a space"
    return "a character that is not printable ASCII"


def _missing_token_message(account: AccountConfig, secrets_path: Path) -> str:
    return (
        f"no access token for client {account.client_id}: set the environment variable "
        f'{account.access_token_env}, or add "{account.client_id}" = "<token>" under '
        f"[tokens] in {secrets_path}"
    )
