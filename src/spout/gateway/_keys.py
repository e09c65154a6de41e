"""The gateway's API keys file: names, SHA-256 hashes of the keys, optional per-key limits.

One key per line; ``#`` starts a comment; blank lines are ignored::

    # name:sha256:<hex SHA-256 of the key> [requests_per_minute=N] [tokens_per_minute=N]
    #     [max_spend=USD]
    alice:sha256:6f1ed002ab5595859014ebf0951522d9...
    batch-job:sha256:9c56cc51b374c3ba189210d5b6d4bf57... requests_per_minute=10
    intern:sha256:0b1c3d6fe2b8a1d0aa8e4a1f2b03c1c9... max_spend=25

The file never holds a key itself: ``spout serve keys add NAME --keys FILE`` makes a random
key, prints it once and appends its hash. A key is 256 random bits, so a plain (unsalted)
SHA-256 is enough to make the file useless to whoever reads it, the way GitHub and Stripe
store their tokens; a salted slow hash protects guessable passwords, which these are not.
A limit on a key's line overrides the gateway's ``[limits]`` for that key (0: no limit).
``max_spend`` is the USD the key may spend in all (see :mod:`._spend`), more than 0.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import ConfigurationError

__all__ = ["KeyEntry", "KeysFile", "add_key", "hash_key", "new_key", "read_keys", "remove_key"]

#: What a key looks like: a prefix that says what it is (secret scanners look for such
#: prefixes), then 43 URL-safe characters (256 bits).
KEY_PREFIX = "sk-spout-"
LIMIT_NAMES = ("requests_per_minute", "tokens_per_minute")
#: The USD a key may spend, in all.
SPEND_LIMIT = "max_spend"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}")
_HEX = re.compile(r"[0-9a-f]{64}")
_HEADER = (
    "# spout serve API keys: name:sha256:<hex SHA-256 of the key> [limit=N ...] "
    "[max_spend=USD]\n"
    "# Add one with: spout serve keys add NAME --keys FILE (the key is printed once).\n"
)


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One key in the file: its name, the hex SHA-256 of the key, its own limits (None:
    the gateway's) and the USD it may spend in all (None: no limit)."""

    name: str
    sha256: str
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_spend: float | None = None

    def line(self) -> str:
        return f"{self.name}:sha256:{self.sha256}{''.join(' ' + o for o in self.options())}\n"

    def options(self) -> list[str]:
        """The key's own limits as the file writes them: ``["max_spend=25"]``."""
        options = [
            f"{name}={getattr(self, name)}"
            for name in LIMIT_NAMES
            if getattr(self, name) is not None
        ]
        if self.max_spend is not None:
            options.append(f"{SPEND_LIMIT}={format_usd(self.max_spend)}")
        return options


def format_usd(amount: float) -> str:
    """``amount`` as the keys file writes it: ``25``, ``0.5``, ``12.75``.

    >>> format_usd(25.0), format_usd(0.125)
    ('25', '0.125')
    """
    return f"{amount:.9f}".rstrip("0").rstrip(".")


def parse_usd(text: str) -> float | None:
    """A spend limit in USD (a number more than 0), or None if ``text`` is not one."""
    try:
        amount = float(text)
    except ValueError:
        return None
    return amount if math.isfinite(amount) and amount > 0 else None


def new_key() -> str:
    """A fresh random key: ``sk-spout-`` and 256 bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The hex SHA-256 of ``key``, as the keys file stores it."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def read_keys(path: Path) -> list[KeyEntry]:
    """The entries of a keys file; :class:`ConfigurationError` naming the line that is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read the keys file {path}: {exc}") from exc
    entries: list[KeyEntry] = []
    names: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}, line {number}"
        head, *options = line.split()
        name, _, rest = head.partition(":")
        scheme, _, digest = rest.partition(":")
        if not _NAME.fullmatch(name) or scheme != "sha256" or not _HEX.fullmatch(digest):
            # Never echo the line: a key pasted in by mistake must not reach a log.
            raise ConfigurationError(
                f"{where}: expected name:sha256:<64 lower-case hex digits> (a hash, not a key; "
                "make keys with spout serve keys add)"
            )
        if name in names:
            raise ConfigurationError(f"{where}: the name {name!r} is used twice")
        names.add(name)
        limits: dict[str, Any] = {}
        for option in options:
            key, _, value = option.partition("=")
            if key == SPEND_LIMIT:
                amount = parse_usd(value)
                if amount is None:
                    raise ConfigurationError(
                        f"{where}: {SPEND_LIMIT} must be an amount in USD more than 0, "
                        f"not {value!r}"
                    )
                limits[key] = amount
                continue
            if key not in LIMIT_NAMES or not value.isdigit():
                raise ConfigurationError(
                    f"{where}: {key!r} is not a limit; known: "
                    + ", ".join(f"{limit}=N" for limit in LIMIT_NAMES)
                    + f", {SPEND_LIMIT}=USD"
                )
            limits[key] = int(value)
        entries.append(KeyEntry(name, digest, **limits))
    return entries


def add_key(
    path: Path,
    name: str,
    *,
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
    max_spend: float | None = None,
) -> str:
    """Make a key named ``name``, append its hash to ``path`` (created, mode 0600, if
    missing) and return the key: the only time it exists in clear.

    Example::

        key = add_key(Path("keys.txt"), "intern", max_spend=25.0)   # at most 25 USD
    """
    if max_spend is not None and parse_usd(str(max_spend)) is None:
        raise ConfigurationError(f"a spend limit is an amount in USD more than 0, not {max_spend}")
    if not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"a key name is 1-64 letters, digits and . _ @ + - (starting with a letter or "
            f"digit), not {name!r}"
        )
    exists = path.exists()
    if exists and any(entry.name == name for entry in read_keys(path)):
        raise ConfigurationError(f"{path} already has a key named {name!r}")
    key = new_key()
    entry = KeyEntry(name, hash_key(key), requests_per_minute, tokens_per_minute, max_spend)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        if not exists:
            out.write(_HEADER)
        elif not path.read_bytes().endswith(b"\n") and path.stat().st_size:
            out.write("\n")
        out.write(entry.line())
    return key


def remove_key(path: Path, name: str) -> bool:
    """Remove the key named ``name`` from ``path``; False if there was none."""
    read_keys(path)  # refuse to rewrite a file that does not parse
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if line.split("#", 1)[0].strip().split(":", 1)[0] != name]
    if len(kept) == len(lines):
        return False
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.writelines(kept)
    os.replace(temporary, path)
    return True


class KeysFile:
    """The keys of a file, read again when the file changes (so ``keys add`` and
    ``keys remove`` take effect without a restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = self._stat()
        self.entries = read_keys(path)

    def _stat(self) -> tuple[int, int, int]:
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the keys file {self.path}: {exc}") from exc
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def refresh(self) -> None:
        """Read the file again if it changed; a file that became unreadable or wrong raises
        :class:`ConfigurationError` and leaves the keys as they were."""
        stamp = self._stat()
        if stamp != self._stamp:
            self.entries = read_keys(self.path)
            self._stamp = stamp

    def find(self, key: str) -> KeyEntry | None:
        """The entry whose hash is ``key``'s. Compares every entry in constant time."""
        digest = hash_key(key)
        found = None
        for entry in self.entries:
            if hmac.compare_digest(entry.sha256, digest):
                found = entry
        return found
