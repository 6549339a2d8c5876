"""Request heads are bounded: an endless or huge header gets 431 and stalls nobody else."""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from urllib.parse import urlsplit

import httpx

from service.http_protocol import MAX_HEAD_BYTES


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def read_response(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_head_over_the_limit_gets_431_with_the_error_body(server_url: str) -> None:
    with socket.create_connection(address(server_url), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * (MAX_HEAD_BYTES + 1024))
        response = read_response(sock)  # the server closes the connection after answering

    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert json.loads(body)["error"]["code"] == "headers_too_large"


def test_a_large_head_within_the_limit_is_served(server_url: str) -> None:
    response = httpx.get(f"{server_url}/health", headers={"X-Trace": "t" * (MAX_HEAD_BYTES // 2)})

    assert response.status_code == 200


def test_endless_headers_from_two_clients_do_not_stall_health(server_url: str) -> None:
    stop = threading.Event()
    refused = [0, 0]

    def send_an_endless_header(client: int) -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(address(server_url), timeout=5) as sock:
                    sock.sendall(b"POST /v1/chat HTTP/1.1\r\nHost: x\r\nX-Endless: ")
                    while not stop.is_set():
                        sock.sendall(b"a" * 65536)
            except OSError:  # the server answered 431 and closed: start again
                refused[client] += 1

    hostile = [threading.Thread(target=send_an_endless_header, args=(i,)) for i in range(2)]
    for thread in hostile:
        thread.start()
    latencies = []
    try:
        with httpx.Client(base_url=server_url, timeout=30) as http:
            for _ in range(20):
                started = time.perf_counter()
                assert http.get("/health").status_code == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.05)
    finally:
        stop.set()
        for thread in hostile:
            thread.join(10)

    assert min(refused) >= 1  # both kept being cut off...
    assert statistics.median(latencies) < 0.1  # ...while /health answered at once (was 13-20 s)
