"""The embedded store: objects with resourceVersions, optimistic
concurrency, the watch history, and persistence in SQLite."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from podnet.api.errors import AlreadyExists, Conflict, Gone, NotFound
from podnet.store import store as store_mod
from podnet.store.store import Store


def pod(name: str, namespace: str = "default", **labels: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }


@pytest.fixture
def s() -> Store:
    return Store()


def test_create_fills_in_uid_creation_time_generation_and_resource_version(s: Store) -> None:
    out = s.create(pod("a"))
    meta = out["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    assert meta["resourceVersion"] == "1"


def test_get_returns_what_was_created(s: Store) -> None:
    created = s.create(pod("a"))
    assert s.get("Pod", "default", "a") == created


def test_get_returns_a_copy_that_callers_cannot_change_the_store_through(s: Store) -> None:
    s.create(pod("a"))
    got = s.get("Pod", "default", "a")
    got["metadata"]["labels"]["x"] = "y"
    assert "x" not in s.get("Pod", "default", "a")["metadata"]["labels"]


def test_get_of_a_missing_object_is_not_found_naming_the_resource(s: Store) -> None:
    with pytest.raises(NotFound, match='pods "nope" not found'):
        s.get("Pod", "default", "nope")


def test_the_same_name_in_another_namespace_is_another_object(s: Store) -> None:
    s.create(pod("a", "one"))
    s.create(pod("a", "two"))
    assert s.exists("Pod", "one", "a") and s.exists("Pod", "two", "a")
    assert not s.exists("Pod", "three", "a")


def test_creating_an_existing_object_is_already_exists(s: Store) -> None:
    s.create(pod("a"))
    with pytest.raises(AlreadyExists, match='pods "a" already exists'):
        s.create(pod("a"))


def test_every_write_increments_the_resource_version(s: Store) -> None:
    a = s.create(pod("a"))
    b = s.create(pod("b"))
    a2 = s.update(a)
    deleted = s.delete("Pod", "default", "b")
    assert [a["metadata"]["resourceVersion"], b["metadata"]["resourceVersion"]] == ["1", "2"]
    assert a2["metadata"]["resourceVersion"] == "3"
    assert deleted["metadata"]["resourceVersion"] == "4"
    assert s.resource_version == 4


def test_list_is_sorted_by_namespace_then_name_and_carries_the_store_version(s: Store) -> None:
    s.create(pod("b", "x"))
    s.create(pod("a", "y"))
    s.create(pod("a", "x"))
    items, rv = s.list("Pod")
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items] == [
        ("x", "a"),
        ("x", "b"),
        ("y", "a"),
    ]
    assert rv == 3


def test_list_filters_by_namespace_and_predicate(s: Store) -> None:
    s.create(pod("a", "x", app="web"))
    s.create(pod("b", "x", app="db"))
    s.create(pod("c", "y", app="web"))
    items, _ = s.list("Pod", "x", where=lambda o: o["metadata"]["labels"].get("app") == "web")
    assert [i["metadata"]["name"] for i in items] == ["a"]


def test_list_of_another_kind_is_empty(s: Store) -> None:
    s.create(pod("a"))
    assert s.list("Service")[0] == []


def test_update_replaces_the_object_and_keeps_uid_and_creation_time(s: Store) -> None:
    a = s.create(pod("a"))
    changed = pod("a", app="web")
    changed["metadata"]["uid"] = "forged"
    out = s.update(changed)
    assert out["metadata"]["labels"] == {"app": "web"}
    assert out["metadata"]["uid"] == a["metadata"]["uid"]
    assert out["metadata"]["creationTimestamp"] == a["metadata"]["creationTimestamp"]


def test_update_bumps_generation_only_when_asked(s: Store) -> None:
    a = s.create(pod("a"))
    a = s.update(a)
    assert a["metadata"]["generation"] == 1
    a = s.update(a, bump_generation=True)
    assert a["metadata"]["generation"] == 2


def test_update_with_a_stale_resource_version_is_a_conflict(s: Store) -> None:
    a = s.create(pod("a"))
    s.update(a)  # someone else wrote first
    with pytest.raises(Conflict, match="the object has been modified"):
        s.update(a)


def test_update_without_a_resource_version_is_unconditional(s: Store) -> None:
    s.create(pod("a"))
    out = s.update(pod("a", app="web"))
    assert out["metadata"]["labels"] == {"app": "web"}


def test_update_of_a_missing_object_is_not_found(s: Store) -> None:
    with pytest.raises(NotFound):
        s.update(pod("a"))


def test_delete_removes_the_object_and_returns_it(s: Store) -> None:
    s.create(pod("a"))
    out = s.delete("Pod", "default", "a")
    assert out["metadata"]["name"] == "a"
    assert not s.exists("Pod", "default", "a")


def test_delete_of_a_missing_object_is_not_found(s: Store) -> None:
    with pytest.raises(NotFound):
        s.delete("Pod", "default", "a")


def test_delete_with_another_uid_is_not_found_and_deletes_nothing(s: Store) -> None:
    s.create(pod("a"))
    with pytest.raises(NotFound):
        s.delete("Pod", "default", "a", uid="someone-else")
    assert s.exists("Pod", "default", "a")


def test_events_since_returns_every_later_event_in_order(s: Store) -> None:
    a = s.create(pod("a"))
    s.create(pod("b"))
    s.update(a)
    s.delete("Pod", "default", "b")
    evs = s.events_since(1)
    assert [(e.type, e.object["metadata"]["name"], e.rv) for e in evs] == [
        ("ADDED", "b", 2),
        ("MODIFIED", "a", 3),
        ("DELETED", "b", 4),
    ]
    assert evs[0].to_json() == {"type": "ADDED", "object": evs[0].object}


def test_events_since_the_current_version_without_timeout_is_empty_at_once(s: Store) -> None:
    s.create(pod("a"))
    assert s.events_since(1) == []


def test_events_since_waits_for_a_write_up_to_the_timeout(s: Store) -> None:
    s.create(pod("a"))
    threading.Timer(0.05, lambda: s.create(pod("b"))).start()
    start = time.monotonic()
    evs = s.events_since(1, timeout=5)
    assert [e.object["metadata"]["name"] for e in evs] == ["b"]
    assert time.monotonic() - start < 2


def test_events_since_gives_up_after_the_timeout(s: Store) -> None:
    start = time.monotonic()
    assert s.events_since(0, timeout=0.1) == []
    assert 0.09 <= time.monotonic() - start < 1


def test_a_version_older_than_the_history_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "EVENT_HISTORY", 3)
    s = Store()
    for i in range(6):
        s.create(pod(f"p{i}"))
    # Only rv 4, 5 and 6 are kept: a watch from 3 still sees them all.
    assert [e.rv for e in s.events_since(3)] == [4, 5, 6]
    with pytest.raises(Gone) as exc:
        s.events_since(2)
    assert exc.value.code == 410
    assert exc.value.status()["reason"] == "Expired"


def test_the_watch_iterator_yields_matching_events_until_stopped(s: Store) -> None:
    stop = threading.Event()
    seen: list[str] = []

    def consume() -> None:
        for ev in s.watch(0, match=lambda e: e.type == "ADDED", stop=stop, poll=0.05):
            seen.append(ev.object["metadata"]["name"])

    t = threading.Thread(target=consume)
    t.start()
    a = s.create(pod("a"))
    s.update(a)
    s.create(pod("b"))
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    t.join(timeout=5)
    assert seen == ["a", "b"]
    assert not t.is_alive()


def test_objects_and_the_resource_version_survive_a_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    s = Store(path)
    a = s.create(pod("a", app="web"))
    s.create(pod("b"))
    s.delete("Pod", "default", "b")
    s.close()
    s2 = Store(path)
    assert s2.get("Pod", "default", "a") == a
    assert not s2.exists("Pod", "default", "b")
    assert s2.resource_version == 3
    assert s2.create(pod("c"))["metadata"]["resourceVersion"] == "4"


def test_optimistic_concurrency_still_holds_after_a_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    s = Store(path)
    a = s.create(pod("a"))
    s.update(a)
    s.close()
    with pytest.raises(Conflict):
        Store(path).update(a)


def test_a_watcher_resuming_after_a_reopen_gets_gone_for_versions_before_the_restart(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "store.db")
    s = Store(path)
    s.create(pod("a"))
    s.create(pod("b"))
    s.close()
    s2 = Store(path)
    with pytest.raises(Gone):
        s2.events_since(1)
    assert s2.events_since(2) == []  # from the version it reopened at, it can watch
    s2.create(pod("c"))
    assert [e.rv for e in s2.events_since(2)] == [3]
