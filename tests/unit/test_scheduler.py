"""Pod placement: spreading, nodeSelector, and nodes that cannot take pods."""

from __future__ import annotations

import pytest

from podnet.controllers.scheduler import Unschedulable, feasible, node_ready, schedule

Obj = dict


def node(name: str, ready: bool = True, unschedulable: bool = False, **labels: str) -> Obj:
    return {
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"unschedulable": True} if unschedulable else {},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def pod(**node_selector: str) -> Obj:
    spec: Obj = {"containers": [{"name": "c", "image": "x"}]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def test_a_pod_goes_to_the_node_with_the_fewest_pods() -> None:
    nodes = [node("node-1"), node("node-2"), node("node-3")]
    assert schedule(pod(), nodes, {"node-1": 3, "node-2": 1, "node-3": 2}) == "node-2"


def test_ties_go_to_the_first_node_by_name() -> None:
    nodes = [node("node-2"), node("node-1")]
    assert schedule(pod(), nodes, {}) == "node-1"


def test_replicas_placed_one_after_the_other_spread_evenly() -> None:
    nodes = [node("node-1"), node("node-2"), node("node-3")]
    load: dict[str, int] = {}
    for _ in range(7):
        chosen = schedule(pod(), nodes, load)
        load[chosen] = load.get(chosen, 0) + 1
    assert sorted(load.values()) == [2, 2, 3]


def test_a_node_selector_limits_the_choice_to_matching_nodes() -> None:
    nodes = [node("node-1", disk="hdd"), node("node-2", disk="ssd")]
    assert schedule(pod(disk="ssd"), nodes, {"node-2": 10}) == "node-2"


def test_a_node_selector_needs_every_label_to_match() -> None:
    nodes = [node("node-1", disk="ssd"), node("node-2", disk="ssd", zone="b")]
    assert schedule(pod(disk="ssd", zone="b"), nodes, {"node-2": 5}) == "node-2"


def test_a_not_ready_node_gets_no_pods() -> None:
    nodes = [node("node-1", ready=False), node("node-2")]
    assert schedule(pod(), nodes, {"node-2": 10}) == "node-2"


def test_a_node_without_a_ready_condition_is_not_ready() -> None:
    bare = {"metadata": {"name": "n"}, "spec": {}, "status": {}}
    assert not node_ready(bare)
    assert not feasible(pod(), bare)


def test_a_cordoned_node_gets_no_pods() -> None:
    nodes = [node("node-1", unschedulable=True), node("node-2")]
    assert schedule(pod(), nodes, {"node-2": 10}) == "node-2"


def test_no_ready_node_is_unschedulable_with_a_message_counting_the_nodes() -> None:
    nodes = [node("node-1", ready=False), node("node-2", unschedulable=True)]
    with pytest.raises(Unschedulable, match="0/2 nodes are available"):
        schedule(pod(), nodes, {})


def test_no_matching_node_is_unschedulable_naming_the_selector() -> None:
    nodes = [node("node-1", disk="hdd")]
    with pytest.raises(Unschedulable) as exc:
        schedule(pod(disk="ssd"), nodes, {})
    assert "0/1 nodes are available" in str(exc.value)
    assert "didn't match Pod's node affinity/selector" in str(exc.value)
    assert "ssd" in str(exc.value)


def test_no_nodes_at_all_is_unschedulable() -> None:
    with pytest.raises(Unschedulable, match="0/0 nodes are available"):
        schedule(pod(), [], {})
