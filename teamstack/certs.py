"""The certificates that close SeaweedFS' internal ports: a certificate authority of the stack's
own and one certificate it signs, which the master, volume, filer and S3 gateway present to
each other (mutual TLS on their gRPC and HTTP ports).

A program without that certificate, and it lives only in the stack's private folder, cannot
talk to those ports; the S3 port, which checks its own keys, is the one way in. The
authority's private key signs the certificate once and is never written down, so nothing can
sign another. Made with ``cryptography``, the library Python's TLS tooling uses.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from teamstack.files import write_private

CA_FILE = "ca.pem"
CERT_FILE = "seaweedfs.pem"
KEY_FILE = "seaweedfs.key"
VALID_DAYS = 3650


def ensure_certificates(folder: Path, host: str) -> dict[str, Path]:
    """The authority's certificate and the servers' certificate and key in ``folder`` (0600
    files), made on the first call and kept after; their paths by role."""
    paths = {"ca": folder / CA_FILE, "cert": folder / CERT_FILE, "key": folder / KEY_FILE}
    if all(path.exists() for path in paths.values()):
        return paths
    ca_pem, cert_pem, key_pem = _new_certificates(host)
    write_private(paths["ca"], ca_pem)
    write_private(paths["key"], key_pem)
    write_private(paths["cert"], cert_pem)
    return paths


def _new_certificates(host: str) -> tuple[str, str, str]:
    """PEM text of a new authority's certificate, and of a certificate for ``host`` (as server
    and as client, which mutual TLS needs of each SeaweedFS server) with its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "team stack authority")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "seaweedfs")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return (
        ca_cert.public_bytes(pem).decode(),
        cert.public_bytes(pem).decode(),
        key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    )
