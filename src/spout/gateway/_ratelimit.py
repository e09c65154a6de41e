"""Rate-limit counters: requests and output tokens per caller over a sliding minute.

Each caller has a log of what it used in the last window (a timestamp per request; a
timestamp and a count per response's tokens). A request is refused while the log already
holds ``requests_per_minute`` requests, or ``tokens_per_minute`` tokens or more; the answer
says how long until enough of the log ages out, which becomes the ``Retry-After``. Output
tokens are only known once a response ends, so they are charged then and a caller can
overshoot its token budget by one response; the next request then waits.

Three backends, one behaviour: :class:`MemoryCounters` (one process),
:class:`SqliteCounters` (a SQLite file shared by the workers of ``spout serve --workers N``,
each decision one write transaction) and :class:`RedisCounters` (sorted sets updated by Lua
scripts, timed by the Redis server's clock, so replicas sharing a Redis share each caller's
counts).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = ["Counters", "MemoryCounters", "RedisCounters", "Refusal", "SqliteCounters"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request must wait: which limit (``"requests"`` or ``"tokens"``), and the seconds
    until the window has room again."""

    limit: Literal["requests", "tokens"]
    retry_after: float


class Counters(Protocol):
    async def admit(
        self, name: str, requests_per_minute: int, tokens_per_minute: int
    ) -> Refusal | None:
        """Count one request by ``name`` if both limits allow it (0: no limit); else why not."""
        ...

    async def charge(self, name: str, tokens: int) -> None:
        """Count ``tokens`` output tokens used by ``name`` now."""
        ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class _Usage:
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_total: int = 0

    def trim(self, horizon: float) -> None:
        while self.requests and self.requests[0] <= horizon:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= horizon:
            self.token_total -= self.tokens.popleft()[1]


