"""Login by device certificate on the TLS MQTT listener (seed 003's certificates): a client
certificate made here, seen first as Pending, approved through devices_SetCertificateStatus, used
by paho without a token, and refused within 1 s of being revoked."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.bridge.helpers import PASSWORD, Stack, open_stack
from tests.bridge.v1.helpers import ok
from tests.factories import make_settings
from tests.mqtt_client import TestClient

NOW = datetime.datetime.now(datetime.UTC)


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(minutes=5))
        .not_valid_after(NOW + datetime.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    elif subject == "127.0.0.1":
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write(directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


@pytest.fixture
async def mtls(tmp_path: Path) -> AsyncIterator[tuple[Stack, dict[str, str], str]]:
    """A TLS stack asking for client certificates signed by its CA; a device certificate for mt-1."""
    certs = tmp_path / "certs"
    certs.mkdir()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", ca_key, None, ca_key)
    (certs / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert, server_key_path = write(certs, "server", _cert("127.0.0.1", server_key, ca, ca_key), server_key)
    device_key = ec.generate_private_key(ec.SECP256R1())
    device = _cert("mt-1", device_key, ca, ca_key)
    device_cert, device_key_path = write(certs, "device", device, device_key)
    fingerprint = hashlib.sha256(device.public_bytes(serialization.Encoding.DER)).hexdigest()
    settings = make_settings(
        tmp_path,
        tls_cert=Path(server_cert),
        tls_key=Path(server_key_path),
        tls_ca=certs / "ca.pem",
        mqtts_port=0,
        wss_port=None,
        plain=False,
        signal_poll_s=0.1,
    )
    files = {"ca": str(certs / "ca.pem"), "cert": device_cert, "key": device_key_path}
    async with open_stack(settings) as stack:
        plain_http = stack.http
        # the bridge speaks HTTPS only, verified with the same CA
        async with httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{stack.bridge.http_port}",
            verify=ssl.create_default_context(cafile=files["ca"]),
            headers={"Authorization": f"Bearer {PASSWORD}"},
            timeout=5,
        ) as https:
            stack.http = https
            try:
                yield stack, files, fingerprint
            finally:
                stack.http = plain_http


async def test_device_logs_in_by_certificate_until_revoked(mtls: tuple[Stack, dict[str, str], str]) -> None:
    stack, files, fingerprint = mtls
    port = stack.broker.mqtts_port
    assert port is not None
    await stack.create_device("mt-1")
    await stack.create_device("mt-2")

    def client(client_id: str) -> TestClient:
        return TestClient(client_id, tls_ca=files["ca"], tls_cert=files["cert"], tls_key=files["key"])

    first = client("mt-1")
    try:
        assert await first.connect(port) == 5  # unknown certificate: refused, recorded for approval
    finally:
        first.close()
    [pending] = (await ok(stack, "devices_GetDetails", {"deviceId": "mt-1"}))["certificates"]
    assert (pending["status"], pending["fingerprint"]) == ("Pending", fingerprint)
    assert pending["firstSeen"].endswith("Z")

    await ok(stack, "devices_SetCertificateStatus", {"certificateId": pending["certificateId"], "status": "Active"})
    device = client("mt-1")
    other = client("mt-2")  # the same certificate under another device's id
    try:
        assert await device.connect(port) == 0  # no user name, no token
        assert await device.subscribe("nxg/mt-1/cmd") == [1]
        assert await device.subscribe("nxg/mt-2/cmd") == [0x80]  # logged in as mt-1, nothing more
        await device.publish("nxg/mt-1/telemetry", json.dumps({"temp": 21}))
        await stack.core.ingest.flush()
        stored = await stack.core.store.messages.query("mt-1")
        assert any(m.body.get("temp") == 21 for m in stored)
        assert stack.core.presence.is_online("mt-1")
        assert await other.connect(port) == 5
        assert (await ok(stack, "devices_GetDetails", {"deviceId": "mt-2"}))["certificates"] == []  # not recorded

        revoked_at = time.monotonic()
        status = {"certificateId": pending["certificateId"], "status": "Revoked"}
        await ok(stack, "devices_SetCertificateStatus", status)
        assert await device.wait_disconnected(2.0)
        assert time.monotonic() - revoked_at < 1.0, "a revoked certificate's session ends within 1 s"
    finally:
        device.close()
        other.close()
    again = client("mt-1")
    try:
        assert await again.connect(port) == 5
    finally:
        again.close()
    [cert] = (await ok(stack, "devices_GetDetails", {"deviceId": "mt-1"}))["certificates"]
    assert cert["status"] == "Revoked"
