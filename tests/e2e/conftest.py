"""e2e fixtures: a lab cluster per test module, driven through the real
`podnet` command, whose teardown always runs and must leave nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from podnet.lab import netns

Obj = dict[str, Any]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="e2e tests need root (network namespaces)"))


def wait_for(what: str, check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Lab:
    def __init__(self, name: str, state_dir: Path) -> None:
        self.name = name
        self.state_dir = state_dir / name
        self.env = dict(os.environ, PODNET_STATE_DIR=str(state_dir), PODNET_CLUSTER=name)

    def run(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "podnet", *args],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"podnet {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def apply(self, manifest: str, namespace: str = "default") -> str:
        return self.run("apply", "-n", namespace, "-f", "-", input=manifest).stdout

    def pods(self, selector: str | None = None, namespace: str = "default") -> list[Obj]:
        args = ["get", "pods", "-n", namespace]
        if selector:
            args += ["-l", selector]
        return list(self.json(*args)["items"])

    def ready_pods(self, selector: str | None = None, namespace: str = "default") -> list[Obj]:
        return [
            p
            for p in self.pods(selector, namespace)
            if is_ready(p) and not p["metadata"].get("deletionTimestamp")
        ]

    def wait_ready(
        self, selector: str, count: int, namespace: str = "default", timeout: float = 15
    ) -> list[Obj]:
        def check() -> list[Obj] | None:
            pods = self.pods(selector, namespace)
            ready = [p for p in pods if is_ready(p)]
            return ready if len(ready) == count and len(pods) == count else None

        return list(wait_for(f"{count} ready pods {selector}", check, timeout))

    def probe(
        self,
        source: str,
        target: str,
        port: int,
        protocol: str = "tcp",
        count: int = 1,
        namespace: str = "default",
        timeout: float = 2.0,
    ) -> list[Obj]:
        proc = self.run(
            "probe",
            "-n",
            namespace,
            source,
            target,
            "--port",
            str(port),
            "--protocol",
            protocol,
            "--count",
            str(count),
            "--timeout",
            str(timeout),
            "-o",
            "json",
            check=False,
        )
        results = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        assert len(results) == count, proc.stderr
        return results

    def netns_left(self) -> list[str]:
        return [n for n in netns.list_names() if n.startswith(f"pn.{self.name}.")]


def is_ready(pod: Obj) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", [])
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab("t" + uuid.uuid4().hex[:6], tmp_path_factory.mktemp("state"))
    try:
        lab.run("up")
        yield lab
    finally:
        lab.run("down", check=False)
        assert lab.netns_left() == [], "podnet down left namespaces behind"
