"""The few rtnetlink requests a pod's network needs, written directly on a
netlink socket: a veth pair, a link up, an address, a route, a link removed.

pyroute2 does the same through an asyncio loop per call and costs about a
millisecond a request, and a millisecond more for each socket; a pod takes
a dozen requests. Here a request is a struct.pack and a send, so the
kernel's own work (a few ms a pod) is what is left. No decisions here:
the caller says what to make. The socket belongs to the network namespace
of the thread that opens it (see netns.entered).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
IFF_UP = 0x1
IFLA_IFNAME = 3
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFA_ADDRESS = 1
IFA_LOCAL = 2
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PREFSRC = 7
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1

_NLMSGHDR = struct.Struct("=LHHLL")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")


def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def _name(ifname: str) -> bytes:
    return _attr(IFLA_IFNAME, ifname.encode() + b"\0")


def _ip(addr: str) -> bytes:
    return socket.inet_aton(addr)


class Netlink:
    """A route netlink socket in the namespace of the thread that opens it.
    One request at a time (a lock), each waiting for the kernel's answer."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0
        self.lock = threading.Lock()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, msg_type: int, flags: int, body: bytes) -> bytes:
        """Send one request; return the first answer's payload (a GET), or
        b"" on a plain acknowledgement. A kernel error raises OSError."""
        with self.lock:
            self.seq += 1
            seq = self.seq
            flags |= NLM_F_REQUEST | NLM_F_ACK
            self.sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags, seq, 0) + body)
            answer = b""
            while True:
                data = self.sock.recv(65536)
                off = 0
                while off + _NLMSGHDR.size <= len(data):
                    length, kind, _, mseq, _ = _NLMSGHDR.unpack_from(data, off)
                    if length < _NLMSGHDR.size:
                        raise OSError(errno.EIO, "netlink: malformed answer")
                    payload = data[off + _NLMSGHDR.size : off + length]
                    off += (length + 3) & ~3
                    if mseq != seq:
                        continue  # a late answer to an earlier request
                    if kind == NLMSG_ERROR:
                        (code,) = struct.unpack_from("=i", payload)
                        if code:
                            raise OSError(-code, os.strerror(-code))
                        return answer
                    if kind == NLMSG_DONE:
                        return answer
                    if not answer:
                        answer = payload

    # -- links -----------------------------------------------------------

    def link_index(self, ifname: str) -> int:
        """The index of interface `ifname`; OSError(ENODEV) if there is none."""
        answer = self.request(RTM_GETLINK, 0, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _name(ifname))
        if len(answer) < _IFINFOMSG.size:
            raise OSError(errno.ENODEV, f"interface {ifname} not found")
        return int(_IFINFOMSG.unpack_from(answer)[2])

    def link_up(self, index: int) -> None:
        self.request(RTM_NEWLINK, 0, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP))

    def veth(self, name: str, peer: str, peer_netns_fd: int) -> None:
        """A veth pair, both ends down (the kernel refuses to open an end
        before it has its peer): `name` here, `peer` in the namespace of
        `peer_netns_fd`."""
        peer_info = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        peer_info += _name(peer) + _attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
        linkinfo = _attr(IFLA_INFO_KIND, b"veth\0") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_info))
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _name(name)
        body += _attr(IFLA_LINKINFO, linkinfo)
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body)

    def link_del(self, ifname: str) -> bool:
        """Remove interface `ifname` (a veth takes its peer along). False
        if there was none."""
        try:
            self.request(RTM_DELLINK, 0, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _name(ifname))
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return False
            raise
        return True

    # -- addresses and routes ----------------------------------------------

    def addr_add(self, index: int, address: str, prefixlen: int) -> None:
        body = _IFADDRMSG.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
        body += _attr(IFA_LOCAL, _ip(address)) + _attr(IFA_ADDRESS, _ip(address))
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)

    def route_add(
        self,
        dst: str,
        dst_len: int,
        *,
        oif: int | None = None,
        gateway: str | None = None,
        prefsrc: str | None = None,
        scope: int = RT_SCOPE_UNIVERSE,
        replace: bool = False,
    ) -> None:
        """Add a route; `replace` takes over an existing route to the same
        destination (as `ip route replace`)."""
        body = _RTMSG.pack(socket.AF_INET, dst_len, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope, RTN_UNICAST, 0)
        if dst_len:
            body += _attr(RTA_DST, _ip(dst))
        if gateway:
            body += _attr(RTA_GATEWAY, _ip(gateway))
        if oif is not None:
            body += _attr(RTA_OIF, struct.pack("=I", oif))
        if prefsrc:
            body += _attr(RTA_PREFSRC, _ip(prefsrc))
        self.request(RTM_NEWROUTE, NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL), body)
