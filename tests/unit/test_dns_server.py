"""The DNS server on loopback: the wire format, truncation, TCP, the
response cache, forwarding to an upstream, ExternalName chasing; and the
informer's list-then-watch against the lab's API server, relisting on 410."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import pytest

from podnet.api.kinds import BY_KIND
from podnet.config import ClusterConfig
from podnet.dns import records
from podnet.dns.informer import Informer
from podnet.dns.server import Resolver, serve
from podnet.dns.upstream import internet_records, static_zone
from podnet.server.http import APIHTTPServer
from podnet.server.registry import Registry
from podnet.store import store as store_mod
from podnet.store.store import Store

Obj = dict[str, Any]


def service(name: str, ip: str, **spec: Any) -> Obj:
    s: Obj = {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}], **spec}
    if ip:
        s["clusterIP"] = ip
        s["clusterIPs"] = [ip]
    return {"metadata": {"name": name, "namespace": "default"}, "spec": s}


def many_endpoints(n: int) -> Obj:
    return {
        "metadata": {
            "name": "big-x",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "big"},
        },
        "endpoints": [{"addresses": [f"10.244.{i // 250}.{i % 250 + 1}"]} for i in range(n)],
        "ports": [],
    }


ZONE = records.build(
    [
        service("web", "10.96.1.1"),
        service("big", "None"),
        {
            "metadata": {"name": "ext", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "www.example.com"},
        },
        {
            "metadata": {"name": "gone", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "nx.example.com"},
        },
    ],
    [many_endpoints(100)],
)


def q(name: str, rdtype: str = "A", **kw: Any) -> dns.message.Message:
    return dns.message.make_query(name, rdtype, **kw)


def reply(r: Resolver, msg: dns.message.Message, tcp: bool = False) -> dns.message.Message:
    out = r.answer_now(msg.to_wire(), tcp)
    assert isinstance(out, bytes)
    return dns.message.from_wire(out)


@pytest.fixture
def resolver() -> Resolver:
    return Resolver(lambda: ZONE, upstream=None)


def test_an_answer_is_authoritative_and_echoes_the_question(resolver: Resolver) -> None:
    m = reply(resolver, q("web.default.svc.cluster.local"))
    assert m.rcode() == dns.rcode.NOERROR
    assert m.flags & dns.flags.AA and m.flags & dns.flags.QR and m.flags & dns.flags.RD
    assert m.question[0].to_text() == "web.default.svc.cluster.local. IN A"
    assert [rr.to_text() for rr in m.answer] == ["web.default.svc.cluster.local. 5 IN A 10.96.1.1"]


def test_nxdomain_and_nodata_carry_the_soa(resolver: Resolver) -> None:
    nx = reply(resolver, q("nope.default.svc.cluster.local"))
    assert nx.rcode() == dns.rcode.NXDOMAIN and not nx.answer
    assert nx.authority[0].to_text().startswith("cluster.local. 5 IN SOA ns.dns.cluster.local.")
    nodata = reply(resolver, q("web.default.svc.cluster.local", "AAAA"))
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and nodata.authority


def test_a_repeated_question_comes_from_the_cache_with_its_own_id(resolver: Resolver) -> None:
    first = q("web.default.svc.cluster.local")
    second = q("web.default.svc.cluster.local")
    reply(resolver, first)
    assert len(resolver._cache) == 1
    m = reply(resolver, second)
    assert m.id == second.id and len(resolver._cache) == 1


def test_a_repeated_question_is_answered_without_parsing_it(
    resolver: Resolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = q("web.default.svc.cluster.local")
    out = resolver.answer_now(first.to_wire(), False)
    assert isinstance(out, bytes)

    def no_parse(*args: Any, **kw: Any) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr(dns.message, "from_wire", no_parse)
    again = first.to_wire()
    again = b"\xbe\xef" + again[2:]
    assert resolver.answer_now(again, False) == b"\xbe\xef" + out[2:]
    monkeypatch.undo()
    # The same question over TCP is another entry (its size limit differs).
    assert isinstance(resolver.answer_now(first.to_wire(), True), bytes) and len(resolver._cache) == 2


def test_the_reply_echoes_the_letter_case_the_client_asked_in(resolver: Resolver) -> None:
    reply(resolver, q("web.default.svc.cluster.local"))
    m = reply(resolver, q("WeB.Default.svc.cluster.local"))
    assert m.question[0].name.to_text() == "WeB.Default.svc.cluster.local."
    assert m.answer[0][0].address == "10.96.1.1"


def test_a_new_zone_empties_the_cache() -> None:
    zones = [ZONE]
    r = Resolver(lambda: zones[0], upstream=None)
    reply(r, q("web.default.svc.cluster.local"))
    zones[0] = records.build([service("web", "10.96.2.2")], [])
    assert reply(r, q("web.default.svc.cluster.local")).answer[0][0].address == "10.96.2.2"


def test_a_big_answer_is_truncated_over_udp_and_whole_over_tcp(resolver: Resolver) -> None:
    udp = reply(resolver, q("big.default.svc.cluster.local"))
    assert udp.flags & dns.flags.TC
    edns = reply(resolver, q("big.default.svc.cluster.local", use_edns=0, payload=4096))
    assert edns.flags & dns.flags.TC  # still more than 1232 bytes
    tcp = reply(resolver, q("big.default.svc.cluster.local"), tcp=True)
    assert not tcp.flags & dns.flags.TC and len(tcp.answer[0]) == 100


def test_edns_is_answered_with_edns(resolver: Resolver) -> None:
    m = reply(resolver, q("web.default.svc.cluster.local", use_edns=0, payload=1232))
    assert m.edns == 0


def test_bad_messages_get_errors(resolver: Resolver) -> None:
    assert resolver.answer_now(b"\x12\x34", False) is None  # too short to answer
    garbage = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff"
    out = resolver.answer_now(garbage, False)
    assert isinstance(out, bytes) and out[:2] == b"\x12\x34"
    assert struct.unpack("!H", out[2:4])[0] & 0xF == dns.rcode.FORMERR
    notify = q("web.default.svc.cluster.local")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert reply(resolver, notify).rcode() == dns.rcode.NOTIMP
    chaos = q("version.bind", "TXT")
    chaos.question[0].rdclass = dns.rdataclass.CH
    assert reply(resolver, chaos).rcode() == dns.rcode.REFUSED
    response = dns.message.make_response(q("x.cluster.local"))
    assert resolver.answer_now(response.to_wire(), False) is None  # never answer a response


def test_before_the_first_sync_it_is_servfail() -> None:
    r = Resolver(lambda: None, upstream=None)
    assert reply(r, q("web.default.svc.cluster.local")).rcode() == dns.rcode.SERVFAIL


def test_without_an_upstream_other_names_are_nxdomain(resolver: Resolver) -> None:
    assert reply(resolver, q("www.example.com")).rcode() == dns.rcode.NXDOMAIN


def test_the_internet_zone_answers_example_com() -> None:
    z = static_zone(internet_records("198.51.100.100"))
    ans = z.answer("www.example.com", "A")
    assert ans is not None and ans.answer[0].data == "198.51.100.100"
    assert z.answer("example.com", "A") is not None
    assert (z.answer("com", "A") or records.Answer("x")).rcode == records.NOERROR  # an empty non-terminal
    assert (z.answer("nothing.example.org", "A") or records.Answer("x")).rcode == records.NXDOMAIN


# -- over the network: a cluster server forwarding to an internet server ------------------------


def bind_pair() -> tuple[socket.socket, socket.socket, int]:
    """UDP and TCP sockets on one free loopback port."""
    for _ in range(20):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("127.0.0.1", port))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(16)
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp, port
    raise RuntimeError("no free port")


@contextlib.asynccontextmanager
async def two_servers() -> AsyncIterator[int]:
    """A cluster server forwarding to an internet server; yields the cluster's port."""
    stop = asyncio.Event()
    iu, it, iport = bind_pair()
    cu, ct, cport = bind_pair()
    internet = Resolver(
        lambda: static_zone(internet_records("198.51.100.100")), upstream=None, recursion=False
    )
    cluster = Resolver(lambda: ZONE, upstream=("127.0.0.1", iport))
    tasks = [
        asyncio.ensure_future(serve(internet, iu, it, stop)),
        asyncio.ensure_future(serve(cluster, cu, ct, stop)),
    ]
    await asyncio.sleep(0.05)
    try:
        yield cport
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def exchange(port: int, msg: dns.message.Message, tcp: bool = False) -> dns.message.Message:
    import dns.asyncquery

    if tcp:
        return await dns.asyncquery.tcp(msg, "127.0.0.1", port=port, timeout=3)
    return await dns.asyncquery.udp(msg, "127.0.0.1", port=port, timeout=3)


