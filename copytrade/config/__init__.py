"""copytrade.toml: the leader, its followers and the settings, read and checked.

Three steps, each usable alone:

- load_config() parses the file and checks its structure (known keys, types,
  every number within its RANGES entry, one sizing mode per follower). The first
  mistake is a ConfigError of one line naming the key, e.g. "copytrade.toml:
  followers[1] (family-2).multipler: unknown key (did you mean 'multiplier'?)".
- validate() finds everything else that can be known before market open (tokens
  and their shape, duplicate accounts, URLs, egress, lists) and returns all of it as
  Problems, so `copytrade config validate` can show every mistake at once.
  require_valid() is the same check for commands that go on to trade.
- resolve_tokens() reads each account's access token from its environment
  variable or the secrets file, wrapped in Secret so it cannot leak into logs.

Tokens never live in copytrade.toml and never appear in an error message.

One module per job: model (the data, defaults and ranges), table (typed TOML
getters), load, tokens, urls, validate, show (redacted, for `config show`).
"""

from copytrade.config.load import load_config
from copytrade.config.model import (
    DEFAULT_API_URL,
    DEFAULT_INSTRUMENTS_URL,
    DEFAULT_ORDER_WS_URL,
    RANGES,
    AccountConfig,
    Config,
    Egress,
    FollowerConfig,
    Problem,
    Settings,
    Sizing,
)
from copytrade.config.show import redacted
from copytrade.config.tokens import TOKEN_LENGTH, resolve_tokens, token_sources
from copytrade.config.validate import problem_counts, require_valid, validate
from copytrade.secret import Secret

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_INSTRUMENTS_URL",
    "DEFAULT_ORDER_WS_URL",
    "RANGES",
    "TOKEN_LENGTH",
    "AccountConfig",
    "Config",
    "Egress",
    "FollowerConfig",
    "Problem",
    "Secret",
    "Settings",
    "Sizing",
    "load_config",
    "problem_counts",
    "redacted",
    "require_valid",
    "resolve_tokens",
    "token_sources",
    "validate",
]
