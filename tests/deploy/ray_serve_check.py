"""Serve deploy/ray_serve.py on a local Ray cluster and ask it things (tests/deploy/test_ray_serve.py).

Run with the Ray venv's python, inside a loopback-only network namespace (Ray binds the
machine's address otherwise). Writes what it saw as JSON to OUT (Ray's logs share stdout),
then shuts Ray down.

    ray_serve_check.py PORT CACHE_DIR OUT
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx
import ray
from ray import serve


def main(port: int, cache_dir: str, out: Path) -> None:
    env = {
        "MODEL_ID": "tiny-random",
        "CACHE_DIR": cache_dir,
        "TORCH_THREADS": "1",
        "WARMUP_TOKENS": "2",
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
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        from deploy.ray_serve import app

        serve.run(app, route_prefix="/")  # returns once both replicas have loaded their model
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            instances = {http.get("/ready").json()["instance"]["id"] for _ in range(24)}
            chat = http.post(
                "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "ignore_eos": True},
            )
            with http.stream(
                "POST",
                "/v1/chat",
                json={"messages": [{"role": "user", "content": "hi"}], "max_new_tokens": 4},
            ) as stream:
                events = [line for line in stream.iter_lines() if line.startswith("event:")]
            bad = http.post("/v1/chat/completions", json={"messages": []})
            out.write_text(
                json.dumps(
                    {
                        "ready": http.get("/ready").status_code,
                        "instances": sorted(instances),
                        "chat_status": chat.status_code,
                        "completion_tokens": chat.json()["usage"]["completion_tokens"],
                        "stream_events": events,
                        "bad_status": bad.status_code,
                    }
                )
            )
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
