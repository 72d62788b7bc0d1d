"""`bench/command_store_bench.py` on a small load: every command stored and closed, in shared
transactions. (Its bytes written come from `/proc/self/io`: 0 on a tmpfs, so not asserted.)"""

from __future__ import annotations

from bench.command_store_bench import run


async def test_the_store_bench_measures_what_it_says() -> None:
    result = await run(commands=300, devices=20, inflight=16)
    assert result["closed"] == 300
    assert result["cpu_us"] > 0 and result["written_kb"] >= 0
    # 16 in flight: the writer shares its transactions between them (group commit)
    assert result["per_batch"] > 1
