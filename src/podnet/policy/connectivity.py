"""Truth tables of pod-to-pod connectivity, in the spirit of the upstream
NetworkPolicy e2e suite's Reachability and of Cyclonus: rows are sources,
columns destinations, `.` allowed and `X` denied. `probe_matrix` measures
one with real packets; `expected_matrix` computes one from the objects
with the same evaluator `podnet explain` uses; `format_table` prints
either, and `differences` says where two disagree."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from podnet.lab.probe import probe_once
from podnet.policy.model import Endpoint, Pod, Policy, evaluate

Matrix = dict[str, dict[str, bool]]  # source key -> destination key -> allowed


def probe_matrix(
    pods: Sequence[Pod],
    netns_of: Callable[[Pod], str],
    port: int,
    protocol: str = "tcp",
    timeout: float = 1.0,
    workers: int = 32,
) -> Matrix:
    """Probe every pod from every pod (itself included), one new connection
    each, many at once. Allowed means the destination answered."""

    def one(pair: tuple[Pod, Pod]) -> tuple[str, str, bool]:
        src, dst = pair
        result = probe_once(dst.ip, port, protocol, timeout, netns=netns_of(src))
        return src.key, dst.key, result.ok

    matrix: Matrix = {s.key: {} for s in pods}
    pairs = [(s, d) for s in pods for d in pods]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(pairs)))) as pool:
        for src, dst, ok in pool.map(one, pairs):
            matrix[src][dst] = ok
    return matrix


def expected_matrix(
    pods: Sequence[Pod],
    policies: Iterable[Policy],
    ns_labels: Mapping[str, Mapping[str, str]],
    port: int,
    protocol: str = "tcp",
) -> Matrix:
    policies = list(policies)
    return {
        s.key: {
            d.key: evaluate(policies, ns_labels, Endpoint(s.ip, s), Endpoint(d.ip, d), protocol, port).allowed
            for d in pods
        }
        for s in pods
    }


def format_table(matrix: Matrix, keys: Sequence[str] | None = None) -> str:
    keys = list(keys or matrix)
    width = max([len(k) for k in keys] + [1])
    head = "-".ljust(width) + " " + " ".join(k.ljust(width) for k in keys)
    lines = [head.rstrip()]
    for s in keys:
        cells = " ".join(("." if matrix[s][d] else "X").ljust(width) for d in keys)
        lines.append((s.ljust(width) + " " + cells).rstrip())
    return "\n".join(lines) + "\n"


def differences(expected: Matrix, observed: Matrix) -> list[tuple[str, str, bool, bool]]:
    """(source, destination, expected, observed) wherever the two disagree."""
    return [
        (s, d, expected[s][d], observed[s][d])
        for s in expected
        for d in expected[s]
        if expected[s][d] != observed.get(s, {}).get(d)
    ]
