"""A published-calendar server on loopback that misbehaves on request.

It serves one ICS file (read from disk on every request, with an ETag and ``304 Not Modified``) at
a secret path, and answers the next requests with the faults it is given: throttling and outages
with or without ``Retry-After``, connection resets, hung responses, truncated or foreign bodies.
Every request is recorded with its arrival time, the earliest time a ``Retry-After`` allowed it,
and how many requests were in flight at once.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SECRET_PATH = "/calendars/3f9c2a7d1e/basic.ics"

# Each fault: (HTTP status or a word, Retry-After seconds or None).
STATUS_FAULTS: tuple[tuple[int, int | None], ...] = (
    (429, 1), (429, None), (503, 2), (503, None), (500, None), (502, None), (504, None),
    (503, 0),
)  # fmt: skip
WIRE_FAULTS = ("reset", "hang", "truncated", "html", "empty")


@dataclass
class Request:
    """One request as the server saw it."""

    arrived: float
    not_before: float | None
    in_flight: int
    fault: str

    @property
    def early(self) -> bool:
        return self.not_before is not None and self.arrived < self.not_before


class FaultyCalendarServer:
    """``http://127.0.0.1:PORT`` + ``SECRET_PATH`` serving ``ics``; faults via ``inject``."""

    def __init__(self, ics: Path, *, hang_seconds: float = 2.0) -> None:
        self.ics = ics
        self.hang_seconds = hang_seconds
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self._faults: deque[str] = deque()
        self._in_flight = 0
        self._not_before: float | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

    def __enter__(self) -> FaultyCalendarServer:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{SECRET_PATH}"

    # --- faults ---

    def inject(self, *faults: str) -> None:
        """The next requests get these faults, in order (``"503"``, ``"429+1"``, ``"reset"`` …)."""
        with self.lock:
            self._faults.extend(faults)

    def pending(self) -> int:
        with self.lock:
            return len(self._faults)

    def clear(self) -> None:
        with self.lock:
            self._faults.clear()

    def max_in_flight(self) -> int:
        with self.lock:
            return max((r.in_flight for r in self.requests), default=0)

    # --- serving ---

    def handle(self, handler: _Handler) -> None:
        with self.lock:
            fault = self._faults.popleft() if self._faults else ""
            self._in_flight += 1
            record = Request(time.monotonic(), self._not_before, self._in_flight, fault)
            self.requests.append(record)
        try:
            if handler.path != SECRET_PATH:
                handler.answer(404, b"not found", {})
            elif fault:
                self.misbehave(handler, fault)
            else:
                self.serve(handler)
        finally:
            with self.lock:
                self._in_flight -= 1

    def serve(self, handler: _Handler) -> None:
        body = self.ics.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if handler.headers.get("If-None-Match") == etag:
            handler.answer(304, b"", {"ETag": etag})
        else:
            handler.answer(
                200, body, {"ETag": etag, "Content-Type": "text/calendar; charset=utf-8"}
            )

    def misbehave(self, handler: _Handler, fault: str) -> None:
        status, _, wait = fault.partition("+")
        if status.isdigit():
            headers = {}
            if wait:
                headers["Retry-After"] = wait
                with self.lock:
                    self._not_before = time.monotonic() + int(wait)
            handler.answer(int(status), b"<html>busy</html>", headers)
        elif fault == "reset":
            handler.reset()
        elif fault == "hang":
            handler.hang(self.hang_seconds)
        elif fault == "truncated":
            body = self.ics.read_bytes()
            handler.send_response(200)
            handler.send_header("Content-Type", "text/calendar")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body[: len(body) // 2])
            handler.wfile.flush()
            handler.reset()
        elif fault == "html":
            handler.answer(200, b"<!doctype html><html><body>Sign in</body></html>", {})
        elif fault == "empty":
            handler.answer(200, b"", {"Content-Type": "text/calendar"})
        else:
            raise ValueError(fault)


class _Handler(BaseHTTPRequestHandler):
    server_fake: Any = None
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
        self.server_fake.handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def hang(self, seconds: float) -> None:
        """Say nothing until the client gives up and closes (or ``seconds`` pass), then reset."""
        deadline = time.monotonic() + seconds
        self.connection.settimeout(0.05)
        while time.monotonic() < deadline:
            try:
                if self.connection.recv(1024) == b"":
                    break  # the client hung up: this request is no longer in flight
            except TimeoutError:
                continue
            except OSError:
                break
        self.reset()

    def reset(self) -> None:
        """Close with RST (SO_LINGER 0), as a crashing proxy does."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
