"""Newline-delimited JSON (Ollama, ``application/x-ndjson``, JSON Lines).

Each non-blank line becomes one :class:`NDJSONLine`. A line holding a JSON
value other than a string is stored parsed; anything else (text that does not
parse, and JSON strings) is stored as the line's own text, so a ``str`` in the
model always means "these characters, verbatim" and re-encodes byte for byte.

Error contract: the decoder never raises; any bytes decode (invalid UTF-8 is
replaced, a line that is not JSON, or is JSON nested deeper than
:data:`~llmock_proxy.nesting.MAX_PAYLOAD_DEPTH`, stays text).
:func:`encode_line` raises :class:`~llmock_proxy.errors.WireEncodeError` for a
line it cannot write (a text line holding a newline, data that is not
JSON-encodable or not UTF-8).
"""

from __future__ import annotations

import re
from typing import Any

from llmock_proxy import nesting
from llmock_proxy.cassette.model import NDJSONLine, compact_json
from llmock_proxy.errors import WireEncodeError

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_line(text: str) -> Any:
    try:
        value = nesting.loads(text)
    except ValueError:  # not JSON, or too deep to keep as data (TooDeep)
        return text
    if isinstance(value, str):
        return text
    if _SURROGATE_ESCAPE.search(text):
        try:  # a lone surrogate could not be written back as UTF-8
            compact_json(value).encode("utf-8")
        except UnicodeEncodeError:
            return text
    return value


class NDJSONDecoder:
    """Feed bytes as they arrive; get back the lines completed so far.

    Lines end in LF (a CR before it is dropped); blank lines are skipped.
    Splitting happens on bytes, so a chunk boundary inside a UTF-8 character
    is harmless. ``t`` is 0; the caller stamps timing.
    """

    def __init__(self) -> None:
        self._partial: list[bytes] = []

    def feed(self, data: bytes) -> list[NDJSONLine]:
        out: list[NDJSONLine] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            piece = data[start:end]
            if self._partial:
                self._partial.append(piece)
                piece = b"".join(self._partial)
                self._partial = []
            self._line(piece, out)
            start = end + 1
        if start < len(data):
            self._partial.append(data[start:])
        return out

    def close(self) -> list[NDJSONLine]:
        """End of stream: a last line without its newline still counts."""
        out: list[NDJSONLine] = []
        if self._partial:
            piece = b"".join(self._partial)
            self._partial = []
            self._line(piece, out)
        return out

    @staticmethod
    def _line(raw: bytes, out: list[NDJSONLine]) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        text = raw.decode("utf-8", errors="replace")
        if not text.strip():
            return
        out.append(NDJSONLine(data=parse_line(text)))


def encode_line(line: NDJSONLine) -> bytes:
    """Compact JSON and a newline; a text line goes out as it is."""
    data = line.data
    try:
        if isinstance(data, str):
            if "\n" in data:
                raise WireEncodeError(f"NDJSON text line cannot hold a newline: {data[:100]!r}")
            # The decoder drops one CR before the LF; give it one to drop.
            end = b"\r\n" if data.endswith("\r") else b"\n"
            return data.encode("utf-8") + end
        return compact_json(data).encode("utf-8") + b"\n"
    except WireEncodeError:
        raise
    except RecursionError:
        raise WireEncodeError("NDJSON line data is nested too deep to write") from None
    except (TypeError, ValueError) as exc:  # not JSON-encodable; UnicodeEncodeError: a lone surrogate
        raise WireEncodeError(f"NDJSON line data cannot be written: {exc}") from None
