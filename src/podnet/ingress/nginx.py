"""nginx.conf from a merged routing table, pure: the same inputs always give
the same text (the controller reloads nginx only when the text changes).

Upstreams are the backend pods' addresses from the Service's
EndpointSlices (ready endpoints, the slice port named as the Service port),
as ingress-nginx does, not the ClusterIP: nginx balances and retries
across pods itself. A backend without endpoints, or whose Service or port
does not exist, answers 503; a path nothing routes, 404.

File paths in the output are relative to nginx's prefix (`-p`, one
directory per pod) except the certificates, which the caller names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from podnet.ingress.model import Backend, Location, Server, Table, locations

Obj = dict[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
HEALTH_PORT = 10254


@dataclass(frozen=True)
class Settings:
    http_port: int = 80
    https_port: int = 443
    health_port: int = HEALTH_PORT
    worker_processes: str = "auto"  # one per CPU, as ingress-nginx
    access_log: bool = True


@dataclass
class Inputs:
    """Plain data the controller gathers from the store."""

    table: Table
    services: Mapping[tuple[str, str], Obj] = field(default_factory=dict)
    slices: Mapping[tuple[str, str], list[Obj]] = field(default_factory=dict)  # by (namespace, service)
    certs: Mapping[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (ns, secret) -> crt, key


def service_port(svc: Obj, port: int | str) -> Obj | None:
    """The Service port an Ingress backend names, by number or by name."""
    for p in (svc.get("spec") or {}).get("ports") or []:
        if (p.get("protocol") or "TCP") != "TCP":
            continue
        if isinstance(port, str) and p.get("name") == port:
            return dict(p)
        if isinstance(port, int) and p.get("port") == port:
            return dict(p)
    return None


def endpoints(backend: Backend, inputs: Inputs) -> list[str] | None:
    """Sorted "ip:port" of the backend's ready pods; None when the Service
    or its port does not exist."""
    if backend.resource:
        return None
    svc = inputs.services.get((backend.namespace, backend.service))
    if svc is None:
        return None
    sp = service_port(svc, backend.port)
    if sp is None:
        return None
    name = sp.get("name") or ""
    out: set[str] = set()
    for sl in inputs.slices.get((backend.namespace, backend.service), []):
        ports = [p for p in sl.get("ports") or [] if (p.get("name") or "") == name]
        if not ports or ports[0].get("port") is None:
            continue
        number = int(ports[0]["port"])
        for ep in sl.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            for addr in ep.get("addresses") or []:
                out.add(f"{addr}:{number}")
    return sorted(out, key=_addr_key)


def _addr_key(a: str) -> tuple[int, ...]:
    ip, _, port = a.rpartition(":")
    try:
        return (*(int(x) for x in ip.split(".")), int(port))
    except ValueError:
        return (0,)


def upstream_name(b: Backend) -> str:
    # "_" is in no namespace, Service or port name: the name is unambiguous.
    raw = f"{b.namespace}_{b.service}_{b.port}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", raw)


def quote(s: str) -> str:
    """An nginx string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def server_name(host: str) -> str:
    if not host:
        return "_"
    if host.startswith("*."):
        # nginx's own "*.example.com" also matches a.b.example.com; Ingress's
        # wildcard matches exactly one label.
        return "~^[^.]+" + re.escape(host[1:]).replace("\\-", "-") + "$"
    return host


_PROXY_HEADERS = """\
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Request-ID $request_id;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_set_header X-Forwarded-Host $host;
    proxy_set_header X-Forwarded-Port $server_port;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Forwarded-Scheme $scheme;
    proxy_set_header X-Scheme $scheme;
    proxy_set_header X-Original-URI $request_uri;
    proxy_connect_timeout 5s;
    proxy_send_timeout 60s;
    proxy_read_timeout 60s;
    proxy_next_upstream error timeout;
    proxy_next_upstream_tries 3;
    proxy_buffering on;
    proxy_max_temp_file_size 0;
"""


