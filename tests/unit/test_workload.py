"""The built-in workload (Responder) on 127.0.0.1 with ephemeral ports."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from podnet.lab.workload import Responder

HOST = "127.0.0.1"


@pytest.fixture
def responder() -> Iterator[Responder]:
    r = Responder()
    r.start()
    try:
        yield r
    finally:
        r.stop()


def serve(r: Responder, key: str = "default/web-1", name: str = "web-1") -> tuple[int, int]:
    """Serve one pod on ephemeral TCP and UDP ports; return (tcp, udp)."""
    r.add_pod(key, name, None, [(0, "TCP"), (0, "UDP")], bind=HOST)
    (tcp, _), (udp, _) = r.bound_ports(key)
    return tcp, udp


def get(port: int, path: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def udp_ask(port: int, payload: bytes) -> tuple[bytes, str]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.connect((HOST, port))
        s.send(payload)
        local = "{}:{}".format(*s.getsockname())
        return s.recv(65535), local


def wait_until(cond: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return True
        time.sleep(0.01)
    return False


def test_hostname_returns_pod_name(responder: Responder) -> None:
    tcp, _ = serve(responder)
    assert get(tcp, "/hostname") == (200, b"web-1")


def test_clientip_returns_callers_address_as_the_socket_sees_it(responder: Responder) -> None:
    tcp, _ = serve(responder)
    conn = http.client.HTTPConnection(HOST, tcp, timeout=5)
    conn.connect()
    assert conn.sock is not None
    local = "{}:{}".format(*conn.sock.getsockname())
    conn.request("GET", "/clientip")
    assert conn.getresponse().read().decode() == local
    conn.close()


def test_healthz_is_ok_while_healthy(responder: Responder) -> None:
    tcp, _ = serve(responder)
    assert get(tcp, "/healthz") == (200, b"ok")


def test_healthz_is_503_after_set_healthy_false(responder: Responder) -> None:
    tcp, _ = serve(responder)
    responder.set_healthy("default/web-1", False)
    assert responder.is_healthy("default/web-1") is False
    assert get(tcp, "/healthz") == (503, b"unhealthy")


def test_get_healthz_fail_then_pass_flips_health(responder: Responder) -> None:
    tcp, _ = serve(responder)
    assert get(tcp, "/healthz/fail")[0] == 200
    assert responder.is_healthy("default/web-1") is False
    assert get(tcp, "/healthz")[0] == 503
    assert get(tcp, "/healthz/pass")[0] == 200
    assert responder.is_healthy("default/web-1") is True
    assert get(tcp, "/healthz") == (200, b"ok")


def test_post_healthz_fail_flips_health(responder: Responder) -> None:
    tcp, _ = serve(responder)
    assert get(tcp, "/healthz/fail", method="POST", body=b"")[0] == 200
    assert responder.is_healthy("default/web-1") is False


def test_health_is_per_pod(responder: Responder) -> None:
    a, _ = serve(responder, "default/a", "a")
    b, _ = serve(responder, "default/b", "b")
    get(a, "/healthz/fail")
    assert get(a, "/healthz")[0] == 503
    assert get(b, "/healthz")[0] == 200


def test_other_paths_return_json_echo(responder: Responder) -> None:
    tcp, _ = serve(responder)
    conn = http.client.HTTPConnection(HOST, tcp, timeout=5)
    conn.request("GET", "/some/path?x=1", headers={"X-Test": "yes"})
    resp = conn.getresponse()
    assert conn.sock is not None
    local = "{}:{}".format(*conn.sock.getsockname())
    assert resp.status == 200
    assert resp.getheader("content-type") == "application/json"
    doc = json.loads(resp.read())
    conn.close()
    assert doc["pod"] == "web-1"
    assert doc["client"] == local
    assert doc["port"] == tcp
    assert doc["method"] == "GET"
    assert doc["path"] == "/some/path?x=1"
    assert doc["host"] == f"{HOST}:{tcp}"
    assert doc["headers"]["x-test"] == "yes"


def test_post_with_body_is_echoed_as_json(responder: Responder) -> None:
    tcp, _ = serve(responder)
    status, body = get(tcp, "/submit", method="POST", body=b"a" * 10000)
    assert status == 200
    assert json.loads(body)["method"] == "POST"


def test_oversized_body_gets_413(responder: Responder) -> None:
    tcp, _ = serve(responder)
    with socket.create_connection((HOST, tcp), timeout=5) as s:
        s.sendall(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5000000\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 413")


def test_keep_alive_serves_several_requests_on_one_connection(responder: Responder) -> None:
    tcp, _ = serve(responder)
    conn = http.client.HTTPConnection(HOST, tcp, timeout=5)
    clients = []
    for _ in range(3):
        conn.request("GET", "/clientip")
        clients.append(conn.getresponse().read())
    conn.close()
    assert len(set(clients)) == 1


def test_pipelined_requests_are_answered_in_order(responder: Responder) -> None:
    tcp, _ = serve(responder)
    with socket.create_connection((HOST, tcp), timeout=5) as s:
        s.sendall(
            b"GET /hostname HTTP/1.1\r\nHost: h\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    first = data.index(b"web-1")
    second = data.index(b"ok")
    assert data.count(b"HTTP/1.1 200") == 2
    assert first < second


def test_connection_close_request_closes_connection(responder: Responder) -> None:
    tcp, _ = serve(responder)
    with socket.create_connection((HOST, tcp), timeout=5) as s:
        s.sendall(b"GET /hostname HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):  # ends only if the server closes
            data += chunk
    assert data.endswith(b"web-1")


def test_head_request_gets_headers_without_body(responder: Responder) -> None:
    tcp, _ = serve(responder)
    with socket.create_connection((HOST, tcp), timeout=5) as s:
        s.sendall(b"HEAD /hostname HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    assert data.endswith(b"\r\n\r\n")


def test_raw_tcp_garbage_does_not_break_the_pod(responder: Responder) -> None:
    tcp, _ = serve(responder)
    with socket.create_connection((HOST, tcp), timeout=5) as s:
        s.sendall(b"\x00\x01hello not http\r\n\r\n")
        while s.recv(65536):
            pass  # answered 400 and closed, or just closed
    assert get(tcp, "/hostname") == (200, b"web-1")


def test_raw_tcp_client_sending_nothing_does_not_block_others(responder: Responder) -> None:
    tcp, _ = serve(responder)
    with socket.create_connection((HOST, tcp), timeout=5):
        assert get(tcp, "/hostname") == (200, b"web-1")


def test_udp_hostname_returns_pod_name(responder: Responder) -> None:
    _, udp = serve(responder)
    assert udp_ask(udp, b"hostname")[0] == b"web-1"


def test_udp_clientip_returns_callers_address(responder: Responder) -> None:
    _, udp = serve(responder)
    reply, local = udp_ask(udp, b"clientip")
    assert reply.decode() == local


def test_udp_other_datagrams_are_echoed(responder: Responder) -> None:
    _, udp = serve(responder)
    assert udp_ask(udp, b"hello there")[0] == b"hello there"


def test_remove_pod_closes_listening_sockets(responder: Responder) -> None:
    tcp, _ = serve(responder)
    responder.remove_pod("default/web-1")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, tcp), timeout=5).close()


def test_remove_pod_closes_open_connections(responder: Responder) -> None:
    tcp, _ = serve(responder)
    with socket.create_connection((HOST, tcp), timeout=5) as s:
        assert wait_until(lambda: responder.connection_count("default/web-1") == 1)
        responder.remove_pod("default/web-1")
        with contextlib.suppress(ConnectionResetError):
            assert s.recv(1) == b""


def test_removed_pods_ports_can_be_bound_again(responder: Responder) -> None:
    tcp, udp = serve(responder)
    responder.remove_pod("default/web-1")
    responder.add_pod("default/web-2", "web-2", None, [(tcp, "TCP"), (udp, "UDP")], bind=HOST)
    assert get(tcp, "/hostname") == (200, b"web-2")


def test_bind_failure_raises_oserror_naming_pod_and_port(responder: Responder) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as info:
            responder.add_pod("default/web-1", "web-1", None, [(port, "TCP")], bind=HOST)
    assert "web-1" in str(info.value)
    assert str(port) in str(info.value)


def test_failed_add_pod_leaves_nothing_open(responder: Responder) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((HOST, 0))
        udp = taken.getsockname()[1]
        with socket.socket() as probe_free:
            probe_free.bind((HOST, 0))
            free = probe_free.getsockname()[1]
        with pytest.raises(OSError):
            responder.add_pod("default/web-1", "web-1", None, [(free, "TCP"), (udp, "UDP")], bind=HOST)
    assert responder.pods() == []
    with socket.socket() as again:
        again.bind((HOST, free))  # the TCP port opened first was closed


def test_sctp_ports_are_skipped(responder: Responder) -> None:
    responder.add_pod("default/web-1", "web-1", None, [(0, "TCP"), (9999, "SCTP")], bind=HOST)
    assert [p for _, p in responder.bound_ports("default/web-1")] == ["TCP"]


def test_unknown_protocol_is_rejected(responder: Responder) -> None:
    with pytest.raises(ValueError, match="web-1"):
        responder.add_pod("default/web-1", "web-1", None, [(0, "QUIC")], bind=HOST)


def test_duplicate_pod_key_is_rejected(responder: Responder) -> None:
    serve(responder)
    with pytest.raises(ValueError, match="already"):
        serve(responder)


def test_unknown_pod_key_raises_key_error(responder: Responder) -> None:
    with pytest.raises(KeyError):
        responder.is_healthy("default/nope")


def test_many_pods_share_one_thread(responder: Responder) -> None:
    before = threading.active_count()
    ports = [serve(responder, f"default/p{i}", f"p{i}")[0] for i in range(50)]
    assert threading.active_count() == before
    assert get(ports[0], "/hostname") == (200, b"p0")
    assert get(ports[-1], "/hostname") == (200, b"p49")


def test_add_pod_is_safe_from_many_threads(responder: Responder) -> None:
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            serve(responder, f"default/t{i}", f"t{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(responder.pods()) == 20


def test_stop_closes_every_socket() -> None:
    r = Responder()
    r.start()
    tcp, _ = serve(r)
    r.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, tcp), timeout=5).close()


def test_calls_before_start_raise() -> None:
    with pytest.raises(RuntimeError):
        Responder().add_pod("k", "n", None, [(0, "TCP")], bind=HOST)
