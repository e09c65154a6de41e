"""Who may call the gateway, and how much: keys, rate limits, body size.

Placeholder interface while the real one is written (issue #10, part 6): admits everyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.requests import Request

    from ._config import GatewayConfig

__all__ = ["Denied", "Guard", "Identity"]


class Denied(Exception):
    """A request refused: ``status`` (401, 403, 413, 429), a message, ``retry_after``
    seconds for 429, and ``kind`` ("authentication", "permission", "too_large",
    "rate_limit")."""

    def __init__(
        self, message: str, *, status: int, kind: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling: a key's name, or the client's address without keys."""

    name: str


class Guard:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config

    async def admit(self, request: Request) -> Identity:
        """The caller, if admitted now; :class:`Denied` otherwise."""
        client = request.client
        return Identity(client.host if client else "unknown")

    async def charge(self, identity: Identity, tokens: int) -> None:
        """Count ``tokens`` against the caller's token rate."""

    async def aclose(self) -> None:
        return None
