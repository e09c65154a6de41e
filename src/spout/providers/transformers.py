"""A Hugging Face transformers model, from a local folder or a GGUF file, run in process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import importlib.util
import json
import queue
import struct
import threading
import uuid
import weakref
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .._capabilities import Capabilities, ModelCapability
from .._errors import ConfigurationError, ContextWindowExceededError, ProviderError
from .._events import Event, Finish, ResponseStart, TextDelta, Usage
from ._base import (
    AsyncSource,
    Call,
    GenerationLock,
    Provider,
    SyncSource,
    streaming_capabilities,
)
from .local import BUNDLED_MODEL, _hold_stops, bundled_model_path, refuse_files

__all__ = ["TransformersProvider"]

_INSTALL_HINT = (
    'the transformers provider needs the "transformers" extra: pip install "spout[transformers]"'
)
DEFAULT_MAX_TOKENS = 512
_DTYPES = ("auto", "float32", "float16", "bfloat16")

#: Put on a streamer's queue after the last piece, however generation ended.
_END = object()


class _LoadedModel:
    """One model and tokenizer per process and dtype, shared by every LLM that names them.

    A stream holds ``lock`` from its start to its end or close, so one generation runs at a
    time; ``model.generate`` runs on ``worker``, one thread per model, while the stream's
    reader (a thread, or the event loop) takes the text from a queue.
    """

    def __init__(self, model: Any, tokenizer: Any, name: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.lock = GenerationLock("transformers model")
        self.worker = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"spout-transformers-{name}"
        )
        config = model.config
        self.context_window: int | None = getattr(config, "max_position_embeddings", None)
        eos = model.generation_config.eos_token_id
        self.eos_ids: frozenset[int] = frozenset(
            () if eos is None else [eos] if isinstance(eos, int) else eos
        )


_models: dict[tuple[str, str | None], _LoadedModel] = {}
_models_lock = threading.Lock()


def _missing_modules(gguf: bool) -> list[str]:
    """The modules the extra installs that cannot be imported, found without importing them."""
    names = ["torch", "transformers", *(["gguf", "accelerate"] if gguf else [])]
    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
            found = False
        if not found:
            missing.append(name)
    return missing


def _load(path: Path, dtype: str | None) -> _LoadedModel:
    key = (str(path), dtype)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            model = _models[key] = _read(path, dtype)
    return model


def _read(path: Path, dtype: str | None) -> _LoadedModel:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise ConfigurationError(_INSTALL_HINT) from None
    if path.is_file():
        # transformers reads a GGUF file given its folder and name, and dequantizes it.
        # https://huggingface.co/docs/transformers/gguf
        folder, options, name = path.parent, {"gguf_file": path.name}, path.stem
    else:
        folder, options, name = path, {}, path.name
    if dtype is not None:
        options["dtype"] = dtype if dtype == "auto" else getattr(torch, dtype)
    try:
        # local_files_only: never reach the Hub, as with HF_HUB_OFFLINE=1.
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, **options)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, **options)
    except ImportError:  # gguf or accelerate, which transformers imports only for GGUF files
        raise ConfigurationError(_INSTALL_HINT) from None
    except Exception as exc:  # OSError, ValueError, KeyError...: transformers raises many kinds
        raise ConfigurationError(f"could not load the model {path}: {exc}") from None
    return _LoadedModel(model, tokenizer, name)


class TransformersProvider(Provider):
    """A Hugging Face transformers model run in process; by default the bundled SmolLM2 GGUF.

    Example::

        llm = create_llm("transformers")                   # SmolLM2-135M-Instruct, dequantized
        llm = create_llm("transformers", model="/models/Qwen2.5-0.5B-Instruct")  # a folder
        llm = create_llm("transformers", model="/models/smollm2.Q8_0.gguf", dtype="bfloat16")

    ``model`` is a folder holding a model saved by ``save_pretrained`` (config, weights,
    tokenizer), or a GGUF file, which transformers dequantizes; nothing is fetched from the
    Hub. The model loads once per process and dtype and is shared; one stream generates at a
    time. With no ``temperature`` the model's own generation config decides how to sample;
    ``temperature=0`` is greedy, above 0 samples.
    """

    name: ClassVar[str] = "transformers"
    default_model: ClassVar[str | None] = "smollm2"
    in_process: ClassVar[bool] = True

    def __init__(self, model: str | None = None, *, dtype: str | None = None) -> None:
        super().__init__(model)
        if self.model in ("smollm2", BUNDLED_MODEL, "SmolLM2-135M-Instruct"):
            self.path = bundled_model_path()
        else:
            self.path = Path(self.model).expanduser()
            if not self.path.exists():
                raise ConfigurationError(
                    f"no model at {self.path}: give model= a folder saved by transformers or a "
                    f".gguf file, or leave it out for the bundled model"
                )
        self.path = self.path.resolve()
        if dtype is not None and dtype not in _DTYPES:
            raise ConfigurationError(f"dtype must be one of {', '.join(_DTYPES)}, not {dtype!r}")
        self.dtype = dtype
        missing = _missing_modules(gguf=self.path.is_file())
        if missing:
            raise ConfigurationError(f"{_INSTALL_HINT} ({', '.join(missing)} missing)")
        self._loaded: _LoadedModel | None = None

    def _model(self) -> _LoadedModel:
        if self._loaded is None:
            self._loaded = _load(self.path, self.dtype)
        return self._loaded

    def capabilities(self) -> Capabilities:
        """What the model can do, known without loading it (its context window is read from
        its config or GGUF metadata)."""
        window = self._loaded.context_window if self._loaded else _context_window(self.path)
        # No VISION, PDF_INPUT or AUDIO_INPUT: a causal LM over text (open_stream refuses
        # files before the model is loaded).
        return {
            **streaming_capabilities(tools=False, tool_streaming=False, reasoning=False),
            ModelCapability.VISION: False,
            ModelCapability.PDF_INPUT: False,
            ModelCapability.AUDIO_INPUT: False,
            ModelCapability.CONTEXT_WINDOW: window,
        }

    def count_tokens(self, messages: list[dict[str, Any]]) -> int | None:
        """The prompt's length in the model's own tokens, once the model is loaded; None
        before (loading it reads and dequantizes the whole model: seconds, not a count's
        cost), and the caller then estimates."""
        if self._loaded is None:
            return None
        return int(_encode(self._loaded, messages)["input_ids"].shape[1])

    def count_text_tokens(self, text: str) -> int | None:
        """``text`` in the model's own tokens, once the model is loaded; None if the
        tokenizer is busy (a fast tokenizer may refuse a second thread: the caller then
        estimates)."""
        if self._loaded is None:
            return None
        try:
            return len(self._loaded.tokenizer.encode(text, add_special_tokens=False))
        except Exception:
            return None

    # -- sync ----------------------------------------------------------------------------------

    def open_stream(self, call: Call) -> SyncSource:
        refuse_files(self.name, call.messages)
        from transformers import TextIteratorStreamer

        model = self._model()
        model.lock.hold()
        try:
            plan = _prepare(model, call)
            streamer = TextIteratorStreamer(
                model.tokenizer, skip_prompt=True, skip_special_tokens=True
            )
            pieces: queue.Queue[Any] = streamer.text_queue
            run = _Run(model, plan, streamer, functools.partial(pieces.put, _END))
        except BaseException:
            model.lock.release()
            raise

        def release() -> None:
            run.stop()
            # Generation ends within a token once stopped: wait for it, so that the model
            # is idle when close() returns.
            with contextlib.suppress(Exception):  # its error was raised to the reader already
                run.future.result()
            run.unlock()

        return _events(run, pieces.get), release

    # -- async ---------------------------------------------------------------------------------

    async def aopen_stream(self, call: Call) -> AsyncSource:
        refuse_files(self.name, call.messages)
        from transformers import AsyncTextIteratorStreamer

        loop = asyncio.get_running_loop()
        model = self._model() if self._loaded else await loop.run_in_executor(None, self._model)
        await model.lock.ahold()
        try:
            plan = await loop.run_in_executor(model.worker, _prepare, model, call)
            # Its queue is an asyncio.Queue fed from the worker by call_soon_threadsafe.
            streamer = AsyncTextIteratorStreamer(
                model.tokenizer, skip_prompt=True, skip_special_tokens=True
            )
            pieces: asyncio.Queue[Any] = streamer.text_queue

            def end() -> None:
                # The loop may be gone if its stream was never closed: nobody is listening.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(pieces.put_nowait, _END)

            run = _Run(model, plan, streamer, end)
        except BaseException:
            model.lock.release()
            raise

        async def release() -> None:
            run.stop()
            try:
                await asyncio.shield(asyncio.wrap_future(run.future))
            except Exception:  # its error was raised to the reader already
                pass
            finally:
                run.unlock()

        events = _aevents(run, pieces.get)
        # A stream opened but never read, then dropped, never runs its release: stop the
        # generation and free the model when its events are collected.
        weakref.finalize(events, run.abandon)
        return events, release


def _context_window(path: Path) -> int | None:
    """The model's context size from its metadata, read without loading the model."""
    if path.is_file():
        return _gguf_context_length(path)
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        window = config.get("max_position_embeddings")
        if window is None:  # multimodal models keep it with their text model's settings
            window = (config.get("text_config") or {}).get("max_position_embeddings")
        return int(window) if window is not None else None
    except (OSError, ValueError, TypeError, AttributeError):
        return None


