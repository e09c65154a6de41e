"""The gateway's conversations: chats made through it kept in spout's store, and read back.

A client that sends ``x-spout-conversation: new`` (or a stored conversation's id) with a chat
request has the turn kept: the messages it adds (the user's, after the last assistant
message) and the reply, marked incomplete as :class:`spout.Session` marks them when it was
cut (``cancelled`` by a stop, ``error`` with the message). The response carries the
conversation's id in the same header, to send with the next turn. The chat page works so.

``GET /v1/conversations`` lists them, most recent first; ``GET /v1/conversations/{id}`` gives
one's messages.

With keys, a conversation belongs to the key that made it (its name in the keys file is the
store's ``owner``): every other key gets the 404 an unknown id gets, when it lists, reads
(a prefix too matches only the caller's own), or continues one. Conversations made without a
key (the CLI, the library, a gateway without keys) belong to no key and are not shown to any.
Without keys every caller sees every conversation, as on one's own machine. Answers never
name the store's file: a 404 says only what was not found, a store failure that the log has
the details (the path among them).

The store is spout's SQLite store (:mod:`spout.conversations`) at
``GatewayConfig.conversation_store``, else spout's default path (``$SPOUT_HOME``...). SQLite
blocks, so every read and write runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HTTPRoute

from .. import ConversationNotFoundError, StoreError, Turn, Usage
from ..conversations import KEEP, Store, new_id
from ._guard import Denied, Identity
from ._hygiene import route_template
from ._openai import classify_error
from ._wire import RequestError

if TYPE_CHECKING:
    from .. import LLM
    from .. import Response as LLMResponse
    from ._app import Gateway
    from ._config import GatewayConfig, Route
    from ._wire import Request

__all__ = ["HEADER", "Conversations", "Recording", "conversation_routes", "owner_of"]

log = logging.getLogger("spout.gateway")

#: The request and response header naming the conversation a chat turn belongs to.
HEADER = "x-spout-conversation"

_ID = re.compile(r"[0-9a-z]{26}")
_MAX_LIST = 500
#: What a client is told when the store fails (the log has the error, which names its file).
_STORE_FAILED = "the gateway's conversation store failed; its log has the details"


def owner_of(identity: Identity) -> str | None:
    """Who owns what ``identity`` makes (conversations, streams): its key's name; None
    without keys (everything is everyone's)."""
    return identity.name if identity.keyed else None


@dataclass
class Recording:
    """One turn to keep: where, what the client added, and which model answers."""

    conversations: Conversations
    conversation_id: str
    new: list[dict[str, Any]]
    model: str | None
    provider: str
    system_prompt: Any = field(default=None)
    #: The key that owns the conversation (None: no key, without keys).
    owner: str | None = None

    async def keep(self, response: LLMResponse | None, failure: BaseException | None) -> None:
        """Store the turn: ``response`` is the reply as it stands, ``failure`` what cut it."""
        from ..session import reply_messages, stop_reason

        incomplete, error = stop_reason(failure) if failure is not None else (None, None)
        if error is not None and failure is not None:
            # The message the client saw, not the class name: an upstream's failure by its
            # kind, without the upstream's address (the log keeps that).
            error = classify_error(failure)[2] or error
        turn = Turn(
            messages=tuple(self.new + reply_messages(response, complete=failure is None)),
            model=self.model,
            provider=self.provider,
            usage=response.usage if response is not None else Usage(),
            finish_reason=response.finish_reason if response is not None else None,
            response_id=response.id if response is not None else None,
            time_to_first_token=response.time_to_first_token if response is not None else None,
            duration=response.duration if response is not None else None,
            incomplete=incomplete,
            error=error,
        )
        try:
            await self.conversations.run(
                lambda store: store.append_turns(
                    self.conversation_id,
                    [turn],
                    system_prompt=self.system_prompt,
                    owner=self.owner,
                )
            )
        except StoreError:
            # The answer reached the client; a full disk must not turn it into an error.
            log.exception("cannot store a turn of conversation %s", self.conversation_id)


class Conversations:
    """The store the gateway keeps chats in, opened on first use, read and written in threads."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self._store: Store | None = None
        self._opening = threading.Lock()
        #: "provider:model" as stored -> the gateway's model name that answered it.
        self._names: dict[str, str] = {}

    def _opened(self) -> Store:
        with self._opening:
            if self._store is None:
                self._store = Store(self.config.conversation_store)
            return self._store

    async def run(self, work: Callable[[Store], Any]) -> Any:
        """``work(store)`` in a worker thread."""
        return await asyncio.to_thread(lambda: work(self._opened()))

    async def recording(
        self,
        http: HTTPRequest,
        request: Request,
        route: Route,
        llm: LLM,
        *,
        owner: str | None = None,
    ) -> Recording | None:
        """The turn to keep for a request with the conversation header, else None.

        ``new`` starts a conversation (``owner``'s); an id must be a stored conversation's,
        and ``owner``'s when given (404 if not: another key's is not told apart from none).
        """
        wanted = http.headers.get(HEADER)
        if wanted is None:
            return None
        wanted = wanted.strip()
        system: Any = KEEP
        if wanted == "new":
            conversation_id = new_id()
            first = request.messages[0] if request.messages else {}
            if first.get("role") in ("system", "developer"):
                system = first.get("content")
        elif _ID.fullmatch(wanted):
            conversation_id = wanted
            try:
                await self.run(lambda store: store.get(conversation_id, owner=owner))
            except ConversationNotFoundError:
                raise RequestError(
                    f"no stored conversation {wanted!r} ({HEADER}: send 'new' to start one)",
                    status=404,
                ) from None
            except StoreError as exc:
                log.error("conversation store: %s", exc)
                raise RequestError(_STORE_FAILED, status=500) from None
        else:
            raise RequestError(
                f"{HEADER} must be 'new' or a conversation id (26 characters), not {wanted!r}"
            )
        self._names[f"{llm.provider_name}:{llm.model}"] = route.name
        return Recording(
            self,
            conversation_id,
            _added(request.messages),
            llm.model,
            llm.provider_name,
            system,
            owner,
        )

    def model_name(self, models: tuple[str, ...]) -> str | None:
        """The gateway's model name that answered a conversation last, if it still serves it."""
        for stored in reversed(models):
            name = self._names.get(stored)
            if name is None:
                provider, _, model = stored.partition(":")
                name = next(
                    (
                        r.name
                        for r in self.config.routes.values()
                        if r.provider == provider and r.model == model
                    ),
                    None,
                )
            if name in self.config.routes:
                return name
        return None

    async def aclose(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            await asyncio.to_thread(store.close)


def _added(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages a turn adds: those after the last assistant message, system ones aside."""
    start = 0
    for index, message in enumerate(messages):
        if message.get("role") == "assistant":
            start = index + 1
    return [dict(m) for m in messages[start:] if m.get("role") not in ("system", "developer")]


# -- the HTTP side ------------------------------------------------------------------------------


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def _not_found_message(exc: ConversationNotFoundError) -> str:
    """What the store says was not found, without the store's path (its message's end)."""
    message = str(exc)
    if exc.path:
        message = message.removesuffix(f" ({exc.path})").replace(exc.path, "the store")
    return message


def conversation_routes(gateway: Gateway) -> list[HTTPRoute]:
    """``GET /v1/conversations`` and ``GET /v1/conversations/{id}``, behind the gateway's guard."""
    conversations = gateway.conversations

    def guarded(
        handler: Callable[[HTTPRequest, str | None], Awaitable[Response]],
    ) -> Callable[[HTTPRequest], Awaitable[Response]]:
        """``handler(http, owner)``: the caller's key's conversations alone, with keys."""

        async def endpoint(http: HTTPRequest) -> Response:
            try:
                identity = await gateway.guard.identify(http)
                response = await handler(http, owner_of(identity))
            except Denied as exc:
                response = _error(exc.status, exc.message, exc.kind)
            except ConversationNotFoundError as exc:
                # The store's message without the store's path (kept for the log).
                log.info("conversation not found: %s", exc)
                response = _error(404, _not_found_message(exc), "not_found_error")
            except StoreError as exc:
                log.error("conversation store: %s", exc)
                response = _error(500, _STORE_FAILED, "store_error")
            # The template, not the path: ids would each make a series, for ever.
            gateway.metrics.request(route_template(http.scope), response.status_code)
            return response

        return endpoint

    async def listing(http: HTTPRequest, owner: str | None) -> Response:
        text = http.query_params.get("limit", "100")
        if not text.isdigit() or not 0 < int(text) <= _MAX_LIST:
            return _error(
                400, f"limit must be 1 to {_MAX_LIST}, not {text!r}", "invalid_request_error"
            )
        limit = int(text)
        found = await conversations.run(lambda store: store.list(limit, owner=owner))
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "id": c.id,
                        "title": c.title,
                        "model": conversations.model_name(c.models),
                        "models": list(c.models),
                        "created_at": c.created_at,
                        "updated_at": c.updated_at,
                        "turn_count": c.turn_count,
                    }
                    for c in found
                ],
            }
        )

    async def one(http: HTTPRequest, owner: str | None) -> Response:
        wanted = http.path_params["conversation_id"]

        def read(store: Store) -> tuple[Any, list[Turn]]:
            conversation = store.get(wanted, owner=owner)
            return conversation, store.turns(conversation.id, owner=owner)

        conversation, turns = await conversations.run(read)
        messages = []
        for turn in turns:
            for message in turn.messages:
                shown = dict(message)
                if turn.incomplete is not None and shown.get("role") == "assistant":
                    shown["incomplete"] = turn.incomplete
                messages.append(shown)
        return JSONResponse(
            {
                "id": conversation.id,
                "title": conversation.title,
                "model": conversations.model_name(conversation.models),
                "models": list(conversation.models),
                "created_at": conversation.created_at,
                "updated_at": conversation.updated_at,
                "system_prompt": conversation.system_prompt,
                "messages": messages,
            }
        )

    return [
        HTTPRoute("/v1/conversations", guarded(listing), methods=["GET"]),
        HTTPRoute("/v1/conversations/{conversation_id}", guarded(one), methods=["GET"]),
    ]
