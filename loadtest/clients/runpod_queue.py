"""RunPod's queue API: ``POST {endpoint}/run``, then poll ``GET {endpoint}/stream/{job_id}``.

``{endpoint}`` is ``https://api.runpod.ai/v2/<endpoint_id>``. ``/run`` answers
``{"id": ..., "status": "IN_QUEUE"}``; each ``/stream`` poll answers
``{"status": "IN_QUEUE"|"IN_PROGRESS"|"COMPLETED"|"FAILED"|"CANCELLED"|"TIMED_OUT",
"stream": [{"output": ...}, ...]}`` with the outputs the handler yielded since the
previous poll. The project's handler yields the native stream's chunks as outputs:
``{"text": ...}`` items, then ``{"done": {...the done event...}}``; its ``input`` is
the /v1/chat body. An error item is not streamed: RunPod's worker SDK ends the job
FAILED with ``str()`` of the error body as its ``error``
(runpod/serverless/modules/rp_job.py, ``handle_job``), and /stream does not carry it
(github.com/runpod/runpod-python/issues/397), so it is read from ``/status/{job_id}``.

TTFT here is what a client of this API sees: the first poll that returned text,
so it includes queueing and up to one polling interval. Arrival times are per poll,
so inter-token gaps are 0 within a poll and one interval between polls.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import httpx

from loadtest.clients.base import StreamTrace, http_error
from loadtest.clients.native import native_request_body

FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})


@dataclass
class RunPodQueueClient:
    endpoint_url: str
    max_tokens: int
    ignore_eos: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    poll_interval_s: float = 0.2
    protocol: str = "runpod-queue"

    def at(self, url: str) -> RunPodQueueClient:
        return dataclasses.replace(self, endpoint_url=url)

    async def send(
        self, http: httpx.AsyncClient, prompt: str, trace: StreamTrace, max_tokens: int | None = None
    ) -> None:
        body = {"input": native_request_body(prompt, max_tokens or self.max_tokens, self.ignore_eos)}
        response = await http.post(f"{self.endpoint_url}/run", json=body, headers=self.headers)
        trace.http_status = response.status_code
        if not response.is_success:
            error_type, message = http_error(response.content, response.status_code)
            trace.fail(message, error_type)
            return
        job_id = response.json()["id"]
        trace.polls = 0
        # Bounded by the runner's per-request timeout, which cancels this loop.
        while True:
            poll = await http.get(f"{self.endpoint_url}/stream/{job_id}", headers=self.headers)
            arrival_s = trace.elapsed_s()
            trace.polls += 1
            if not poll.is_success:
                trace.http_status = poll.status_code
                error_type, message = http_error(poll.content, poll.status_code)
                trace.fail(message, error_type)
                return
            payload = poll.json()
            for item in payload.get("stream") or []:
                if trace.first_byte_s is None:
                    trace.first_byte_s = arrival_s
                if self._take_output(item.get("output"), arrival_s, trace):
                    return
            status = payload.get("status")
            if status in FINAL_STATUSES:
                if status != "COMPLETED":
                    await self._record_failure(http, job_id, status, payload.get("error"), trace)
                elif trace.end_s is None:
                    trace.fail("the job completed without a done chunk", "incomplete_stream")
                return
            await asyncio.sleep(self.poll_interval_s)

    async def _record_failure(
        self, http: httpx.AsyncClient, job_id: str, status: str, error: Any, trace: StreamTrace
    ) -> None:
        if not error:
            response = await http.get(f"{self.endpoint_url}/status/{job_id}", headers=self.headers)
            if response.is_success:
                error = response.json().get("error")
        message, error_type = error_from_job(error)
        if error_type is None:  # not the service's error body: the handler or the platform failed
            trace.fail(f"job {status}: {message}".strip(), "job_failed")
        else:
            trace.fail(message, "stream_error")

    @staticmethod
    def _take_output(output: Any, arrival_s: float, trace: StreamTrace) -> bool:
        """Record one handler output; True when it ends the stream."""
        if not isinstance(output, dict):
            return False
        if "error" in output:
            error = output["error"]
            message = error.get("message") if isinstance(error, dict) else str(error)
            trace.fail(str(message), "stream_error")
            return True
        if "done" in output:
            trace.apply_done(output["done"], arrival_s)
            return True
        trace.add_content(output.get("text") or "", arrival_s)
        return False


def error_from_job(error: Any) -> tuple[str, str | None]:
    """The message and type of a FAILED job's ``error``; the type is None unless it is the service's body.

    The project's handler yields the service's error body, and RunPod stores
    ``str()`` of it: a Python repr such as ``"{'message': ..., 'type': ...}"``.
    """
    body = error
    if isinstance(error, str):
        try:
            body = ast.literal_eval(error)  # literals only: never runs code
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return error, None
    if isinstance(body, dict) and isinstance(body.get("message"), str) and isinstance(body.get("type"), str):
        return body["message"], body["type"]
    return ("" if error is None else str(error)), None
