"""Readiness checks on 127.0.0.1, and the pure ProbeState."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podnet.lab.readiness import ProbeState, exec_command, http_get, tcp_socket

HOST = "127.0.0.1"


class _Handler(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        _Handler.seen.append({k.lower(): v for k, v in self.headers.items()})
        status = int(self.path.rsplit("/", 1)[-1]) if self.path.startswith("/status/") else 200
        body = b"x"
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "http://elsewhere.invalid/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(server: ThreadingHTTPServer) -> Iterator[int]:
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    t.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        t.join()


@pytest.fixture
def http_port() -> Iterator[int]:
    _Handler.seen = []
    yield from _serve(ThreadingHTTPServer((HOST, 0), _Handler))


@pytest.fixture
def https_port(tmp_path: Path) -> Iterator[int]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=pod"],
        check=True, capture_output=True,
    )  # fmt: skip
    server = ThreadingHTTPServer((HOST, 0), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    yield from _serve(server)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Accepts connections (kernel backlog) and never answers."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen()
        yield int(s.getsockname()[1])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# http_get ------------------------------------------------------------------


def test_http_get_200_succeeds(http_port: int) -> None:
    assert http_get(None, HOST, http_port, "/healthz", 2.0) is True


def test_http_get_redirect_succeeds_without_following(http_port: int) -> None:
    assert http_get(None, HOST, http_port, "/status/302", 2.0) is True
    assert len(_Handler.seen) == 1


def test_http_get_399_succeeds(http_port: int) -> None:
    assert http_get(None, HOST, http_port, "/status/399", 2.0) is True


def test_http_get_404_fails(http_port: int) -> None:
    assert http_get(None, HOST, http_port, "/status/404", 2.0) is False


def test_http_get_503_fails(http_port: int) -> None:
    assert http_get(None, HOST, http_port, "/status/503", 2.0) is False


def test_http_get_refused_fails() -> None:
    assert http_get(None, HOST, closed_port(), "/", 2.0) is False


def test_http_get_times_out_within_timeout(silent_port: int) -> None:
    start = time.monotonic()
    assert http_get(None, HOST, silent_port, "/", 0.3) is False
    assert time.monotonic() - start < 2.0


def test_http_get_sends_custom_headers_and_host_override(http_port: int) -> None:
    http_get(None, HOST, http_port, "/", 2.0, headers={"Host": "web.example", "X-Probe": "1"})
    [seen] = _Handler.seen
    assert seen["host"] == "web.example"
    assert seen["x-probe"] == "1"
    assert seen["user-agent"].startswith("kube-probe/")


def test_http_get_https_does_not_verify_certificate(https_port: int) -> None:
    assert http_get(None, HOST, https_port, "/", 5.0, scheme="HTTPS") is True


def test_http_get_against_responder_follows_pod_health() -> None:
    from podnet.lab.workload import Responder

    with Responder() as r:
        r.add_pod("default/web-1", "web-1", None, [(0, "TCP")], bind=HOST)
        [(port, _)] = r.bound_ports("default/web-1")
        assert http_get(None, HOST, port, "/healthz", 2.0) is True
        r.set_healthy("default/web-1", False)
        assert http_get(None, HOST, port, "/healthz", 2.0) is False


def test_http_get_unknown_scheme_is_rejected() -> None:
    with pytest.raises(ValueError, match="scheme"):
        http_get(None, HOST, 80, "/", 1.0, scheme="FTP")


# tcp_socket -------------------------------------------------------------------


def test_tcp_socket_open_port_succeeds(silent_port: int) -> None:
    assert tcp_socket(None, HOST, silent_port, 1.0) is True


def test_tcp_socket_closed_port_fails() -> None:
    assert tcp_socket(None, HOST, closed_port(), 1.0) is False


# exec_command -------------------------------------------------------------------


def test_exec_exit_zero_succeeds() -> None:
    assert exec_command(None, ["true"], 5.0) is True


def test_exec_nonzero_exit_fails() -> None:
    assert exec_command(None, ["sh", "-c", "exit 3"], 5.0) is False


def test_exec_missing_command_fails() -> None:
    assert exec_command(None, ["/nonexistent/podnet-check"], 5.0) is False


def test_exec_timeout_fails_and_kills_the_process() -> None:
    start = time.monotonic()
    assert exec_command(None, ["sleep", "30"], 0.2) is False
    assert time.monotonic() - start < 5.0


def test_exec_empty_command_is_rejected() -> None:
    with pytest.raises(ValueError):
        exec_command(None, [], 1.0)


# ProbeState -------------------------------------------------------------------


def test_state_starts_not_ready() -> None:
    assert ProbeState().ready is False


def test_first_success_makes_ready_with_threshold_one() -> None:
    assert ProbeState().observe(True) is True


def test_failures_while_not_ready_report_no_change() -> None:
    s = ProbeState()
    assert [s.observe(False) for _ in range(5)] == [None] * 5


def test_success_threshold_needs_consecutive_successes() -> None:
    s = ProbeState(success_threshold=3)
    assert [s.observe(x) for x in (True, True, False, True, True, True)] == [None] * 5 + [True]


def test_failure_threshold_needs_consecutive_failures() -> None:
    s = ProbeState(failure_threshold=3)
    s.observe(True)
    assert [s.observe(x) for x in (False, False, True, False, False, False)] == [None] * 5 + [False]


def test_repeated_successes_while_ready_report_no_change() -> None:
    s = ProbeState()
    s.observe(True)
    assert s.observe(True) is None and s.ready is True


def test_recovers_after_failing() -> None:
    s = ProbeState(success_threshold=2, failure_threshold=1)
    changes = [s.observe(x) for x in (True, True, False, True, True)]
    assert changes == [None, True, False, None, True]


@pytest.mark.parametrize("kwargs", [{"success_threshold": 0}, {"failure_threshold": 0}])
def test_thresholds_below_one_are_rejected(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ProbeState(**kwargs)


@given(
    st.integers(1, 4),
    st.integers(1, 4),
    st.lists(st.booleans(), max_size=40),
)
def test_state_matches_reference_model(success_t: int, failure_t: int, results: list[bool]) -> None:
    s = ProbeState(success_threshold=success_t, failure_threshold=failure_t)
    ready = False
    for i, r in enumerate(results):
        tail = results[: i + 1]
        run = next((j for j, v in enumerate(reversed(tail)) if v != r), len(tail))
        new = ready
        if r and run >= success_t:
            new = True
        if not r and run >= failure_t:
            new = False
        assert s.observe(r) == (new if new != ready else None)
        ready = new
        assert s.ready is ready
