"""A small closed-loop HTTP load generator: N keep-alive connections, one thread, a fixed time.

On a machine of two cores the generator shares the CPU with what it measures, so it is built to
cost little: one thread drives every connection through a selector, each request is the same
prepared bytes, and a response is read by its Content-Length alone (about a fifth of the CPU per
request of a thread per client with http.client). Its own ceiling is measured against a trivial
endpoint and printed beside the figures.
"""

from __future__ import annotations

import selectors
import socket
import statistics
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class LoadFigures:
    clients: int
    seconds: float
    requests: int
    errors: int
    per_s: float
    p50_ms: float
    p99_ms: float


class _Client:
    """One connection and the response it is reading."""

    __slots__ = ("sock", "buf", "began")

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=30)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.began = 0.0


def _response_end(buf: bytearray) -> tuple[int, bool] | None:
    """(status, whether the server closes the connection) once ``buf`` holds the whole
    response, else None."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(buf[: head_end + 2]).lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        raise ValueError("a response without Content-Length")
    length = int(head[at + 17 : head.index(b"\r\n", at + 2)])
    if len(buf) < head_end + 4 + length:
        return None
    return int(buf[9:12]), b"\r\nconnection: close\r\n" in head


def run(url: str, body: bytes | None, clients: int, seconds: float) -> LoadFigures:
    """Each connection sends the same request again as soon as it has its answer."""
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    head = f"{'POST' if body else 'GET'} {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    request = (head + "\r\n").encode() + (body or b"")
    latencies: list[float] = []
    errors = 0
    selector = selectors.DefaultSelector()

    def send(client: _Client) -> None:
        client.buf.clear()
        client.began = time.perf_counter()
        client.sock.sendall(request)  # (small: fits the socket buffer at once)

    def reopen(client: _Client | None) -> None:
        if client is not None:
            selector.unregister(client.sock)
            client.sock.close()
        fresh = _Client(address)
        selector.register(fresh.sock, selectors.EVENT_READ, fresh)
        send(fresh)

    began = time.perf_counter()
    stop = began + seconds
    for _ in range(clients):
        reopen(None)
    open_clients = clients
    while open_clients:
        for key, _ in selector.select(timeout=1.0):
            client: _Client = key.data
            try:
                data = client.sock.recv(65536)
                if not data:
                    raise ConnectionError("closed by the server")
                client.buf += data
                end = _response_end(client.buf)
                if end is None:
                    continue
                status, closing = end
                latencies.append(time.perf_counter() - client.began)
                if status >= 400:
                    errors += 1
                if time.perf_counter() < stop:
                    if closing:
                        reopen(client)
                    else:
                        send(client)
                    continue
                selector.unregister(client.sock)
                client.sock.close()
                open_clients -= 1
            except (OSError, ValueError):
                errors += 1
                if time.perf_counter() < stop:
                    reopen(client)
                else:
                    selector.unregister(client.sock)
                    client.sock.close()
                    open_clients -= 1
        if time.perf_counter() > stop + 30:  # a server that stopped answering
            for key in list(selector.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
                errors += 1
            break
    selector.close()
    elapsed = time.perf_counter() - began
    every = sorted(latencies)
    count = len(every)
    return LoadFigures(
        clients=clients,
        seconds=round(elapsed, 2),
        requests=count,
        errors=errors,
        per_s=round(count / elapsed, 1),
        p50_ms=round(statistics.median(every) * 1000, 2) if every else 0.0,
        p99_ms=round(every[max(0, int(count * 0.99) - 1)] * 1000, 2) if every else 0.0,
    )