def run(coro_fn: Callable[[], Any]) -> Any:
    return asyncio.run(coro_fn())


def test_over_udp_and_tcp_with_forwarding() -> None:
    async def main() -> None:
        async with two_servers() as cport:
            for tcp in (False, True):
                m = await exchange(cport, q("web.default.svc.cluster.local"), tcp)
                assert m.answer[0][0].address == "10.96.1.1"
                fwd = await exchange(cport, q("www.example.com"), tcp)
                assert fwd.answer[0][0].address == "198.51.100.100"
                assert fwd.flags & dns.flags.AA  # relayed as the internet's server said it
                nx = await exchange(cport, q("nothing.example.org"), tcp)
                assert nx.rcode() == dns.rcode.NXDOMAIN
                ptr = await exchange(cport, q("100.100.51.198.in-addr.arpa", "PTR"), tcp)
                assert ptr.answer[0][0].target.to_text() == "www.example.com."
            # An ExternalName: the CNAME from the zone, the address from upstream.
            m = await exchange(cport, q("ext.default.svc.cluster.local"))
            assert [rr.to_text() for rr in m.answer] == [
                "ext.default.svc.cluster.local. 5 IN CNAME www.example.com.",
                "www.example.com. 300 IN A 198.51.100.100",
            ]
            gone = await exchange(cport, q("gone.default.svc.cluster.local"))
            assert gone.rcode() == dns.rcode.NXDOMAIN and len(gone.answer) == 1
            # Many queries at once, all answered.
            got = await asyncio.gather(
                *(exchange(cport, q(f"n{i}.default.svc.cluster.local")) for i in range(200))
            )
            assert all(m.rcode() == dns.rcode.NXDOMAIN for m in got)

    run(main)


