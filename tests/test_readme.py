"""The README's first steps work for a new user (issue 8): the CLI examples say how to reach
`nxg-mqtt` (the venv), and every flag the README shows exists."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from nxg_mqtt.cli import build_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_the_venv_is_activated_before_the_first_cli_example() -> None:
    first_use = re.search(r"^nxg-mqtt ", README, re.MULTILINE)
    assert first_use is not None
    before = README[: first_use.start()]
    assert ". .venv/bin/activate" in before and ".venv/bin/nxg-mqtt" in before


def test_public_host_is_explained() -> None:
    assert "--public-host" in README and "NAT" in README and "localhost" in README


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of a parser and its subcommands."""
    found: set[str] = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found |= _options(child)
    return found


def test_every_flag_in_the_command_table_exists() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    rows = re.findall(r"^\| `nxg-mqtt (\w+)([^`]*)`", README, re.MULTILINE)
    assert len(rows) >= 5
    for command, rest in rows:
        known = _options(commands.choices[command])
        for flag in re.findall(r"--[a-z-]+", rest):
            assert flag in known, (command, flag)
