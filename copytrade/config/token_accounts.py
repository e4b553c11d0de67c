"""The accounts `copytrade token` names (the leader, each follower) and where each one's
token comes from now: the configuration, the environment and the secrets file are handed
in, nothing is read here. No message quotes a token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from copytrade.config.model import AccountConfig, Config, TokenSource, served_elsewhere
from copytrade.config.tokens import TOKEN_LENGTH, account_token, token_shape_problem
from copytrade.errors import ConfigError, NotFoundError, UsageError
from copytrade.secret import Secret


@dataclass(frozen=True)
class TokenAccount:
    role: Literal["leader", "follower"]
    name: str | None  # the follower's name; None for the leader
    account: AccountConfig
    enabled: bool = True  # a disabled follower needs no token

    @property
    def client_id(self) -> str:
        return self.account.client_id

    @property
    def label(self) -> str:
        """`leader`, `follower f1`: how messages name the account."""
        return "leader" if self.role == "leader" else f"follower {self.name}"


def token_accounts(config: Config) -> list[TokenAccount]:
    """The leader, then each follower in file order (disabled ones too); with [bus] mode =
    "nats" only those whose tokens this host uses (as config.model.accounts)."""
    found = [] if config.bus.is_agent else [TokenAccount("leader", None, config.leader)]
    found += [TokenAccount("follower", f.name, f.account, f.enabled) for f in config.followers
              if not served_elsewhere(config, f)]
    return found


def find_account(config: Config, wanted: str) -> TokenAccount:
    """`leader`, a follower's name (any case) or a client id; NotFoundError naming the
    choices otherwise."""
    text = wanted.strip()
    candidates = token_accounts(config)
    for matches in (
        lambda a: a.role == "leader" and text.lower() == "leader",
        lambda a: a.name is not None and a.name.lower() == text.lower(),
        lambda a: a.client_id == text,
    ):
        found = [a for a in candidates if matches(a)]
        if found:
            return found[0]
    roles = ["leader"] if any(a.role == "leader" for a in candidates) else []
    names = ", ".join([*roles, *(a.name for a in candidates if a.name)])
    ids = ", ".join(a.client_id for a in candidates)
    raise NotFoundError(f"no account {_shown(text)} in {config.source}: name one of {names}, "
                        f"or a client id ({ids})")


def _shown(text: str) -> str:
    """The name asked for, quoted only if it is too short to be a token: someone may
    have put the token itself on the command line, and it must not be echoed."""
    if len(text) < TOKEN_LENGTH[0]:
        return repr(text)
    return (f"by that name (not shown: {len(text)} characters, as long as a token; a token "
            "is never taken from the command line, paste it at the prompt)")


@dataclass(frozen=True)
class TokenOrigin:
    """Where an account's token comes from now, and the token (None: none anywhere)."""

    account: TokenAccount
    token: Secret | None = field(repr=False)
    source: TokenSource | None
    problem: str = ""  # the token there is malformed: what is wrong (never the token)

    @property
    def source_text(self) -> str:
        """`env NAME`, `secrets file` or `MISSING`, as `config show` says it."""
        if self.source == "env":
            return f"env {self.account.account.access_token_env}"
        return self.source or "MISSING"


def token_origins(config: Config, environ: Mapping[str, str],
                  file_tokens: Mapping[str, Secret]) -> list[TokenOrigin]:
    """Each account's token as follow would choose it: its environment variable, else the
    secrets file; a malformed one is reported, not raised, so every account is seen."""
    origins = []
    for account in token_accounts(config):
        try:
            token, source = account_token(account.account, environ, file_tokens)
        except ConfigError as exc:
            source = "env" if env_token_set(account.account, environ) else "secrets file"
            origins.append(TokenOrigin(account, None, source, exc.message))
            continue
        origins.append(TokenOrigin(account, token, source))
    return origins


def env_token_set(account: AccountConfig, environ: Mapping[str, str]) -> bool:
    """The account's variable holds a token: it wins over the secrets file (an empty one
    counts as unset, as when tokens are resolved)."""
    return bool(environ.get(account.access_token_env, "").strip())


def typed_token(text: str, label: str) -> str:
    """The token a person typed or piped in, surrounding whitespace removed; UsageError
    if there is none or it cannot be a Dhan token (more than one line included)."""
    token = text.strip()
    if not token:
        raise UsageError(f"no token given for {label}: type it at the prompt, or pipe it "
                         "on stdin (copytrade token set ACCOUNT < file)")
    problem = token_shape_problem(token)
    if problem:
        low, high = TOKEN_LENGTH
        raise UsageError(f"the token given for {label} {problem}; a Dhan access token is "
                         f"{low} to {high} printable ASCII characters on one line, without "
                         "spaces: copy it again (nothing was saved; it is not shown here)")
    return token
