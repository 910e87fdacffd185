"""The Deployment controller's pure decisions: how many pods to create,
which to delete, and the status it reports, step by step as pods come and go."""

from __future__ import annotations

import copy
import itertools

import pytest

from podnet.controllers.deployment import (
    HASH_LABEL,
    Plan,
    new_pod,
    owned_by,
    reconcile,
    resolve,
    template_hash,
)

Obj = dict


def deploy(
    replicas: int = 3,
    image: str = "v1",
    strategy: Obj | None = None,
    generation: int = 1,
) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": generation},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": strategy
            or {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    }


def rolling(surge: int | str, unavailable: int | str) -> Obj:
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}


class Cluster:
    """The pods of one Deployment, and what the API server and kubelets do
    to them between reconciles: create what the plan asks, mark what it
    deletes, and (when the test says so) make pods ready or remove them."""

    def __init__(self, d: Obj) -> None:
        self.d = d
        self.pods: list[Obj] = []
        self._clock = itertools.count()
        self._names = itertools.count()

    def add(self, ready: bool = False, node: str | None = "node-1", running: bool = True) -> Obj:
        p = new_pod(self.d, f"{next(self._names):05d}")
        p["metadata"]["creationTimestamp"] = f"2024-01-01T00:{next(self._clock):02d}:00Z"
        if node:
            p["spec"]["nodeName"] = node
        status: Obj = {"phase": "Running" if running else "Pending"}
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
        p["status"] = status
        self.pods.append(p)
        return p

    def step(self) -> Plan:
        """One reconcile; its deletions are marked, its creations added (not ready)."""
        plan = reconcile(self.d, copy.deepcopy(self.pods))
        doomed = {p["metadata"]["name"] for p in plan.delete}
        for p in self.pods:
            if p["metadata"]["name"] in doomed:
                p["metadata"]["deletionTimestamp"] = "2024-01-01T01:00:00Z"
        for _ in range(plan.create):
            self.add()
        return plan

    def gone(self) -> None:
        """The kubelets finish terminating every pod marked for deletion."""
        self.pods = [p for p in self.pods if not p["metadata"].get("deletionTimestamp")]

    def ready_all(self) -> None:
        for p in self.live():
            p["status"]["conditions"] = [{"type": "Ready", "status": "True"}]

    def live(self) -> list[Obj]:
        return [p for p in self.pods if not p["metadata"].get("deletionTimestamp")]

    def ready(self) -> int:
        return sum(1 for p in self.live() if p["status"]["conditions"][0]["status"] == "True")

    def images(self) -> list[str]:
        return sorted(p["spec"]["containers"][0]["image"] for p in self.live())

    def change_image(self, image: str) -> None:
        self.d["spec"]["template"]["spec"]["containers"][0]["image"] = image


