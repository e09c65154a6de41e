"""Session: a conversation that keeps every streamed turn, on any provider, stored on demand."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload

from ._closing import AsyncClosing, Closing
from ._errors import ConversationNotFoundError, SpoutError, TimeoutError
from ._events import Usage
from ._files import File, attach_files, check_files, files_in
from ._history import for_provider
from ._response import Response
from ._stream_base import AsyncStreamBase, StreamView, SyncStreamBase
from ._tool_loop import AsyncToolStream, ToolStream, assistant_message
from ._turn import Incomplete, Turn, total_cost

if TYPE_CHECKING:
    from ._events import Event
    from ._llm import LLM
    from ._stats import StreamStats
    from ._store import Store
    from ._stream import AsyncStream, Stream

__all__ = ["AsyncSessionStream", "Session", "SessionStream", "reply_messages", "stop_reason"]

_ROLES = ("user", "assistant", "tool")


class Session(Closing):
    """A conversation with a model: each call sends the history and keeps the reply.

    When a stream ends, its whole turn is kept in :attr:`turns` (and :attr:`messages`): the
    text, reasoning with its signature, tool calls and their results, usage, model and
    timings. A stream that stops early (``break``, an error, a timeout, cancellation, Ctrl-C)
    keeps what arrived, marked :attr:`Turn.incomplete` with the reason, unless
    ``keep_incomplete=False`` (the prompt is then kept to send again).

    Example::

        session = Session(provider=create_llm("anthropic", model="claude-sonnet-4-5"),
                          system_prompt="Be brief.")
        session.add_message("user", "Tell me about quantum physics.")
        for chunk in session.generate_stream():
            print(chunk, end="", flush=True)
        for chunk in session.generate_stream("And in one sentence?"):
            print(chunk, end="", flush=True)

    The history is provider-neutral: set :attr:`provider` to go on with another model, tool
    calls and results included. The history sent is trimmed, oldest turns first, to fit the
    model's context window (``max_history_tokens`` sets the budget); :attr:`messages` keeps
    everything. ``store=`` (a :class:`spout.conversations.Store` or a path) and
    :meth:`save` or ``autosave=True`` keep the conversation in SQLite; :meth:`load` and
    :meth:`last` bring it back.

    ``files=`` on every call (and on :meth:`add_message`) attaches files to the user's
    message, as :class:`spout.File` parts that stay in the history: each later call sends
    them again, to whichever provider answers, and the store keeps their bytes once.
    """

    def __init__(
        self,
        provider: LLM | str | None = None,
        *,
        model: str | None = None,
        system_prompt: str | None = None,
        id: str | None = None,
        title: str | None = None,
        store: Store | str | os.PathLike[str] | None = None,
        autosave: bool = False,
        max_history_tokens: int | None = None,
        keep_incomplete: bool = True,
        **params: Any,
    ) -> None:
        from ._store import new_id

        if max_history_tokens is not None and (
            isinstance(max_history_tokens, bool)
            or not isinstance(max_history_tokens, int)
            or max_history_tokens < 1
        ):
            raise ValueError(
                f"max_history_tokens must be a positive int, not {max_history_tokens!r}"
            )
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise TypeError(f"system_prompt must be a str, not {type(system_prompt).__name__}")
        self._llm: LLM | None = None
        self._own_llm = False
        self._set_provider(provider, model)
        self.system_prompt = system_prompt
        self.id: str = id or new_id()
        self.title = title
        self.autosave = bool(autosave)
        self.max_history_tokens = max_history_tokens
        self.keep_incomplete = bool(keep_incomplete)
        #: Parameters sent with every call (``temperature``, ``max_tokens``, ...).
        self.params = params
        self._store_arg = store
        self._store: Store | None = None
        self._turns: list[Turn] = []
        self._pending: list[dict[str, Any]] = []
        self._saved = 0
        self._live: _Live | None = None
        self._own_store = False
        # The names of the files attached here, by their bytes' SHA-256: a part keeps none.
        self._file_names: dict[str, str] = {}

    # -- provider ------------------------------------------------------------------------------

    @property
    def provider(self) -> LLM:
        """The model that answers next. Set it (an ``LLM``, or ``"provider:model"``) to switch."""
        assert self._llm is not None
        return self._llm

    @provider.setter
    def provider(self, value: LLM | str) -> None:
        self._set_provider(value, None)

    def _set_provider(self, value: LLM | str | None, model: str | None) -> None:
        from ._llm import LLM, create_llm, parse_model_string

        if isinstance(value, LLM):
            made, own = value, False
        elif value is None or isinstance(value, str):
            name, parsed_model = parse_model_string(value or "local")
            made, own = create_llm(name, model=model or parsed_model), True
        else:
            raise TypeError(
                f"provider must be an LLM (create_llm(...)) or a 'provider:model' string, "
                f"not {type(value).__name__}"
            )
        if self._own_llm and self._llm is not None and self._llm is not made:
            self._llm.close()
        self._llm, self._own_llm = made, own

    # -- the conversation ----------------------------------------------------------------------

    @property
    def turns(self) -> list[Turn]:
        """Every finished turn, oldest first (a stream still going is added when it ends)."""
        return list(self._turns)

    @property
    def cost(self) -> float | None:
        """What the conversation's replies cost in US dollars, every turn's :attr:`Turn.cost`
        added (a turn whose price is unknown adds nothing); None when no turn's cost is known.

        Example::

            session.generate("Hi")
            print(f"${session.cost:.4f} so far")
        """
        return total_cost(self._turns)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The whole conversation as spout's message dicts (the system prompt not included)."""
        out = [message for turn in self._turns for message in turn.messages]
        out.extend(self._pending)
        return out

    def add_message(
        self,
        role: str,
        content: Any,
        *,
        files: Sequence[File | str | os.PathLike[str]] | None = None,
        **fields: Any,
    ) -> None:
        """Add a message to send with the next call (``user``, ``assistant`` or ``tool``).

        Extra fields are kept on the message, e.g. ``tool_call_id=`` for a tool result.
        ``files=`` (:class:`spout.File` objects, paths or URLs; a user message only) are
        attached to it as content parts after its text.

        Example::

            session.add_message("user", "Tell me about quantum physics.")
            session.add_message("user", "What is in this picture?", files=["cat.png"])
        """
        if role == "system":
            raise ValueError("a session's system prompt is set with system_prompt=, not a message")
        if role not in _ROLES:
            raise ValueError(f"role must be one of {', '.join(_ROLES)}, not {role!r}")
        if role == "tool" and not fields.get("tool_call_id"):
            raise ValueError("a tool message needs tool_call_id=, the id of the call it answers")
        message = {"role": role, "content": content, **fields}
        if files:
            if role != "user":
                raise ValueError(f"files= goes with a user message, not a {role} message")
            attached = [message]
            self._remember(attach_files(attached, files))
            message = attached[0]
        self._pending.append(message)

    def _remember(self, files: Sequence[File]) -> None:
        for file in files:
            if file.name and file.data is not None:
                self._file_names[_sha256(file.data)] = file.name

    def _names(self, messages: Sequence[dict[str, Any]]) -> dict[str, str]:
        """The names of the files ``messages`` carry that were attached by a name here."""
        if not self._file_names:
            return {}
        names = {}
        for file in files_in(messages):
            if file.data is not None:
                digest = _sha256(file.data)
                if digest in self._file_names:
                    names[digest] = self._file_names[digest]
        return names

    def clear(self) -> None:
        """Forget every turn and pending message (the stored copy is not touched)."""
        self._settle()
        self._turns.clear()
        self._pending.clear()
        self._saved = 0

    def messages_to_send(
        self,
        prompt: str | None = None,
        *,
        files: Sequence[File | str | os.PathLike[str]] | None = None,
    ) -> list[dict[str, Any]]:
        """The messages the next call would send: the history, translated for the current
        provider and trimmed to fit its context window (the system prompt not included)."""
        return self._prepare(prompt, self.params, files)[1]

    def _prepare(
        self,
        prompt: str | None,
        params: dict[str, Any],
        files: Sequence[File | str | os.PathLike[str]] | None = None,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(the messages this turn adds, the messages to send).

        ``files`` go with the user message this turn adds; a file the provider cannot take
        (or cannot read) raises here, the session left as it was.
        """
        if prompt is not None and not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, not {type(prompt).__name__}")
        new = list(self._pending)
        if prompt is not None:
            new.append({"role": "user", "content": prompt})
        if not new and not self._turns and not files:
            raise ValueError("nothing to generate from: pass a prompt or add_message() first")
        attached = attach_files(new, files) if files else []
        history = for_provider(self._turns, self.provider.provider_name) + [dict(m) for m in new]
        adapter = self.provider.provider
        # Here rather than at the provider's call, so a file it cannot take leaves no turn.
        check_files(history, adapter.name, adapter.capabilities, attached)
        self._remember(attached)
        return new, self._fit(history, params)

    def _fit(self, history: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
        from ._context import context_window, fit_messages, history_budget

        budget = self.max_history_tokens
        if budget is None:
            window = context_window(self.provider)
            if window is None:
                return history
            budget = history_budget(window, params.get("max_tokens"))
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        llm = self.provider

        def count(messages: list[dict[str, Any]]) -> int:
            return llm.count_tokens(messages=messages)

        fitted = fit_messages(system + history, budget, count)
        return fitted[len(system) :]

    def _call_params(self, params: dict[str, Any]) -> dict[str, Any]:
        merged = dict(self.params)
        merged.update(params)
        return merged

    def _begin(
        self, prompt: str | None, params: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
        """(the messages this turn adds, the request's arguments, the pending messages as
        they were); the pending ones go out."""
        params = self._call_params(params)
        files = params.pop("files", None)
        new, sending = self._prepare(prompt, params, files)
        if self.autosave and any(True for _ in files_in(new)):
            # A file the store would refuse (past its limits) is refused before the call, not
            # after the reply, whose save would fail.
            unsaved = [*self._turns[self._saved :], Turn(messages=tuple(new))]
            self.store.check_room(self.id, unsaved)
        pending = list(self._pending)
        self._pending.clear()
        request = {"messages": sending, "system_prompt": self.system_prompt, **params}
        return new, request, pending

    def _answered(self, new: list[dict[str, Any]], response: Response) -> Response:
        self._record(new, [assistant_message(response)], response, None, None)
        return response

    def _open(
        self,
        prompt: str | None,
        params: dict[str, Any],
        opener: Callable[..., Stream | AsyncStream | ToolStream | AsyncToolStream],
        tools: Sequence[Any] | None = None,
    ) -> _Live:
        """Open a stream of the reply (a tool loop with ``tools``), as the turn being made."""
        new, request, pending = self._begin(prompt, params)
        if tools is not None:
            self._hold_servers(tools)
        try:
            inner = opener(**request) if tools is None else opener(**request, tools=tools)
        except BaseException as exc:
            self._opening_failed(new, pending, exc)
            raise
        # The tool loop's messages begin with the system prompt it was sent.
        sent = len(request["messages"]) + (1 if tools is not None and self.system_prompt else 0)
        self._live = live = _Live(self, new, inner, sent)
        return live

    def _hold_servers(self, tools: Sequence[Any]) -> None:
        """Keep the MCP servers among ``tools`` up between turns, until the session closes."""
        import sys

        mcp = sys.modules.get("spout.mcp")  # only loaded when an MCPServer was made
        if mcp is None:
            return
        held: list[Any] = self.__dict__.setdefault("_mcp_servers", [])
        for item in tools:
            if isinstance(item, mcp.MCPServer) and all(item is not s for s in held):
                item._hold()
                held.append(item)

    # -- sync ----------------------------------------------------------------------------------

    @overload
    def generate(
        self, prompt: str | None = ..., *, stream: Literal[False] = ..., **params: Any
    ) -> Response: ...

    @overload
    def generate(
        self, prompt: str | None = ..., *, stream: Literal[True], **params: Any
    ) -> SessionStream: ...

    def generate(
        self, prompt: str | None = None, *, stream: bool = False, **params: Any
    ) -> Response | SessionStream:
        """Send the history and ``prompt``; keep and return the reply.

        Example::

            print(session.generate("And in one sentence?").text)
        """
        if stream:
            return self.generate_stream(prompt, **params)
        self._settle()
        new, request, pending = self._begin(prompt, params)
        try:
            response: Response = self.provider.generate(**request)
        except BaseException as exc:
            self._opening_failed(new, pending, exc)
            raise
        return self._answered(new, response)

    def generate_stream(self, prompt: str | None = None, **params: Any) -> SessionStream:
        """Stream the reply to the history and ``prompt``; the turn is kept when it ends.

        Example::

            for chunk in session.generate_stream("Tell me about quantum physics."):
                print(chunk, end="", flush=True)
        """
        self._settle()
        return SessionStream(self._open(prompt, params, self.provider.generate_stream))

    def generate_stream_with_tools(
        self, prompt: str | None = None, *, tools: Sequence[Any], **params: Any
    ) -> SessionStream:
        """Run the tool loop on the history and ``prompt`` (see
        :meth:`LLM.generate_stream_with_tools`); every round, call and result is kept.

        Iterating gives text chunks and each :class:`ToolCall` once it ran.
        """
        self._settle()
        opener = self.provider.generate_stream_with_tools
        return SessionStream(self._open(prompt, params, opener, tools))

    # -- async ---------------------------------------------------------------------------------

    async def agenerate(self, prompt: str | None = None, **params: Any) -> Response:
        """:meth:`generate` without blocking the event loop."""
        await self._asettle()
        new, request, pending = self._begin(prompt, params)
        try:
            response: Response = await self.provider.generate_async(**request)
        except BaseException as exc:
            self._opening_failed(new, pending, exc)
            raise
        return self._answered(new, response)

    def agenerate_stream(self, prompt: str | None = None, **params: Any) -> AsyncSessionStream:
        """:meth:`generate_stream`, asynchronously: ``async for chunk in ...``.

        The request goes out on first use, as with :meth:`LLM.agenerate_stream`.
        """
        self._settle()
        return AsyncSessionStream(self._open(prompt, params, self.provider.agenerate_stream))

    def agenerate_stream_with_tools(
        self, prompt: str | None = None, *, tools: Sequence[Any], **params: Any
    ) -> AsyncSessionStream:
        """:meth:`generate_stream_with_tools`, asynchronously; one round's calls run
        concurrently."""
        self._settle()
        opener = self.provider.agenerate_stream_with_tools
        return AsyncSessionStream(self._open(prompt, params, opener, tools))

    # -- keeping turns -------------------------------------------------------------------------

    def _opening_failed(
        self, new: list[dict[str, Any]], pending: list[dict[str, Any]], exc: BaseException
    ) -> None:
        if isinstance(exc, (ValueError, TypeError)) and not isinstance(exc, SpoutError):
            # Bad input, refused before anything was sent: the session is as it was.
            self._pending[:0] = pending
            return
        partial = exc.partial if isinstance(exc, SpoutError) else None
        self._record(new, reply_messages(partial, complete=False), partial, *stop_reason(exc))

    def _record(
        self,
        new: list[dict[str, Any]],
        reply: list[dict[str, Any]],
        response: Response | None,
        incomplete: Incomplete | None,
        error: str | None,
    ) -> None:
        if incomplete is not None and not self.keep_incomplete:
            self._pending[:0] = new  # the reply is dropped; the prompt waits to be sent again
            return
        llm = self.provider
        model, provider = llm.model, llm.provider_name
        if response is not None and response.provider not in (None, provider):
            model, provider = response.model or model, response.provider  # a fallback answered
        turn = Turn(
            # The model as it was asked for (what create_llm takes to go on with the
            # conversation), not the name the server reported back.
            messages=tuple(new + reply),
            model=model,
            provider=provider,
            usage=response.usage if response else Usage(),
            finish_reason=response.finish_reason if response else None,
            response_id=response.id if response else None,
            time_to_first_token=response.time_to_first_token if response else None,
            duration=response.duration if response else None,
            incomplete=incomplete,
            error=error,
            file_names=self._names(new),
            cost=response.cost if response else None,
            cost_estimated=response.cost_estimated if response else False,
        )
        self._turns.append(turn)
        if self.autosave:
            self.save()

    def _settle(self) -> None:
        """A stream left open (a ``for`` loop left without closing it) is kept as it stands."""
        live = self._live
        if live is not None:
            live.finish("closed", None, close=True)

    async def _asettle(self) -> None:
        live = self._live
        if live is not None:
            await live.afinish("closed", None)

    # -- storage -------------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """Where :meth:`save` writes: the ``store=`` given, or the default store."""
        if self._store is None:
            from ._store import Store

            given = self._store_arg
            self._store = given if isinstance(given, Store) else Store(given)
        return self._store

    @property
    def unsaved(self) -> int:
        """How many turns are not in the store yet."""
        return len(self._turns) - self._saved + (1 if self._pending else 0)

    def save(self) -> None:
        """Write the turns not stored yet, in one transaction: all of them or none.

        Messages added with :meth:`add_message` and not sent yet are stored as a turn of
        their own. On failure (:class:`StoreError`) the store is as it was, and the turns are
        still here to save again.
        """
        self._settle()
        if self._pending:
            pending = tuple(self._pending)
            self._turns.append(Turn(messages=pending, file_names=self._names(pending)))
            self._pending.clear()
        turns = self._turns[self._saved :]
        self.store.append_turns(
            self.id,
            turns,
            title=self.title,
            system_prompt=self.system_prompt,
            created_at=self._turns[0].created_at if self._turns else None,
        )
        self._saved = len(self._turns)

    @classmethod
    def load(
        cls,
        id: str,
        *,
        provider: LLM | str | None = None,
        store: Store | str | os.PathLike[str] | None = None,
        **config: Any,
    ) -> Session:
        """A stored conversation, to go on with. ``id`` may be a unique prefix.

        Without ``provider``, the model of the conversation's last turn answers (made with
        ``create_llm``, so a remote one needs its key in the environment).

        Example::

            session = Session.load("01jc3k9x", store="chats.db")
            print(session.generate("Where were we?").text)
        """
        from ._store import Store

        opened = store if isinstance(store, Store) else Store(store)
        try:
            conversation = opened.get(id)
            turns = opened.turns(conversation.id)
        except BaseException:
            if opened is not store:
                opened.close()
            raise
        if provider is None:
            provider = _last_model(turns)
        session = cls(
            provider,
            system_prompt=config.pop("system_prompt", conversation.system_prompt),
            id=conversation.id,
            title=conversation.title,
            store=opened,
            **config,
        )
        session._own_store = opened is not store
        session._turns = turns
        session._saved = len(turns)
        return session

    @classmethod
    def last(
        cls,
        *,
        provider: LLM | str | None = None,
        store: Store | str | os.PathLike[str] | None = None,
        **config: Any,
    ) -> Session:
        """The most recently updated stored conversation (see :meth:`load`).

        Raises :class:`ConversationNotFoundError` when the store holds none.
        """
        from ._store import Store

        opened = store if isinstance(store, Store) else Store(store)
        try:
            latest = opened.last()
        finally:
            if opened is not store:
                opened.close()
        if latest is None:
            raise ConversationNotFoundError(
                f"no conversation is stored yet in {opened.path}: start one first"
            )
        return cls.load(latest.id, provider=provider, store=store, **config)

    def close(self) -> None:
        """Keep a stream left open, save when ``autosave`` is on, and release what the
        session opened (its store, and the model it made from a string)."""
        try:
            self._settle()
        finally:
            if self._store is not None and (
                self._store is not self._store_arg or getattr(self, "_own_store", False)
            ):
                self._store.close()
                self._store = None
            if self._own_llm and self._llm is not None:
                self._llm.close()
            for server in self.__dict__.pop("_mcp_servers", []):
                server._release()  # the MCP servers its turns used stop with it

    def __repr__(self) -> str:
        return (
            f"<spout.Session {self.id} turns={len(self._turns)} "
            f"model={self.provider.provider_name}:{self.provider.model}>"
        )


# -- streams ----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Live:
    """The turn a stream is making: what it adds, how to read what arrived, and its ending.

    The stream objects the caller holds refer to this; the session refers to it until the
    turn is kept, so a stream left open is kept as it stands at the session's next call.
    """

    session: Session
    new: list[dict[str, Any]]
    inner: Stream | AsyncStream | ToolStream | AsyncToolStream
    sent: int
    done: bool = False
    #: Whether the stream is used in a ``with`` block, whose exit keeps the turn.
    within: bool = False

    # What the stream's view shows (see spout._stream_base.Tally): the inner stream's.
    @property
    def text(self) -> str:
        return self.inner.text

    def response(self) -> Response:
        return self.inner.snapshot

    def stats(self) -> StreamStats:
        return self.inner.stats

    def stop(self) -> None:
        """Stop the model now; the turn is kept later, when the reason is known."""
        if isinstance(self.inner, SyncStreamBase):
            self.inner.close()

    async def astop(self) -> None:
        if isinstance(self.inner, AsyncStreamBase):
            await self.inner.aclose()

    def reply(self, complete: bool) -> tuple[list[dict[str, Any]], Response]:
        inner = self.inner
        if isinstance(inner, (ToolStream, AsyncToolStream)):
            messages = [dict(m) for m in inner.messages[self.sent :]]
            if not complete:
                # Rounds the loop ended without adding (max_rounds reached), then the round
                # that was cut: their text is kept, their calls were never run.
                said = sum(1 for m in messages if m.get("role") == "assistant")
                unsent = inner.rounds[said:]
                current = inner.current_round
                if current is not None:
                    unsent.append(current)
                for partial in unsent:
                    if partial.text or partial.reasoning or partial.refusal is not None:
                        messages.append(_text_only(assistant_message(partial)))
            return _drop_unanswered(messages), inner.snapshot
        response = inner.snapshot
        return reply_messages(response, complete=complete), response

    def finish(self, incomplete: Incomplete | None, error: str | None, close: bool) -> None:
        if self.done:
            return
        self.done = True
        if self.session._live is self:
            self.session._live = None
        inner = self.inner
        if close and incomplete is not None:
            if isinstance(inner, SyncStreamBase):
                self.stop()
            else:
                inner.abandon()  # an async stream, kept from sync code
        reply, response = self.reply(incomplete is None)
        self.session._record(self.new, reply, response, incomplete, error)

    async def afinish(self, incomplete: Incomplete | None, error: str | None) -> None:
        if self.done:
            return
        if incomplete is not None:
            await self.astop()
        self.finish(incomplete, error, close=False)


class _SessionStreamBase(StreamView):
    """What a session's stream shows, sync or async: its reply as it stands, and its turn."""

    def __init__(self, live: _Live) -> None:
        self._live = self._tally = live

    @property
    def turn(self) -> Turn | None:
        """The turn kept for this stream, once it ended (None before)."""
        if not self._live.done:
            return None
        turns = self._live.session._turns
        return turns[-1] if turns else None

    def _label(self) -> str:
        return "closed" if self._live.done else "open"


