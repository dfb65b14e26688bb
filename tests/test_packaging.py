"""The distribution ships every package and claims no generic top-level names."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERIC_NAMES = {"server", "client", "simulations", "configs", "tests", "benchmarks"}


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_library_package_is_listed() -> None:
    listed = set(_setuptools()["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "ecrec").rglob("__init__.py")
    }
    missing = sorted(on_disk - listed)
    assert not missing, f"packages missing from pyproject [tool.setuptools] packages: {missing}"


def test_no_generic_top_level_names_are_installed() -> None:
    top_level = {name.split(".")[0] for name in _setuptools()["packages"]}
    assert not top_level & GENERIC_NAMES
    mapped = _setuptools()["package-dir"]
    assert mapped["ecrec_server"] == "server"
    assert mapped["ecrec_client"] == "client"
    assert mapped["ecrec_simulations"] == "simulations"


def test_console_scripts_exist() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"ecrec", "ecrec-server", "ecrec-client"}
