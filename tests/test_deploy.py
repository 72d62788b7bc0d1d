"""deploy/: the systemd unit passes `systemd-analyze verify` (where it exists) and the Dockerfile
has what an operator relies on. Nothing is built here that this machine cannot run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (DEPLOY / "nxg-mqtt.service").read_text()
    # verify checks that ExecStart exists: point it at this venv's nxg-mqtt
    installed = str(Path(sys.executable).parent / "nxg-mqtt")
    assert "/opt/nxg-mqtt/venv/bin/nxg-mqtt serve --config" in unit and "ExecReload=/bin/kill -HUP" in unit
    (tmp_path / "nxg-mqtt.service").write_text(unit.replace("/opt/nxg-mqtt/venv/bin/nxg-mqtt", installed))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "nxg-mqtt.service")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "nxg-mqtt.service" not in done.stderr, done.stderr


def test_the_dockerfile_is_multi_stage_non_root_with_a_volume_and_a_readiness_check() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.count("FROM python") == 2 and "COPY --from=build" in text
    assert "USER nxg" in text and 'VOLUME ["/data"]' in text
    assert "HEALTHCHECK" in text and "/health/ready" in text