# GGUF metadata value types, by number, with their struct formats.
# https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_GGUF_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}


def _gguf_context_length(path: Path) -> int | None:
    """``<architecture>.context_length`` from a GGUF file's header, the key transformers
    reads as ``max_position_embeddings``.

    transformers reads the whole file, tokenizer included, before it can say this (seconds);
    the key sits near the start of the metadata, so reading stops there.
    """
    try:
        with path.open("rb") as file:

            def read(fmt: str) -> Any:
                size = struct.calcsize(fmt)
                data = file.read(size)
                if len(data) != size:
                    raise ValueError("the file ends inside its metadata")
                return struct.unpack(fmt, data)[0]

            def value(kind: int) -> Any:
                if kind == _GGUF_STRING:
                    return file.read(read("<Q")).decode("utf-8", "replace")
                if kind == _GGUF_ARRAY:
                    inner, count = read("<I"), read("<Q")
                    if inner in _GGUF_SCALARS:
                        file.seek(count * struct.calcsize(_GGUF_SCALARS[inner]), 1)
                    else:
                        for _ in range(count):
                            value(inner)
                    return None
                return read(_GGUF_SCALARS[kind])

            if file.read(4) != b"GGUF" or read("<I") < 2:  # version 1 had 32-bit counts
                return None
            read("<Q")  # the tensor count
            architecture = None
            lengths: dict[str, Any] = {}
            for _ in range(read("<Q")):
                key = value(_GGUF_STRING)
                found = value(read("<I"))
                if key == "general.architecture":
                    architecture = found
                elif key.endswith(".context_length"):
                    lengths[key] = found
                if architecture and f"{architecture}.context_length" in lengths:
                    return int(lengths[f"{architecture}.context_length"])
    except (OSError, ValueError, KeyError, struct.error):
        return None
    return None


