"""The semantics of networking.k8s.io/v1 Ingress, pure: which Ingresses a
class owns, how several Ingresses merge into one routing table, and which
backend a request (host, path) reaches.

Rules, as the API reference, the Kubernetes docs' tables and the
ingress-controller-conformance suite define them:

* **Class.** An Ingress belongs to the class named by `spec.ingressClassName`,
  else by the legacy annotation `kubernetes.io/ingress.class`, else to the
  one IngressClass annotated `ingressclass.kubernetes.io/is-default-class:
  "true"` (none when several claim it).
* **Hosts.** A request's Host (port dropped, case folded) picks the rules of
  the same host; failing that, a wildcard host `*.example.com`, which
  matches exactly one label (`foo.example.com`, not `example.com` nor
  `a.b.example.com`); failing that, the rules without a host. A host that
  has rules keeps its requests: a path it does not route goes to the
  default backend, not to the host-less rules (as ingress-nginx, and as
  Gateway API's "most specific hostname first").
* **Paths.** `Exact` matches the path exactly, case-sensitively. `Prefix`
  matches element by element on `/`: `/foo` (and `/foo/`) match `/foo`,
  `/foo/` and `/foo/bar`, not `/foobar`. `ImplementationSpecific` is, here,
  a plain string prefix (`/foo` matches `/foobar`), as ingress-nginx treats
  it without its regex annotation. Longest match first; at equal length
  Exact beats Prefix beats ImplementationSpecific.
* **Merging.** Ingresses are taken oldest first (creationTimestamp, then
  namespace/name). A host+path+pathType already routed by an earlier
  Ingress stays with it; the later one's path is a conflict, reported on
  it. Likewise the first `defaultBackend` and, per host, the first TLS
  Secret win.
* **Default backend.** What nothing else matches goes to the winning
  `defaultBackend`; with none, 404.

`locations()` turns a server's routes into nginx locations (`= /p` exact,
`/p/` prefix), and `select()` models how nginx picks among them, so the
tables can be checked without nginx and the e2e tests check nginx agrees.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
PATH_TYPES = ("Exact", "Prefix", "ImplementationSpecific")
_TYPE_RANK = {"Exact": 0, "Prefix": 1, "ImplementationSpecific": 2}


# --- classes -----------------------------------------------------------------


def default_class(classes: Iterable[Obj]) -> str | None:
    """The name of the one IngressClass marked default; None for none or several."""
    marked = [
        c["metadata"]["name"]
        for c in classes
        if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
    ]
    return marked[0] if len(marked) == 1 else None


def class_of(ing: Obj, classes: Iterable[Obj]) -> str | None:
    name = (ing.get("spec") or {}).get("ingressClassName")
    if name:
        return str(name)
    legacy = (ing["metadata"].get("annotations") or {}).get(CLASS_ANNOTATION)
    if legacy:
        return str(legacy)
    return default_class(classes)


# --- the merged routing table ----------------------------------------------------


@dataclass(frozen=True, order=True)
class Backend:
    """A Service backend (port by number or by name), or a resource
    backend, which this controller does not serve (503)."""

    namespace: str
    service: str = ""
    port: int | str = 0
    resource: str = ""  # "Kind/name" of a resource backend

    def label(self) -> str:
        if self.resource:
            return f"{self.namespace}/{self.resource}"
        return f"{self.namespace}/{self.service}:{self.port}"


@dataclass(frozen=True)
class Route:
    path: str  # normalised: Prefix without trailing slash (but "/"), "" ImplementationSpecific -> "/"
    path_type: str
    backend: Backend
    source: str  # namespace/name of the Ingress


@dataclass(frozen=True)
class TLS:
    namespace: str
    secret: str
    source: str


@dataclass
class Server:
    host: str  # "" for the rules without a host
    routes: list[Route] = field(default_factory=list)
    tls: TLS | None = None


@dataclass(frozen=True)
class Conflict:
    ingress: str  # namespace/name of the Ingress whose part was not used
    winner: str
    what: str  # "host shop.example.com path /cart (Prefix)", "defaultBackend", "TLS for host ..."

    def message(self) -> str:
        return f"{self.what} is already defined by Ingress {self.winner}, which is older; this one is ignored"


@dataclass
class Table:
    servers: dict[str, Server]
    default_backend: Backend | None
    default_source: str | None
    conflicts: list[Conflict]
    ingresses: list[str]  # namespace/name of every Ingress merged, oldest first


def ingress_key(ing: Obj) -> str:
    return f"{ing['metadata'].get('namespace', '')}/{ing['metadata']['name']}"


def _age_order(ing: Obj) -> tuple[str, str, str]:
    meta = ing["metadata"]
    return (str(meta.get("creationTimestamp") or ""), str(meta.get("namespace") or ""), str(meta["name"]))


def normalise(path: str, path_type: str) -> str:
    if path_type == "ImplementationSpecific":
        return path or "/"
    if path_type == "Prefix" and len(path) > 1:
        return path.rstrip("/") or "/"
    return path


def backend_of(b: Obj, namespace: str) -> Backend:
    svc = b.get("service")
    if isinstance(svc, dict):
        port = svc.get("port") or {}
        return Backend(namespace, str(svc.get("name", "")), port.get("name") or int(port.get("number") or 0))
    res = b.get("resource") or {}
    return Backend(namespace, resource=f"{res.get('kind', '')}/{res.get('name', '')}")


def merge(ingresses: Iterable[Obj]) -> Table:
    """Merge the Ingresses of one class into a routing table."""
    table = Table({}, None, None, [], [])
    seen: dict[tuple[str, str, str], str] = {}
    tls_seen: dict[str, TLS] = {}
    for ing in sorted(ingresses, key=_age_order):
        key = ingress_key(ing)
        ns = ing["metadata"].get("namespace", "default")
        spec = ing.get("spec") or {}
        table.ingresses.append(key)
        if spec.get("defaultBackend"):
            if table.default_backend is None:
                table.default_backend = backend_of(spec["defaultBackend"], ns)
                table.default_source = key
            else:
                table.conflicts.append(Conflict(key, str(table.default_source), "defaultBackend"))
        for rule in spec.get("rules") or []:
            host = str(rule.get("host") or "").lower()
            server = table.servers.setdefault(host, Server(host))
            for p in (rule.get("http") or {}).get("paths") or []:
                ptype = str(p.get("pathType") or "ImplementationSpecific")
                path = normalise(str(p.get("path") or ""), ptype)
                k = (host, path, ptype)
                if k in seen:
                    if seen[k] != key:
                        what = f"host {host or '*'} path {path} ({ptype})"
                        table.conflicts.append(Conflict(key, seen[k], what))
                    continue
                seen[k] = key
                server.routes.append(Route(path, ptype, backend_of(p.get("backend") or {}, ns), key))
        for t in spec.get("tls") or []:
            secret = str(t.get("secretName") or "")
            if not secret:
                continue  # no Secret: nothing to terminate with
            for host in [str(h).lower() for h in t.get("hosts") or []] or [""]:
                if host in tls_seen:
                    if tls_seen[host].source != key and tls_seen[host].secret != secret:
                        table.conflicts.append(
                            Conflict(key, tls_seen[host].source, f"TLS for host {host or '*'}")
                        )
                    continue
                tls_seen[host] = TLS(ns, secret, key)
    for host, server in table.servers.items():
        server.tls = tls_for(host, tls_seen)
    if "" in tls_seen:
        table.servers.setdefault("", Server("")).tls = tls_seen[""]
    return table


def tls_for(host: str, tls: dict[str, TLS]) -> TLS | None:
    """The TLS entry covering `host`: the same name, else a wildcard entry
    covering it (one label), else None."""
    if host in tls and host:
        return tls[host]
    if host and not host.startswith("*.") and "." in host:
        wild = "*." + host.split(".", 1)[1]
        return tls.get(wild)
    return None


# --- matching ----------------------------------------------------------------------


def host_matches(pattern: str, host: str) -> bool:
    """Whether a rule host matches a request's host (the docs' wildcard table)."""
    host = host.lower()
    if not pattern:
        return True
    if pattern.startswith("*."):
        label, _, rest = host.partition(".")
        return bool(label) and rest == pattern[2:]
    return pattern == host


def request_host(host_header: str) -> str:
    """The Host header as matched: port dropped, case folded."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h.split("]", 1)[0] + "]"
    return h.rsplit(":", 1)[0] if ":" in h else h


