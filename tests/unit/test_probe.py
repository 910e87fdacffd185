"""The probe client against the Responder and against non-podnet peers,
all on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from podnet.lab.probe import ProbeResult, probe, summarize
from podnet.lab.workload import Responder

HOST = "127.0.0.1"


@pytest.fixture
def pod() -> Iterator[tuple[int, int]]:
    """One podnet pod "web-1" serving (tcp_port, udp_port)."""
    r = Responder()
    r.start()
    try:
        r.add_pod("default/web-1", "web-1", None, [(0, "TCP"), (0, "UDP")], bind=HOST)
        (tcp, _), (udp, _) = r.bound_ports("default/web-1")
        yield tcp, udp
    finally:
        r.stop()


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tcp_server() -> Iterator[Callable[[bytes | None], int]]:
    """Start a TCP server that answers each connection with fixed bytes and
    closes (None: accepts and says nothing until the test ends)."""
    socks: list[socket.socket] = []
    stop = threading.Event()

    def start(reply: bytes | None) -> int:
        srv = socket.socket()
        srv.bind((HOST, 0))
        srv.listen()
        srv.settimeout(0.05)
        socks.append(srv)

        def run() -> None:
            while not stop.is_set():
                try:
                    conn, _ = srv.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                socks.append(conn)
                if reply is not None:
                    conn.settimeout(2)
                    try:
                        conn.recv(65536)
                        conn.sendall(reply)
                    finally:
                        conn.close()

        threading.Thread(target=run, daemon=True).start()
        return int(srv.getsockname()[1])

    yield start
    stop.set()
    for s in socks:
        s.close()


def test_tcp_probe_names_the_pod(pod: tuple[int, int]) -> None:
    [r] = probe(HOST, pod[0])
    assert r.ok and r.pod == "web-1" and r.error is None


def test_tcp_probe_reports_client_address_seen_by_pod(pod: tuple[int, int]) -> None:
    [r] = probe(HOST, pod[0])
    assert r.client is not None
    ip, port = r.client.rsplit(":", 1)
    assert ip == HOST and int(port) > 0


def test_count_gives_that_many_results(pod: tuple[int, int]) -> None:
    assert len(list(probe(HOST, pod[0], count=4))) == 4


def test_each_attempt_uses_a_new_source_port(pod: tuple[int, int]) -> None:
    clients = {r.client for r in probe(HOST, pod[0], count=5)}
    assert len(clients) == 5


def test_udp_probe_names_the_pod_and_client(pod: tuple[int, int]) -> None:
    [r] = probe(HOST, pod[1], protocol="udp")
    assert r.ok and r.pod == "web-1"
    assert r.client is not None and r.client.startswith(HOST + ":")


def test_udp_attempts_use_new_sockets(pod: tuple[int, int]) -> None:
    clients = {r.client for r in probe(HOST, pod[1], protocol="UDP", count=3)}
    assert len(clients) == 3


def test_tcp_refused_port_gives_refused() -> None:
    [r] = probe(HOST, free_port())
    assert (r.ok, r.error, r.pod) == (False, "refused", None)


def test_udp_refused_port_gives_refused() -> None:
    [r] = probe(HOST, free_port(socket.SOCK_DGRAM), protocol="udp")
    assert (r.ok, r.error) == (False, "refused")


def test_tcp_silent_server_gives_timeout(tcp_server: Callable[[bytes | None], int]) -> None:
    port = tcp_server(None)
    [r] = probe(HOST, port, timeout=0.3)
    assert (r.ok, r.error) == (False, "timeout")
    assert 250 <= r.ms < 2000


def test_udp_silent_server_gives_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((HOST, 0))
        [r] = probe(HOST, silent.getsockname()[1], protocol="udp", timeout=0.3)
    assert (r.ok, r.error) == (False, "timeout")


def test_non_json_http_answer_is_ok_without_pod(tcp_server: Callable[[bytes | None], int]) -> None:
    port = tcp_server(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    [r] = probe(HOST, port)
    assert (r.ok, r.pod, r.client, r.error) == (True, None, None, None)


def test_non_http_answer_is_ok_without_pod(tcp_server: Callable[[bytes | None], int]) -> None:
    port = tcp_server(b"SSH-2.0-OpenSSH_9.2\r\n")
    [r] = probe(HOST, port)
    assert (r.ok, r.pod, r.client) == (True, None, None)


def test_server_closing_without_reply_is_an_error(tcp_server: Callable[[bytes | None], int]) -> None:
    port = tcp_server(b"")
    [r] = probe(HOST, port)
    assert r.ok is False and r.error == "closed without reply"


def test_udp_plain_echo_server_is_ok_without_pod() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as echo:
        echo.bind((HOST, 0))
        echo.settimeout(2)

        def run() -> None:
            for _ in range(2):
                data, addr = echo.recvfrom(100)
                echo.sendto(data, addr)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        [r] = probe(HOST, echo.getsockname()[1], protocol="udp")
        t.join()
    assert (r.ok, r.pod, r.client) == (True, None, None)


def test_ms_measures_the_attempt(pod: tuple[int, int]) -> None:
    [r] = probe(HOST, pod[0])
    assert isinstance(r.ms, float) and 0 < r.ms < 2000


def test_to_json_has_exactly_the_five_keys() -> None:
    r = ProbeResult(ok=True, pod="a", client="1.2.3.4:5", error=None, ms=1.5)
    assert r.to_json() == {"ok": True, "pod": "a", "client": "1.2.3.4:5", "error": None, "ms": 1.5}


def test_unknown_protocol_is_rejected() -> None:
    with pytest.raises(ValueError, match="sctp"):
        list(probe(HOST, 80, protocol="sctp"))


def test_summarize_counts_answers_per_pod() -> None:
    results = [
        ProbeResult(True, "a", "c:1", None, 1.0),
        ProbeResult(True, "b", "c:2", None, 1.0),
        ProbeResult(True, "a", "c:3", None, 1.0),
        ProbeResult(True, None, None, None, 1.0),
        ProbeResult(False, None, None, "refused", 1.0),
    ]
    assert summarize(results) == {
        "total": 5,
        "ok": 4,
        "failed": 1,
        "pods": {"a": 2, "b": 1},
        "unidentified": 1,
        "errors": {"refused": 1},
    }
