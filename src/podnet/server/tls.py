"""The lab's PKI and kubeconfig: a CA, a server certificate for the API
(SANs: localhost, 127.0.0.1, the router's fabric address where nodes reach
it, the `kubernetes` Service's ClusterIP and DNS names) and a client
certificate for the admin user (CN `podnet-admin`, O `system:masters`), all
made once per cluster in `STATE_DIR/pki` and kept across restarts.

Clients authenticate with a certificate the CA signed: its CN is the user,
its O entries the groups. A TLS connection without one is anonymous and
refused (401), as on an API server started with `--anonymous-auth=false`.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ADMIN_USER = "podnet-admin"
ADMIN_GROUPS = ("system:masters",)
VALIDITY = datetime.timedelta(days=365)
KUBECONFIG = "kubeconfig"
KUBECONFIG_LAB = "kubeconfig.lab"  # the same credentials, the API where nodes reach it


@dataclass(frozen=True)
class PKI:
    directory: str

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    @property
    def ca_cert(self) -> str:
        return self.path("ca.crt")

    @property
    def server_cert(self) -> str:
        return self.path("apiserver.crt")

    @property
    def server_key(self) -> str:
        return self.path("apiserver.key")

    @property
    def client_cert(self) -> str:
        return self.path("admin.crt")

    @property
    def client_key(self) -> str:
        return self.path("admin.key")

    def read(self, name: str) -> bytes:
        with open(self.path(name), "rb") as f:
            return f.read()


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: str, data: bytes, mode: int) -> None:
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path + ".tmp", mode)
    os.replace(path + ".tmp", path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _sign(
    subject: x509.Name,
    public: Any,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
    dns: list[str] | None = None,
    ips: list[str] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + (VALIDITY * 10 if ca else VALIDITY))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    else:
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        ).add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    if dns or ips:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns or []]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips or []]
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def server_names(cluster_domain: str, extra_ips: list[str]) -> tuple[list[str], list[str]]:
    dns = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{cluster_domain}",
    ]
    ips = ["127.0.0.1"]
    for ip in extra_ips:
        if ip not in ips:
            ips.append(ip)
    return dns, ips


def ensure(directory: str, cluster_domain: str = "cluster.local", extra_ips: list[str] | None = None) -> PKI:
    """The cluster's PKI in `directory`, made now if missing. The server
    certificate is made again when the addresses it must carry changed."""
    pki = PKI(directory)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    dns, ips = server_names(cluster_domain, extra_ips or [])
    if not (os.path.exists(pki.ca_cert) and os.path.exists(pki.path("ca.key"))):
        ca_key = _key()
        ca_name = _name("podnet-ca")
        ca = _sign(ca_name, ca_key.public_key(), ca_name, ca_key, ca=True)
        _write(pki.path("ca.key"), _pem_key(ca_key), 0o600)
        _write(pki.ca_cert, ca.public_bytes(serialization.Encoding.PEM), 0o644)
        for stale in (pki.server_cert, pki.client_cert):
            if os.path.exists(stale):
                os.unlink(stale)
    ca = x509.load_pem_x509_certificate(pki.read("ca.crt"))
    ca_key_loaded = serialization.load_pem_private_key(pki.read("ca.key"), None)
    assert isinstance(ca_key_loaded, ec.EllipticCurvePrivateKey)
    if not os.path.exists(pki.server_cert) or _sans(pki.server_cert) != (sorted(dns), sorted(ips)):
        key = _key()
        cert = _sign(
            _name("kube-apiserver"),
            key.public_key(),
            ca.subject,
            ca_key_loaded,
            server=True,
            dns=dns,
            ips=ips,
        )
        _write(pki.server_key, _pem_key(key), 0o600)
        _write(pki.server_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    if not os.path.exists(pki.client_cert):
        key = _key()
        cert = _sign(_name(ADMIN_USER, ADMIN_GROUPS), key.public_key(), ca.subject, ca_key_loaded)
        _write(pki.client_key, _pem_key(key), 0o600)
        _write(pki.client_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return pki


def _sans(path: str) -> tuple[list[str], list[str]]:
    with open(path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return sorted(san.get_values_for_type(x509.DNSName)), sorted(
        str(i) for i in san.get_values_for_type(x509.IPAddress)
    )


def server_context(pki: PKI) -> ssl.SSLContext:
    """TLS for the API: the server certificate; client certificates asked
    for and checked against the CA, but optional at the TLS layer so that
    an anonymous request gets a 401 Status rather than a handshake error."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    ctx.load_verify_locations(pki.ca_cert)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def client_context(pki: PKI) -> ssl.SSLContext:
    """TLS for a client of the API with the admin certificate."""
    ctx = ssl.create_default_context(cafile=pki.ca_cert)
    ctx.load_cert_chain(pki.client_cert, pki.client_key)
    return ctx


def user_of(peer: dict[str, Any] | None) -> tuple[str, list[str]] | None:
    """(user, groups) from a verified peer certificate (`getpeercert()`),
    or None for an anonymous connection."""
    if not peer:
        return None
    user, groups = "", []
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                user = value
            elif key == "organizationName":
                groups.append(value)
    return (user, groups) if user else None


def kubeconfig(pki: PKI, cluster: str, server: str) -> str:
    """A kubeconfig for the admin user, certificates embedded."""

    def b64(name: str) -> str:
        return base64.b64encode(pki.read(name)).decode()

    name = f"podnet-{cluster}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")}}
        ],
        "users": [
            {
                "name": name,
                "user": {"client-certificate-data": b64("admin.crt"), "client-key-data": b64("admin.key")},
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}],
        "current-context": name,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_kubeconfig(path: str, text: str) -> None:
    _write(path, text.encode(), 0o600)


def write_kubeconfigs(pki: PKI, state_dir: str, cluster: str, loopback_url: str, lab_url: str) -> str:
    """`STATE_DIR/kubeconfig` (the API on loopback, for kubectl on this
    machine) and `STATE_DIR/kubeconfig.lab` (the API where the lab's
    nodes and pods reach it); returns the first one's path."""
    path = os.path.join(state_dir, KUBECONFIG)
    write_kubeconfig(path, kubeconfig(pki, cluster, loopback_url))
    write_kubeconfig(os.path.join(state_dir, KUBECONFIG_LAB), kubeconfig(pki, cluster, lab_url))
    return path
