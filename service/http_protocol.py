"""uvicorn's httptools protocol with a bound on the request line and headers.

httptools (uvicorn's default parser) has no limit on the head of a request and
grows a header value by concatenating bytes as they arrive: one client sending
a header that never ends (64 KiB at a time) kept the event loop busy enough that
/health took 13-20 s for everyone else, and a 100 MB header was answered 200.
h11 has a limit, but is pure Python on every streamed token; so this keeps
httptools and counts the head's bytes itself, answering 431 (RFC 6585) past
``MAX_HEAD_BYTES`` and closing the connection.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.errors import ErrorCode

# Request line plus headers. nginx's default allows 4 x 8 KiB header lines, h11's 16 KiB for
# the whole head; API keys, cookies and tracing headers fit well within this.
MAX_HEAD_BYTES = 64 * 1024


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Refuses a request whose line and headers exceed ``MAX_HEAD_BYTES`` with 431."""

    max_head_bytes = MAX_HEAD_BYTES
    _head_open = True  # between the end of one request's headers and the next request's
    _head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._head_open:
            self._head_bytes += len(data)
        super().data_received(data)
        # Counted over the whole head, checked once the parser has taken this piece: a piece
        # that completes the headers (and carries body bytes with it) is never refused.
        if self._head_open and self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
            self._refuse_oversized_head()

    def on_headers_complete(self) -> None:
        self._head_open = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_open, self._head_bytes = True, 0

    def _refuse_oversized_head(self) -> None:
        message = f"the request line and headers are larger than {self.max_head_bytes} bytes"
        body = json.dumps(ErrorCode.HEADERS_TOO_LARGE.error(message).body()).encode()
        self.logger.warning("refused a request: %s", message)
        head = (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n"
        )
        self.transport.write(head + body)
        self.transport.close()
