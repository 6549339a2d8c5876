"""The load tester's options: one pydantic model whose fields are the flags of ``python -m loadtest``
(pydantic-settings builds the parser from it, as it does for ``python -m service``) and the one
place their defaults live."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import CliVariadicArg, SettingsConfigDict

from loadtest.clients.providers import PROTOCOLS, PROVIDERS
from loadtest.driver.experiment import RunConfig
from loadtest.driver.runner import LoadPlan
from loadtest.traffic.arrivals import Arrivals
from loadtest.traffic.prompts import DEFAULT_PROMPTS_FILE

PROG = "python -m loadtest"
_DEFAULT_PLAN = LoadPlan()


class LoadTestOptions(BaseModel):
    """Measure cold start, TTFT, latency, tokens/s and cost of one deployment (docs/load-testing.md)."""

    model_config = SettingsConfigDict(
        cli_prog_name=PROG,
        cli_kebab_case=True,
        cli_implicit_flags=True,
        extra="forbid",
        protected_namespaces=(),
    )

    url: str | None = Field(
        None, description="The server's root URL (RunPod queue: https://api.runpod.ai/v2/ENDPOINT_ID)."
    )
    provider: str = Field(
        "local", description=f"Credentials and prices: one of {', '.join(sorted(PROVIDERS))}."
    )
    protocol: str | None = Field(
        None, description=f"Override the provider's protocol: one of {', '.join(PROTOCOLS)}."
    )
    out: Path | None = Field(None, description="Directory for results.json, report.md and plots.")
    requests: int = Field(_DEFAULT_PLAN.requests, ge=1, description="Requests to send.")
    cold: int = Field(_DEFAULT_PLAN.cold, ge=0, description="The first N are the warm-up phase.")
    max_tokens: int = Field(512, ge=1, description="Tokens per answer.")
    concurrency: int = Field(
        _DEFAULT_PLAN.concurrency, ge=1, description="Requests in flight (1: one after another)."
    )
    sweep: list[int] | None = Field(
        None, description="Concurrency levels, e.g. 1,4,8,16: one run each into OUT/cN."
    )
    rate: float | None = Field(
        None,
        gt=0,
        description="Requests per second, sent on schedule (an open loop) instead of --concurrency.",
    )
    arrivals: Arrivals = Field(_DEFAULT_PLAN.arrivals, description="With --rate: how requests are spaced.")
    seed: int = Field(_DEFAULT_PLAN.seed, description="Poisson arrivals: the same seed, the same schedule.")
    max_in_flight: int = Field(
        _DEFAULT_PLAN.max_in_flight, ge=1, description="With --rate: streams open at most."
    )
    rate_sweep: list[float] | None = Field(
        None, description="Rates, e.g. 0.5,1,2,4: one run each into OUT/rR."
    )
    slo: str | None = Field(
        None, description="Objectives in seconds, e.g. ttft=0.5,tpot=0.05,e2e=30: good requests and goodput."
    )
    search: Literal["concurrency", "rate"] | None = Field(
        None,
        description="With --slo: find the highest concurrency or rate whose p99s meet it "
        "(runs into OUT/search-*).",
    )
    search_max: float = Field(64, gt=0, description="The highest level --search tries.")
    prompts: Path = Field(DEFAULT_PROMPTS_FILE, description="One prompt per line.")
    input_tokens: int | None = Field(
        None,
        ge=1,
        description="Synthetic prompts of N tokens, chat template included, sized before the clock starts "
        "(with --tokenizer, else by calibration requests to the server).",
    )
    tokenizer: str | None = Field(
        None,
        description="The served model's tokenizer (a directory, a hub id in the local cache, or a built-in "
        "name such as smollm2-135m) to size --input-tokens prompts exactly; without it, two "
        "calibration requests go to the server first and its first measured request is not cold.",
    )
    dataset: Path | None = Field(
        None, description='JSONL rows {"prompt": ..., "output_tokens": N}: per-row output lengths.'
    )
    processes: int = Field(
        1, ge=1, description="Spread the streams over N client processes (docs/load-testing.md: limits)."
    )
    model: str | None = Field(
        None, description="Model name for OpenAI-compatible servers (default: the first listed)."
    )
    ignore_eos: bool = Field(
        True, description="Send ignore_eos so every answer is --max-tokens long (api.openai.com rejects it)."
    )
    gpu: str | None = Field(None, description="GPU for the price table, e.g. A100-80GB, H100, 'H100 PRO'.")
    price_per_second: float | None = Field(
        None, ge=0, description="USD per second for the whole worker, instead of the tables."
    )
    cpu_cores: float | None = Field(
        None, gt=0, description="Modal, Beam: CPU cores billed (default: what the shim reserves)."
    )
    memory_gib: float | None = Field(
        None, gt=0, description="Modal, Beam: memory billed, GiB (default: what the shim reserves)."
    )
    spawn: str | None = Field(
        None, description='Start this server command first, e.g. "python -m service --model smollm2-135m".'
    )
    spawn_timeout: float = Field(600.0, gt=0, description="Seconds to wait for the spawned server's /ready.")
    wait_ready: float = Field(
        0.0,
        ge=0,
        description="Poll /ready (up to this many seconds) before the first request and time the cold start "
        "there: for cold starts longer than a provider's proxy waits (docs/deploying.md: long cold starts).",
    )
    request_timeout: float = Field(
        _DEFAULT_PLAN.request_timeout_s, gt=0, description="Seconds per request at most."
    )
    max_duration: float = Field(
        _DEFAULT_PLAN.max_duration_s, gt=0, description="Seconds for the whole run at most."
    )
    poll_interval: float = Field(0.2, gt=0, description="RunPod queue: seconds between polls.")
    compare: CliVariadicArg[list[Path]] = Field(
        [], description="Compare finished runs: their directories, side by side."
    )

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, provider: str) -> str:
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}: one of {', '.join(sorted(PROVIDERS))}")
        return provider

    @field_validator("protocol")
    @classmethod
    def _known_protocol(cls, protocol: str | None) -> str | None:
        if protocol is not None and protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}: one of {', '.join(PROTOCOLS)}")
        return protocol

    @model_validator(mode="after")
    def _a_runnable_combination(self) -> LoadTestOptions:
        if self.compare:
            return self
        if self.out is None:
            raise ValueError("--out is required")
        if self.url is None and self.spawn is None:
            raise ValueError("give --url, --spawn, or both")
        if self.search and not self.slo:
            raise ValueError("--search needs --slo")
        if sum(bool(option) for option in (self.sweep, self.rate_sweep, self.search)) > 1:
            raise ValueError("give one of --sweep, --rate-sweep and --search")
        return self

    def run_config(self, out_dir: Path, concurrency: int, rate: float | None = None) -> RunConfig:
        """One run of these options at one concurrency level or rate, writing into ``out_dir``."""
        plan = LoadPlan(
            self.requests,
            self.cold,
            concurrency,
            self.request_timeout,
            self.max_duration,
            rate_per_s=rate,
            arrivals=self.arrivals,
            seed=self.seed,
            max_in_flight=self.max_in_flight,
        )
        return RunConfig(
            out_dir=out_dir,
            url=self.url,
            provider=self.provider,
            protocol=self.protocol,
            plan=plan,
            max_tokens=self.max_tokens,
            ignore_eos=self.ignore_eos,
            model=self.model,
            gpu=self.gpu,
            price_per_second=self.price_per_second,
            cpu_cores=self.cpu_cores,
            memory_gib=self.memory_gib,
            prompts_file=self.prompts,
            spawn=self.spawn,
            spawn_timeout_s=self.spawn_timeout,
            poll_interval_s=self.poll_interval,
            wait_ready_s=self.wait_ready,
            input_tokens=self.input_tokens,
            tokenizer=self.tokenizer,
            dataset=self.dataset,
            slo=self.slo,
            processes=self.processes,
        )