class SessionStream(_SessionStreamBase, Closing):
    """A session's reply being streamed: iterate it for text (and, in the tool loop, each
    :class:`ToolCall` once it ran). When it ends or stops, the turn is kept in the session.

    Example::

        with session.generate_stream("Hello") as stream:
            for chunk in stream:
                print(chunk, end="")
        print(session.turns[-1].usage)
    """

    def __iter__(self) -> Iterator[Any]:
        return self._run(iter(self._live.inner))  # type: ignore[arg-type]

    def events(self) -> Iterator[Event]:
        """The typed events, as :meth:`Stream.events` gives them."""
        return self._run(self._live.inner.events())  # type: ignore[arg-type]

    def _run(self, source: Iterator[Any]) -> Generator[Any, None, None]:
        live = self._live
        try:
            yield from source
        except GeneratorExit:
            if live.within:
                # Inside ``with``: the exception that left the loop (Ctrl-C in the loop's
                # body, say) reaches __exit__, which keeps the turn with the right reason.
                live.stop()
            else:
                live.finish("closed", None, close=True)
            raise
        except BaseException as exc:
            live.finish(*stop_reason(exc), close=True)
            raise
        live.finish(None, None, close=False)

    @property
    def response(self) -> Response:
        """The whole reply, reading the rest of the stream first if it is still open."""
        if not self._live.done:
            for _ in self:
                pass
        return self.snapshot

    def close(self, reason: Incomplete = "closed") -> None:
        """Stop now; what arrived is kept, marked incomplete with ``reason``."""
        self._live.finish(reason, None, close=True)

    def __enter__(self) -> SessionStream:
        self._live.within = True
        return self

    def _leave(self, exc: BaseException | None) -> None:
        if exc is not None and not self._live.done:
            self._live.finish(*stop_reason(exc), close=True)
        else:
            self.close()


