"""The DNS serving loop: one asyncio loop, UDP and TCP, answering from a
precomputed `Zone` and forwarding what is not the zone's to an upstream
resolver.

The wire format is dnspython's; the loop is ours. A zone answer is
rendered once per question message (its bytes after the ID, and the
transport) and kept with the zone it came from, so a repeated question
costs one dict lookup and no parse: the reply is the cached bytes with the
asker's ID; a new zone (after a change in the cluster) starts with an
empty cache. UDP is read straight off the socket, draining every datagram
waiting at each wake-up, rather than one per event-loop turn. Forwarded queries go upstream over the transport the client
used (UDP or TCP), with the client's own message, so the upstream's answer
(rcode, flags, TTLs) is relayed unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from podnet.dns.records import NXDOMAIN, Answer, Record, Zone

log = logging.getLogger("podnet.dns.server")
UDP_MAX_NO_EDNS = 512
OUR_PAYLOAD = 1232  # the EDNS buffer size DNS Flag Day 2020 settled on
FORWARD_TIMEOUT = 2.0
TCP_IDLE = 10.0
CACHE_MAX = 50_000


@dataclass
class _Pending:
    """A question the zone could not answer alone: forward it, or chase a CNAME upstream."""

    query: dns.message.Message
    answer: Answer | None  # None: forward the whole query


class Resolver:
    """Answers DNS messages from the zone `zone()` returns. `upstream`:
    where names outside the zone go; None: they are NXDOMAIN (an
    authoritative server for everything, such as the lab's internet)."""

    def __init__(
        self, zone: Callable[[], Zone | None], upstream: tuple[str, int] | None, recursion: bool = True
    ) -> None:
        self.zone = zone
        self.upstream = upstream
        self.recursion = recursion
        # (tcp, the query after its ID) -> the reply after its ID
        self._cache: dict[tuple[bool, bytes], bytes] = {}
        self._cache_zone: Zone | None = None
        self._rrsets: dict[tuple[Record, ...], dns.rrset.RRset] = {}
        self.queries = 0
        self.forwarded = 0

    # -- the synchronous part: parse, answer from the zone, render -------------

    def answer_now(self, wire: bytes, tcp: bool) -> bytes | _Pending | None:
        """The reply, or what needs the network first, or None (drop)."""
        self.queries += 1
        zone = self.zone()
        if zone is not self._cache_zone:
            self._cache, self._cache_zone = {}, zone
        key = (tcp, wire[2:])
        cached = self._cache.get(key)
        if cached is not None:
            return wire[:2] + cached
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return _error_header(wire, dns.rcode.FORMERR)
        if query.flags & dns.flags.QR:
            return None  # a response sent to us: never answer those
        if query.opcode() != dns.opcode.QUERY:
            return self._render(query, dns.rcode.NOTIMP, (), tcp)
        if len(query.question) != 1:
            return self._render(query, dns.rcode.FORMERR, (), tcp)
        q = query.question[0]
        if q.rdclass != dns.rdataclass.IN:
            return self._render(query, dns.rcode.REFUSED, (), tcp)
        if zone is None:
            return self._render(query, dns.rcode.SERVFAIL, (), tcp)  # not synced yet
        qname, qtype = q.name.to_text().lower(), dns.rdatatype.to_text(q.rdtype)
        ans = zone.answer(qname, qtype)
        if ans is None:
            if self.upstream is None:
                ans = Answer(NXDOMAIN)
            else:
                return _Pending(query, None)
        if ans.chase and self.upstream is not None and qtype not in ("CNAME", "ANY"):
            return _Pending(query, ans)
        out = self._render(query, ans, (), tcp)
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[key] = out[2:]
        return out

    def _rrset(self, records: tuple[Record, ...]) -> dns.rrset.RRset:
        rr = self._rrsets.get(records)
        if rr is None:
            first = records[0]
            rr = dns.rrset.from_text_list(first.name, first.ttl, "IN", first.type, [r.data for r in records])
            if len(self._rrsets) >= CACHE_MAX:
                self._rrsets.clear()
            self._rrsets[records] = rr
        return rr

    def _sections(self, records: tuple[Record, ...]) -> list[dns.rrset.RRset]:
        groups: dict[tuple[str, str], list[Record]] = {}
        for r in records:
            groups.setdefault((r.name, r.type), []).append(r)
        return [self._rrset(tuple(g)) for g in groups.values()]

    def _render(
        self,
        query: dns.message.Message,
        ans: Answer | int,
        extra: tuple[dns.rrset.RRset, ...],
        tcp: bool,
        rcode: int | None = None,
    ) -> bytes:
        resp = dns.message.make_response(query, recursion_available=self.recursion, our_payload=OUR_PAYLOAD)
        if isinstance(ans, int):
            resp.set_rcode(dns.rcode.Rcode(ans))
        else:
            resp.flags |= dns.flags.AA
            resp.set_rcode(dns.rcode.from_text(ans.rcode) if rcode is None else dns.rcode.Rcode(rcode))
            resp.answer = self._sections(ans.answer) + list(extra)
            resp.authority = self._sections(ans.authority)
            resp.additional = self._sections(ans.additional)
        if tcp:
            limit = 65535
        elif query.edns >= 0:
            limit = max(UDP_MAX_NO_EDNS, min(query.payload, OUR_PAYLOAD))
        else:
            limit = UDP_MAX_NO_EDNS
        return resp.to_wire(max_size=limit, prefer_truncation=True)

    # -- the asynchronous part: upstream -------------------------------------------

    async def answer(self, wire: bytes, tcp: bool) -> bytes | None:
        now = self.answer_now(wire, tcp)
        if not isinstance(now, _Pending):
            return now
        assert self.upstream is not None
        self.forwarded += 1
        if now.answer is None:
            reply = await forward(wire, self.upstream, tcp)
            return reply if reply is not None else self._render(now.query, dns.rcode.SERVFAIL, (), tcp)
        # An ExternalName: the CNAME from the zone, the target's records from upstream.
        assert now.answer.chase is not None
        qtype = now.query.question[0].rdtype
        sub = dns.message.make_query(now.answer.chase, qtype)
        reply = await forward(sub.to_wire(), self.upstream, tcp)
        extra: tuple[dns.rrset.RRset, ...] = ()
        rcode = None
        if reply is not None:
            with contextlib.suppress(Exception):
                got = dns.message.from_wire(reply)
                extra = tuple(got.answer)
                rcode = got.rcode()
        return self._render(now.query, now.answer, extra, tcp, rcode)


def _error_header(wire: bytes, rcode: int) -> bytes | None:
    """A bare reply (header only) to a message too broken to parse."""
    if len(wire) < 12:
        return None
    flags = struct.unpack("!H", wire[2:4])[0]
    if flags & 0x8000:
        return None
    flags = (flags & 0x7900) | 0x8000 | rcode  # QR, keep opcode and RD
    return wire[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)


# -- upstream ---------------------------------------------------------------------


class _UpstreamProtocol(asyncio.DatagramProtocol):
    def __init__(self, qid: bytes) -> None:
        self.qid = qid
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data[:2] == self.qid and not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


async def forward(
    wire: bytes, upstream: tuple[str, int], tcp: bool, timeout: float = FORWARD_TIMEOUT
) -> bytes | None:
    """Send a query upstream over UDP (or TCP) and return the reply; None on failure."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            if tcp:
                reader, writer = await asyncio.open_connection(*upstream)
                try:
                    writer.write(struct.pack("!H", len(wire)) + wire)
                    size = struct.unpack("!H", await reader.readexactly(2))[0]
                    return await reader.readexactly(size)
                finally:
                    writer.close()
            transport, proto = await loop.create_datagram_endpoint(
                lambda: _UpstreamProtocol(wire[:2]), remote_addr=upstream
            )
            try:
                transport.sendto(wire)
                return await proto.reply
            finally:
                transport.close()
    except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
        log.warning("upstream %s:%s: %s", upstream[0], upstream[1], str(exc) or type(exc).__name__)
        return None


# -- serving ----------------------------------------------------------------------


class _UDP:
    """UDP on a non-blocking socket, read from an event-loop reader
    callback that drains up to `BATCH` datagrams per wake-up (asyncio's
    datagram transport takes one per loop turn). A reply the socket cannot
    take right now is dropped, as a full queue drops one: the client asks
    again."""

    BATCH = 64

    def __init__(self, resolver: Resolver, sock: socket.socket) -> None:
        self.resolver = resolver
        self.sock = sock
        self.buf = bytearray(65535)
        self.view = memoryview(self.buf)
        self.tasks: set[asyncio.Task[None]] = set()

    def readable(self) -> None:
        sock, view, answer_now = self.sock, self.view, self.resolver.answer_now
        for _ in range(self.BATCH):
            try:
                size, addr = sock.recvfrom_into(self.buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error from an earlier reply: not ours to act on
            data = bytes(view[:size])
            try:
                now = answer_now(data, tcp=False)
            except Exception:
                log.exception("answering a query failed")
                now = _error_header(data, dns.rcode.SERVFAIL)
            if isinstance(now, bytes):
                self.send(now, addr)
            elif isinstance(now, _Pending):
                task = asyncio.ensure_future(self._slow(data, addr))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    def send(self, reply: bytes, addr: tuple[str, int]) -> None:
        try:
            self.sock.sendto(reply, addr)
        except OSError as exc:  # the socket's buffer full (EAGAIN), or the client gone
            log.debug("reply to %s:%s: %s", addr[0], addr[1], exc)

    async def _slow(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = await self.resolver.answer(data, tcp=False)
        except Exception:
            log.exception("answering a query failed")
            reply = _error_header(data, dns.rcode.SERVFAIL)
        if reply is not None and self.sock.fileno() >= 0:
            self.send(reply, addr)


async def _tcp_client(resolver: Resolver, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            async with asyncio.timeout(TCP_IDLE):
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                data = await reader.readexactly(size)
            try:
                reply = await resolver.answer(data, tcp=True)
            except Exception:
                log.exception("answering a query failed")
                reply = _error_header(data, dns.rcode.SERVFAIL)
            if reply is None:
                break
            writer.write(struct.pack("!H", len(reply)) + reply)
            await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _http_ready(
    ready: Callable[[], bool], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """GET /ready and /health, as CoreDNS's ready and health plugins."""
    try:
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
        ok = path.startswith(b"/health") or ready()
        body = b"OK" if ok else b"not ready"
        status = b"200 OK" if ok else b"503 Service Unavailable"
        writer.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


def bind_sockets(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a listening TCP socket on host:port (in the calling thread's network namespace)."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        udp.bind((host, port))
        tcp.bind((host, port))
        tcp.listen(1024)
    except OSError:
        udp.close()
        tcp.close()
        raise
    udp.setblocking(False)
    tcp.setblocking(False)
    return udp, tcp


async def serve(
    resolver: Resolver,
    udp: socket.socket,
    tcp: socket.socket,
    stop: asyncio.Event,
    ready_sock: socket.socket | None = None,
    ready: Callable[[], bool] = lambda: True,
) -> None:
    """Serve DNS on the given sockets (and readiness on `ready_sock`) until `stop` is set."""
    loop = asyncio.get_running_loop()
    udp.setblocking(False)
    udp_server = _UDP(resolver, udp)
    loop.add_reader(udp.fileno(), udp_server.readable)
    servers = [await asyncio.start_server(lambda r, w: _tcp_client(resolver, r, w), sock=tcp)]
    if ready_sock is not None:
        servers.append(await asyncio.start_server(lambda r, w: _http_ready(ready, r, w), sock=ready_sock))
    try:
        await stop.wait()
    finally:
        loop.remove_reader(udp.fileno())
        udp.close()
        for s in servers:
            s.close()