# -- one generation ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Plan:
    """A call made ready for ``generate``: the prompt's tensors and the settings, checked."""

    inputs: dict[str, Any]
    prompt_count: int
    max_new_tokens: int
    stops: list[str]
    sampling: dict[str, Any]
    seed: int | None


def _encode(model: _LoadedModel, messages: list[dict[str, Any]]) -> Any:
    """The messages in the model's chat template, tokenized: ``input_ids`` and
    ``attention_mask`` as tensors."""
    tokenizer = model.tokenizer
    if not tokenizer.chat_template:
        raise ConfigurationError(
            f"the model {model.name} has no chat template: the transformers provider "
            f"needs an instruct (chat) model"
        )
    try:
        return tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
    except Exception as exc:  # jinja2's TemplateError, raise_exception() in a template...
        raise ProviderError(
            f"the model's chat template refused the messages: {exc}",
            provider="transformers",
            model=model.name,
        ) from None


def _prepare(model: _LoadedModel, call: Call) -> _Plan:
    """Format and tokenize the prompt and check the settings; errors raise here, not later."""
    encoded = _encode(model, call.messages)
    inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    prompt_count = int(inputs["input_ids"].shape[1])
    window = model.context_window
    if window is not None and prompt_count >= window:
        raise ContextWindowExceededError(
            f"the prompt is {prompt_count} tokens; the context window is {window}",
            provider="transformers",
            model=model.name,
        )
    params = dict(call.params)
    room = window - prompt_count if window is not None else DEFAULT_MAX_TOKENS
    max_tokens = params.pop("max_tokens", None)
    if max_tokens is None or max_tokens <= 0:
        max_tokens = DEFAULT_MAX_TOKENS
    stops = params.pop("stop", None) or []
    if isinstance(stops, str):
        stops = [stops]
    seed = params.pop("seed", None)
    temperature = params.pop("temperature", None)
    top_p = params.pop("top_p", None)
    top_k = params.pop("top_k", None)
    if params:
        raise ConfigurationError(
            f"the transformers provider does not take {', '.join(map(repr, sorted(params)))}; "
            f"it takes temperature, top_p, top_k, max_tokens, stop, seed"
        )
    sampling: dict[str, Any] = {}
    if temperature is not None:
        # Left out, the model's generation config decides; given, 0 means greedy.
        sampling["do_sample"] = temperature > 0
        if temperature > 0:
            sampling["temperature"] = float(temperature)
    if sampling.get("do_sample", model.model.generation_config.do_sample):
        if top_p is not None:
            sampling["top_p"] = float(top_p)
        if top_k is not None:
            sampling["top_k"] = int(top_k)
    return _Plan(
        inputs=inputs,
        prompt_count=prompt_count,
        max_new_tokens=min(int(max_tokens), room),
        stops=[s for s in stops if s],
        sampling=sampling,
        seed=None if seed is None else int(seed),
    )


