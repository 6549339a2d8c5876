"""Serve deploy/ray_serve.py on a local Ray cluster and ask it things (tests/deploy/test_ray_serve.py).

Run with the Ray venv's python, inside a loopback-only network namespace (Ray binds the
machine's address otherwise). Writes what it saw as JSON to OUT (Ray's logs share stdout),
then shuts Ray down. Each replica generates one request at a time and queues none, so that
two held streams fill the cluster.

    ray_serve_check.py PORT CACHE_DIR OUT
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import ray
from prometheus_client.parser import text_string_to_metric_families
from ray import serve
from ray._private.state import actors as actor_table

REQUEST_TIMEOUT_S = 6
LONG = 1800  # tokens: 5-6 s on tiny-random on one thread, about REQUEST_TIMEOUT_S
REPLICA_CLASS = "ServeReplica:default:LLMServer"
COMPLETION = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "ignore_eos": True}


def chat(max_new_tokens: int) -> dict[str, Any]:
    return {"messages": "hi", "max_new_tokens": max_new_tokens, "ignore_eos": True}


def scrape_replicas(http: httpx.Client, replicas: int = 2, tries: int = 40) -> dict[str, dict[str, float]]:
    """/metrics through the proxy until every replica answered: instance id -> samples."""
    seen: dict[str, dict[str, float]] = {}
    for _ in range(tries):
        samples: dict[str, float] = {}
        instance = ""
        for family in text_string_to_metric_families(http.get("/metrics").text):
            for sample in family.samples:
                if sample.name == "llm_instance_info":
                    instance = sample.labels["id"]
                elif sample.name == "llm_generations_total":
                    samples[sample.labels["outcome"]] = sample.value
                elif sample.name in ("llm_requests_running", "llm_requests_waiting"):
                    samples[sample.name] = sample.value
        seen[instance] = samples
        if len(seen) >= replicas:
            break
    return seen


def streams_token_by_token(http: httpx.Client) -> dict[str, Any]:
    """Arrival time of each event of a 200-token stream: a buffering proxy sends them at the end."""
    started = time.monotonic()
    arrivals = []
    reads = 0
    with http.stream("POST", "/v1/chat", json=chat(200)) as stream:
        for chunk in stream.iter_raw():
            reads += 1
            arrivals += [time.monotonic() - started] * chunk.count(b'{"text"')
    return {"tokens": len(arrivals), "reads": reads, "first_s": arrivals[0], "last_s": arrivals[-1]}


def cancels_on_disconnect(http: httpx.Client) -> dict[str, Any]:
    """Leave a long stream after its first event; the replica that served it cancels it."""
    with http.stream("POST", "/v1/chat", json=chat(LONG)) as stream:
        next(stream.iter_lines())
    left_at = time.monotonic()
    while time.monotonic() - left_at < REQUEST_TIMEOUT_S:
        replicas = scrape_replicas(http)
        if any(samples.get("cancelled") for samples in replicas.values()):
            break
        time.sleep(0.1)
    return {"after_s": time.monotonic() - left_at, "replicas": replicas}


def refuses_past_admission(base_url: str) -> dict[str, Any]:
    """Hold long streams until one gets a 429: the service's refusal, through Ray's proxy."""
    reading = []
    with ExitStack() as held:
        for opened in range(1, 4):
            client = held.enter_context(httpx.Client(base_url=base_url, timeout=60))
            response = held.enter_context(client.stream("POST", "/v1/chat", json=chat(LONG)))
            if response.status_code != 200:
                response.read()
                return {
                    "opened": opened,
                    "status": response.status_code,
                    "retry_after": response.headers.get("retry-after"),
                    "body": response.json(),
                }
            lines = response.iter_lines()
            next(lines)  # generating: the slot is taken
            reading.append(lines)  # kept: a dropped iterator closes its connection
    return {"opened": 3, "status": 200}


def replaces_a_killed_replica(http: httpx.Client, instances: set[str]) -> dict[str, Any]:
    """SIGKILL one replica's process mid-run: the other serves while Ray starts a new one."""
    # GCS's actor table: the public ray.util.state asks the dashboard, which this cluster omits.
    alive = [
        a for a in actor_table().values() if a["ActorClassName"] == REPLICA_CLASS and a["State"] == "ALIVE"
    ]
    os.kill(alive[0]["Pid"], signal.SIGKILL)
    killed_at = time.monotonic()
    statuses: list[int] = []
    new_instance = None
    while new_instance is None and time.monotonic() - killed_at < 120:
        try:
            statuses.append(http.post("/v1/chat/completions", json=COMPLETION).status_code)
            ready = http.get("/ready")
        except httpx.HTTPError:
            statuses.append(0)
            continue
        if ready.status_code == 200 and ready.json()["instance"]["id"] not in instances:
            new_instance = ready.json()["instance"]["id"]
    return {
        "served": statuses.count(200),
        "failed": len(statuses) - statuses.count(200),
        "replaced_after_s": time.monotonic() - killed_at,
        "new_instance": new_instance,
    }


