"""The engine interface: what the HTTP layer knows about generation.

Nothing here imports torch or transformers, so the HTTP layer (and its tests of
validation and errors) stays light. Engines implement :class:`Engine`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from service.instance import process_age_s

logger = logging.getLogger(__name__)


class EngineState(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    # An assistant's calls ({"type": "function", "function": {"name", "arguments"}}, arguments
    # as an object: what chat templates expect) and, on a tool message, the call it answers.
    tool_calls: tuple[dict[str, Any], ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class TemplateOptions:
    """How the chat template renders the end of the conversation (vLLM's fields of these names).

    None means the default: a conversation that ends with the assistant's message is
    continued (the reply goes on from that text, e.g. a prefilled answer), any other gets
    the assistant's turn opened.
    """

    add_generation_prompt: bool | None = None
    continue_final_message: bool | None = None

    def resolve(self, last_role: str) -> tuple[bool, bool]:
        """``(add_generation_prompt, continue_final_message)`` for a conversation ending with
        ``last_role``. Raises :class:`InvalidPromptError` for a combination that cannot work."""
        continue_final = self.continue_final_message
        if continue_final is None:
            continue_final = last_role == "assistant" and self.add_generation_prompt is not True
        add_generation_prompt = (
            self.add_generation_prompt if self.add_generation_prompt is not None else not continue_final
        )
        if continue_final and add_generation_prompt:
            raise InvalidPromptError(
                "add_generation_prompt and continue_final_message cannot both be true",
                param="continue_final_message",
            )
        if continue_final and last_role != "assistant":
            raise InvalidPromptError(
                f"continue_final_message needs the last message to be the assistant's, not the {last_role}'s",
                param="continue_final_message",
            )
        return add_generation_prompt, continue_final


DEFAULT_TEMPLATE = TemplateOptions()


class OutputGrammar(ABC):
    """What a completion must match (a JSON schema), compiled once by the engine
    (:meth:`Engine.compile_json_schema`) and shared by every request that sends the same one."""

    # The fewest tokens a complete answer takes: max_new_tokens below it cannot give one.
    shortest_tokens: int


@dataclass(frozen=True)
class SamplingParams:
    """How to generate one completion. ``temperature == 0`` means greedy decoding."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # Generate exactly max_new_tokens: benchmarks need fixed output lengths.
    ignore_eos: bool = False
    top_k: int = 0  # 0: off
    min_p: float = 0.0  # 0: off
    min_new_tokens: int = 0  # EOS cannot end the answer before this many tokens
    # None: no log-probabilities; n >= 0: each token's, with the n most likely tokens of its step.
    logprobs: int | None = None
    # Constrained decoding: the completion matches this grammar, complete also when
    # max_new_tokens cuts it short (service.engine.grammar).
    grammar: OutputGrammar | None = None


@dataclass(frozen=True)
class Prompt:
    """A chat rendered through the model's chat template and tokenized."""

    token_ids: list[int]


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token (its text alone) and its log-probability; ``top``: the most likely
    tokens at its step (service.engine.logprobs)."""

    token: str
    logprob: float
    top: tuple[TokenLogprob, ...] = ()

    @property
    def utf8(self) -> list[int]:
        """The token's bytes as OpenAI's ``bytes`` field gives them (vLLM: its text encoded)."""
        return list(self.token.encode("utf-8", errors="replace"))


@dataclass(frozen=True)
class TextDelta:
    text: str
    # Tokens generated so far, those behind this text included (OpenAI's continuous usage).
    completion_tokens: int = 0
    # With SamplingParams.logprobs: one per token behind this delta (its text may be held back
    # to a later delta: part of a character, or of a stop string).
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class GenerationFinished:
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int
    # Seconds the request waited for the inference thread before generate() began.
    queue_s: float


GenerationEvent = TextDelta | GenerationFinished


class EngineError(Exception):
    """Generation failed inside the engine; the engine itself keeps serving."""


class InvalidPromptError(ValueError):
    """The messages cannot be turned into a prompt for this model (client's fault)."""

    def __init__(self, message: str, param: str | None = "messages") -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class StartupTimes:
    """Where the seconds from process start to ready went; the three phases add up to ``ready_s``."""

    # Process start to the engine starting to load: the interpreter, imports (torch,
    # transformers), building the app, starting the server.
    import_s: float
    # Weights and tokenizer.
    load_s: float
    # Loaded to ready: the warm-up generation and what the engine sets up for it
    # (the batched engine's loop).
    warmup_s: float
    ready_s: float

    def phases(self) -> dict[str, float]:
        """Seconds by phase: ``import``, ``load``, ``warmup`` and ``ready`` (the total)."""
        return {"import": self.import_s, "load": self.load_s, "warmup": self.warmup_s, "ready": self.ready_s}


@dataclass
class EngineStatus:
    state: EngineState = EngineState.LOADING
    reason: str = "model is loading"
    details: dict[str, str] = field(default_factory=dict)
    # Set once the engine is ready.
    startup: StartupTimes | None = None


class Engine(ABC):
    """Generates chat completions; one instance serves the whole process."""

    model_name: str
    # Generations this engine runs at once; admission control defaults to it.
    max_concurrency: int = 1

    def __init__(self) -> None:
        self.status = EngineStatus()
        self._start_lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return self.status.state is EngineState.READY

    @property
    @abstractmethod
    def context_length(self) -> int:
        """Most tokens (prompt plus completion) the model accepts."""

    async def start(self) -> None:
        """Load the weights and run a warm-up generation; sets ``status``, timing each phase.

        Safe to call more than once: later calls wait for the first to finish.
        Raises what loading raised, after setting the status to FAILED.
        """
        async with self._start_lock:
            if self.status.state is not EngineState.LOADING:
                return
            # One clock for every mark, so that the phases add up to the total.
            load_began_s = process_age_s()
            try:
                details = await self._load()
                loaded_s = process_age_s()
                self.status.reason = "warming up"
                await self._warm_up()
            except Exception as exc:
                logger.exception("model failed to load")
                self.status.state = EngineState.FAILED
                self.status.reason = f"model failed to load: {exc}"
                raise
            ready_s = process_age_s()
            self.status.startup = StartupTimes(
                import_s=load_began_s,
                load_s=loaded_s - load_began_s,
                warmup_s=ready_s - loaded_s,
                ready_s=ready_s,
            )
            self.status.details = details
            self.status.state = EngineState.READY
            self.status.reason = "ready"
            logger.info(
                "engine ready: %s (%s) %.2f s after process start: import %.2f s, load %.2f s, "
                "warm-up %.2f s",
                self.model_name,
                details,
                ready_s,
                load_began_s,
                loaded_s - load_began_s,
                ready_s - loaded_s,
            )

    def announce(self) -> None:
        """A request has arrived and may generate soon (the chat service calls this first thing).
        The batched engine's idle loop waits for announced requests to gather a burst; others
        need not know."""
        return

    @abstractmethod
    async def _load(self) -> dict[str, str]:
        """Load weights and tokenizer; describe what was loaded (device, dtype, ...) for /ready."""

    @abstractmethod
    async def _warm_up(self) -> None:
        """Prepare to serve, so the first request pays for no lazy initialisation."""

    @abstractmethod
    async def render_prompt(
        self,
        messages: Sequence[Message],
        template: TemplateOptions = DEFAULT_TEMPLATE,
        tools: Sequence[dict[str, Any]] = (),
    ) -> Prompt:
        """Apply the chat template (with ``tools``, OpenAI's) and tokenize. Raises
        :class:`InvalidPromptError`."""

    @abstractmethod
    async def compile_json_schema(self, schema: str, text_allowed: bool = False) -> OutputGrammar:
        """The grammar of JSON text that matches ``schema`` (JSON text), compiled off the event loop
        and cached; with ``text_allowed``, of that or free text (a call the model may make).
        Raises :class:`InvalidPromptError` for a schema the grammar library rejects."""

    @abstractmethod
    async def tokenize(self, text: str) -> Prompt:
        """A plain prompt (``/v1/completions``), no chat template. Raises :class:`InvalidPromptError`."""

    @abstractmethod
    async def prompt_tokens_at_least(self, messages: Sequence[Message]) -> int:
        """A cheap lower bound of the tokens ``messages`` make (0 for text too short to be worth
        counting): a prompt far over the context is refused without templating all of it."""

    @abstractmethod
    def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        """Stream the completion: text deltas, then exactly one :class:`GenerationFinished`.

        Raises :class:`EngineError` if generation fails. Closing the iterator early
        (the client left) stops the generation within one decode step.
        """

    @abstractmethod
    async def close(self) -> None:
        """Stop the inference thread and release the model."""
