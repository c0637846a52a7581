"""TLS identities of consortium members (X.509, RFC 5280), made with cryptography's builder.

Recipe, every choice made here: each organization is its own certificate authority (a
self-signed ECDSA P-256 CA, ``pathlen=0``, key usage keyCertSign/cRLSign, ten years), and
issues its node one leaf certificate (ECDSA P-256, SHA-256, CN = member name, subject
alternative names = the node's host names and IP addresses, extended key usage serverAuth
and clientAuth: the same identity serves etcd and authenticates to the other members'
etcd, two years). The consortium's trust bundle is the concatenation of the members' CA
certificates, so no organization signs another's identities.

etcd clients get a second, client-only certificate (``issue_client``) with **no
CommonName** (organization and organizational unit = member name): with auth enabled, etcd
3.4's JSON gateway refuses any client certificate that has a CommonName (HTTP 400 "CommonName
of client sending a request against gateway will be ignored and not used as expected"), since
the gateway re-dials etcd's gRPC with the etcd member's own certificate and the caller's CN
would not be what is checked. Over the gateway, a member is an etcd user by password token
(``ordering.etcd_rbac``); the certificate still proves at the TLS layer that the caller holds
a member CA's identity. (etcd's gRPC API, on the same port, does take a CommonName as the
user, so each organization's etcd member trusts that organization's CA alone for clients:
``devcluster``, docs/threat-model.md.)

Private keys are written as unencrypted PKCS#8 PEM (etcd reads them as files): the caller
writes them with mode 0600. ``fingerprint`` is the SHA-256 of a certificate's DER bytes.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import MalformedError

__all__ = ["Identity", "bundle_fingerprints", "check_ca", "fingerprint", "hosts_of", "issue",
           "issue_client", "make_ca"]

_CA_DAYS = 3650
_LEAF_DAYS = 730


@dataclass(frozen=True, slots=True)
class Identity:
    key_pem: bytes
    cert_pem: bytes


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "glucoledger consortium")])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(member: str, now: datetime.datetime) -> Identity:
    """A self-signed CA for ``member`` valid from ``now`` (the caller's clock)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"{member} consortium CA")
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return Identity(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM))


def _load_ca(ca: Identity) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Raises MalformedError when the CA files do not parse."""
    try:
        ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
        ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    except ValueError as exc:
        raise MalformedError(f"the member CA does not parse ({exc})") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise MalformedError("the member CA key is not an ECDSA key")
    return ca_key, ca_cert


def issue(ca: Identity, member: str, hosts: list[str], now: datetime.datetime) -> Identity:
    """The node certificate of ``member`` for ``hosts`` (names or IP addresses), by ``ca``.

    Raises MalformedError when the CA files do not parse.
    """
    ca_key, ca_cert = _load_ca(ca)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (
        x509.CertificateBuilder().subject_name(_name(member)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Identity(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM))


def issue_client(ca: Identity, member: str, now: datetime.datetime) -> Identity:
    """A client-only certificate of ``member`` by ``ca``, with no CommonName (see above).

    Raises MalformedError when the CA files do not parse.
    """
    ca_key, ca_cert = _load_ca(ca)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "glucoledger consortium"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, member)])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Identity(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM))


def fingerprint(cert_pem: bytes) -> str:
    """Hex SHA-256 of the certificate's DER bytes. Raises MalformedError."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise MalformedError(f"not a PEM certificate ({exc})") from None
    return cert.fingerprint(hashes.SHA256()).hex()


def bundle_fingerprints(bundle_pem: bytes) -> set[str]:
    """``fingerprint`` of every certificate in a PEM bundle (``tls/trust.pem``). Raises
    MalformedError when any of it is not a PEM certificate."""
    try:
        certs = x509.load_pem_x509_certificates(bundle_pem)
    except ValueError as exc:
        raise MalformedError(f"not a bundle of PEM certificates ({exc})") from None
    return {cert.fingerprint(hashes.SHA256()).hex() for cert in certs}


def hosts_of(cert_pem: bytes) -> list[str]:
    """The host names and IP addresses a node certificate names (its subject alternative
    names), for re-issuing it from a new CA. Raises MalformedError."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound) as exc:
        raise MalformedError(f"not a node certificate with host names ({exc})") from None
    return [str(h) for h in sans.get_values_for_type(x509.IPAddress)] + \
        list(sans.get_values_for_type(x509.DNSName))


def check_ca(cert_pem: bytes, now: datetime.datetime) -> None:
    """Raise MalformedError unless ``cert_pem`` is one CA certificate valid at ``now``."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (ValueError, x509.ExtensionNotFound) as exc:
        raise MalformedError(f"not a CA certificate ({exc})") from None
    if not basic.ca:
        raise MalformedError("the certificate is not a CA (basicConstraints ca=false)")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise MalformedError(f"the CA is not valid now (valid {cert.not_valid_before_utc:%F} "
                             f"to {cert.not_valid_after_utc:%F})")