class MemoryCounters:
    """Counters in this process (the default without ``--redis``)."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._usage: dict[str, _Usage] = {}
        self._next_sweep = time.monotonic() + window

    async def admit(
        self, name: str, requests_per_minute: int, tokens_per_minute: int
    ) -> Refusal | None:
        now = time.monotonic()
        self._sweep(now)
        usage = self._usage.setdefault(name, _Usage())
        usage.trim(now - self.window)
        if tokens_per_minute and usage.token_total >= tokens_per_minute:
            left = usage.token_total
            for at, tokens in usage.tokens:
                left -= tokens
                if left < tokens_per_minute:
                    return Refusal("tokens", at + self.window - now)
        if requests_per_minute:
            if len(usage.requests) >= requests_per_minute:
                frees = usage.requests[len(usage.requests) - requests_per_minute]
                return Refusal("requests", frees + self.window - now)
            usage.requests.append(now)
        return None

    async def charge(self, name: str, tokens: int) -> None:
        usage = self._usage.setdefault(name, _Usage())
        usage.tokens.append((time.monotonic(), tokens))
        usage.token_total += tokens

    def _sweep(self, now: float) -> None:
        # Forget callers with nothing in their window, so many client addresses seen once
        # do not pile up.
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.window
        for name, usage in list(self._usage.items()):
            usage.trim(now - self.window)
            if not usage.requests and not usage.tokens:
                del self._usage[name]

    async def aclose(self) -> None:
        self._usage.clear()


class SqliteCounters:
    """Counters in a SQLite file, shared by every process that opens it: the workers of
    ``spout serve --workers N`` without ``--redis``. Each :meth:`admit` is one ``BEGIN
    IMMEDIATE`` transaction (the file's write lock), so two workers never both admit a
    request only one more fits; times are the wall clock, which the processes share."""

    def __init__(self, path: os.PathLike[str] | str, *, window: float = 60.0) -> None:
        self.window = window
        # Made user-private before SQLite opens it: it names every caller.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
        # Counts lost to a power cut are harmless: no fsync per request.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE IF NOT EXISTS requests (name TEXT NOT NULL, at REAL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS requests_at ON requests (name, at)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS tokens (name TEXT NOT NULL, at REAL, n INTEGER)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS tokens_at ON tokens (name, at)")
        self._next_sweep = time.time() + window

    async def admit(
        self, name: str, requests_per_minute: int, tokens_per_minute: int
    ) -> Refusal | None:
        db = self._db
        now = time.time()
        horizon = now - self.window
        db.execute("BEGIN IMMEDIATE")
        try:
            if now >= self._next_sweep:  # callers seen once do not pile up
                self._next_sweep = now + self.window
                db.execute("DELETE FROM requests WHERE at <= ?", (horizon,))
                db.execute("DELETE FROM tokens WHERE at <= ?", (horizon,))
            refusal = self._refusal(name, requests_per_minute, tokens_per_minute, now)
            if refusal is None and requests_per_minute:
                db.execute("INSERT INTO requests VALUES (?, ?)", (name, now))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return refusal

    def _refusal(self, name: str, rpm: int, tpm: int, now: float) -> Refusal | None:
        horizon = now - self.window
        if tpm:
            rows = self._db.execute(
                "SELECT at, n FROM tokens WHERE name = ? AND at > ? ORDER BY at", (name, horizon)
            ).fetchall()
            left = sum(tokens for _, tokens in rows)
            if left >= tpm:
                for at, tokens in rows:
                    left -= tokens
                    if left < tpm:
                        return Refusal("tokens", at + self.window - now)
        if rpm:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM requests WHERE name = ? AND at > ?", (name, horizon)
            ).fetchone()
            if count >= rpm:
                (frees,) = self._db.execute(
                    "SELECT at FROM requests WHERE name = ? AND at > ? ORDER BY at "
                    "LIMIT 1 OFFSET ?",
                    (name, horizon, count - rpm),
                ).fetchone()
                return Refusal("requests", frees + self.window - now)
        return None

    async def charge(self, name: str, tokens: int) -> None:
        self._db.execute("INSERT INTO tokens VALUES (?, ?, ?)", (name, time.time(), tokens))

    def close(self) -> None:
        """Close the file (what :meth:`aclose` does, outside an event loop)."""
        self._db.close()

    async def aclose(self) -> None:
        self.close()


# KEYS: the caller's request log, its token log. ARGV: window (ms), requests per minute,
# tokens per minute, a unique member for this request. Returns {0, 0} if admitted (and
# logged), {1, ms} if the request limit refuses it, {2, ms} if the token limit does.
_ADMIT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local window = tonumber(ARGV[1])
local rpm = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
if tpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local used = 0
  for i = 1, #entries, 2 do
    used = used + tonumber(string.match(entries[i], '^(%d+):'))
  end
  if used >= tpm then
    for i = 1, #entries, 2 do
      used = used - tonumber(string.match(entries[i], '^(%d+):'))
      if used < tpm then
        return {2, tonumber(entries[i + 1]) + window - now}
      end
    end
  end
end
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[1])
  if count >= rpm then
    local frees = redis.call('ZRANGE', KEYS[1], count - rpm, count - rpm, 'WITHSCORES')
    return {1, tonumber(frees[2]) + window - now}
  end
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
end
return {0, 0}
"""

# KEYS: the caller's token log. ARGV: window (ms), tokens, a unique suffix.
_CHARGE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[2] .. ':' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 0
"""


class RedisCounters:
    """Counters in Redis, shared by every gateway using the same Redis (``--redis``).

    Keys are ``spout:limits:{<caller>}:requests`` and ``...:tokens`` (sorted sets that
    expire one window after their last use); the braces keep a caller's two keys in one
    Redis Cluster slot.
    """

    def __init__(self, url: str, *, window: float = 60.0, prefix: str = "spout:limits:") -> None:
        try:
            import redis.asyncio as redis
        except ModuleNotFoundError:  # pragma: no cover - the extra is installed in CI
            from .. import ConfigurationError

            raise ConfigurationError(
                "--redis needs the redis extra: pip install 'spout[redis]'"
            ) from None
        self.window = window
        self.prefix = prefix
        self._redis: Any = redis.Redis.from_url(url)
        self._admit = self._redis.register_script(_ADMIT)
        self._charge = self._redis.register_script(_CHARGE)

    def _keys(self, name: str) -> list[str]:
        base = f"{self.prefix}{{{name}}}:"
        return [base + "requests", base + "tokens"]

    async def admit(
        self, name: str, requests_per_minute: int, tokens_per_minute: int
    ) -> Refusal | None:
        verdict, wait_ms = await self._admit(
            keys=self._keys(name),
            args=[
                int(self.window * 1000),
                requests_per_minute,
                tokens_per_minute,
                secrets.token_hex(8),
            ],
        )
        if verdict == 0:
            return None
        return Refusal("requests" if verdict == 1 else "tokens", max(0, int(wait_ms)) / 1000)

    async def charge(self, name: str, tokens: int) -> None:
        await self._charge(
            keys=self._keys(name)[1:],
            args=[int(self.window * 1000), tokens, secrets.token_hex(8)],
        )

    async def aclose(self) -> None:
        await self._redis.aclose()
