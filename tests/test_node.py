"""The node id (seed 003's `nodeId`): made once per data directory, then read back."""

from __future__ import annotations

from pathlib import Path

from nxg_mqtt.node import NODE_FILE, node_id


def test_node_id_is_stable_per_data_directory(tmp_path: Path) -> None:
    first = node_id(tmp_path / "a")
    assert first.startswith("node-") and node_id(tmp_path / "a") == first
    assert (tmp_path / "a" / NODE_FILE).read_text().strip() == first
    assert node_id(tmp_path / "b") != first
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / NODE_FILE).write_text("edge-7\n")  # an operator may name it
    assert node_id(tmp_path / "c") == "edge-7"
