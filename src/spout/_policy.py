"""Timeouts and retries: what a caller configures, and the clock and rules that apply them."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import (
    ConnectionError,
    FirstTokenTimeout,
    IdleTimeout,
    ProviderError,
    SpoutError,
    StreamInterruptedError,
    TimeoutError,
    TotalTimeout,
)
from ._events import (
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)

__all__ = ["CallPolicy", "Deadline", "Retry", "Timeout"]

#: The events that count as content: what ``first_token`` waits for and ``idle`` spaces.
#: Pings, comments, usage and the like do not count.
CONTENT = frozenset(
    (TextDelta, ReasoningDelta, RefusalDelta, ToolCallStart, ToolCallDelta, ToolCallEnd)
)

#: Statuses a retry can fix: timeout, conflict, rate limit, and every server error.
RETRYABLE_STATUSES = frozenset((408, 409, 429))

#: The longest wait a server's ``Retry-After`` is taken at (a day): a longer one is broken or
#: hostile. (A wait over :attr:`Retry.max_retry_after` is never slept anyway.)
MAX_SERVER_WAIT = 86_400.0


def server_wait(seconds: object) -> float | None:
    """A wait a server asked for (``Retry-After``, ``retry-after-ms``), as one that can be
    slept: None for anything but a finite number (``nan``, ``inf``, ``1e400``: ignored, so the
    backoff applies), 0 for a negative one, and at most :data:`MAX_SERVER_WAIT`.

    The header comes from the network: ``-5`` made ``time.sleep`` raise a bare ValueError,
    ``-inf`` an OverflowError.

    >>> server_wait(-5.0), server_wait(float("nan")), server_wait(1e300), server_wait(2)
    (0.0, None, 86400.0, 2.0)
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return None
    if not math.isfinite(seconds):
        return None
    return min(max(float(seconds), 0.0), MAX_SERVER_WAIT)


@dataclass(frozen=True, slots=True)
class Timeout:
    """Time limits for a call, in seconds; None means no limit.

    ``connect``: to open the connection. ``first_token``: from sending the request to the first
    content (text, reasoning, a refusal or a tool call). ``idle``: the longest gap between
    content events; keep-alive pings and comments do not count. ``total``: the whole call,
    retries included. A plain number means ``total``.

    Example::

        llm = create_llm("openai", timeout=Timeout(connect=5, first_token=30, idle=10))
        llm.generate("hi", timeout=60)                     # this call: at most 60 s in all

    A timeout closes the connection and raises :class:`ConnectTimeout`,
    :class:`FirstTokenTimeout`, :class:`IdleTimeout` or :class:`TotalTimeout`, with the
    response so far on ``.partial``.
    """

    connect: float | None = None
    first_token: float | None = None
    idle: float | None = None
    total: float | None = None

    def __post_init__(self) -> None:
        for name in ("connect", "first_token", "idle", "total"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
            ):
                raise ValueError(
                    f"Timeout.{name} must be a positive number of seconds or None, not {value!r}"
                )

    @classmethod
    def coerce(cls, value: Any) -> Timeout:
        """A :class:`Timeout` from what a caller passed: a Timeout, a number (total), a mapping
        of its fields (a config file's table, ``{"first_token": 60, "idle": 30}``) or None."""
        if value is None:
            return cls()
        if isinstance(value, Timeout):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls(total=value)
        if isinstance(value, Mapping):
            unknown = sorted(str(name) for name in value if name not in _TIMEOUT_FIELDS)
            if unknown:
                raise ValueError(
                    f"timeout has no setting {', '.join(map(repr, unknown))}; its settings: "
                    + ", ".join(_TIMEOUT_FIELDS)
                )
            return cls(**value)
        raise TypeError(
            "timeout must be a Timeout, a number of seconds or a mapping of Timeout's fields, "
            f"not {value!r}"
        )

    def override(self, other: Timeout) -> Timeout:
        """These limits, with each one ``other`` sets taking its place (a call's over an LLM's)."""
        return Timeout(
            connect=other.connect if other.connect is not None else self.connect,
            first_token=other.first_token if other.first_token is not None else self.first_token,
            idle=other.idle if other.idle is not None else self.idle,
            total=other.total if other.total is not None else self.total,
        )


_TIMEOUT_FIELDS = ("connect", "first_token", "idle", "total")


