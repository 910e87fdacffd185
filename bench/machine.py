"""What every benchmark prints first: the machine it ran on."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
import sys


def describe(tools: list[list[str]] | None = None) -> list[str]:
    """CPUs, memory, kernel, Python, the load at start, and the version of
    each tool command given (e.g. ["nft", "--version"])."""
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    out = [
        f"cpus:    {os.cpu_count()} ({cpu or platform.machine()})",
        f"memory:  {mem_kb / 1024 / 1024:.1f} GiB",
        f"kernel:  {platform.release()}",
        f"python:  {platform.python_version()} ({sys.executable})",
        f"load:    {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min, at start)",
    ]
    versions = []
    for cmd in tools or []:
        try:
            p = subprocess.run(cmd, capture_output=True, text=True)
        except OSError:
            versions.append(f"{cmd[0]} not found")
            continue
        text = p.stdout + p.stderr
        found = re.search(r"[Vv]ersion:?\s+v?(\d+\.\d+(?:\.\d+)?)", text) or re.search(
            r"v(\d+\.\d+(?:\.\d+)?)", text
        )
        versions.append(f"{cmd[0]} {found.group(1) if found else '?'}")
    if versions:
        out.append(f"tools:   {', '.join(versions)}")
    return out
