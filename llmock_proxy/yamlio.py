"""YAML reading and writing: safe loading, deterministic dumping, atomic saving.

Only the C SafeLoader (or the pure-Python SafeLoader) is ever used: cassettes
come from other people's machines and must never build Python objects.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

try:  # the C implementations are several times faster; fall back when absent
    from yaml import CSafeDumper as _BaseDumper
    from yaml import CSafeLoader as SafeLoader
except ImportError:  # pragma: no cover - depends on how pyyaml was built
    from yaml import SafeDumper as _BaseDumper  # type: ignore[assignment]
    from yaml import SafeLoader  # type: ignore[assignment]


class _Dumper(_BaseDumper):  # type: ignore[misc,valid-type]
    """Safe dumper that writes multi-line text as block scalars."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # Block style keeps long prompts and answers readable and diff-friendly.
    # PyYAML silently falls back to quoting when a block scalar cannot hold the
    # text (trailing spaces, control characters), so this never loses data.
    if "\n" in value and len(value) > 1:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


def loads(text: str | bytes) -> Any:
    return yaml.load(text, Loader=SafeLoader)  # noqa: S506 - SafeLoader only


def load_file(path: str | os.PathLike[str]) -> Any:
    with open(path, "rb") as fh:
        return loads(fh.read())


def dumps(data: Any) -> str:
    """Deterministic YAML: mapping order is the order the model builds, never sorted
    alphabetically (so a request reads method, url, headers, body)."""
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` so readers see either the old or the new file.

    The temp file lives in the target directory (rename is only atomic within
    one filesystem) and is fsynced before the rename, so a crash at any point
    leaves a complete file behind.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
