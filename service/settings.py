"""One settings class: every field is an env var and a CLI flag.

pydantic-settings builds both from the same fields, so the environment, the
command line and the docs' settings table cannot drift apart. Env var names carry no
prefix (``MODEL_ID``, ``PORT``) because that is what Docker images and the
providers' consoles conventionally set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.engine.builtin_models import describe_builtin_models

DEFAULT_MODEL_ID = "mistralai/Mistral-7B-Instruct-v0.3"


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "llm-serving"


class EngineSettings(BaseSettings):
    """What the engine is configured with: the model, where and how it runs. Its own part, so the
    engine never sees the server's settings (API keys, port, RunPod knobs); env vars and flags
    are those of :class:`Settings`, which includes it."""

    model_config = SettingsConfigDict(protected_namespaces=(), extra="ignore")

    model: str = Field(
        DEFAULT_MODEL_ID,
        validation_alias=AliasChoices("model", "model_id"),
        description="Hugging Face model id, a local model directory, a GGUF file (or a directory "
        "holding one; converted once into --cache-dir), a built-in name: "
        f"{describe_builtin_models()}; or 'random:<config>' (an architecture with random weights, "
        "for benchmarks; 'random:mistral-7b' is bundled).",
    )
    served_model_name: str | None = Field(
        None,
        description="Name reported by /v1/models and in responses, and the only 'model' requests may "
        "name (default: the model id; a local path's base name).",
    )
    engine: Literal["sequential", "batched"] = Field(
        "batched",
        description="'batched': continuous batching, requests join and leave between decode steps; "
        "'sequential': one generate() at a time (docs/architecture.md: Engines).",
    )
    static_cache: bool = Field(
        False,
        description="Sequential engine: generate() with a static KV cache of --static-cache-tokens; "
        "on CUDA transformers then compiles the decode step with torch.compile (CUDA graphs), "
        "once, during the warm-up (docs/architecture.md: Engines).",
    )
    static_cache_tokens: int = Field(
        0,
        ge=0,
        description="Static cache length, prompt and output together (longer requests get 400); "
        "0: the model's context length.",
    )
    compile: bool = Field(
        True, description="With --static-cache on CUDA: compile the decode step (--no-compile: do not)."
    )
    max_batch_size: int = Field(
        16, ge=1, description="Batched engine: requests in one batch (the default max_concurrency)."
    )
    max_concurrency: int = Field(
        0,
        ge=0,
        description="Requests generating at once; 0 means what the engine runs at once "
        "(max_batch_size for the batched engine, 1 for the sequential one).",
    )
    prefill_chunk_tokens: int = Field(
        512,
        ge=16,
        description="Batched engine: prompts longer than this are prefilled this many tokens per "
        "decode step, so running streams keep flowing meanwhile.",
    )
    prefill_pass_tokens: int = Field(
        256,
        ge=16,
        description="Batched engine: new prompts are prefilled in forward passes of at most this many "
        "tokens, each pass's first tokens sent as it ends (a burst's first streams start sooner), "
        "back to back while no stream runs and one per decode step beside running streams "
        "(docs/performance.md).",
    )
    arrival_gap_ms: float = Field(
        5.0,
        ge=0,
        description="Batched engine: an idle engine, given a request, waits for more arriving within "
        "this many ms of each other (ten times that at most in all) while more requests are on "
        "their way (arrived, not yet templated), so that a burst is prefilled together; a lone "
        "request starts at once; 0: never wait.",
    )
    device: str = Field(
        "auto", description="'auto' (cuda if available, else cpu), 'cpu', 'cuda' or 'cuda:N'."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; 'auto' is bfloat16 on CUDA and float32 on CPU."
    )
    pack_weights: bool = Field(
        True,
        description="On CPU: reorder the linear layers' weights once for oneDNN, as vLLM's CPU backend "
        "does (decode about 2x faster; docs/performance.md); --no-pack-weights: plain nn.Linear.",
    )
    few_rows_kernel: bool = Field(
        True,
        description="On CPU in float32, with --pack-weights: linear layers at 1-16 rows (decode steps "
        "of small batches) run whichever of oneDNN, MKL on row-major weights and our kernel (1-4 rows) "
        "was fastest at that many rows, measured at load on the model's layers (~1 s; "
        "docs/performance.md); keeps row-major weights beside the packed ones, their memory twice "
        "over. --no-few-rows-kernel: oneDNN only.",
    )
    torch_threads: int = Field(
        0,
        ge=0,
        description="torch intra-op threads; 0 means all cores but one, which is left to the "
        "event loop that streams the tokens (docs/performance.md).",
    )
    max_model_len: int = Field(
        0,
        ge=0,
        description="Most tokens a request may use, prompt and completion together (vLLM's "
        "--max-model-len); 0: the model's context length.",
    )
    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Where built-in models are built and GGUF files converted, once, on first use.",
    )
    warmup_tokens: int = Field(
        4, ge=0, description="Tokens generated at start-up before /ready turns 200 (0: no warm-up)."
    )

    @model_validator(mode="after")
    def _static_cache_needs_the_sequential_engine(self) -> EngineSettings:
        if self.static_cache and self.engine != "sequential":
            raise ValueError("--static-cache applies to the sequential engine: add --engine sequential")
        return self

    @property
    def generation_slots(self) -> int:
        """Requests generating at once: ``max_concurrency``, or what the chosen engine runs at once."""
        if self.max_concurrency:
            return self.max_concurrency
        return self.max_batch_size if self.engine == "batched" else 1

    @property
    def model_name(self) -> str:
        """The name clients see for the served model: a local path is served under its base name."""
        if self.served_model_name:
            return self.served_model_name
        path = Path(self.model).expanduser()
        if path.is_file():
            return path.name.removesuffix(".gguf")
        if path.is_dir():
            return path.resolve().name
        return self.model


class Settings(EngineSettings):
    """Configuration of the service, read from env vars and (under ``python -m service``) flags:
    the engine's part (:class:`EngineSettings`) and the server's."""

    model_config = SettingsConfigDict(
        cli_prog_name="python -m service",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        protected_namespaces=(),
        extra="ignore",
    )

    host: str = Field("127.0.0.1", description="Interface to listen on (0.0.0.0 in containers).")
    port: int = Field(8000, ge=1, le=65535, description="Port to listen on.")
    max_new_tokens: int = Field(
        512,
        ge=1,
        description="Tokens generated when a request does not say (fewer when the prompt leaves less "
        "room in the context).",
    )
    max_new_tokens_limit: int = Field(4096, ge=1, description="Largest max_new_tokens a request may ask for.")
    api_key: SecretStr | None = Field(
        None,
        description="If set, /v1/* requires 'Authorization: Bearer <key>'; several keys are "
        "separated by commas. Never logged.",
    )
    max_queue: int = Field(16, ge=0, description="Requests waiting for a generation slot; more get 429.")
    queue_timeout: float = Field(
        60.0,
        ge=0,
        allow_inf_nan=False,
        description="Seconds a request may wait for a slot; then a stream ends with an error event, "
        "a non-streaming request gets a 503 (0: no limit).",
    )
    request_timeout: float = Field(
        600.0,
        ge=0,
        allow_inf_nan=False,
        description="Seconds a whole request may take; past it, generation stops (0: no limit).",
    )
    sse_ping_interval: float = Field(
        15.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds between ': ping' comments on an open stream, also while it waits for a slot; "
        "keeps proxies from closing a quiet connection.",
    )
    cors_allow_origins: str = Field(
        "",
        description="Origins a browser may call the API from, comma-separated ('*': any); empty: no "
        "CORS headers. Preflights are answered before the API key check.",
    )
    playground: bool = Field(
        True,
        description="Serve the chat playground at / (a page over /v1/chat/completions); "
        "--no-playground: / is a 404 like any unknown route.",
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body; larger gets 413.")
    drain_timeout: float = Field(
        30.0,
        ge=0,
        allow_inf_nan=False,
        description="On SIGTERM, seconds in-flight streams may run before the process exits.",
    )
    runpod_batch_s: float = Field(
        0.05,
        ge=0,
        allow_inf_nan=False,
        description="RunPod queue worker: after the first piece, text is sent to RunPod at most this "
        "often (each item is one POST from the worker).",
    )
    runpod_batch_pieces: int = Field(
        50, ge=1, description="RunPod queue worker: at most this many pieces of text in one item."
    )
    instance_id: str | None = Field(
        None,
        description="Identifies this process in done events (default: a random id per process).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")

    @property
    def cors_origins(self) -> list[str]:
        return [origin.strip() for origin in self.cors_allow_origins.split(",") if origin.strip()]

    @property
    def api_keys(self) -> list[str]:
        joined = self.api_key.get_secret_value() if self.api_key else ""
        return [key.strip() for key in joined.split(",") if key.strip()]

    def engine_settings(self) -> EngineSettings:
        """The engine's part alone, for the engine to keep."""
        return EngineSettings.model_construct(
            **{name: getattr(self, name) for name in EngineSettings.model_fields}
        )
