"""RunPod's queue API: ``POST {endpoint}/run``, then poll ``GET {endpoint}/stream/{job_id}``.

``{endpoint}`` is ``https://api.runpod.ai/v2/<endpoint_id>``. ``/run`` answers
``{"id": ..., "status": "IN_QUEUE"}``; each ``/stream`` poll answers
``{"status": "IN_QUEUE"|"IN_PROGRESS"|"COMPLETED"|"FAILED"|"CANCELLED"|"TIMED_OUT",
"stream": [{"output": ...}, ...]}`` with the outputs the handler yielded since the
previous poll. The project's handler yields the native stream's chunks as outputs:
``{"text": ...}`` per piece, then ``{"done": {...the done event...}}``, or
``{"error": {...the error body's error...}}``; its ``input`` is the /v1/chat body.

TTFT here is what a client of this API sees: the first poll that returned text,
so it includes queueing and up to one polling interval. Arrival times are per poll,
so inter-token gaps are 0 within a poll and one interval between polls.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx

from loadtest.clients.base import StreamTrace, error_from_body
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

    async def send(self, http: httpx.AsyncClient, prompt: str, trace: StreamTrace) -> None:
        body = {"input": native_request_body(prompt, self.max_tokens, self.ignore_eos)}
        response = await http.post(f"{self.endpoint_url}/run", json=body, headers=self.headers)
        trace.http_status = response.status_code
        if not response.is_success:
            trace.fail(error_from_body(response.content, response.status_code), "http_error")
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
                trace.fail(error_from_body(poll.content, poll.status_code), "http_error")
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
                    trace.fail(f"job {status}: {payload.get('error') or ''}".strip(), "job_failed")
                elif trace.end_s is None:
                    trace.fail("the job completed without a done chunk", "incomplete_stream")
                return
            await asyncio.sleep(self.poll_interval_s)

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