class AsyncSessionStream(_SessionStreamBase, AsyncClosing):
    """:class:`SessionStream`, asynchronously: ``async for chunk in ...``."""

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._run(self._live.inner.__aiter__())  # type: ignore[union-attr]

    def events(self) -> AsyncIterator[Event]:
        return self._run(self._live.inner.events())  # type: ignore[arg-type]

    async def _run(self, source: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
        live = self._live
        try:
            async for item in source:
                yield item
        except GeneratorExit:
            if live.within:
                await live.astop()
            else:
                await live.afinish("closed", None)
            raise
        except BaseException as exc:
            await live.afinish(*stop_reason(exc))
            raise
        live.finish(None, None, close=False)

    async def get_response(self) -> Response:
        """The whole reply, reading the rest of the stream first if it is still open."""
        if not self._live.done:
            async for _ in self:
                pass
        return self.snapshot

    async def aclose(self, reason: Incomplete = "closed") -> None:
        """Stop now; what arrived is kept, marked incomplete with ``reason``."""
        await self._live.afinish(reason, None)

    async def __aenter__(self) -> AsyncSessionStream:
        self._live.within = True
        inner = self._live.inner
        start = getattr(inner, "start", None)
        if start is not None:
            await start()
        return self

    async def _aleave(self, exc: BaseException | None) -> None:
        if exc is not None and not self._live.done:
            await self._live.afinish(*stop_reason(exc))
        else:
            await self.aclose()


# -- helpers ----------------------------------------------------------------------------------


def stop_reason(exc: BaseException) -> tuple[Incomplete, str | None]:
    """Why a stream stopped, from what stopped it: the :attr:`Turn.incomplete` a session
    records, and the error message it keeps (for code that keeps turns itself, as the gateway).

    >>> stop_reason(KeyboardInterrupt())
    ('interrupted', None)
    >>> stop_reason(ValueError("bad"))
    ('error', 'ValueError: bad')
    """
    asyncio = sys.modules.get("asyncio")  # not imported for sync-only use
    if asyncio is not None and isinstance(exc, asyncio.CancelledError):
        return "cancelled", None
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", None
    if isinstance(exc, GeneratorExit):
        return "closed", None
    if isinstance(exc, TimeoutError):
        return "timeout", str(exc)
    return "error", f"{type(exc).__name__}: {exc}"


def reply_messages(response: Response | None, *, complete: bool) -> list[dict[str, Any]]:
    """The assistant message a session keeps for a reply (none for no reply); a cut one
    (``complete=False``) keeps its text, not its unfinished tool calls."""
    if response is None:
        return []
    message = assistant_message(response)
    if not complete:
        message = _text_only(message)
        if not message["content"] and not message.get("reasoning") and "refusal" not in message:
            return []
    return [message]


def _text_only(message: dict[str, Any]) -> dict[str, Any]:
    message = dict(message)
    message.pop("tool_calls", None)
    return message


def _drop_unanswered(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls whose result never came are dropped: a call must be sent with its result."""
    answered = {m.get("tool_call_id") for m in messages if m.get("role") == "tool"}
    out = []
    for message in messages:
        calls = message.get("tool_calls")
        if message.get("role") == "assistant" and calls:
            kept = [c for c in calls if c.get("id") in answered]
            if len(kept) != len(calls):
                message = dict(message)
                if kept:
                    message["tool_calls"] = kept
                else:
                    del message["tool_calls"]
                if not kept and not (
                    message.get("content") or message.get("reasoning") or message.get("refusal")
                ):
                    continue
        out.append(message)
    return out


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _last_model(turns: Sequence[Turn]) -> str | None:
    for turn in reversed(turns):
        if turn.provider and turn.model:
            return f"{turn.provider}:{turn.model}"
    return None
