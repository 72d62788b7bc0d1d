"""The Mosquitto plugin's ACL cache alone (`mosquitto/acl_cache.h`), past its 65,536 slots: the C
unit test `mosquitto/test_acl_cache.c`, built with the plugin's flags (-Werror) and run. It fills
200,000 entries beside 2,000 used often and checks that the cache stays bounded, that LRU
eviction keeps the entries in use, and expiry and the kick's drop."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from nxg_mqtt.hooks.mosquitto import ROOT


def test_the_acl_cache_is_bounded_and_keeps_the_entries_in_use(tmp_path: Path) -> None:
    if shutil.which("cc") is None or shutil.which("make") is None:
        pytest.skip("no C compiler")
    for name in ("acl_cache.h", "test_acl_cache.c", "Makefile"):
        shutil.copy(ROOT / "mosquitto" / name, tmp_path)
    built = subprocess.run(["make", "-s", "-C", str(tmp_path), "test_acl_cache"], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    ran = subprocess.run([str(tmp_path / "test_acl_cache")], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.strip().endswith("ok"), ran.stdout