def stream_outlives_shutdown(base_url: str) -> dict[str, Any]:
    """Delete the app under a long stream: Ray waits for it, and it ends whole (done, or the
    service's timeout event), not cut."""
    with (
        httpx.Client(base_url=base_url, timeout=60) as http,
        http.stream("POST", "/v1/chat", json=chat(LONG)) as stream,
    ):
        lines = stream.iter_lines()
        next(lines)
        deleting = threading.Thread(target=serve.delete, args=("default",))
        deleting.start()
        received = []
        try:
            received += [line for line in lines if line]
        except httpx.HTTPError as exc:  # the body cut short: Ray killed the replica under it
            received += [f"cut: {exc!r}", ""]
        last = received[-2:]  # the last event: its name and its data
    deleting.join(timeout=120)
    return {"last_event": last, "deleted": not deleting.is_alive()}


def main(port: int, cache_dir: str, out: Path) -> None:
    env = {
        "MODEL_ID": "tiny-random",
        "CACHE_DIR": cache_dir,
        "TORCH_THREADS": "1",
        "WARMUP_TOKENS": "2",
        "MAX_CONCURRENCY": "1",
        "MAX_QUEUE": "0",
        "REQUEST_TIMEOUT": str(REQUEST_TIMEOUT_S),
        "DRAIN_TIMEOUT": "1",
        "DEPLOY_RAY_REPLICAS": "2",
        "DEPLOY_RAY_CPUS_PER_REPLICA": "0.5",
    }
    os.environ.update(env)  # the driver imports deploy.ray_serve too: the same settings
    ray.init(
        address="local",  # a cluster of its own, never a stale one found on the machine
        num_cpus=2,
        include_dashboard=False,
        runtime_env={"env_vars": env},
        _node_ip_address="127.0.0.1",
    )
    base_url = f"http://127.0.0.1:{port}"
    seen: dict[str, Any] = {}
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        from deploy.ray_serve import app

        serve.run(app, route_prefix="/")  # returns once both replicas have loaded their model
        with httpx.Client(base_url=base_url, timeout=60) as http:
            instances = {http.get("/ready").json()["instance"]["id"] for _ in range(24)}
            completion = http.post("/v1/chat/completions", json=COMPLETION)
            seen |= {
                "ready": http.get("/ready").status_code,
                "instances": sorted(instances),
                "chat_status": completion.status_code,
                "completion_tokens": completion.json()["usage"]["completion_tokens"],
                "bad_status": http.post("/v1/chat/completions", json={"messages": []}).status_code,
                "stream": streams_token_by_token(http),
                "cancel": cancels_on_disconnect(http),
                "overload": refuses_past_admission(base_url),
                "kill": replaces_a_killed_replica(http, instances),
            }
        seen["shutdown"] = stream_outlives_shutdown(base_url)
    finally:
        out.write_text(json.dumps(seen))
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