class _Run:
    """One ``generate`` on a model's worker, the flag that stops it, and the model's lock."""

    __slots__ = ("__weakref__", "_guard", "_unlocked", "future", "model", "plan", "watch")

    def __init__(
        self, model: _LoadedModel, plan: _Plan, streamer: Any, end: Callable[[], None]
    ) -> None:
        self.model = model
        self.plan = plan
        self.watch = _watch_class()(model.tokenizer, plan.prompt_count, plan.stops)
        self._guard = threading.Lock()
        self._unlocked = False
        self.future: concurrent.futures.Future[Any] = model.worker.submit(
            _generate, model, plan, streamer, self.watch, end
        )

    def stop(self) -> None:
        """Stop generating at the next token: the reader is gone."""
        self.watch.closed = True

    def unlock(self) -> None:
        """Free the model for the next stream, once, whoever calls it first."""
        with self._guard:
            if self._unlocked:
                return
            self._unlocked = True
        self.model.lock.release()

    def abandon(self) -> None:
        self.stop()
        self.unlock()  # the worker runs one generation at a time: the next one waits for this

    def closing_events(self, sequences: Any) -> list[Event]:
        """Usage and finish, from the tokens ``generate`` returned."""
        plan = self.plan
        generated = [int(t) for t in sequences[0, plan.prompt_count :].tolist()]
        count = len(generated)
        if self.watch.hit_stop:
            finish = "stop"
        elif generated and generated[-1] in self.model.eos_ids:
            count -= 1  # the end token is not part of the answer (as in the local provider)
            finish = "stop"
        elif count >= plan.max_new_tokens:
            finish = "length"
        else:
            finish = "stop"
        return [
            Usage(plan.prompt_count, count, {"total_tokens": plan.prompt_count + count}),
            Finish("stop" if finish == "stop" else "length", finish),
        ]