@dataclass(frozen=True, slots=True)
class Retry:
    """How a call is retried when it fails before its first token.

    Retried: connection errors, a connection lost before any content, a first-token timeout,
    HTTP 408, 409, 429 and 5xx (with Anthropic's 529), and an overloaded or rate-limit error
    sent as the stream's first event. Never: other 4xx, which a retry cannot fix. The wait
    before retry ``n`` (from 0) is drawn uniformly from ``[0, min(max_delay, initial_delay *
    2**n)]`` ("full jitter"), or is that bound itself with ``jitter=False``; a ``Retry-After``
    (or ``retry-after-ms``) the server sent is waited instead, unless it is longer than
    ``max_retry_after``, when the error is raised at once; a negative one is 0, and one that
    is no finite number is ignored (:func:`server_wait`).

    Example::

        llm = create_llm("anthropic", max_retries=5)
        llm = create_llm("openai", retry=Retry(max_retries=3, initial_delay=1, max_delay=20))
    """

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    jitter: bool = True
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_retries, bool)
            or not isinstance(self.max_retries, int)
            or (self.max_retries < 0)
        ):
            raise ValueError(f"max_retries must be an int >= 0, not {self.max_retries!r}")
        for name in ("initial_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"Retry.{name} must be a number >= 0, not {value!r}")

    def delay(self, retry: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry number ``retry`` (from 0); None: do not retry."""
        # Checked again here: a provider of the caller's own may hand any value.
        retry_after = server_wait(retry_after)
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        bound = min(self.max_delay, self.initial_delay * 2**retry)
        return random.uniform(0, bound) if self.jitter else bound


def retryable(error: SpoutError) -> bool:
    """Whether a retry may fix ``error``, when it came before any content."""
    if isinstance(error, ProviderError):
        status = error.status_code
        if status is None:
            # An error event inside the stream: retry what the provider says is transient.
            from ._errors import OverloadedError, RateLimitError, ServiceUnavailableError

            return isinstance(error, (OverloadedError, RateLimitError, ServiceUnavailableError))
        return status in RETRYABLE_STATUSES or status >= 500
    return isinstance(error, (ConnectionError, StreamInterruptedError, FirstTokenTimeout)) or (
        type(error) is TimeoutError
    )


def resumable(error: SpoutError) -> bool:
    """Whether a stream cut by ``error`` after some text may go on in a new request."""
    if isinstance(error, (StreamInterruptedError, ConnectionError, IdleTimeout)):
        return True
    return isinstance(error, ProviderError) and retryable(error)


class Deadline:
    """The clock of one call: when each of its time limits runs out.

    The transport reads :meth:`next` before every socket read, so a read never waits past
    a limit; the stream driver calls :meth:`content` on every content event.
    """

    __slots__ = ("attempt_start", "first_token", "idle", "last_content", "timeout", "total_at")

    def __init__(self, timeout: Timeout) -> None:
        now = time.monotonic()
        self.timeout = timeout
        self.first_token = timeout.first_token
        self.idle = timeout.idle
        self.total_at = None if timeout.total is None else now + timeout.total
        self.attempt_start = now
        self.last_content: float | None = None

    @property
    def tracks_content(self) -> bool:
        """Whether events must be clocked: ``idle`` moves with content, ``total`` runs out.

        (The transport enforces both on HTTP reads; an in-process model is checked per event.)
        """
        return self.idle is not None or self.total_at is not None

    def check(self) -> None:
        """Raise the timeout error if a limit has run out."""
        at = self.next()
        if at is not None and time.monotonic() >= at:
            raise self.expired_error()

    def new_attempt(self) -> None:
        """A new request went out (a retry, a fallback, a resume): its first token is awaited."""
        self.attempt_start = time.monotonic()
        self.last_content = None

    def content(self) -> None:
        self.last_content = time.monotonic()

    def next(self) -> float | None:
        """The monotonic time the current wait must end by, or None for no limit."""
        limit = self.total_at
        if self.last_content is None:
            if self.first_token is not None:
                at = self.attempt_start + self.first_token
                limit = at if limit is None or at < limit else limit
        elif self.idle is not None:
            at = self.last_content + self.idle
            limit = at if limit is None or at < limit else limit
        return limit

    def remaining(self) -> float | None:
        at = self.next()
        return None if at is None else at - time.monotonic()

    def connect_timeout(self, default: float | None) -> float | None:
        """The connect limit: ``connect`` (or the default), never past the current deadline."""
        connect = self.timeout.connect if self.timeout.connect is not None else default
        remaining = self.remaining()
        if remaining is None:
            return connect
        remaining = max(remaining, 0.001)
        return remaining if connect is None or remaining < connect else connect

    def expired_error(self) -> SpoutError:
        """The error for the limit that ran out (the one :meth:`next` pointed at)."""
        total = self.timeout.total
        if self.total_at is not None and time.monotonic() >= self.total_at - 0.0005:
            return TotalTimeout(f"the call took longer than its total limit of {total} s")
        if self.last_content is None:
            return FirstTokenTimeout(
                f"no content arrived within the first-token limit of {self.first_token} s"
            )
        return IdleTimeout(f"no content arrived for the idle limit of {self.idle} s")

    def total_left(self) -> float | None:
        return None if self.total_at is None else self.total_at - time.monotonic()


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """What a call may do when it fails: retry, fall back, resume; and its time limits.

    The LLM's business, not the provider's: a provider passes it on its
    :class:`~spout.providers._base.Call` untouched.
    """

    retry: Retry
    resume: bool = False
    deadline: Deadline | None = None