def render(inputs: Inputs, settings: Settings = Settings()) -> str:
    table = inputs.table
    used: dict[str, tuple[Backend, list[str] | None]] = {}

    def target(b: Backend | None) -> list[str]:
        """The directives that send a location's requests to `b`."""
        if b is None:
            return ["return 404;"]
        name = upstream_name(b)
        if name not in used:
            used[name] = (b, endpoints(b, inputs))
        eps = used[name][1]
        if not eps:
            return ["return 503;"]
        return [f"proxy_pass http://{name};"]

    servers: list[str] = []
    ordered = sorted(table.servers.values(), key=lambda s: (s.host == "", s.host))
    if "" not in table.servers:
        ordered.append(Server(""))
    for server in ordered:
        servers.append(_server(server, table, inputs, settings, target))

    lines = [
        "# Rendered by podnet's ingress controller from Ingress, IngressClass, Service,",
        "# EndpointSlice and Secret objects. Do not edit: it is rewritten on every change.",
        f"# Ingresses: {', '.join(table.ingresses) or '(none)'}",
        f"worker_processes {settings.worker_processes};",
        "pid nginx.pid;",
        "error_log stderr notice;",
        "worker_shutdown_timeout 240s;",
        "events {",
        "  worker_connections 16384;",
        "  multi_accept on;",
        "}",
        "http {",
        "  default_type text/plain;",
        "  server_tokens off;",
        "  sendfile on;",
        "  tcp_nodelay on;",
        "  keepalive_timeout 75s;",
        "  keepalive_requests 1000;",
        "  client_max_body_size 1m;",
        "  client_body_buffer_size 1m;",
        "  client_body_temp_path tmp/client_body;",
        "  proxy_temp_path tmp/proxy;",
        "  fastcgi_temp_path tmp/fastcgi;",
        "  uwsgi_temp_path tmp/uwsgi;",
        "  scgi_temp_path tmp/scgi;",
        "  server_names_hash_bucket_size 128;",
        "  ssl_protocols TLSv1.2 TLSv1.3;",
        "  ssl_session_cache shared:SSL:10m;",
        "  log_format upstreaminfo '$remote_addr [$time_local] \"$request\" $status $body_bytes_sent '",
        "                          '$host $request_time [$proxy_host] $upstream_addr $upstream_status';",
        "  access_log " + ("/dev/stdout upstreaminfo;" if settings.access_log else "off;"),
        "",
    ]
    for name in sorted(used):
        b, eps = used[name]
        if not eps:
            continue
        lines.append(f"  # {b.label()}")
        lines.append(f"  upstream {name} {{")
        for ep in eps:
            lines.append(f"    server {ep} max_fails=0;")
        lines.append("    keepalive 32;")
        lines.append("  }")
    lines += [
        "",
        "  # health, for the kubelet's readiness probe",
        "  server {",
        f"    listen {settings.health_port};",
        "    access_log off;",
        '    location = /healthz { return 200 "ok\\n"; }',
        "    location / { return 404; }",
        "  }",
        "",
    ]
    lines += servers
    lines.append("}")
    return "\n".join(lines) + "\n"


def _server(server: Server, table: Table, inputs: Inputs, settings: Settings, target: Any) -> str:
    catch_all = server.host == ""
    cert = inputs.certs.get((server.tls.namespace, server.tls.secret)) if server.tls else None
    out = ["  server {"]
    out.append(f"    # host {server.host or '* (rules without a host, and hosts nothing else serves)'}")
    out.append(f"    server_name {server_name(server.host)};")
    out.append(f"    listen {settings.http_port}" + (" default_server;" if catch_all else ";"))
    if cert or catch_all:
        out.append(f"    listen {settings.https_port} ssl" + (" default_server;" if catch_all else ";"))
    if cert:
        out.append(f"    ssl_certificate {quote(cert[0])};")
        out.append(f"    ssl_certificate_key {quote(cert[1])};")
    elif catch_all:
        # No certificate for a name nothing claims: refuse the handshake
        # (ingress-nginx serves a self-signed "fake" certificate instead).
        out.append("    ssl_reject_handshake on;")
    out.append(_PROXY_HEADERS.rstrip("\n"))
    for loc in locations(server):
        out.append(_location(loc, table, target))
    out.append("  }")
    return "\n".join(out) + "\n"


def _location(loc: Location, table: Table, target: Any) -> str:
    head = f"    location = {quote(loc.path)}" if loc.exact else f"    location {quote(loc.path)}"
    if loc.route is None:
        b = table.default_backend
        why = f"default backend {b.label()}" if b else "nothing matches: 404"
    else:
        b = loc.route.backend
        why = f"{loc.route.path_type} {loc.route.path} from {loc.route.source}"
    if loc.derived:
        why += " (exact, so that nginx does not redirect to the path with a slash)"
    body = " ".join(target(b))
    return f"{head} {{  # {why}\n      {body}\n    }}"