def test_an_unreachable_upstream_is_servfail() -> None:
    async def main() -> None:
        stop = asyncio.Event()
        u, t, port = bind_pair()
        dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dead.bind(("127.0.0.1", 0))  # bound, never answers
        r = Resolver(lambda: ZONE, upstream=("127.0.0.1", dead.getsockname()[1]))
        import podnet.dns.server as server_mod

        old = server_mod.FORWARD_TIMEOUT
        server_mod.FORWARD_TIMEOUT = 0.2
        task = asyncio.ensure_future(serve(r, u, t, stop))
        try:
            await asyncio.sleep(0.02)
            m = await exchange(port, q("www.example.com"))
            assert m.rcode() == dns.rcode.SERVFAIL
        finally:
            server_mod.FORWARD_TIMEOUT = old
            stop.set()
            await task
            dead.close()

    run(main)


# -- the informer -------------------------------------------------------------------------------


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Registry, int]]:
    monkeypatch.setattr(store_mod, "EVENT_HISTORY", 5)
    reg = Registry(Store(), ClusterConfig())
    reg.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    server = APIHTTPServer(("127.0.0.1", 0), reg)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield reg, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def svc_obj(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"port": 80}], "selector": {"app": name}},
    }


def wait(what: str, check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_informer_lists_then_follows_the_watch(api: tuple[Registry, int]) -> None:
    reg, port = api
    reg.create(svc_obj("a"))
    stop = threading.Event()
    changes: list[int] = []
    inf = Informer("127.0.0.1", port, BY_KIND["Service"], lambda: changes.append(1), stop)
    inf.start()
    try:
        wait("the first list", inf.synced.is_set)
        assert {k[1] for k in inf.objects} == {"a"}
        reg.create(svc_obj("b"))
        wait("b to be seen", lambda: ("default", "b") in inf.objects)
        reg.delete("Service", "default", "a")
        wait("a to go", lambda: ("default", "a") not in inf.objects)
        assert inf.lists == 1 and changes
    finally:
        stop.set()


def test_the_informer_lists_again_when_its_version_is_gone(api: tuple[Registry, int]) -> None:
    reg, port = api
    stop = threading.Event()
    inf = Informer("127.0.0.1", port, BY_KIND["Service"], lambda: None, stop)
    inf.rv = "1"  # as if it had listed long ago, before a compaction
    for i in range(8):
        reg.create(svc_obj(f"s{i}"))
    inf.start()
    try:
        wait("a relist", lambda: inf.lists == 1 and len(inf.objects) == 8)
    finally:
        stop.set()
