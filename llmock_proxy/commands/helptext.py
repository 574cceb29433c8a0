"""The ``--help`` of a sub-command: its description as wrapped plain text, examples verbatim.

argparse reflows the description and the epilog into one paragraph each,
which mangles a command line given as an example. With
``RawDescriptionHelpFormatter`` both are printed as given, so the description
is wrapped here, paragraph by paragraph, and the examples follow it under
``example:`` one per line, ready to copy.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

WIDTH = 78


def help_text(description: str, *examples: str) -> dict[str, Any]:
    """Keyword arguments for ``add_parser`` / ``ArgumentParser``: ``description``
    (paragraphs separated by blank lines, each wrapped), ``epilog`` (the examples)
    and the formatter that keeps both as they are."""
    paragraphs = [textwrap.fill(" ".join(p.split()), WIDTH) for p in description.strip().split("\n\n")]
    epilog = ("example:" if len(examples) == 1 else "examples:") + "".join(f"\n  {e}" for e in examples)
    return {
        "description": "\n\n".join(paragraphs),
        "epilog": epilog if examples else None,
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
