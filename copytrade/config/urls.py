"""The URLs of copytrade.toml: what makes one unusable, and how to show one safely."""

from __future__ import annotations

import ipaddress
import unicodedata
from urllib.parse import urlsplit, urlunsplit


def url_problem(url: str) -> str | None:
    """What makes `url` unusable whatever its scheme: odd characters, a bad or empty port."""
    for position, char in enumerate(url, start=1):
        # urlsplit silently drops tabs and newlines; requests and websockets may not.
        if char.isspace() or unicodedata.category(char) == "Cc":
            return f"contains a space or control character at position {position}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"not a valid URL: {safe_url(url)!r}"
    if port is None and parts.netloc.endswith(":"):
        # urlsplit reads "ws://host:" as no port at all; the client would then fail late.
        return f"no port number after ':' in {safe_url(url)!r}; give a port from 1 to 65535"
    if port == 0:
        return f"port 0 in {safe_url(url)!r}; give a port from 1 to 65535"
    return None


def host(url: str) -> str | None:
    """host[:port] of a URL, or None if it has none (validate reports that separately)."""
    if url_problem(url):  # also any ValueError urlsplit would raise
        return None
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname


def is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def safe_url(url: str) -> str:
    """The URL with any password in it replaced: proxy URLs often carry credentials."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        # Host and port kept as written: a problem may be about them ("ws://u:p@host:").
        host_and_port = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host_and_port}"))
    except ValueError:
        return "(unparseable URL)" if "@" in url else url