def _generate(
    model: _LoadedModel, plan: _Plan, streamer: Any, watch: Any, end: Callable[[], None]
) -> Any:
    """Run ``generate`` to its end (on the worker thread); its failures become spout errors."""
    import torch
    from transformers import StoppingCriteriaList

    try:
        with contextlib.ExitStack() as stack:
            if plan.seed is not None:
                # generate() samples from torch's global generator: seed a copy of its state,
                # restored afterwards, so the caller's own random numbers are left alone.
                stack.enter_context(torch.random.fork_rng(devices=[]))
                torch.manual_seed(plan.seed)
            return model.model.generate(
                **plan.inputs,
                **plan.sampling,
                max_new_tokens=plan.max_new_tokens,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([watch]),
            )
    except Exception as exc:  # RuntimeError from torch, ValueError from transformers...
        raise ProviderError(
            f"transformers failed: {exc}", provider="transformers", model=model.name
        ) from exc
    finally:
        end()


@functools.cache
def _watch_class() -> type[Any]:
    """A StoppingCriteria (made on first use: transformers is imported lazily)."""
    import torch
    from transformers import StoppingCriteria

    class Watch(StoppingCriteria):  # type: ignore[misc]  # Any: see pyproject's mypy
        """Stops ``generate`` at the token that completes a stop string, or once ``closed``.

        Called on the worker after each token. Stop strings are found here rather than in the
        streamed text, which the streamer holds back to word boundaries: the token count
        then does not depend on how far generation got before the reader saw the text.
        """

        def __init__(self, tokenizer: Any, prompt_count: int, stops: list[str]) -> None:
            self.tokenizer = tokenizer
            self.prompt_count = prompt_count
            self.stops = stops
            self.longest = max(map(len, stops), default=0)
            self.seen = 0  # how much of the text has been searched, less a stop's length
            self.closed = False
            self.hit_stop = False

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            if self.stops and not self.hit_stop:
                text = self.tokenizer.decode(
                    input_ids[0, self.prompt_count :], skip_special_tokens=True
                )
                start = max(0, self.seen - self.longest)
                self.hit_stop = any(stop in text[start:] for stop in self.stops)
                self.seen = len(text)
            done = self.closed or self.hit_stop
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool)

    return Watch


class _Text:
    """The streamed pieces, with what may begin a stop string held back until ruled out."""

    __slots__ = ("held", "stopped", "stops")

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.held = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        if not self.stops:
            return piece
        text, self.held, self.stopped = _hold_stops(self.held + piece, self.stops)
        return text

    def events(self, piece: Any) -> list[Event]:
        """The text a piece from the streamer lets out (it also sends "" and, at its end, None)."""
        out = self.feed(piece) if piece else ""
        return [TextDelta(out)] if out else []

    def tail(self) -> list[Event]:
        """What was held back and was no stop string after all."""
        return [] if self.stopped or not self.held else [TextDelta(self.held)]


def _events(run: _Run, get: Callable[[], Any]) -> Generator[Event, None, None]:
    yield ResponseStart(f"tf-{uuid.uuid4().hex}", run.model.name)
    text = _Text(run.plan.stops)
    while True:
        piece = get()
        if piece is _END:
            break
        yield from text.events(piece)
        if text.stopped:
            run.stop()  # the watch has stopped it already, unless decoding differed
            break
    sequences = run.future.result()
    yield from text.tail()
    yield from run.closing_events(sequences)


async def _aevents(run: _Run, get: Callable[[], Any]) -> AsyncGenerator[Event, None]:
    yield ResponseStart(f"tf-{uuid.uuid4().hex}", run.model.name)
    text = _Text(run.plan.stops)
    while True:
        piece = await get()
        if piece is _END:
            break
        for event in text.events(piece):
            yield event
        if text.stopped:
            run.stop()
            break
    sequences = await asyncio.wrap_future(run.future)
    for event in text.tail():
        yield event
    for event in run.closing_events(sequences):
        yield event
