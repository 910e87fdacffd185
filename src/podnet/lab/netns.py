"""Network namespaces without forking: setns/unshare through libc.

`ip netns add` and pyroute2's netns helpers both start a process per call;
the lab creates hundreds of namespaces, so it does what iproute2 does
(a bind mount of the namespace file under /run/netns) from a thread.
setns(CLONE_NEWNET) changes only the calling thread's namespace, so
sockets opened inside `entered(name)` stay bound to that namespace after
the thread returns to its own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from podnet.lab import rtnl

NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2
LOOPBACK_INDEX = 1  # lo is always the first interface of a namespace

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_setup_lock = threading.Lock()
_run_dir_ready = False


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def path(name: str) -> str:
    return os.path.join(NETNS_RUN_DIR, name)


def _prepare_run_dir() -> None:
    """Make /run/netns a shared mount point, as `ip netns add` does, so the
    namespaces we create show up in mount namespaces made later."""
    global _run_dir_ready
    with _setup_lock:
        if _run_dir_ready:
            return
        os.makedirs(NETNS_RUN_DIR, exist_ok=True)
        if _libc.mount(b"none", NETNS_RUN_DIR.encode(), b"none", MS_SHARED | MS_REC, None) != 0:
            if ctypes.get_errno() != errno.EINVAL:
                _check(-1, f"mount --make-shared {NETNS_RUN_DIR}")
            # Not a mount point yet: bind it onto itself, then share it.
            _check(
                _libc.mount(NETNS_RUN_DIR.encode(), NETNS_RUN_DIR.encode(), b"none", MS_BIND | MS_REC, None),
                f"mount --bind {NETNS_RUN_DIR}",
            )
            _check(
                _libc.mount(b"none", NETNS_RUN_DIR.encode(), b"none", MS_SHARED | MS_REC, None),
                f"mount --make-shared {NETNS_RUN_DIR}",
            )
        _run_dir_ready = True


def exists(name: str) -> bool:
    return os.path.exists(path(name))


def list_names() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


def create(name: str) -> None:
    """Create a named network namespace (like `ip netns add NAME`)."""
    _prepare_run_dir()
    target = path(name)
    fd = os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0)
    os.close(fd)
    errors: list[BaseException] = []

    def worker() -> None:
        # A throwaway thread: it unshares into the new namespace and dies,
        # so no thread of ours is ever left in the wrong namespace. While
        # inside, it brings the loopback up.
        try:
            _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            src = f"/proc/self/task/{threading.get_native_id()}/ns/net"
            _check(_libc.mount(src.encode(), target.encode(), b"none", MS_BIND, None), f"bind {target}")
            with rtnl.Netlink() as nl:
                nl.link_up(LOOPBACK_INDEX)
        except BaseException as exc:  # reported to the caller below
            errors.append(exc)

    t = threading.Thread(target=worker, name=f"netns-create-{name}")
    t.start()
    t.join()
    if errors:
        _libc.umount2(target.encode(), MNT_DETACH)
        with suppress(OSError):
            os.unlink(target)
        raise errors[0]


def setup_loopback(name: str) -> None:
    """Bring up the loopback of namespace `name` (create() already does)."""
    with entered(name):
        nl = rtnl.Netlink()
    with nl:
        nl.link_up(LOOPBACK_INDEX)


def delete(name: str) -> None:
    """Remove a named namespace (like `ip netns del NAME`). The kernel frees
    it once no process or socket holds it any more."""
    target = path(name)
    _libc.umount2(target.encode(), MNT_DETACH)
    with suppress(FileNotFoundError):
        os.unlink(target)


def pids(name: str) -> list[int]:
    """Processes whose network namespace is `name` (like `ip netns pids`)."""
    try:
        st = os.stat(path(name))
    except FileNotFoundError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            s = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (s.st_dev, s.st_ino) == (st.st_dev, st.st_ino):
            found.append(int(entry))
    return found


@contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the body with this thread inside namespace `name`, then return.
    Sockets created in the body belong to `name`."""
    own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        fd = os.open(path(name), os.O_RDONLY)
        try:
            _check(_libc.setns(fd, CLONE_NEWNET), f"setns {name}")
        finally:
            os.close(fd)
        try:
            yield
        finally:
            _check(_libc.setns(own, CLONE_NEWNET), "setns back")
    finally:
        os.close(own)


def write_sysctl(name: str, key: str, value: str) -> None:
    """Set a per-namespace sysctl (net.*) inside `name`, never in the root
    namespace: /proc/sys/net resolves to the opening thread's namespace."""
    with entered(name):
        fd = os.open("/proc/sys/" + key.replace(".", "/"), os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
