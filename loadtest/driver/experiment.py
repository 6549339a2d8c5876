"""One run, start to finish: spawn, send, mark cold requests, cost, write results, report, plots."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from loadtest.clients.openai_compatible import discover_model
from loadtest.clients.providers import PROVIDERS, auth_headers, build_client, normalize_base_url
from loadtest.driver.processes import run_load_in_processes
from loadtest.driver.runner import LoadPlan, run_load
from loadtest.driver.spawn import SpawnedServer, redact_command, spawn_server
from loadtest.measure.cost import resolve_container, resolve_price, run_cost
from loadtest.measure.instances import instance_breakdown
from loadtest.measure.metrics import RequestRecord, mark_cold, summarize
from loadtest.measure.slo import Objectives, goodput
from loadtest.output.html import write_html
from loadtest.output.plots import write_plots
from loadtest.output.report import render_report, run_title
from loadtest.output.results import DEFINITIONS, write_results
from loadtest.traffic.prompts import load_prompts
from loadtest.traffic.sizing import load_token_counter, size_prompts
from loadtest.traffic.workload import Dataset, PromptList, SyntheticPrompts, Workload

REPORT_FILE = "report.md"
REPORT_HTML = "report.html"
SERVER_LOG = "server.log"


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """One run; loadtest.options.LoadTestOptions.run_config builds it, and holds the defaults."""

    out_dir: Path
    url: str | None  # None only with spawn: the spawned server's URL
    provider: str
    protocol: str | None  # None: the provider's
    plan: LoadPlan
    max_tokens: int
    ignore_eos: bool
    model: str | None
    gpu: str | None
    price_per_second: float | None
    cpu_cores: float | None  # None: what the provider's shim reserves
    memory_gib: float | None
    prompts_file: Path
    spawn: str | None
    spawn_timeout_s: float
    poll_interval_s: float
    # > 0: poll /ready first, for up to this long, and time the cold start there instead of
    # inside the first request (one longer than a provider's proxy allows cannot be seen there).
    wait_ready_s: float
    input_tokens: int | None  # synthetic prompts of about this many tokens
    tokenizer: str | None  # counts --input-tokens prompts; None: calibrate on the server
    dataset: Path | None  # JSONL rows: prompt and output_tokens
    slo: str | None  # "ttft=0.5,tpot=0.05,e2e=30"
    processes: int

    @property
    def resolved_protocol(self) -> str:
        return self.protocol or PROVIDERS[self.provider].protocol


def config_record(config: RunConfig, url: str, model: str | None, credentials: list[str]) -> dict[str, Any]:
    """The configuration as results.json keeps it: env var names, never their values."""
    return {
        "provider": config.provider,
        "protocol": config.resolved_protocol,
        "url": str(httpx.URL(url).copy_with(username=None, password=None)),
        "model": model,
        "gpu": config.gpu,
        "max_tokens": config.max_tokens,
        "ignore_eos": config.ignore_eos,
        "prompts_file": str(config.prompts_file),
        "spawn": " ".join(redact_command(shlex.split(config.spawn))) if config.spawn else None,
        "poll_interval_s": config.poll_interval_s,
        "input_tokens": config.input_tokens,
        "tokenizer": config.tokenizer,
        "dataset": str(config.dataset) if config.dataset else None,
        "slo": config.slo,
        "processes": config.processes,
        "credentials_from_env": credentials,
        **asdict(config.plan),
    }


def run_experiment(
    config: RunConfig,
    env: Mapping[str, str] = os.environ,
    progress: Callable[[int, str], contextlib.AbstractContextManager[Any]] | None = None,
) -> dict[str, Any]:
    """Run it, write results.json, report.md and the plots into ``config.out_dir``; return the results.

    ``progress(total, label)`` makes a context with an ``on_record(record)`` method (the rich bar).
    Raises ValueError for a configuration that cannot run (no URL, unknown GPU, no prompts).
    """
    if config.url is None and config.spawn is None:
        raise ValueError("give --url, --spawn, or both")
    if config.wait_ready_s > 0 and config.resolved_protocol == "runpod-queue":
        raise ValueError(
            "--wait-ready needs /ready; on the queue API the first job waits as long as it takes"
        )
    price = resolve_price(config.provider, config.gpu, config.price_per_second)
    container = resolve_container(config.provider, config.cpu_cores, config.memory_gib)
    workload = build_workload(config)
    objectives = Objectives.parse(config.slo) if config.slo else None
    provider = PROVIDERS[config.provider]
    headers, credentials = auth_headers(provider, env)
    run_started_at = time.time()  # before the spawn: a process started from here on is new
    with _maybe_spawn(config) as spawned:
        url = spawned.url if spawned else str(config.url)
        protocol = config.resolved_protocol
        model = config.model
        ready_wait = (
            asyncio.run(wait_for_ready(normalize_base_url(url, protocol), headers, config.wait_ready_s))
            if config.wait_ready_s > 0
            else None
        )
        if protocol == "openai" and model is None:
            model = asyncio.run(_discover(normalize_base_url(url, protocol), headers))
        client = build_client(
            protocol,
            url,
            headers,
            config.max_tokens,
            config.ignore_eos,
            model,
            config.poll_interval_s,
            provider.proxy_answers,
        )
        # Before the clock: prompts of --input-tokens go out sized from the first request on.
        prompt_sizing = asyncio.run(size_prompts(workload, client, config.plan.requests))
        context = progress(config.plan.requests, config.provider) if progress else contextlib.nullcontext()
        with context as bar:
            on_record: Callable[[RequestRecord], None] | None = bar.on_record if bar else None
            if config.processes > 1:
                outcome = run_load_in_processes(client, workload, config.plan, config.processes)
                for record in outcome.records if on_record else ():
                    on_record(record)  # type: ignore[misc]
            else:
                outcome = asyncio.run(run_load(client, workload, config.plan, on_record))
        # After the run, never before: the instance is awake now, and a probe must not wake it.
        server_startup = (
            None
            if protocol == "runpod-queue"
            else asyncio.run(read_server_startup(normalize_base_url(url, protocol), headers))
        )
    mark_cold(outcome.records, run_started_at)
    summary = summarize(outcome.records, outcome.wall_s)
    cost = run_cost(price, outcome.wall_s, len(outcome.records), summary["output_tokens"], container)
    slo = goodput(outcome.records, outcome.wall_s, objectives, cost.get("run_usd")) if objectives else None
    results: dict[str, Any] = {
        "config": config_record(config, url, model, credentials),
        "run": {
            "started_at_unix": run_started_at,
            "started_at_iso": datetime.fromtimestamp(run_started_at, UTC).isoformat(timespec="seconds"),
            "stopped_by_deadline": outcome.stopped_by_deadline,
            "spawn": _spawn_record(spawned),
            "ready_wait": ready_wait,
            "server_startup": server_startup,
            "prompt_sizing": prompt_sizing,
        },
        "definitions": DEFINITIONS,
        "summary": summary,
        "instances": instance_breakdown(outcome.records, run_started_at),
        "slo": slo,
        "cost": cost,
        "requests": [record.to_dict() for record in outcome.records],
    }
    out_dir = config.out_dir
    write_results(out_dir, results)
    plot_files = write_plots(results, out_dir, run_title(results))
    report = render_report(results, plot_files)
    (out_dir / REPORT_FILE).write_text(report, encoding="utf-8")
    write_html(report, f"Load test: {run_title(results)}", out_dir, REPORT_HTML)
    return results


def build_workload(config: RunConfig) -> Workload:
    """The dataset, else synthetic prompts of ``input_tokens``, else the prompts file.

    Raises ValueError for a file without prompts or rows.
    """
    if config.dataset is not None:
        return Dataset.from_jsonl(config.dataset)
    prompts = load_prompts(config.prompts_file)
    if config.input_tokens is not None:
        counter = load_token_counter(config.tokenizer) if config.tokenizer else None
        return SyntheticPrompts(config.input_tokens, prompts, count_tokens=counter)
    return PromptList(prompts)


async def read_server_startup(base_url: str, headers: dict[str, str]) -> dict[str, Any] | None:
    """The start-up phases a server reports in /ready (import, load, warm-up), or None.

    The project's server says which instance it is and how its start went; other servers say nothing.
    """
    with contextlib.suppress(httpx.HTTPError, ValueError):
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(f"{base_url}/ready", headers=headers)
        body = response.json()
        if response.status_code == 200 and isinstance(body, dict) and isinstance(body.get("startup"), dict):
            return {"instance": body.get("instance"), "startup": body["startup"]}
    return None


async def wait_for_ready(
    base_url: str, headers: dict[str, str], timeout_s: float, poll_interval_s: float = 1.0
) -> dict[str, Any]:
    """Poll ``GET /ready`` until 200: the seconds from the first poll, and how many polls it took.

    Redirects are followed: Modal answers a request still waiting after 150 s with a 303
    to a result URL that blocks until the request completes
    (modal.com/docs/guide/webhook-timeouts). Raises TimeoutError after ``timeout_s``.
    """
    started = time.perf_counter()
    polls = 0
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None), follow_redirects=True) as http:
        while time.perf_counter() - started < timeout_s:
            polls += 1
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"{base_url}/ready", headers=headers)).status_code == 200:
                    return {"ready_s": time.perf_counter() - started, "polls": polls}
            await asyncio.sleep(poll_interval_s)
    raise TimeoutError(f"{base_url}/ready not 200 after {timeout_s:.0f} s")


async def _discover(base_url: str, headers: dict[str, str]) -> str | None:
    async with httpx.AsyncClient(timeout=30) as http:
        return await discover_model(http, base_url, headers)


@contextlib.contextmanager
def _maybe_spawn(config: RunConfig) -> Iterator[SpawnedServer | None]:
    if config.spawn is None:
        yield None
        return
    log_path = config.out_dir / SERVER_LOG
    with spawn_server(config.spawn, log_path, config.url, config.spawn_timeout_s) as spawned:
        yield spawned


def _spawn_record(spawned: SpawnedServer | None) -> dict[str, Any] | None:
    if spawned is None:
        return None
    return {
        "command": redact_command(spawned.command),
        "spawned_at_unix": spawned.spawned_at_unix,
        "ready_s": spawned.ready_s,
    }