def names(pods: list[Obj]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


# -- pods made from the template -------------------------------------------------------


def test_a_new_pod_carries_the_template_labels_the_hash_and_an_owner_reference() -> None:
    d = deploy()
    p = new_pod(d, "abcde")
    h = template_hash(d["spec"]["template"])
    assert p["metadata"]["name"] == f"web-{h}-abcde"
    assert p["metadata"]["labels"] == {"app": "web", HASH_LABEL: h}
    assert p["metadata"]["annotations"] == {"a": "b"}
    assert p["metadata"]["namespace"] == "default"
    [ref] = p["metadata"]["ownerReferences"]
    assert ref["kind"] == "Deployment" and ref["uid"] == "d-uid" and ref["controller"] is True
    assert owned_by(p, d)
    assert p["spec"]["containers"][0]["image"] == "v1"


def test_a_new_pod_does_not_share_the_template_with_the_deployment() -> None:
    d = deploy()
    p = new_pod(d, "abcde")
    p["spec"]["containers"][0]["image"] = "changed"
    p["metadata"]["labels"]["x"] = "y"
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "v1"
    assert "x" not in d["spec"]["template"]["metadata"]["labels"]


def test_the_template_hash_changes_with_the_template_and_only_with_it() -> None:
    a, b = deploy(image="v1"), deploy(image="v1", replicas=9)
    assert template_hash(a["spec"]["template"]) == template_hash(b["spec"]["template"])
    assert template_hash(a["spec"]["template"]) != template_hash(deploy(image="v2")["spec"]["template"])


def test_a_pod_of_another_deployment_is_not_owned() -> None:
    other = deploy()
    other["metadata"]["uid"] = "other"
    assert not owned_by(new_pod(other, "x"), deploy())


def test_percentages_resolve_rounding_surge_up_and_unavailable_down() -> None:
    assert resolve("25%", 10, round_up=True) == 3
    assert resolve("25%", 10, round_up=False) == 2
    assert resolve(None, 4, round_up=True) == 1  # 25% by default
    assert resolve(2, 10, round_up=False) == 2


# -- scaling ----------------------------------------------------------------------------


def test_a_new_deployment_creates_its_replicas() -> None:
    plan = reconcile(deploy(replicas=3), [])
    assert plan.create == 3 and plan.delete == []


def test_a_deployment_with_its_replicas_does_nothing() -> None:
    c = Cluster(deploy(replicas=2))
    c.add(ready=True)
    c.add(ready=True)
    plan = c.step()
    assert plan.create == 0 and plan.delete == []


def test_scaling_up_creates_the_missing_pods() -> None:
    c = Cluster(deploy(replicas=5))
    c.add(ready=True)
    c.add(ready=True)
    assert c.step().create == 3


def test_scaling_down_deletes_the_youngest_ready_pods_first() -> None:
    c = Cluster(deploy(replicas=1))
    oldest = c.add(ready=True)
    c.add(ready=True)
    c.add(ready=True)
    plan = c.step()
    assert plan.create == 0
    assert len(plan.delete) == 2 and oldest["metadata"]["name"] not in names(plan.delete)


def test_scaling_down_deletes_unscheduled_then_pending_then_not_ready_pods_before_ready_ones() -> None:
    c = Cluster(deploy(replicas=1))
    ready = c.add(ready=True)
    not_ready = c.add(ready=False)
    pending = c.add(running=False)
    unscheduled = c.add(node=None, running=False)
    plan = reconcile(c.d, c.pods)
    assert names(plan.delete) == names([unscheduled, pending, not_ready])
    assert ready["metadata"]["name"] not in names(plan.delete)


def test_pods_already_terminating_are_not_counted_or_deleted_again() -> None:
    c = Cluster(deploy(replicas=2))
    c.add(ready=True)
    leaving = c.add(ready=True)
    leaving["metadata"]["deletionTimestamp"] = "2024-01-01T01:00:00Z"
    plan = c.step()
    assert plan.create == 1 and plan.delete == []


def test_scaling_to_zero_deletes_every_pod() -> None:
    c = Cluster(deploy(replicas=0))
    c.add(ready=True)
    c.add(ready=False)
    assert len(c.step().delete) == 2


# -- rolling update ------------------------------------------------------------------------


def roll(c: Cluster, max_steps: int = 30) -> list[tuple[int, int]]:
    """Drive a rollout to the end: reconcile, terminate, make pods ready.
    Returns (live pods, ready pods) as seen after each reconcile and after each
    batch of pods turning ready."""
    seen = []
    for _ in range(max_steps):
        plan = c.step()
        seen.append((len(c.live()), c.ready()))
        c.gone()
        if not plan.create and not plan.delete and c.ready() == len(c.live()):
            break
        c.ready_all()
        seen.append((len(c.live()), c.ready()))
    return seen


def test_a_rolling_update_never_exceeds_max_surge_or_drops_below_max_unavailable() -> None:
    c = Cluster(deploy(replicas=4, strategy=rolling(1, 1)))
    for _ in range(4):
        c.add(ready=True)
    c.change_image("v2")
    seen = roll(c)
    assert c.images() == ["v2"] * 4 and c.ready() == 4
    assert max(live for live, _ in seen) <= 5
    assert min(ready for _, ready in seen) >= 3


@pytest.mark.parametrize("replicas", [1, 2, 3, 5, 7])
@pytest.mark.parametrize(
    ("surge", "unavailable"), [(1, 0), (0, 1), (2, 2), ("25%", "25%"), ("50%", 0), (0, "50%"), (3, 1)]
)
def test_every_rolling_update_completes_within_its_bounds(
    replicas: int, surge: int | str, unavailable: int | str
) -> None:
    max_surge = resolve(surge, replicas, round_up=True)
    max_unavailable = resolve(unavailable, replicas, round_up=False) or (0 if max_surge else 1)
    c = Cluster(deploy(replicas=replicas, strategy=rolling(surge, unavailable)))
    for _ in range(replicas):
        c.add(ready=True)
    c.change_image("v2")
    seen = roll(c, max_steps=60)
    assert c.images() == ["v2"] * replicas and c.ready() == replicas
    assert max(live for live, _ in seen) <= replicas + max_surge
    assert min(ready for _, ready in seen) >= replicas - max_unavailable


def test_a_rolling_update_with_max_surge_only_adds_before_it_removes() -> None:
    c = Cluster(deploy(replicas=3, strategy=rolling(1, 0)))
    for _ in range(3):
        c.add(ready=True)
    c.change_image("v2")
    first = c.step()
    assert first.create == 1 and first.delete == []  # surge one new pod, keep all old
    second = c.step()
    assert second.create == 0 and second.delete == []  # the new pod is not ready: wait
    c.ready_all()
    third = c.step()
    assert len(third.delete) == 1 and third.delete[0]["spec"]["containers"][0]["image"] == "v1"
    seen = roll(c)
    assert c.images() == ["v2"] * 3
    assert max(live for live, _ in seen) <= 4 and min(ready for _, ready in seen) >= 3


def test_a_rolling_update_with_max_unavailable_only_removes_before_it_adds() -> None:
    c = Cluster(deploy(replicas=3, strategy=rolling(0, 1)))
    for _ in range(3):
        c.add(ready=True)
    c.change_image("v2")
    first = c.step()
    assert first.create == 0 and len(first.delete) == 1
    c.gone()
    second = c.step()
    assert second.create == 1 and second.delete == []  # room for one; no more old pod can go yet
    seen = roll(c)
    assert c.images() == ["v2"] * 3
    assert max(live for live, _ in seen) <= 3 and min(ready for _, ready in seen) >= 2


def test_a_rolling_update_with_percentages_rounds_surge_up_and_unavailable_down() -> None:
    # 10 replicas, 25%/25%: surge 3, unavailable 2.
    c = Cluster(deploy(replicas=10))
    for _ in range(10):
        c.add(ready=True)
    c.change_image("v2")
    first = c.step()
    assert first.create == 3 and len(first.delete) == 2
    seen = roll(c)
    assert c.images() == ["v2"] * 10
    assert max(live for live, _ in seen) <= 13 and min(ready for _, ready in seen) >= 8


def test_a_rolling_update_that_stalls_on_unready_new_pods_keeps_the_old_ones() -> None:
    c = Cluster(deploy(replicas=2, strategy=rolling(1, 0)))
    c.add(ready=True)
    c.add(ready=True)
    c.change_image("broken")
    for _ in range(5):
        c.step()  # the new pod never turns ready
    assert c.images() == ["broken", "v1", "v1"]
    assert c.ready() == 2


def test_old_pods_that_are_not_ready_go_first_in_a_rolling_update() -> None:
    c = Cluster(deploy(replicas=2, strategy=rolling(1, 0)))
    sick = c.add(ready=False)
    c.add(ready=True)
    c.change_image("v2")
    plan = c.step()
    assert names(plan.delete) == names([sick])  # costs no availability
    assert plan.create == 1


def test_a_second_template_change_mid_rollout_replaces_both_older_versions() -> None:
    c = Cluster(deploy(replicas=2, strategy=rolling(1, 1)))
    c.add(ready=True)
    c.add(ready=True)
    c.change_image("v2")
    c.step()
    c.gone()
    c.change_image("v3")
    roll(c)
    assert c.images() == ["v3", "v3"]


# -- Recreate --------------------------------------------------------------------------------


def test_recreate_deletes_every_old_pod_before_creating_any() -> None:
    c = Cluster(deploy(replicas=3, strategy={"type": "Recreate"}))
    for _ in range(3):
        c.add(ready=True)
    c.change_image("v2")
    first = c.step()
    assert len(first.delete) == 3 and first.create == 0


def test_recreate_waits_for_old_pods_to_terminate_before_creating() -> None:
    c = Cluster(deploy(replicas=2, strategy={"type": "Recreate"}))
    c.add(ready=True)
    c.add(ready=True)
    c.change_image("v2")
    c.step()
    assert c.step().create == 0  # old pods still terminating
    c.gone()
    assert c.step().create == 2
    assert c.images() == ["v2", "v2"]


def test_recreate_scales_like_any_deployment_when_the_template_is_unchanged() -> None:
    c = Cluster(deploy(replicas=1, strategy={"type": "Recreate"}))
    c.add(ready=True)
    c.add(ready=True)
    assert len(c.step().delete) == 1


# -- status ------------------------------------------------------------------------------------


def test_status_counts_live_updated_and_ready_pods() -> None:
    c = Cluster(deploy(replicas=3, generation=4))
    c.add(ready=True)
    c.add(ready=False)
    c.change_image("v2")
    c.add(ready=True)
    status = reconcile(c.d, c.pods).status
    assert status["observedGeneration"] == 4
    assert status["replicas"] == 3
    assert status["updatedReplicas"] == 1
    assert status["readyReplicas"] == 2
    assert status["availableReplicas"] == 2
    assert status["unavailableReplicas"] == 1


def test_status_of_a_fully_rolled_out_deployment_is_available_and_complete() -> None:
    c = Cluster(deploy(replicas=2))
    c.add(ready=True)
    c.add(ready=True)
    status = reconcile(c.d, c.pods).status
    conds = {cond["type"]: cond for cond in status["conditions"]}
    assert conds["Available"]["status"] == "True"
    assert conds["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert "unavailableReplicas" not in status


def test_status_below_minimum_availability_is_not_available() -> None:
    c = Cluster(deploy(replicas=4))  # 25% unavailable allowed: 3 ready needed
    c.add(ready=True)
    c.add(ready=True)
    c.add(ready=False)
    c.add(ready=False)
    conds = {cond["type"]: cond for cond in reconcile(c.d, c.pods).status["conditions"]}
    assert conds["Available"]["status"] == "False"
    assert conds["Available"]["reason"] == "MinimumReplicasUnavailable"
    assert conds["Progressing"]["reason"] == "ReplicaSetUpdated"


def test_status_omits_zero_counts_as_the_api_server_does() -> None:
    status = reconcile(deploy(replicas=2), []).status
    for key in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"):
        assert key not in status


def test_status_leaves_terminating_pods_out() -> None:
    c = Cluster(deploy(replicas=1))
    c.add(ready=True)
    leaving = c.add(ready=True)
    leaving["metadata"]["deletionTimestamp"] = "2024-01-01T01:00:00Z"
    assert reconcile(c.d, c.pods).status["replicas"] == 1


def test_a_recreate_deployment_is_available_only_with_every_replica_ready() -> None:
    # Recreate has no maxUnavailable: availability means all replicas ready.
    c = Cluster(deploy(replicas=4, strategy={"type": "Recreate"}))
    for ready in (True, True, True, False):
        c.add(ready=ready)
    conds = {cond["type"]: cond for cond in reconcile(c.d, c.pods).status["conditions"]}
    assert conds["Available"]["status"] == "False"
