"""pyproject.toml as setuptools reads it: no deprecated spelling that makes every install warn."""

from __future__ import annotations

import re
import tomllib
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
