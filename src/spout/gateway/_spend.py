"""What each key has spent, in USD: a ledger a restart finds again, shared by replicas.

Every response the gateway answers adds its cost (:attr:`spout.Response.cost`, the partial
response's for a stream cut short) to its key's total; a key whose keys-file line has
``max_spend=USD`` is refused once its total reached it (:meth:`spout.gateway.Guard.admit`).

Amounts are kept as whole nano-dollars (10^-9 USD), so that adding is exact and atomic where
they are kept, and a cheap call (a few tokens of a small model cost millionths of a dollar)
still counts. Two backends, one behaviour:

* :class:`FileLedger`: a SQLite file beside the keys file (``keys.txt`` -> ``keys.txt.spend``),
  mode 0600. Each charge is one ``INSERT ... ON CONFLICT DO UPDATE SET nano = nano + ?``: two
  responses ending at once (in one process or several on the host) both count, and a crash
  loses nothing committed (WAL journal, ``synchronous=NORMAL``:
  https://sqlite.org/pragma.html#pragma_synchronous).
* :class:`RedisLedger` (``--redis``): one integer per key, ``spout:spend:{<name>}``, raised
  with ``INCRBY`` (atomic on the server), so every replica sees every replica's spend. It is
  as durable as the Redis it is kept in (turn on AOF or RDB snapshots there).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

from .. import ConfigurationError

__all__ = ["FileLedger", "Ledger", "RedisLedger", "spend_path", "to_nano", "to_usd"]

#: Nano-dollars in a dollar.
NANO = 1_000_000_000
#: Seconds a writer waits for another's lock on the SQLite file.
BUSY_TIMEOUT = 10.0


def to_nano(usd: float) -> int:
    """USD as whole nano-dollars (rounded to the nearest).

    >>> to_nano(0.0000015)
    1500
    """
    return round(usd * NANO)


def to_usd(nano: int) -> float:
    """Nano-dollars as USD."""
    return nano / NANO


def spend_path(keys_file: Path) -> Path:
    """Where the spend of the keys in ``keys_file`` is kept without Redis: beside it.

    >>> spend_path(Path("/etc/spout/keys.txt")).name
    'keys.txt.spend'
    """
    return keys_file.with_name(keys_file.name + ".spend")


class Ledger(Protocol):
    """Where the spend of each key is kept."""

    async def spent(self, name: str) -> float:
        """The USD the key called ``name`` has spent (0 if nothing yet)."""
        ...

    async def add(self, name: str, usd: float) -> None:
        """Add ``usd`` to what ``name`` has spent."""
        ...

    async def aclose(self) -> None: ...


class FileLedger:
    """The spend of each key in a SQLite file (the default without ``--redis``).

    Example::

        ledger = FileLedger(spend_path(Path("keys.txt")))
        ledger.charge("alice", 0.0042)
        ledger.totals()   # {'alice': 0.0042}
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    def _opened(self) -> sqlite3.Connection:
        # Called with self._lock held.
        if self._connection is None:
            try:
                # Made user-private before SQLite opens it: it names every key.
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
                connection = sqlite3.connect(
                    self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
                )
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS spend (name TEXT PRIMARY KEY, "
                    "nano INTEGER NOT NULL) WITHOUT ROWID"
                )
            except (OSError, sqlite3.Error) as exc:
                raise ConfigurationError(
                    f"cannot open the spend ledger {self.path}: {exc}"
                ) from exc
            self._connection = connection
        return self._connection

    def charge(self, name: str, usd: float) -> None:
        """Add ``usd`` to ``name``'s spend, in this thread."""
        nano = to_nano(usd)
        if nano <= 0:
            return
        with self._lock:
            self._opened().execute(
                "INSERT INTO spend (name, nano) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET nano = nano + excluded.nano",
                (name, nano),
            )

    def spent_now(self, name: str) -> float:
        """``name``'s spend, read in this thread."""
        with self._lock:
            row = (
                self._opened().execute("SELECT nano FROM spend WHERE name = ?", (name,)).fetchone()
            )
        return to_usd(row[0]) if row else 0.0

    def totals(self) -> dict[str, float]:
        """Every key's spend, read in this thread (none if the file was never made)."""
        if self._connection is None and not self.path.exists():
            return {}
        with self._lock:
            rows = self._opened().execute("SELECT name, nano FROM spend").fetchall()
        return {name: to_usd(nano) for name, nano in rows}

    async def spent(self, name: str) -> float:
        return await asyncio.to_thread(self.spent_now, name)

    async def add(self, name: str, usd: float) -> None:
        await asyncio.to_thread(self.charge, name, usd)

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)


def redis_key(name: str, prefix: str = "spout:spend:") -> str:
    """The Redis key holding ``name``'s spend in nano-dollars.

    >>> redis_key("alice")
    'spout:spend:{alice}'
    """
    return f"{prefix}{{{name}}}"


class RedisLedger:
    """The spend of each key in Redis, shared by every gateway using it (``--redis``)."""

    def __init__(self, url: str, *, prefix: str = "spout:spend:") -> None:
        try:
            import redis.asyncio as redis
        except ModuleNotFoundError:  # pragma: no cover - the extra is installed in CI
            raise ConfigurationError(
                "--redis needs the redis extra: pip install 'spout[redis]'"
            ) from None
        self.prefix = prefix
        self._redis: Any = redis.Redis.from_url(url)

    async def spent(self, name: str) -> float:
        value = await self._redis.get(redis_key(name, self.prefix))
        return to_usd(int(value)) if value is not None else 0.0

    async def add(self, name: str, usd: float) -> None:
        nano = to_nano(usd)
        if nano > 0:
            await self._redis.incrby(redis_key(name, self.prefix), nano)

    async def aclose(self) -> None:
        await self._redis.aclose()


def redis_totals(url: str, names: list[str], *, prefix: str = "spout:spend:") -> dict[str, float]:
    """The spend of ``names`` kept in the Redis at ``url`` (for ``spout serve keys list``)."""
    try:
        import redis
    except ModuleNotFoundError:  # pragma: no cover - the extra is installed in CI
        raise ConfigurationError(
            "--redis needs the redis extra: pip install 'spout[redis]'"
        ) from None
    client: Any = redis.Redis.from_url(url)
    try:
        values = client.mget([redis_key(name, prefix) for name in names]) if names else []
    except redis.RedisError as exc:
        raise ConfigurationError(f"cannot read the spend from Redis at {url}: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            client.close()
    return {name: to_usd(int(value)) for name, value in zip(names, values, strict=True) if value}
