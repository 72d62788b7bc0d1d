"""TLS with the standard library's `ssl`: one server context per process, shared by every
listener (MQTT over TLS, MQTT over secure WebSocket), reloaded in place on SIGHUP — new handshakes
get the new certificate, connected clients keep theirs — and `nxg-mqtt cert dev`'s local CA."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from nxg_mqtt.errors import SettingError
from nxg_mqtt.settings import Settings


def server_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    reload(context, settings)
    if settings.tls_ca is not None:
        # device certificates (seed 003): asked for, never required; the auth plugin decides
        context.verify_mode = ssl.CERT_OPTIONAL
        try:
            context.load_verify_locations(cafile=settings.tls_ca)
        except (OSError, ssl.SSLError) as exc:
            raise SettingError(f"--tls-ca: cannot load {settings.tls_ca}: {exc}") from None
    return context


def reload(context: ssl.SSLContext, settings: Settings) -> None:
    """Load the certificate and key again into `context` (refused with one line if they are bad)."""
    assert settings.tls_cert is not None and settings.tls_key is not None
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise SettingError(
            f"--tls-cert/--tls-key: cannot load {settings.tls_cert} and {settings.tls_key}: {exc}"
        ) from None


def make_dev_certs(directory: Path, hosts: list[str]) -> dict[str, str]:
    """A self-signed CA and a server certificate for `hosts` signed by it (local testing only)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "NXG MQTT development CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=397))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server-key.pem"}
    files["ca"].write_bytes(ca.public_bytes(pem))
    files["cert"].write_bytes(cert.public_bytes(pem))
    no_password = serialization.NoEncryption()
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, no_password)
    files["key"].touch(mode=0o600)
    files["key"].write_bytes(key_pem)
    return {name: str(path) for name, path in files.items()}
