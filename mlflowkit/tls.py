"""A local certificate authority for a stack that serves TLS (the ha topology's load balancer).

``ensure(directory, names)`` leaves in ``directory``: ``ca.pem`` (the CA certificate clients trust:
``MLFLOW_TRACKING_SERVER_CERT_PATH``), ``ca.key`` (its key, never leaves the host) and ``server.pem`` (the
server's certificate, its chain and its key in one file, as HAProxy reads it), each key mode 0600. Files that
exist are kept, so a user's own certificate (``server.pem``, signed by their CA, with that CA as ``ca.pem``) is
used as it is; a kit-made server certificate that no longer covers the wanted names, or is about to expire, is
signed again by the same CA (clients keep trusting it).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlflowkit.errors import KitError

CA_NAME = "mlflowkit local CA"
_ISSUER_MARK = "mlflowkit"  # the organisation of certificates this module made (others are the user's)
_CA_DAYS = 3650
_SERVER_DAYS = 397  # the longest validity browsers accept for a server certificate
_RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class Files:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server(self) -> Path:
        return self.directory / "server.pem"


def ensure(directory: Path, names: Sequence[str], *, now: datetime.datetime | None = None) -> Files:
    """The CA and a server certificate for ``names`` (DNS names or IP addresses) in ``directory``."""
    from cryptography import x509

    files = Files(directory)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if files.server.exists() and not files.ca_key.exists():
        return files  # the user's own certificate: theirs to renew
    if not files.ca.exists() or not files.ca_key.exists():
        _write_ca(files, now)
    if files.server.exists():
        current = x509.load_pem_x509_certificate(files.server.read_bytes())
        if covers(current, names) and current.not_valid_after_utc - now > _RENEW_BEFORE:
            return files
    _write_server(files, names, now)
    return files


def covers(certificate, names: Sequence[str]) -> bool:  # noqa: ANN001 - a cryptography x509.Certificate
    """Whether the certificate's subject alternative names include every one of ``names``."""
    from cryptography import x509

    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = set(san.get_values_for_type(x509.DNSName)) | {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return set(names) <= have


def spki_fingerprint(server_pem: Path) -> str:
    """Base64 of the SHA-256 of the server certificate's public key (its SubjectPublicKeyInfo): what Chromium's
    ``--ignore-certificate-errors-spki-list`` takes to trust exactly this certificate and no other (a headless
    browser has no option to add a CA file)."""
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(server_pem.read_bytes())  # the first PEM block: the server's own
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def _key():  # noqa: ANN202
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:  # noqa: ANN001
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_ca(files: Files, now: datetime.datetime) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ISSUER_MARK),
                      x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write(files.ca_key, _pem_key(key), 0o600)
    _write(files.ca, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    files.server.unlink(missing_ok=True)  # signed by a CA that is gone


def _write_server(files: Files, names: Sequence[str], now: datetime.datetime) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(files.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    key = _key()
    alternative: list[x509.GeneralName] = []
    for name in names:
        try:
            alternative.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternative.append(x509.DNSName(name))
    if not alternative:
        raise KitError("a server certificate needs at least one name.")
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ISSUER_MARK),
                                     x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=_SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
                           critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    _write(files.server, chain + _pem_key(key), 0o600)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Through a new file created with ``mode``: a key is never readable by others, not even for a moment."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