def pick_server(servers: dict[str, Server], host_header: str) -> Server | None:
    host = request_host(host_header)
    if host in servers and host:
        return servers[host]
    label, _, rest = host.partition(".")
    if label and rest and f"*.{rest}" in servers:
        return servers[f"*.{rest}"]
    return servers.get("")


def path_matches(route_path: str, path_type: str, path: str) -> bool:
    """The docs' path table, for one path of one rule (route_path normalised)."""
    if path_type == "Exact":
        return path == route_path
    if path_type == "Prefix":
        if route_path == "/":
            return path.startswith("/")
        return path == route_path or path.startswith(route_path + "/")
    return path.startswith(route_path)


@dataclass(frozen=True)
class Location:
    """One nginx location: `= PATH` when exact, else a plain prefix."""

    exact: bool
    path: str
    route: Route | None  # None: the fallback (default backend or 404)
    # An exact location added so that nginx does not answer "/p" with a 301
    # to "/p/" (what it does for a location "/p/" that proxies), routed as
    # the others say "/p" goes.
    derived: bool = False

    def sort_key(self) -> tuple[int, int, str]:
        # Exact first, then longest prefix: nginx does not care about order
        # for these, but a stable order keeps the rendered file stable.
        return (0 if self.exact else 1, -len(self.path), self.path)


