"""The kinds the lab serves, with the names Kubernetes gives them (plural
resource, short names, group/version, whether namespaced)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    kind: str
    group: str  # "" for the core group
    version: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """The name kubectl uses in messages: `deployments.apps`, `pods`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def collection_path(self, namespace: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"

    def object_path(self, name: str, namespace: str | None = None) -> str:
        return f"{self.collection_path(namespace)}/{name}"


KINDS: tuple[Kind, ...] = (
    Kind("Namespace", "", "v1", "namespaces", "namespace", ("ns",), False),
    Kind("Node", "", "v1", "nodes", "node", ("no",), False),
    Kind("Pod", "", "v1", "pods", "pod", ("po",), True),
    Kind("Service", "", "v1", "services", "service", ("svc",), True),
    Kind("Deployment", "apps", "v1", "deployments", "deployment", ("deploy",), True),
    Kind("EndpointSlice", "discovery.k8s.io", "v1", "endpointslices", "endpointslice", (), True),
    Kind("NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies", "networkpolicy", ("netpol",), True),
    Kind("Ingress", "networking.k8s.io", "v1", "ingresses", "ingress", ("ing",), True),
    Kind("IngressClass", "networking.k8s.io", "v1", "ingressclasses", "ingressclass", (), False),
    Kind("Secret", "", "v1", "secrets", "secret", (), True),
)

BY_KIND = {k.kind: k for k in KINDS}
BY_PLURAL = {k.plural: k for k in KINDS}


def lookup(name: str) -> Kind:
    """Resolve what a user types (`po`, `pods`, `pod`, `Pod`, `deployments.apps`)."""
    key = name.lower()
    for k in KINDS:
        if key in (k.plural, k.singular, k.kind.lower(), k.resource, *k.short_names):
            return k
        if k.group and key in (f"{k.singular}.{k.group}", f"{k.plural}.{k.group}"):
            return k
    raise KeyError(f'the server doesn\'t have a resource type "{name}"')


def for_object(obj: dict[str, object]) -> Kind:
    """The Kind of a manifest document, checking its apiVersion."""
    kind = obj.get("kind")
    api_version = obj.get("apiVersion")
    k = BY_KIND.get(kind) if isinstance(kind, str) else None
    if k is None or k.api_version != api_version:
        raise KeyError(f'no matches for kind "{kind}" in version "{api_version}"')
    return k
