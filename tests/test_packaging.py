"""pyproject.toml as setuptools reads it: no deprecated spelling that makes every install warn."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def test_license_is_an_spdx_expression_and_the_backend_reads_it() -> None:
    # setuptools warns on every build (pip install ., scripts/make-venv) when
    # project.license is a table ({text = ...}); the string form needs setuptools 77.
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    license_value = config["project"]["license"]
    assert isinstance(license_value, str), f"project.license must be an SPDX string, not {license_value!r}"
    assert re.fullmatch(r"[A-Za-z0-9.+-]+( (AND|OR|WITH) [A-Za-z0-9.+-]+)*", license_value), license_value
    assert not any(c.startswith("License ::") for c in config["project"].get("classifiers", [])), (
        "a License classifier next to an SPDX license is an error for setuptools >= 77"
    )
    (setuptools,) = [r for r in config["build-system"]["requires"] if r.startswith("setuptools")]
    floor = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools.replace(" ", ""))
    assert floor and int(floor[1]) >= 77, f"{setuptools}: the SPDX license string needs setuptools>=77"


def test_a_wheel_built_as_pip_builds_it_carries_the_license_expression(tmp_path: Path) -> None:
    # What an install does: pip runs the build backend on the project. A copy,
    # so the build's own files (build/, *.egg-info) stay out of the checkout.
    root = PYPROJECT.parent
    source = tmp_path / "src"
    shutil.copytree(root / "llmock_proxy", source / "llmock_proxy", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", *(p.name for p in root.glob("LICEN[CS]E*"))):
        shutil.copy2(root / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("llmock_proxy-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        headers = archive.read(metadata).decode()
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    assert f"License-Expression: {config['project']['license']}" in headers.splitlines()