def locations(server: Server) -> list[Location]:
    """The nginx locations that implement a server's routes, collisions
    resolved (Exact over Prefix over ImplementationSpecific, then the older
    Ingress), with a `/` fallback when no route covers it."""
    chosen: dict[tuple[bool, str], tuple[int, int, Location]] = {}
    for order, r in enumerate(server.routes):
        wanted: list[Location]
        if r.path_type == "Exact":
            wanted = [Location(True, r.path, r)]
        elif r.path_type == "Prefix":
            if r.path == "/":
                wanted = [Location(False, "/", r)]
            else:
                wanted = [Location(True, r.path, r), Location(False, r.path + "/", r)]
        else:
            wanted = [Location(False, r.path, r)]
        for loc in wanted:
            rank = (_TYPE_RANK[r.path_type], order)
            k = (loc.exact, loc.path)
            if k not in chosen or rank < chosen[k][:2]:
                chosen[k] = (*rank, loc)
    out = [v[2] for v in chosen.values()]
    if (False, "/") not in chosen:
        out.append(Location(False, "/", None))
    for loc in list(out):
        bare = loc.path[:-1]
        if loc.path.endswith("/") and bare and (True, bare) not in chosen:
            target = select(out, bare)
            out.append(Location(True, bare, target.route if target else None, derived=True))
            chosen[(True, bare)] = (9, 0, out[-1])
    return sorted(out, key=Location.sort_key)


def select(locs: list[Location], path: str) -> Location | None:
    """nginx's choice: an exact location equal to the path, else the
    longest prefix location."""
    for loc in locs:
        if loc.exact and loc.path == path:
            return loc
    best: Location | None = None
    for loc in locs:
        if not loc.exact and path.startswith(loc.path) and (best is None or len(loc.path) > len(best.path)):
            best = loc
    return best


def route(table: Table, host_header: str, path: str) -> Backend | None:
    """Where a request goes: a backend, or None for 404."""
    path = path.split("?", 1)[0] or "/"
    server = pick_server(table.servers, host_header)
    if server is not None:
        loc = select(locations(server), path)
        if loc is not None and loc.route is not None:
            return loc.route.backend
    return table.default_backend


def reference_route(table: Table, host_header: str, path: str) -> Backend | None:
    """The same decision straight from the definitions (no nginx locations):
    used by the tests to check `route` against the docs' words."""
    path = path.split("?", 1)[0] or "/"
    server = pick_server(table.servers, host_header)
    if server is not None:
        matching = [r for r in server.routes if path_matches(r.path, r.path_type, path)]

        def strength(r: Route) -> tuple[int, int]:
            # Exact matches the whole path; Prefix /p matching /p exactly is as long.
            length = (
                len(path) if r.path_type == "Exact" or (r.path_type == "Prefix" and path == r.path) else 0
            )
            if not length:
                length = len(r.path) + (1 if r.path_type == "Prefix" and r.path != "/" else 0)
            return (length, -_TYPE_RANK[r.path_type])

        if matching:
            return max(matching, key=strength).backend
    return table.default_backend
