"""`bench/acl_flood_bench.py` on a small flood, on real Mosquitto: as shipped, no topic check of the
attacker is asked about; with the marker left off (the bench's baseline), every one is."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.acl_flood_bench import one_round
from tests.mosquitto.conftest import mosquitto_ready


@pytest.mark.parametrize("marked", [True, False])
async def test_the_flood_bench_measures_what_it_says(tmp_path: Path, marked: bool) -> None:
    why = mosquitto_ready()
    if why:
        pytest.skip(why)
    p50, p99, asked, drained = await one_round(tmp_path, flood=200, rate=200, marked=marked)
    assert asked == (0 if marked else 200)
    assert 0 < p50 <= p99 and drained > 0
