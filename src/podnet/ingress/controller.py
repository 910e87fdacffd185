"""The ingress controller: a thread of the control plane that keeps the
in-cluster nginx pods serving what the Ingress objects say.

On every relevant change (Ingress, IngressClass, Service, EndpointSlice,
Secret, or an nginx pod appearing) it merges the Ingresses of its class
(`model.merge`), renders nginx.conf (`nginx.render`, pure), and when the
text differs: checks it with `nginx -t`, swaps it in atomically, and sends
SIGHUP to every nginx master (`nginx -s reload`): new workers take the new
configuration, old ones finish the requests they hold. It writes each
Ingress's `status.loadBalancer` (the controller Service's address) and
reports merge conflicts in `status.conditions` and in the log.

The data plane is installed in the cluster on first use (the first
Ingress of the class): namespace `ingress-nginx`, a Deployment whose pods
run Debian's nginx through the `podnet.io/command` annotation (each with
its own prefix directory under the cluster's state dir for its pid and
temporary files; the configuration file is shared), and a LoadBalancer
Service in front of them. The IngressClass `nginx`, marked default, is
created at `podnet up`.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import hashlib
import logging
import os
import shlex
import signal
import ssl
import subprocess
import threading
import time
from typing import Any

from podnet.api.errors import AlreadyExists, APIError, Conflict, NotFound
from podnet.ingress import model
from podnet.ingress.nginx import HEALTH_PORT, SERVICE_NAME_LABEL, Inputs, Settings, render
from podnet.server.registry import Registry

log = logging.getLogger("podnet.ingress")
Obj = dict[str, Any]

NAMESPACE = "ingress-nginx"
NAME = "ingress-nginx-controller"
CLASS_NAME = "nginx"
CONTROLLER = "k8s.io/ingress-nginx"
REPLICAS = 2
LABELS = {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"}
WATCHED = {"Ingress", "IngressClass", "Service", "EndpointSlice", "Secret", "Pod", "Namespace"}
DEBOUNCE = 0.05
RESYNC = 1.0
CONFLICT_CONDITION = "Conflicted"
SECRET_CONDITION = "TLSSecretInvalid"


def ingress_class() -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {
            "name": CLASS_NAME,
            "labels": dict(LABELS),
            "annotations": {model.DEFAULT_CLASS_ANNOTATION: "true"},
        },
        "spec": {"controller": CONTROLLER},
    }


def pod_command(state_dir: str) -> str:
    base = os.path.join(state_dir, "ingress")
    conf = shlex.quote(os.path.join(base, "nginx.conf"))
    pods = shlex.quote(os.path.join(base, "pods"))
    return (
        f'P={pods}/"$POD_NAME"; mkdir -p "$P/tmp" && '
        f'exec nginx -p "$P/" -c {conf} -e "$P/error.log" -g \'daemon off;\''
    )


def data_plane(state_dir: str) -> list[Obj]:
    """The objects that install the data plane: namespace, Deployment, Service."""
    ports = [
        {"name": "http", "containerPort": 80, "protocol": "TCP"},
        {"name": "https", "containerPort": 443, "protocol": "TCP"},
        {"name": "healthz", "containerPort": HEALTH_PORT, "protocol": "TCP"},
    ]
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": dict(LABELS)}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)},
            "spec": {
                "type": "LoadBalancer",
                # As the cloud manifests of ingress-nginx: the client's address reaches nginx.
                "externalTrafficPolicy": "Local",
                "selector": dict(LABELS),
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                    {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"},
                ],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)},
            "spec": {
                "replicas": REPLICAS,
                "selector": {"matchLabels": dict(LABELS)},
                "template": {
                    "metadata": {
                        "labels": dict(LABELS),
                        "annotations": {"podnet.io/command": pod_command(state_dir)},
                    },
                    "spec": {
                        "terminationGracePeriodSeconds": 5,
                        "containers": [
                            {
                                "name": "controller",
                                "image": "debian:nginx",
                                "ports": ports,
                                "readinessProbe": {
                                    "httpGet": {"path": "/healthz", "port": HEALTH_PORT},
                                    "periodSeconds": 1,
                                    "failureThreshold": 2,
                                },
                            }
                        ],
                    },
                },
            },
        },
    ]


# --- pure helpers used by the loop ------------------------------------------------


def owned(ingresses: list[Obj], classes: list[Obj]) -> list[Obj]:
    """The Ingresses this controller serves: of an IngressClass whose
    controller is ours, or of class "nginx" by the legacy annotation."""
    mine = {c["metadata"]["name"] for c in classes if (c.get("spec") or {}).get("controller") == CONTROLLER}
    if not any(c["metadata"]["name"] == CLASS_NAME for c in classes):
        mine.add(CLASS_NAME)  # the legacy annotation's value, with no IngressClass object
    return [i for i in ingresses if model.class_of(i, classes) in mine]


def decode_tls(secret: Obj) -> tuple[bytes, bytes] | None:
    data = secret.get("data") or {}
    try:
        crt = base64.b64decode(data.get("tls.crt") or "", validate=True)
        key = base64.b64decode(data.get("tls.key") or "", validate=True)
    except ValueError:
        return None
    if b"-----BEGIN" not in crt or b"-----BEGIN" not in key:
        return None
    return crt, key


def desired_status(ing: Obj, address: list[str], problems: list[tuple[str, str]], now: str) -> Obj:
    status: Obj = {"loadBalancer": {"ingress": [{"ip": ip} for ip in address]} if address else {}}
    old = {c.get("type"): c for c in (ing.get("status") or {}).get("conditions") or []}
    conds = []
    for type_ in (CONFLICT_CONDITION, SECRET_CONDITION):
        msgs = [m for t, m in problems if t == type_]
        if not msgs:
            continue
        message = "; ".join(msgs)
        prev = old.get(type_)
        since = prev.get("lastTransitionTime", now) if prev and prev.get("message") == message else now
        reason = "PathConflict" if type_ == CONFLICT_CONDITION else "SecretNotUsable"
        conds.append(
            {
                "type": type_,
                "status": "True",
                "reason": reason,
                "message": message,
                "lastTransitionTime": since,
            }
        )
    if conds:
        status["conditions"] = conds
    return status


# --- the controller ---------------------------------------------------------------


class IngressController:
    def __init__(self, registry: Registry, state_dir: str, install: bool = True) -> None:
        self.reg = registry
        self.state_dir = state_dir
        self.base = os.path.join(state_dir, "ingress")
        self.conf = os.path.join(self.base, "nginx.conf")
        self.install = install
        self.settings = Settings()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ingress-controller", daemon=True)
        self.applied: str | None = None
        self.generation = 0
        self.signalled: dict[int, int] = {}  # nginx master pid -> generation it was told to load
        self.reported: set[str] = set()
        self.reloads = 0

    # -- lifecycle --------------------------------------------------------------

    def bootstrap(self) -> None:
        """What `podnet up` creates: the default IngressClass, and a valid
        (empty) configuration for pods that start before the first sync."""
        for d in ("pods", "certs", "check"):
            os.makedirs(os.path.join(self.base, d), mode=0o700, exist_ok=True)
        with contextlib.suppress(AlreadyExists):
            self.reg.create(ingress_class())
        if not os.path.exists(self.conf):
            self._write(self.conf, render(Inputs(model.merge([])), self.settings).encode(), 0o644)

    def start(self) -> None:
        self.thread.start()

    def shutdown(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)

    def _run(self) -> None:
        rv = self.reg.store.resource_version
        dirty = True
        last = 0.0
        while not self.stop.is_set():
            if dirty or time.monotonic() - last > RESYNC:
                try:
                    self.sync()
                except Exception:
                    log.exception("ingress sync failed")
                last = time.monotonic()
                dirty = False
            try:
                events = self.reg.store.events_since(rv, timeout=RESYNC / 2)
            except APIError:
                rv = self.reg.store.resource_version
                dirty = True
                continue
            if events:
                rv = events[-1].rv
                if any(ev.kind in WATCHED for ev in events):
                    dirty = True
                    self.stop.wait(DEBOUNCE)  # let a burst of changes land together

    # -- one pass -------------------------------------------------------------------

    def sync(self) -> None:
        store = self.reg.store
        classes = store.list("IngressClass")[0]
        ingresses = owned(store.list("Ingress")[0], classes)
        if not ingresses and not self.applied:
            return  # no Ingress yet, no nginx running: nothing to render (a lab without Ingresses pays little)
        if ingresses and self.install:
            self._ensure_installed()
        table = model.merge(ingresses)
        problems: dict[str, list[tuple[str, str]]] = {}
        for c in table.conflicts:
            problems.setdefault(c.ingress, []).append((CONFLICT_CONDITION, c.message()))
        services = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in store.list("Service")[0]}
        slices: dict[tuple[str, str], list[Obj]] = {}
        for sl in store.list("EndpointSlice")[0]:
            owner = (sl["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
            if owner:
                slices.setdefault((sl["metadata"]["namespace"], owner), []).append(sl)
        certs = self._certs(table, problems)
        text = render(Inputs(table, services, slices, certs), self.settings)
        if text != self.applied:
            if self._check(text):
                self._write(self.conf, text.encode(), 0o644)
                self.applied = text
                self.generation += 1
                self._clean_certs(certs)
            else:
                log.error("the new nginx configuration does not pass `nginx -t`; keeping the running one")
        self._reload()
        self._report(problems)
        self._status(ingresses, problems)

    def _ensure_installed(self) -> None:
        for obj in data_plane(self.state_dir):
            kind, meta = obj["kind"], obj["metadata"]
            if self.reg.store.exists(kind, meta.get("namespace", ""), meta["name"]):
                continue
            try:
                self.reg.create(obj)
                log.info("installed %s %s/%s", kind, meta.get("namespace", ""), meta["name"])
            except (AlreadyExists, APIError) as exc:
                log.debug("install %s %s: %s", kind, meta["name"], exc)

    # -- TLS ----------------------------------------------------------------------

    def _certs(
        self, table: model.Table, problems: dict[str, list[tuple[str, str]]]
    ) -> dict[tuple[str, str], tuple[str, str]]:
        out: dict[tuple[str, str], tuple[str, str]] = {}
        wanted = {s.tls for s in table.servers.values() if s.tls}
        for tls in sorted(wanted, key=lambda t: (t.namespace, t.secret, t.source)):
            ref = (tls.namespace, tls.secret)
            if ref in out:
                continue
            try:
                secret = self.reg.store.get("Secret", tls.namespace, tls.secret)
            except NotFound:
                problems.setdefault(tls.source, []).append(
                    (SECRET_CONDITION, f'secret "{tls.namespace}/{tls.secret}" not found')
                )
                continue
            pair = decode_tls(secret)
            if pair is None:
                problems.setdefault(tls.source, []).append(
                    (
                        SECRET_CONDITION,
                        f'secret "{tls.namespace}/{tls.secret}" has no PEM tls.crt and tls.key',
                    )
                )
                continue
            digest = hashlib.sha256(pair[0] + b"\0" + pair[1]).hexdigest()[:12]
            stem = os.path.join(self.base, "certs", f"{tls.namespace}_{tls.secret}_{digest}")
            crt, key = stem + ".crt", stem + ".key"
            if not (os.path.exists(crt) and os.path.exists(key)):
                self._write(crt, pair[0], 0o600)
                self._write(key, pair[1], 0o600)
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(crt, key)
            except (ssl.SSLError, OSError) as exc:
                problems.setdefault(tls.source, []).append(
                    (SECRET_CONDITION, f'secret "{tls.namespace}/{tls.secret}": {exc}')
                )
                continue
            out[ref] = (crt, key)
        return out

    def _clean_certs(self, certs: dict[tuple[str, str], tuple[str, str]]) -> None:
        keep = {p for pair in certs.values() for p in pair}
        for path in glob.glob(os.path.join(self.base, "certs", "*")):
            if path not in keep:
                with contextlib.suppress(OSError):
                    os.unlink(path)

    # -- files and nginx --------------------------------------------------------------

    @staticmethod
    def _write(path: str, data: bytes, mode: int) -> None:
        tmp = f"{path}.tmp.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)

    def _check(self, text: str) -> bool:
        """`nginx -t` on the candidate, in a scratch prefix (it binds nothing)."""
        check = os.path.join(self.base, "check")
        os.makedirs(os.path.join(check, "tmp"), exist_ok=True)
        candidate = os.path.join(check, "nginx.conf")
        self._write(candidate, text.encode(), 0o644)
        try:
            proc = subprocess.run(
                [
                    "nginx",
                    "-t",
                    "-q",
                    "-p",
                    check + "/",
                    "-c",
                    candidate,
                    "-e",
                    os.path.join(check, "error.log"),
                    "-g",
                    "daemon off;",
                ],
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("nginx -t could not run: %s", exc)
            return False
        if proc.returncode != 0:
            log.error("nginx -t: %s", proc.stderr.strip())
        return proc.returncode == 0

    def masters(self) -> dict[int, str]:
        """Running nginx masters of this cluster's ingress pods: pid -> pod."""
        out: dict[int, str] = {}
        for pidfile in glob.glob(os.path.join(self.base, "pods", "*", "nginx.pid")):
            try:
                with open(pidfile) as f:
                    pid = int(f.read().strip() or 0)
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read()
            except (OSError, ValueError):
                continue
            prefix = os.path.dirname(pidfile)
            # Only our nginx: never signal a process that merely reused the pid.
            if pid > 0 and b"nginx" in cmdline and prefix.encode() in cmdline:
                out[pid] = os.path.basename(prefix)
        return out

    def _reload(self) -> None:
        masters = self.masters()
        for pid, pod in masters.items():
            if self.signalled.get(pid) == self.generation:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)  # nginx -s reload
                if pid in self.signalled:
                    self.reloads += 1
                    log.info("reloaded nginx in pod %s (configuration %d)", pod, self.generation)
            self.signalled[pid] = self.generation
        for pid in set(self.signalled) - set(masters):
            del self.signalled[pid]

    # -- status -------------------------------------------------------------------------

    def _report(self, problems: dict[str, list[tuple[str, str]]]) -> None:
        lines = {f"Ingress {k}: {m}" for k, ms in problems.items() for _, m in ms}
        for line in sorted(lines - self.reported):
            log.warning("%s", line)
        self.reported = lines

    def _address(self) -> list[str]:
        try:
            svc = self.reg.store.get("Service", NAMESPACE, NAME)
        except NotFound:
            return []
        return sorted(
            i["ip"]
            for i in (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
            if i.get("ip")
        )

    def _status(self, ingresses: list[Obj], problems: dict[str, list[tuple[str, str]]]) -> None:
        from podnet.store.store import now_rfc3339

        address = self._address()
        now = now_rfc3339()
        for ing in ingresses:
            key = model.ingress_key(ing)
            want = desired_status(ing, address, problems.get(key, []), now)
            if (ing.get("status") or {}) == want:
                continue
            ing["status"] = want
            with contextlib.suppress(Conflict, NotFound):
                self.reg.update(ing, subresource="status")
