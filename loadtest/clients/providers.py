"""Providers: which protocol each speaks by default and where its credentials come from.

Credentials are read from env vars into request headers only; what is recorded
about them is the names of the variables that were set, never their values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from loadtest.clients import ChatClient, NativeClient, OpenAIClient, RunPodQueueClient
from loadtest.clients.base import ProxyAnswers

PROTOCOLS = ("native", "openai", "runpod-queue")


@dataclass(frozen=True)
class Provider:
    name: str
    protocol: str
    # (env var, header, value prefix): the first set variable per header wins.
    credentials: tuple[tuple[str, str, str], ...]
    # Statuses the provider's proxy sends on its own, labelled apart from the service's errors.
    proxy_answers: ProxyAnswers = field(default_factory=dict)


_BEARER = "Bearer "

_MODAL_PROXY: ProxyAnswers = {
    # modal.com/docs/guide/webhook-timeouts: a web request still running after 150 s gets
    # a 303 to a result URL; here, a container still starting (the service never answers 303).
    303: ("cold_start_redirect", "Modal: no answer within 150 s (a cold start longer than that?)"),
}
_RUNPOD_LOAD_BALANCER: ProxyAnswers = {
    # docs.runpod.io/serverless/load-balancing/overview: 400 when no worker is ready within
    # 2 minutes, 524 once a request has run 5.5 minutes.
    400: ("no_worker_ready", "RunPod load balancing: no worker ready within 2 minutes"),
    524: ("proxy_timeout", "RunPod load balancing: the request ran past 5.5 minutes"),
}
PROVIDERS = {
    provider.name: provider
    for provider in (
        Provider("local", "native", (("API_KEY", "Authorization", _BEARER),)),
        # Modal proxy auth (requires_proxy_auth=True) takes a token id and secret in two headers.
        Provider(
            "modal",
            "native",
            (
                ("API_KEY", "Authorization", _BEARER),
                ("MODAL_KEY", "Modal-Key", ""),
                ("MODAL_SECRET", "Modal-Secret", ""),
            ),
            _MODAL_PROXY,
        ),
        Provider("beam", "native", (("BEAM_TOKEN", "Authorization", _BEARER),)),
        Provider("runpod", "native", (("RUNPOD_API_KEY", "Authorization", _BEARER),), _RUNPOD_LOAD_BALANCER),
        Provider("runpod-queue", "runpod-queue", (("RUNPOD_API_KEY", "Authorization", _BEARER),)),
        Provider(
            "openai",
            "openai",
            (("API_KEY", "Authorization", _BEARER), ("OPENAI_API_KEY", "Authorization", _BEARER)),
        ),
    )
}


def auth_headers(provider: Provider, env: Mapping[str, str] = os.environ) -> tuple[dict[str, str], list[str]]:
    """Headers built from the provider's env vars, and the names of the variables used."""
    headers: dict[str, str] = {}
    used: list[str] = []
    for variable, header, prefix in provider.credentials:
        value = env.get(variable)
        if value and header not in headers:
            headers[header] = prefix + value
            used.append(variable)
    return headers, used


def normalize_base_url(url: str, protocol: str) -> str:
    """Without a trailing slash; for HTTP protocols also without a trailing ``/v1``, which clients add."""
    url = url.rstrip("/")
    if protocol != "runpod-queue":
        url = url.removesuffix("/v1")
    return url


def build_client(
    protocol: str,
    url: str,
    headers: dict[str, str],
    max_tokens: int,
    ignore_eos: bool = True,
    model: str | None = None,
    poll_interval_s: float = 0.2,
    proxy_answers: ProxyAnswers | None = None,
) -> ChatClient:
    base_url = normalize_base_url(url, protocol)
    proxy_answers = dict(proxy_answers or {})
    if protocol == "native":
        return NativeClient(base_url, max_tokens, ignore_eos, headers, proxy_answers=proxy_answers)
    if protocol == "openai":
        return OpenAIClient(base_url, max_tokens, model, ignore_eos, headers, proxy_answers=proxy_answers)
    if protocol == "runpod-queue":
        return RunPodQueueClient(base_url, max_tokens, ignore_eos, headers, poll_interval_s)
    raise ValueError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")
