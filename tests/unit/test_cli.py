"""The `kezek` command itself: its version and its list of commands."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from kezek.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_kezek_version_names_the_installed_release(flag, capsys):
    assert main([flag]) == 0
    release = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert capsys.readouterr().out.strip() == f"kezek {release}"


def test_kezek_help_lists_every_command_and_the_version_flag(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "kezek --version" in out and all(name in out for name in COMMANDS)


def test_an_unknown_command_is_refused_with_the_list(capsys):
    assert main(["reconcil"]) == 2
    assert "unknown command 'reconcil'" in capsys.readouterr().err
