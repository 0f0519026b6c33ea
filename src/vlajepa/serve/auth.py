"""API keys for the policy server: the key file, the handshake check, and keeping keys out of logs.

A key travels in the websocket handshake as ``Authorization: Api-Key <key>``, the header openpi's
``WebsocketClientPolicy(api_key=...)`` sends. Keys come from a file, never from the command line (where other
users of the machine can read them in the process list) and never from the URL (query strings end up in proxy
and shell histories; the server ignores them). The file holds one key per line; blank lines and lines starting
with ``#`` are ignored, so keys can be rotated by adding the new one, moving clients over, then removing the old.

The server compares the SHA-256 digest of a presented key with every configured key's using
:func:`hmac.compare_digest`, without stopping at the first match, so the time a check takes tells an attacker
neither how much of a key was right, nor its length, nor which key was close. websockets logs request headers
at DEBUG level; :class:`RedactAuthorization` is attached to the loggers the server and client hand to
websockets, so a key never reaches a log at any level.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

AUTH_HEADER = "Authorization"
AUTH_SCHEME = "Api-Key"
API_KEY_ENV = "VLAJEPA_API_KEY"  # the client's fallback when no key is given (see vlajepa.serve.client)
MIN_KEY_LENGTH = 16
_MAX_KEY_LENGTH = 1024


class ApiKeyError(ValueError):
    """A key file that cannot be used; the message names the file and line, never the key."""


class ApiKeys:
    """The set of accepted keys. Its ``repr`` never shows them."""

    def __init__(self, keys: list[str] | tuple[str, ...]) -> None:
        if not keys:
            raise ApiKeyError("no API keys given")
        for index, key in enumerate(keys, 1):
            _check_key(key, f"key {index}")
        # Digests, so comparisons take the same time whatever the presented key's length.
        self._digests = tuple(_digest(key.encode("utf-8")) for key in keys)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"ApiKeys(<{len(self._digests)} redacted>)"

    @classmethod
    def from_file(cls, path: str | Path) -> ApiKeys:
        """Read the key file at ``path`` (one key per line; ``#`` comments and blank lines ignored)."""
        return cls(read_key_file(path))

    def accepts(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries one of the keys (constant time per key)."""
        if authorization is None:
            return False
        scheme, _, presented = authorization.strip().partition(" ")
        presented_digest = _digest(presented.strip().encode("utf-8", "replace"))
        matched = False
        for digest in self._digests:  # no early exit: every key is compared on every check
            matched |= hmac.compare_digest(presented_digest, digest)
        return matched and scheme.lower() == AUTH_SCHEME.lower()


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def _check_key(key: str, where: str) -> None:
    if len(key) < MIN_KEY_LENGTH:
        raise ApiKeyError(f"{where}: API keys must have at least {MIN_KEY_LENGTH} characters")
    if len(key) > _MAX_KEY_LENGTH:
        raise ApiKeyError(f"{where}: API keys may have at most {_MAX_KEY_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in key) or not key.isascii():
        raise ApiKeyError(f"{where}: API keys must be printable ASCII without spaces")


def read_key_file(path: str | Path) -> list[str]:
    """The keys in ``path``, in order. Warns when the file is readable by other users."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as err:
        raise ApiKeyError(f"cannot read the API key file {path}: {err}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("the API key file %s is readable by other users; chmod 600 it", path)
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            _check_key(line, f"{path} line {number}")
            keys.append(line)
    if not keys:
        raise ApiKeyError(f"the API key file {path} holds no key (one key per line)")
    return keys


def client_api_key(api_key: str | None = None, api_key_file: str | Path | None = None) -> str | None:
    """The key a client sends: ``api_key``, else the first key of ``api_key_file``, else ``$VLAJEPA_API_KEY``,
    else none."""
    if api_key is not None and api_key_file is not None:
        raise ValueError("give an API key or a key file, not both")
    if api_key is None and api_key_file is not None:
        api_key = read_key_file(api_key_file)[0]
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV) or None
    if api_key is not None:
        _check_key(api_key, "the client's API key" if api_key_file is None else str(api_key_file))
    return api_key


def authorization_header(api_key: str) -> dict[str, str]:
    """The handshake header that carries ``api_key``."""
    return {AUTH_HEADER: f"{AUTH_SCHEME} {api_key}"}


class RedactAuthorization(logging.Filter):
    """Replaces the value of a logged ``Authorization`` header (websockets logs headers as ``"%s: %s"``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() == AUTH_HEADER.lower():
            record.args = (args[0], "[redacted]")
        return True


def redacted_logger(name: str) -> logging.Logger:
    """A logger for websockets whose handshake debug lines never show an ``Authorization`` value."""
    named = logging.getLogger(name)
    if not any(isinstance(f, RedactAuthorization) for f in named.filters):
        named.addFilter(RedactAuthorization())
    return named
