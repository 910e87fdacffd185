"""nftables through libnftables, in-process: a transaction costs tens of
microseconds instead of the milliseconds of starting `nft` (measured in
../shared/docs/nftables-scaling.md). The library's netlink socket is
opened when its context is created, so a context made inside a network
namespace stays bound to it; commands also run inside it, to be sure."""

from __future__ import annotations

import ctypes
import threading

from podnet.lab import netns as netns_mod


class NftError(Exception):
    pass


_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


def _load() -> ctypes.CDLL:
    global _lib
    with _lib_lock:
        if _lib is None:
            try:
                lib = ctypes.CDLL("libnftables.so.1")
            except OSError as exc:
                raise NftError(f"libnftables is not installed (Debian package nftables): {exc}") from None
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
            for fn in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
                getattr(lib, fn).argtypes = [ctypes.c_void_p]
            for fn in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
                getattr(lib, fn).argtypes = [ctypes.c_void_p]
                getattr(lib, fn).restype = ctypes.c_char_p
            _lib = lib
        return _lib


class Nftables:
    """A libnftables context bound to network namespace `netns`. Only an
    agent on a real node programs its own namespace, and says so with
    `host=True`; the lab never touches the machine's root namespace."""

    def __init__(self, netns: str | None, *, host: bool = False) -> None:
        if not netns and not host:  # None and "" alike: never the root namespace by accident
            raise NftError("refusing to program the current network namespace without host=True")
        self.netns = netns
        self._lib = _load()
        self._lock = threading.Lock()
        if netns:
            with netns_mod.entered(netns):
                ctx = self._lib.nft_ctx_new(0)
        else:
            ctx = self._lib.nft_ctx_new(0)
        if not ctx:
            raise NftError("nft_ctx_new failed")
        self._ctx = ctypes.c_void_p(ctx)
        self._lib.nft_ctx_buffer_output(self._ctx)
        self._lib.nft_ctx_buffer_error(self._ctx)

    def run(self, commands: str) -> str:
        """Run a script as one transaction: all of it applies, or none."""
        with self._lock:
            if not self._ctx:
                raise NftError("this nftables context is closed")
            if self.netns:
                with netns_mod.entered(self.netns):
                    rc = self._lib.nft_run_cmd_from_buffer(self._ctx, commands.encode())
            else:
                rc = self._lib.nft_run_cmd_from_buffer(self._ctx, commands.encode())
            out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
            err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
        if rc != 0:
            raise NftError(err.strip() or f"nft failed with code {rc}")
        return out

    def close(self) -> None:
        with self._lock:
            if self._ctx:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = ctypes.c_void_p(0)
