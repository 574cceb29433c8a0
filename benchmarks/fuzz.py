"""Fuzz every codec and loader with hostile input and count what escapes.

A seeded random loop (reproducible: ``--seed``) over these targets:

  sse.decode / ndjson.decode / eventstream.decode   bytes split anywhere; what decodes must
                                                    encode again and read back the same
  sse.encode / ndjson.encode / eventstream.encode   items with wrong types, line breaks, bad
                                                    header names, lone surrogates, deep data;
                                                    what encodes must decode again
  content_encoding   gzip/deflate/br/zstd chains, damaged, truncated, unknown, bombs
  http1              the engine's request parser (wire/http1.py), bytes split anywhere
  cassette.load      cassette YAML (parse cache on for half), then what serve does with
                     it: fixtures, the matcher, every stream item encoded
  cassette.validate  ``llmock-proxy cassette validate`` on the file (includes the key scan)
  fixture.load       llmock fixture files (JSON) into the matcher
  canonical          every provider's canonical() on JSON bodies near and far from its API
  payload            Payload.from_bytes (exact or not must keep what it says it keeps)
  recorder           a Recording fed garbage streams, encodings and deep request bodies:
                     the tee must pass bytes unchanged, finish() must give an interaction,
                     and that interaction must load again

Inputs mix random bytes, mutations of valid seeds (the bundled cassettes and
fixture files, frames built here) and hostile shapes: nesting from 5 to 100,000
levels, YAML alias bombs (up to 10^12 leaves), decompression bombs, numbers of
5,000 digits, lone surrogates, CR/LF mixes, truncations.

Each case ends as ok, a *documented* error (the target's contract: the
error classes in llmock_proxy/errors.py and the codecs' own, listed per
target below) or an *undocumented* exception, counted by type. A broken
round trip counts as ``RoundTrip``, a case running past ``--case-timeout``
as ``Timeout``. Cases run with ``--stack`` frames already on the stack (as
under mitmproxy's hooks or pytest), where recursion limits bite sooner.

    .venv-test-3.13/bin/python benchmarks/fuzz.py                 # ~230k cases, a few minutes
    .venv-test-3.13/bin/python benchmarks/fuzz.py --scale 0.02    # a quick look
    .venv-test-3.13/bin/python benchmarks/fuzz.py --target eventstream.encode --show 3
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import inspect
import io
import json
import logging
import os
import random
import signal
import struct
import sys
import tempfile
import time
import traceback
import uuid
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import brotli

from llmock_proxy import errors
from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette import yamlio
from llmock_proxy.cassette.model import EventStreamFrame, NDJSONLine, Payload, Request, SSEEvent
from llmock_proxy.cassette.parse_cache import ParseCache
from llmock_proxy.commands import cassette as cassette_command
from llmock_proxy.errors import CassetteError, MatchSpecError
from llmock_proxy.match.matcher import Matcher
from llmock_proxy.providers.catalog import CATALOG, GENERIC
from llmock_proxy.record.recorder import Recorder
from llmock_proxy.replay.fixture import fixture_from_interaction
from llmock_proxy.replay.llmock_format import load_fixture_file
from llmock_proxy.wire import content_encoding, eventstream, http1, ndjson, sse

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd


def _error_class(module: Any, name: str) -> tuple[type[BaseException], ...]:
    """An error class if this tree has it (the fuzzer also runs on older trees)."""
    found = getattr(module, name, None)
    return (found,) if isinstance(found, type) else ()


WIRE_ERROR = _error_class(errors, "WireError")
EVENTSTREAM_ERROR = (eventstream.EventStreamError,)
CASSETTE_ERRORS: tuple[type[BaseException], ...] = (CassetteError, MatchSpecError)


class RoundTrip(Exception):
    """A value a codec produced did not survive its own encoder/decoder."""


class CaseTimeout(BaseException):
    """A case ran past --case-timeout (BaseException: no ``except Exception`` hides it)."""


# -- building blocks ---------------------------------------------------------------------------------

WORDS = ["model", "messages", "role", "content", "user", "assistant", "tool", "text", "type", "stream",
         "tools", "function", "arguments", "name", "input", "contents", "parts", "system", "prompt", "data",
         "id", "event", "delta", "choices", "index", "finish_reason", "usage", "embedding", "a", "é", "😀",
         "<redacted>", "sk-test-abc", "[DONE]", "null", "true", "0", "-1", "1e999", "NaN", ""]
TOKENS = [b"[", b"{", b"]", b"}", b'"', b"\\", b"\\ud800", b"\\u0000", b"\r", b"\n", b"\r\n", b"\xef\xbb\xbf",
          b"\xff", b"\xc3", b"\x00", b":", b"data:", b"event:", b"id:", b"retry:", b"NaN", b"-Infinity", b"1e999",
          b"9" * 5000, b"&a ", b"*a", b"<<: ", b"!!python/object/apply:os.system ['true']", b"!!binary ", b"- ",
          b"  ", b"\t", b"%YAML 1.1\n", b"---\n", b"...\n", b"? ", b"|", b">", b"'", b"#", b"@", b"`",
          "é".encode(), "😀".encode(), b"\xed\xa0\x80", b",", b"null", b"true", b"-0", b"0x1F", b"1_000", b"1:30"]
DEPTHS = [5, 50, 199, 200, 201, 255, 256, 257, 500, 999, 1000, 1001, 3000, 20000, 100000]


def _deep_text(depth: int, style: str) -> str:
    if style == "list":
        return "[" * depth + "1" + "]" * depth
    if style == "object":
        return '{"a":' * depth + "1" + "}" * depth
    if style == "mixed":
        return '[{"k":' * (depth // 2) + "[]" + "}]" * (depth // 2)
    return "[" * depth  # unclosed


# Built once: the deep texts are reused by every target. The very deep
# (and large) ones are drawn less often, so the run keeps its pace.
DEEP_TEXTS = [_deep_text(d, s) for d in DEPTHS for s in ("list", "object", "mixed", "unclosed")]
DEEP_WEIGHTS = [1.0 if d <= 1001 else 0.2 if d <= 3000 else 0.05 for d in DEPTHS for _ in range(4)]


def deep_value(depth: int) -> Any:
    """A parsed value nested ``depth`` levels, built without recursion."""
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


DEEP_DEPTHS = (50, 199, 200, 201, 257, 1001, 5000)
# For the encoders, which never change their input; mutations get fresh ones (Gen.deep_value).
DEEP_VALUES = [deep_value(d) for d in DEEP_DEPTHS]
# A request body a thousand levels deep, as the record addon was sent one.
DEEP_BODY = _deep_text(1000, "object").encode()
# Past EventStream's 24 MiB payload limit; built once.
HUGE_TEXT = "x" * (25 * 1024 * 1024)


@dataclass
class Gen:
    """Random inputs from one seeded generator."""

    rng: random.Random

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def choice(self, seq: Any) -> Any:
        return self.rng.choice(seq)

    def raw(self, limit: int = 200) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, limit))

    def word(self) -> str:
        return self.rng.choice(WORDS)

    def text(self) -> str:
        parts = [self.word() for _ in range(self.rng.randint(0, 4))]
        if self.chance(0.1):
            parts.append(self.choice(["\ud800", "\x00", "\r\n", "\r", "\n", "\u2028", "\ufeff", "x" * 70000]))
        return " ".join(parts)

    def deep(self) -> str:
        return self.rng.choices(DEEP_TEXTS, DEEP_WEIGHTS)[0]

    def scalar(self) -> Any:
        return self.choice([
            self.rng.randint(-10**6, 10**6), 10 ** self.rng.randint(1, 40), -0.0, 2.5, float("inf"), float("nan"),
            True, False, None, self.text(), self.word(),
        ])

    def deep_value(self) -> Any:
        """A deep value of its own: one shared between inputs could be
        mutated into containing itself, which no JSON can express."""
        return deep_value(self.choice(DEEP_DEPTHS))

    def value(self, depth: int = 0) -> Any:
        """A JSON-like value (sometimes a deep one)."""
        roll = self.rng.random()
        if roll < 0.02:
            return self.deep_value()
        if depth > 4 or roll < 0.45:
            return self.scalar()
        if roll < 0.7:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 4))]
        return {self.word(): self.value(depth + 1) for _ in range(self.rng.randint(0, 5))}

    def json_text(self) -> bytes:
        roll = self.rng.random()
        if roll < 0.15:
            return self.deep().encode()
        if roll < 0.2:
            return self.choice([b"9" * 5000, b"[1e999]", b'{"a":"\\ud800"}', b"[NaN]", b'{"a":1,"a":2}', b"[1,]"])
        try:
            text = json.dumps(self.value(), ensure_ascii=self.chance(0.5))
        except (ValueError, RecursionError):
            text = "{}"
        return text.encode("utf-8", "surrogatepass")

    def cuts(self, data: bytes) -> list[bytes]:
        """``data`` split at random places (one-byte pieces included)."""
        if not data or self.chance(0.3):
            return [data]
        points = sorted(self.rng.randint(0, len(data)) for _ in range(self.rng.randint(1, 6)))
        if self.chance(0.1):
            points = list(range(0, min(len(data), 64)))  # byte by byte at the start
        pieces, start = [], 0
        for point in points + [len(data)]:
            pieces.append(data[start:point])
            start = point
        return pieces

    def mutate(self, data: bytes) -> bytes:
        out = bytearray(data)
        for _ in range(self.rng.randint(1, 4)):
            op = self.rng.randrange(8)
            pos = self.rng.randint(0, len(out))
            if op == 0 and out:
                out[min(pos, len(out) - 1)] ^= 1 << self.rng.randrange(8)
            elif op == 1 and out:
                out[min(pos, len(out) - 1)] = self.rng.randrange(256)
            elif op == 2:
                del out[pos : pos + self.rng.randint(1, 64)]
            elif op == 3:
                out[pos:pos] = self.choice(TOKENS) * self.rng.choice([1, 1, 2, 50])
            elif op == 4 and out:
                start = self.rng.randint(0, len(out) - 1)
                out[pos:pos] = out[start : start + self.rng.randint(1, 200)]
            elif op == 5:
                del out[pos:]
            elif op == 6:
                out[pos:pos] = self.raw(16)
            else:
                out[pos:pos] = self.deep().encode()[: self.rng.choice([100, 3_000, 100_000])]
        return bytes(out)


def feed_all(decoder: Any, pieces: list[bytes]) -> list[Any]:
    items: list[Any] = []
    for piece in pieces:
        items += decoder.feed(piece)
    return items + decoder.close()


def same(a: list[Any], b: list[Any]) -> bool:
    """Item lists equal, NaN included (compared by their dict's repr)."""
    return [repr(x.to_dict()) for x in a] == [repr(x.to_dict()) for x in b]


# -- seeds ---------------------------------------------------------------------------------------------

CASSETTE_FILES = sorted((REPO / "cassettes" / "examples").glob("*.yaml")) + sorted(
    (REPO / "examples").rglob("*.yaml")
)
FIXTURE_FILES = sorted((REPO / "cassettes" / "examples").glob("*.json")) + [REPO / "tests" / "data" / "aimock_cases.json"]


@dataclass
class Seeds:
    cassettes: list[bytes] = field(default_factory=list)
    fixtures: list[Any] = field(default_factory=list)  # parsed fixture files
    sse: list[bytes] = field(default_factory=list)
    ndjson: list[bytes] = field(default_factory=list)
    bodies: dict[str, list[Any]] = field(default_factory=dict)  # family -> request bodies

    @classmethod
    def load(cls) -> Seeds:
        seeds = cls()
        for path in CASSETTE_FILES:
            raw = path.read_bytes()
            seeds.cassettes.append(raw)
            for interaction in cassette_store.parse(raw, path, cache=None).interactions:
                request, response = interaction.request, interaction.response
                family = (interaction.match or {}).get("family", "generic")
                if request.body is not None and request.body.kind == "json":
                    seeds.bodies.setdefault(family, []).append(request.body.value)
                if response is not None and response.events:
                    seeds.sse.append(b"".join(sse.encode_event(e) for e in response.events))
                if response is not None and response.lines:
                    seeds.ndjson.append(b"".join(ndjson.encode_line(line) for line in response.lines))
        for path in FIXTURE_FILES:
            if path.is_file():
                seeds.fixtures.append(json.loads(path.read_bytes()))
        seeds.ndjson.append(b'{"model":"llama3","message":{"role":"assistant","content":"Hi"},"done":false}\n'
                            b'{"model":"llama3","done":true,"done_reason":"stop"}\n')
        for family, body in _FAMILY_BODIES.items():
            seeds.bodies.setdefault(family, []).append(body)
        return seeds


# Request bodies of the families the bundled cassettes do not show, in their documented shapes.
_FAMILY_BODIES: dict[str, Any] = {
    "openai.chat": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
    "openai.responses": {"model": "gpt-4o", "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
                         "instructions": "be brief", "tools": [{"type": "function", "name": "f"}]},
    "openai.embeddings": {"model": "text-embedding-3-small", "input": ["a", "b"]},
    "anthropic.messages": {"model": "claude-3", "max_tokens": 10, "system": [{"type": "text", "text": "s"}],
                           "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                                                       "content": "r"}]}]},
    "gemini.generate": {"contents": [{"role": "user", "parts": [{"text": "hi"}, {"functionResponse": {"name": "f"}}]}],
                        "systemInstruction": {"parts": [{"text": "s"}]}, "tools": [{"functionDeclarations": []}]},
    "gemini.embed": {"content": {"parts": [{"text": "hi"}]}},
    "ollama.chat": {"model": "llama3", "messages": [{"role": "user", "content": "hi"}], "stream": False},
    "ollama.generate": {"model": "llama3", "prompt": "hi", "system": "s"},
    "ollama.embed": {"model": "all-minilm", "input": ["a"]},
    "cohere.chat": {"model": "command-r", "messages": [{"role": "user", "content": "hi"}], "stream": True},
    "bedrock.converse": {"messages": [{"role": "user", "content": [{"text": "hi"}]}], "system": [{"text": "s"}],
                         "toolConfig": {"tools": [{"toolSpec": {"name": "f"}}]}},
    "bedrock.invoke": {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10,
                       "messages": [{"role": "user", "content": "hi"}]},
}
_FAMILY_URLS: dict[str, tuple[str, str]] = {
    "openai.chat": ("POST", "https://api.openai.com/v1/chat/completions"),
    "openai.responses_ws": ("GET", "https://api.openai.com/v1/responses"),
    "openai.responses": ("POST", "https://api.openai.com/v1/responses"),
    "openai.embeddings": ("POST", "https://api.openai.com/v1/embeddings"),
    "openai.realtime": ("GET", "https://api.openai.com/v1/realtime?model=gpt-4o-realtime"),
    "anthropic.messages": ("POST", "https://api.anthropic.com/v1/messages"),
    "gemini.generate": ("POST", "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"),
    "gemini.embed": ("POST", "https://generativelanguage.googleapis.com/v1beta/models/text-embedding-004:embedContent"),
    "gemini.live": ("GET", "https://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.v1beta."
                           "GenerativeService.BidiGenerateContent"),
    "ollama.chat": ("POST", "http://127.0.0.1:11434/api/chat"),
    "ollama.generate": ("POST", "http://127.0.0.1:11434/api/generate"),
    "ollama.embed": ("POST", "http://127.0.0.1:11434/api/embed"),
    "cohere.chat": ("POST", "https://api.cohere.com/v2/chat"),
    "bedrock.converse": ("POST", "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse-stream"),
    "bedrock.invoke": ("POST", "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/invoke"),
    "generic": ("POST", "https://api.example.test/v1/anything"),
}


def mutate_value(gen: Gen, value: Any) -> Any:
    """``value`` with a few subtrees replaced by random values (a copy)."""
    try:
        value = json.loads(json.dumps(value))
    except (ValueError, RecursionError):
        return gen.value()
    for _ in range(gen.rng.randint(1, 3)):
        path: list[Any] = []
        node = value
        while isinstance(node, (dict, list)) and node and gen.chance(0.75):
            key = gen.choice(list(node)) if isinstance(node, dict) else gen.rng.randrange(len(node))
            path.append((node, key))
            node = node[key]
        if not path:
            return gen.value() if gen.chance(0.3) else value
        parent, key = path[-1]
        roll = gen.rng.random()
        if roll < 0.1 and isinstance(parent, dict):
            del parent[key]
        elif roll < 0.2 and isinstance(parent, dict):
            parent[gen.word()] = gen.value()
        elif roll < 0.3:
            parent[key] = gen.deep() if gen.chance(0.5) else gen.deep_value()
        else:
            parent[key] = gen.value()
    return value


# -- compression material ---------------------------------------------------------------------------


def _raw_deflate(data: bytes) -> bytes:
    stream = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return stream.compress(data) + stream.flush()


def _zstd(data: bytes) -> bytes:
    return zstd.compress(data)


CODERS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip": ("gzip", gzip.compress),
    "x-gzip": ("x-gzip", gzip.compress),
    "deflate": ("deflate", zlib.compress),
    "raw-deflate": ("deflate", _raw_deflate),
    "br": ("br", lambda data: brotli.compress(data, quality=1)),
    "zstd": ("zstd", _zstd),
    "identity": ("identity", lambda data: data),
}


def _bombs() -> list[tuple[str, bytes]]:
    """Small bodies that decode to 256 MiB or (two layers deep) 1 GiB of zeros."""
    zeros = b"\0" * (1 << 20)
    out: list[tuple[str, bytes]] = []
    g = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    gz = b"".join(g.compress(zeros) for _ in range(256)) + g.flush()
    out.append(("gzip", gz))
    out.append(("deflate", zlib.compress(b"\0" * (256 << 20), 9)))
    out.append(("br", brotli.compress(b"\0" * (256 << 20), quality=5)))
    out.append(("zstd", zstd.compress(b"\0" * (256 << 20))))
    inner = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    gig = b"".join(inner.compress(zeros) for _ in range(1024)) + inner.flush()
    out.append(("gzip, gzip", gzip.compress(gig, 9)))
    return out


# -- targets -------------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    cases: int  # at --scale 1
    make: Callable[[Gen], Any]
    run: Callable[[Any], Any]
    documented: tuple[type[BaseException], ...]
    contract: str


class Targets:
    """Every target's input maker and runner, sharing seeds and a scratch directory."""

    def __init__(self, seeds: Seeds, scratch: Path) -> None:
        self.seeds = seeds
        self.scratch = scratch
        self.cache = ParseCache(scratch / "parse-cache")
        self.bombs = _bombs()
        self._decompressor_caps = "max_size" in inspect.signature(content_encoding.Decompressor).parameters
        self.recorder = Recorder()

    def all(self) -> list[Target]:
        codec_errors = WIRE_ERROR
        return [
            Target("sse.decode", 30_000, self.sse_stream, self.run_sse_decode, (),
                   "never raises; decode(encode(e)) == [e]"),
            Target("sse.encode", 15_000, self.sse_event, self.run_sse_encode, codec_errors,
                   "WireEncodeError; what encodes decodes back"),
            Target("ndjson.decode", 25_000, self.ndjson_stream, self.run_ndjson_decode, (),
                   "never raises; decode(encode(l)) == [l]"),
            Target("ndjson.encode", 15_000, self.ndjson_line, self.run_ndjson_encode, codec_errors,
                   "WireEncodeError; what encodes decodes back"),
            Target("eventstream.decode", 30_000, self.es_stream, self.run_es_decode, EVENTSTREAM_ERROR,
                   "EventStreamError; frames re-encode to the bytes read"),
            Target("eventstream.encode", 20_000, self.es_frame, self.run_es_encode, codec_errors,
                   "WireEncodeError; what encodes decodes and re-encodes the same"),
            Target("content_encoding", 20_000, self.encoded_body, self.run_decompress, codec_errors,
                   "ContentEncodingError, BodyTooLarge; valid input decodes exactly"),
            Target("http1", 30_000, self.http_bytes, self.run_http1, (),
                   "never raises (Refusal / Handover)"),
            Target("cassette.load", 15_000, self.cassette_text, self.run_cassette_load,
                   CASSETTE_ERRORS + codec_errors, "CassetteError, MatchSpecError, WireError"),
            Target("cassette.validate", 2_000, self.cassette_text, self.run_validate, (),
                   "never raises: problems are reported"),
            Target("fixture.load", 8_000, self.fixture_bytes, self.run_fixture_load, CASSETTE_ERRORS,
                   "CassetteError, MatchSpecError"),
            Target("canonical", 20_000, self.canonical_request, self.run_canonical, self.canonical_errors(),
                   "RequestShapeError"),
            Target("payload", 20_000, self.payload_input, self.run_payload, (),
                   "never raises; exact payloads give back their bytes"),
            Target("recorder", 5_000, self.recording_script, self.run_recorder, (),
                   "never raises; tee passes bytes unchanged; the interaction loads again"),
        ]

    @staticmethod
    def canonical_errors() -> tuple[type[BaseException], ...]:
        return _error_class(errors, "RequestShapeError")

    # -- SSE -----------------------------------------------------------------------------------

    def sse_stream(self, gen: Gen) -> list[bytes]:
        roll = gen.rng.random()
        if roll < 0.1:
            return gen.cuts(gen.raw(400))
        if roll < 0.25 and self.seeds.sse:
            return gen.cuts(gen.mutate(gen.choice(self.seeds.sse)))
        lines: list[bytes] = []
        for _ in range(gen.rng.randint(1, 12)):
            kind = gen.rng.random()
            if kind < 0.4:
                lines.append(b"data: " + gen.json_text())
            elif kind < 0.5:
                lines.append(b"data: [DONE]")
            elif kind < 0.6:
                lines.append(b"event: " + gen.text().encode("utf-8", "surrogatepass"))
            elif kind < 0.65:
                lines.append(b"id: " + gen.choice([b"1", b"a\x00b", b"", gen.raw(8)]))
            elif kind < 0.7:
                lines.append(b"retry: " + gen.choice([b"100", b"-1", b"1.5", b"\xd9\xa3", b"9" * 5000]))
            elif kind < 0.78:
                lines.append(b":" + gen.text().encode("utf-8", "surrogatepass"))
            elif kind < 0.9:
                lines.append(b"")
            else:
                lines.append(gen.raw(30))
        ends = [gen.choice([b"\n", b"\r", b"\r\n"]) for _ in lines]
        data = b"".join(line + end for line, end in zip(lines, ends))
        if gen.chance(0.1):
            data = b"\xef\xbb\xbf" + data
        if gen.chance(0.2):
            data = gen.mutate(data)
        return gen.cuts(data)

    @staticmethod
    def run_sse_decode(pieces: list[bytes]) -> None:
        for event in feed_all(sse.SSEDecoder(), pieces):
            again = feed_all(sse.SSEDecoder(), [sse.encode_event(event)])
            if not same(again, [event]):
                raise RoundTrip(f"{event!r} came back as {again!r}")

    def sse_event(self, gen: Gen) -> SSEEvent:
        def field_value() -> Any:
            return gen.choice([None, None, gen.word(), gen.text(), "a\nb", "a\rb", "\x00", 5, b"x", "\ud800"])

        data = gen.choice([None, gen.value(), gen.text(), "[DONE]", gen.choice(DEEP_VALUES), {1, 2}, b"raw",
                           float("nan"), {"a": "\ud800"}])
        retry = gen.choice([None, None, 0, 3000, -1, 1.5, "10", True, 10**30])
        return SSEEvent(data=data, event=field_value(), id=field_value(), retry=retry, comment=field_value())

    @staticmethod
    def run_sse_encode(event: SSEEvent) -> None:
        wire = sse.encode_event(event)
        decoded = feed_all(sse.SSEDecoder(), [wire])
        if not decoded and (event.data is not None or event.event or event.id or event.retry is not None):
            raise RoundTrip(f"{event!r} encoded as {wire!r}, which decodes to nothing")

    # -- NDJSON --------------------------------------------------------------------------------

    def ndjson_stream(self, gen: Gen) -> list[bytes]:
        roll = gen.rng.random()
        if roll < 0.1:
            return gen.cuts(gen.raw(400))
        if roll < 0.25:
            return gen.cuts(gen.mutate(gen.choice(self.seeds.ndjson)))
        lines = [gen.json_text() if gen.chance(0.8) else gen.raw(20) for _ in range(gen.rng.randint(1, 8))]
        data = b"".join(line + gen.choice([b"\n", b"\r\n", b"\r\r\n", b"\n\n"]) for line in lines)
        if gen.chance(0.2):
            data = gen.mutate(data)
        return gen.cuts(data)

    @staticmethod
    def run_ndjson_decode(pieces: list[bytes]) -> None:
        for line in feed_all(ndjson.NDJSONDecoder(), pieces):
            again = feed_all(ndjson.NDJSONDecoder(), [ndjson.encode_line(line)])
            if not same(again, [line]):
                raise RoundTrip(f"{line!r} came back as {again!r}")

    def ndjson_line(self, gen: Gen) -> NDJSONLine:
        return NDJSONLine(data=gen.choice([gen.value(), gen.text(), "a\nb", "x\r", gen.choice(DEEP_VALUES), {1},
                                           b"raw", object(), {"k": "\ud800"}, "\ud800"]))

    @staticmethod
    def run_ndjson_encode(line: NDJSONLine) -> None:
        wire = ndjson.encode_line(line)
        if not wire.endswith(b"\n") or wire.count(b"\n") != 1:
            raise RoundTrip(f"{line!r} encoded as {wire[:80]!r}: not one line")

    # -- EventStream ---------------------------------------------------------------------------

    def _es_header_bytes(self, gen: Gen) -> bytes:
        out = bytearray()
        for _ in range(gen.rng.randint(0, 5)):
            name = gen.choice([b":event-type", b":content-type", b":message-type", gen.word().encode(), b"",
                               b"\xff\xfe", b"x" * 255]) if not gen.chance(0.05) else gen.raw(10)
            out.append(min(len(name), 255) if not gen.chance(0.05) else gen.rng.randrange(256))
            out += name[:255]
            code = gen.choice([7, 7, 7, 0, 1, 2, 3, 4, 5, 6, 8, 9, gen.rng.randrange(256)])
            out.append(code)
            if code == 7:
                value = gen.choice([b"chunk", b"application/json", b"event", gen.text().encode("utf-8", "surrogatepass")])
                value = value[:0xFFFF]
                out += struct.pack(">H", len(value)) + value
            elif code in (2, 3, 4, 5, 8):
                out += gen.rng.randbytes({2: 1, 3: 2, 4: 4, 5: 8, 8: 8}[code])
            elif code == 6:
                value = gen.raw(20)
                out += struct.pack(">H", len(value) + gen.choice([0, 0, 0, 5])) + value
            elif code == 9:
                out += gen.rng.randbytes(gen.choice([16, 16, 3]))
        return bytes(out)

    def _es_message(self, gen: Gen) -> bytes:
        headers = self._es_header_bytes(gen)
        payload = gen.choice([gen.json_text(), gen.json_text(), gen.deep().encode()[:100_000], gen.raw(100), b""])
        total = eventstream.MIN_MESSAGE_LENGTH + len(headers) + len(payload)
        if gen.chance(0.03):
            total = gen.choice([0, 15, total + 1, total - 1, 2**32 - 1, 25 * 1024 * 1024])
        prelude = struct.pack(">II", total, len(headers))
        prelude += struct.pack(">I", zlib.crc32(prelude) & 0xFFFFFFFF)
        message = prelude + headers + payload
        crc = zlib.crc32(message) & 0xFFFFFFFF
        if gen.chance(0.03):
            crc ^= 1
        return message + struct.pack(">I", crc)

    def es_stream(self, gen: Gen) -> tuple[bytes, list[bytes]]:
        if gen.chance(0.05):
            data = gen.raw(300)
        else:
            data = b"".join(self._es_message(gen) for _ in range(gen.rng.randint(0, 4)))
            if gen.chance(0.15):
                data = gen.mutate(data)
        return data, gen.cuts(data)

    @staticmethod
    def run_es_decode(case: tuple[bytes, list[bytes]]) -> None:
        data, pieces = case
        decoder = eventstream.EventStreamDecoder()
        frames: list[EventStreamFrame] = []
        try:
            for piece in pieces:
                frames += decoder.feed(piece)
            frames += decoder.close()
        finally:
            encoded = b"".join(eventstream.encode_frame(frame) for frame in frames)
            if not data.startswith(encoded):
                raise RoundTrip(f"{len(frames)} decoded frames re-encode to other bytes")
        if encoded != data:
            raise RoundTrip("the stream decoded without error but does not re-encode to itself")

    def es_frame(self, gen: Gen) -> EventStreamFrame:
        headers: dict[Any, Any] = {}
        for _ in range(gen.rng.randint(0, 5)):
            name = gen.choice([":event-type", ":content-type", gen.word(), "", "x" * 256, "é" * 128, "\ud800", 5,
                               None, "a\x00b"])
            kind = gen.choice(["bool", "byte", "short", "int", "long", "timestamp", "bytes", "uuid", "string",
                               "colour", None, 5])
            inner = gen.choice([True, False, 1, 300, -1, 2**70, "AAAA", "not base64!", str(uuid.uuid4()), "zz",
                                None, 1.5, [1], "x" * 70000, "\ud800"])
            value = gen.choice([gen.word(), "x" * 70000, "\ud800", {"type": kind, "value": inner},
                                {"type": kind, "value": inner}, None, 5, [1], {"type": "bool"}])
            headers[name] = value
        payload = gen.choice([
            Payload("json", gen.value()), Payload("json", gen.choice(DEEP_VALUES)), Payload("json", {1, 2}),
            Payload("text", gen.text()), Payload("text", 5), Payload("base64", "AAAA"), Payload("base64", "!!"),
            Payload("base64", None), Payload("weird", "x"), None, Payload("text", HUGE_TEXT),
        ])
        return EventStreamFrame(headers=headers, payload=payload)  # type: ignore[arg-type]

    @staticmethod
    def run_es_encode(frame: EventStreamFrame) -> None:
        wire = eventstream.encode_frame(frame)
        decoder = eventstream.EventStreamDecoder()
        decoded = decoder.feed(wire) + decoder.close()
        if len(decoded) != 1 or eventstream.encode_frame(decoded[0]) != wire:
            raise RoundTrip("an encoded frame does not decode and re-encode to the same bytes")

    # -- content encoding ----------------------------------------------------------------------

    def encoded_body(self, gen: Gen) -> tuple[str | None, list[bytes], bytes | None, int | None]:
        if gen.chance(0.004):
            header, data = gen.choice(self.bombs)
            return header, gen.cuts(data), None, None
        plain = gen.choice([gen.raw(2000), gen.json_text(), b"", b"hello " * gen.rng.randint(1, 5000)])
        names: list[str] = []
        data = plain
        for _ in range(gen.rng.choice([0, 1, 1, 1, 2, 3])):
            header_name, coder = CODERS[gen.choice(list(CODERS))]
            data = coder(data)
            if header_name == "gzip" and not names and gen.chance(0.1):
                data += gzip.compress(b"more")  # a second member (of the innermost coding only)
                plain += b"more"
            names.append(header_name)
        header: str | None = ", ".join(names)
        expected: bytes | None = plain
        roll = gen.rng.random()
        if roll < 0.25:
            data, expected = gen.mutate(data), None
        elif roll < 0.3:
            data, expected = data[: gen.rng.randint(0, len(data))], None
        elif roll < 0.35:
            header, expected = gen.choice(["compress", "gzip, foo", " , ", "GZIP", "br;q=1", ""]), None
        if header and gen.chance(0.2):
            header = header.upper().replace(", ", " ,")
        cap = gen.choice([None, None, None, 0, 1, 100, 10_000])
        if cap is not None and expected is not None and len(expected) > cap:
            expected = None
        return header, gen.cuts(data), expected, cap

    def run_decompress(self, case: tuple[str | None, list[bytes], bytes | None, int | None]) -> None:
        header, pieces, expected, cap = case
        if self._decompressor_caps and cap is not None:
            decoder = content_encoding.Decompressor(header, max_size=cap)  # type: ignore[call-arg]
        else:
            decoder = content_encoding.Decompressor(header)
        out = b"".join(decoder.feed(piece) for piece in pieces) + decoder.flush()
        if expected is not None and out != expected:
            raise RoundTrip(f"{header!r}: decoded {len(out)} bytes, expected {len(expected)}")

    # -- HTTP/1.1 ------------------------------------------------------------------------------

    def http_bytes(self, gen: Gen) -> list[bytes]:
        if gen.chance(0.1):
            return gen.cuts(gen.raw(500))
        requests = []
        for _ in range(gen.rng.randint(1, 3)):
            method = gen.choice([b"POST", b"GET", b"OPTIONS", b"P0ST", b"", b"GET GET"])
            target = gen.choice([b"/v1/chat/completions", b"*", b"http://x/", b"/a?b=c", b"", b"/" + b"a" * 17000])
            version = gen.choice([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"HTTP/1.1x", b"HTTX/1.1"])
            body = gen.json_text()
            headers = [b"Host: x", b"Content-Type: application/json"]
            length = gen.choice([str(len(body)).encode(), b"0", b"-1", b"abc", b"99999999999", b"\xd9\xa3",
                                 str(len(body) + 5).encode(), str(len(body)).encode()])
            headers.append(b"Content-Length: " + length)
            for _ in range(gen.rng.randint(0, 3)):
                headers.append(gen.choice([b"Transfer-Encoding: chunked", b"Expect: 100-continue", b"Connection: close",
                                           b"Content-Length: 1", b"Bad Header", b": empty", b"X-Long: " + b"a" * 17000,
                                           b"X: \xff\xfe", b"Host: y"]))
            end = gen.choice([b"\r\n", b"\r\n", b"\n", b"\r"])
            head = method + b" " + target + b" " + version + end + end.join(headers) + end + end
            requests.append(head + body)
        data = b"".join(requests)
        if gen.chance(0.2):
            data = gen.mutate(data)
        return gen.cuts(data)

    @staticmethod
    def run_http1(pieces: list[bytes]) -> None:
        parser = http1.RequestParser()
        for piece in pieces:
            parser.feed(piece)
            while True:
                got = parser.next_request()
                if got is None or not isinstance(got, http1.HTTPRequest):
                    break
        parser.pending()

    # -- cassettes -----------------------------------------------------------------------------

    def cassette_text(self, gen: Gen) -> bytes:
        roll = gen.rng.random()
        if roll < 0.05:
            return self._alias_bomb(gen)
        if roll < 0.1:
            style = gen.choice(["flow", "block", "json"])
            depth = gen.choice(DEPTHS)
            nested = {"flow": "[" * depth + "]" * depth, "json": _deep_text(depth, "object"),
                      "block": "- " * min(depth, 20000) + "x"}[style]
            return self._with_body(gen, nested).encode()
        if roll < 0.15:
            return gen.raw(500)
        seed = gen.choice(self.seeds.cassettes)
        if roll < 0.55:
            return gen.mutate(seed)
        lines = seed.split(b"\n")
        for _ in range(gen.rng.randint(1, 4)):
            pos = gen.rng.randrange(len(lines))
            op = gen.rng.randrange(6)
            if op == 0:
                del lines[pos]
            elif op == 1:
                lines.insert(pos, lines[gen.rng.randrange(len(lines))])
            elif op == 2:
                indent = len(lines[pos]) - len(lines[pos].lstrip())
                lines.insert(pos, b" " * indent + gen.choice([
                    b"x: &a {k: v}", b"y: *a", b"<<: *a", b"<<: {k: v}", b"z: !!python/name:os.system", b"? [a]: b",
                    b"q: !!binary aGk=", b"w: " + b"9" * 5000, b"e: 0x" + b"f" * 5000, b"r: 1:2:3:4:5",
                    b"t: " + gen.deep().encode()[:3000], b"u: *undefined", b"retry: -1", b"t: .nan",
                    b"status: 999", b"json: " + gen.json_text()[:2000]]))
            elif op == 3:
                lines[pos] = b" " + lines[pos]
            elif op == 4:
                lines[pos] = lines[pos].replace(b": ", b": &x ", 1)
            else:
                lines[pos] = gen.mutate(lines[pos])
        return b"\n".join(lines)

    def _alias_bomb(self, gen: Gen) -> bytes:
        levels = gen.rng.randint(3, 12)
        fan = gen.rng.randint(2, 10)
        body = ["  a0: &a0 [lol]"]
        for level in range(1, levels + 1):
            body.append(f"  a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * fan) + "]")
        where = gen.choice(["meta", "json"])
        text = "\n".join(body)
        if where == "meta":
            return f"version: 1\nmeta:\n{text}\ninteractions: []\n".encode()
        indented = text.replace("\n", "\n    ")
        return self._with_body(gen, "\n    " + indented.lstrip(), block=True).encode()

    @staticmethod
    def _with_body(gen: Gen, body: str, block: bool = False) -> str:
        family = gen.choice(["openai.chat", "generic"])
        method, url = _FAMILY_URLS[family]
        json_line = f"    json:{body}" if block else f"    json: {body}"
        return (f"version: 1\ninteractions:\n- request:\n    method: {method}\n    url: {url}\n{json_line}\n"
                f"  response:\n    status: 200\n    json: {{}}\n")

    def run_cassette_load(self, raw: bytes) -> None:
        cache = self.cache if raw[-1:] in b"02468ace" else None  # half the cases through the parse cache
        loaded = cassette_store.parse(raw, "fuzz.yaml", cache=cache)
        # What serve does next: every interaction into the matcher, every stream item on the wire.
        matcher = Matcher()
        for index, interaction in enumerate(loaded.interactions):
            if interaction.response is None:
                continue
            matcher.add(fixture_from_interaction(interaction, f"fuzz.yaml: interactions[{index}]"))
            response = interaction.response
            for form, items in (("sse", response.events), ("ndjson", response.lines), ("eventstream", response.frames)):
                for item in items or ():
                    {"sse": sse.encode_event, "ndjson": ndjson.encode_line,
                     "eventstream": eventstream.encode_frame}[form](item)

    def run_validate(self, raw: bytes) -> None:
        path = self.scratch / "validate" / "fuzz.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(raw)
        args = argparse.Namespace(paths=[str(path)], lenient_fixtures=False, verbose=False)
        cassette_command.run_validate(args, out=io.StringIO(), err=io.StringIO())

    # -- fixture files -------------------------------------------------------------------------

    def fixture_bytes(self, gen: Gen) -> bytes:
        roll = gen.rng.random()
        if roll < 0.1:
            return ('{"fixtures": [{"match": {"userMessage": "x"}, "response": {"json": ' + gen.deep() + "}}]}").encode()
        if roll < 0.15:
            return gen.raw(300)
        seed = gen.choice(self.seeds.fixtures)
        if roll < 0.45:
            return gen.mutate(json.dumps(seed).encode())
        mutated = mutate_value(gen, seed)
        try:
            return json.dumps(mutated, ensure_ascii=gen.chance(0.5)).encode("utf-8", "surrogatepass")
        except (ValueError, RecursionError):
            return b"{}"

    def run_fixture_load(self, raw: bytes) -> None:
        path = self.scratch / "fixtures.json"
        path.write_bytes(raw)
        matcher = Matcher()
        for fixture in load_fixture_file(path):
            matcher.add(fixture)

    # -- providers -----------------------------------------------------------------------------

    def canonical_request(self, gen: Gen) -> tuple[Any, Request]:
        provider = gen.choice((*CATALOG, GENERIC))
        method, url = _FAMILY_URLS[provider.family]
        seeds = self.seeds.bodies.get(provider.family) or [gen.value()]
        roll = gen.rng.random()
        body: Payload | None
        if roll < 0.6:
            body = Payload("json", mutate_value(gen, gen.choice(seeds)))
        elif roll < 0.75:
            body = Payload("json", {gen.word(): gen.value() for _ in range(gen.rng.randint(0, 6))})
        elif roll < 0.85:
            raw = gen.json_text()
            try:
                body = Payload.from_bytes(raw, "application/json")
            except RecursionError:  # older trees: the payload target counts this one
                body = Payload("text", raw.decode("utf-8", "replace"))
        elif roll < 0.95:
            body = Payload(gen.choice(["text", "base64"]), gen.choice(["AAAA", gen.text(), "{}"]))
        else:
            body = None
        headers = {"content-type": "application/json"}
        if gen.chance(0.1):
            headers["upgrade"] = "websocket"
        return provider, Request(method, url, headers, body)

    @staticmethod
    def run_canonical(case: tuple[Any, Request]) -> None:
        provider, request = case
        provider.canonical(request)

    # -- Payload.from_bytes --------------------------------------------------------------------

    def payload_input(self, gen: Gen) -> tuple[bytes, str | None, bool]:
        data = gen.choice([gen.json_text(), gen.raw(100), gen.mutate(gen.json_text()), b"", gen.deep().encode()])
        content_type = gen.choice([None, "application/json", "text/plain", "application/octet-stream",
                                   "application/vnd.api+json; charset=utf-8"])
        return data, content_type, gen.chance(0.5)

    @staticmethod
    def run_payload(case: tuple[bytes, str | None, bool]) -> None:
        data, content_type, exact = case
        payload = Payload.from_bytes(data, content_type, exact=exact)
        if payload.kind != "json" or exact:
            if payload.to_bytes() != data:
                raise RoundTrip(f"{payload.kind} payload does not give back its bytes")

    # -- the recorder --------------------------------------------------------------------------

    def recording_script(self, gen: Gen) -> dict[str, Any]:
        family = gen.choice(list(_FAMILY_URLS))
        method, url = _FAMILY_URLS[family]
        body = gen.choice([gen.json_text(), gen.deep().encode(), DEEP_BODY, b"", gen.raw(50)])
        request_encoding = None
        if gen.chance(0.1):
            request_encoding, coder = CODERS[gen.choice(list(CODERS))]
            body = coder(body)
        form = gen.choice(["sse", "ndjson", "eventstream", "json", "plain"])
        stream = {"sse": self.sse_stream, "ndjson": self.ndjson_stream,
                  "eventstream": lambda g: self.es_stream(g)[1]}.get(form)
        chunks = stream(gen) if stream else gen.cuts(gen.json_text())
        response_encoding = None
        if gen.chance(0.15):
            if gen.chance(0.05):
                response_encoding, bomb = gen.choice(self.bombs)
                chunks = gen.cuts(bomb)
            else:
                response_encoding, coder = CODERS[gen.choice(list(CODERS))]
                chunks = gen.cuts(coder(b"".join(chunks)))
                if gen.chance(0.3):
                    chunks = gen.cuts(gen.mutate(b"".join(chunks)))
        content_type = {"sse": "text/event-stream", "ndjson": "application/x-ndjson",
                        "eventstream": "application/vnd.amazon.eventstream", "json": "application/json",
                        "plain": "text/plain"}[form]
        return {"method": method, "url": url, "body": body, "request_encoding": request_encoding,
                "content_type": content_type, "response_encoding": response_encoding, "chunks": chunks,
                "streamed": gen.choice([None, True, False]), "end": gen.choice(["finish", "finish", "fail"])}

    def run_recorder(self, script: dict[str, Any]) -> None:
        headers = [("content-type", "application/json")]
        if script["request_encoding"]:
            headers.append(("content-encoding", script["request_encoding"]))
        recording = self.recorder.start(script["method"], script["url"], headers, script["body"])
        response_headers = [("content-type", script["content_type"])]
        if script["response_encoding"]:
            response_headers.append(("content-encoding", script["response_encoding"]))
        teed = recording.response_started(200, response_headers, streamed=script["streamed"])
        if teed:
            for chunk in script["chunks"]:
                if recording.tee(chunk) is not chunk:
                    raise RoundTrip("the tee changed a chunk on its way to the client")
            recording.feed(b"")
            interaction = recording.finish() if script["end"] == "finish" else recording.fail("client disconnected")
        else:
            raw = b"".join(script["chunks"])
            interaction = recording.finish(raw) if script["end"] == "finish" else recording.fail("reset")
        # What the recorder keeps must load again (as the writer would write it).
        text = yamlio.dumps({"version": 1, "interactions": [interaction.to_dict()]})
        try:
            cassette_store.parse(text, "recorded.yaml", cache=None)
        except CassetteError as exc:
            raise RoundTrip(f"the recorded interaction does not load again: {exc}"[:300]) from None


# -- the loop ------------------------------------------------------------------------------------------


@dataclass
class Tally:
    cases: int = 0
    ok: int = 0
    documented: int = 0
    undocumented: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    slowest: float = 0.0
    seconds: float = 0.0


def _at_depth(frames: int, run: Callable[[Any], Any], case: Any) -> Any:
    """``run(case)`` with ``frames`` more frames on the stack."""
    if frames <= 0:
        return run(case)
    return _at_depth(frames - 1, run, case)


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    def expired(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"over {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _describe(case: Any) -> str:
    text = repr(case)
    return text if len(text) <= 300 else text[:300] + f"... ({len(text)} chars)"


def fuzz(target: Target, count: int, seed: int, stack: int, timeout: float, show: int) -> Tally:
    tally = Tally()
    gen = Gen(random.Random(f"{seed}:{target.name}"))
    started = time.perf_counter()
    for _ in range(count):
        case = target.make(gen)
        began = time.perf_counter()
        kind: str | None = None
        try:
            with _deadline(timeout):
                _at_depth(stack, target.run, case)
        except CaseTimeout:
            kind, trace = "Timeout", traceback.format_exc(limit=-3)
        except target.documented:
            tally.documented += 1
        except RoundTrip:
            kind, trace = "RoundTrip", traceback.format_exc(limit=-3)
        except Exception as exc:  # what the target's contract does not allow
            kind, trace = type(exc).__name__, traceback.format_exc(limit=-3)
        else:
            tally.ok += 1
        took = time.perf_counter() - began
        tally.slowest = max(tally.slowest, took)
        tally.cases += 1
        if kind is not None:
            tally.undocumented[kind] += 1
            shown = tally.examples.setdefault(kind, [])
            if len(shown) < show:
                shown.append(f"{_describe(case)}\n      {trace.strip()[-1500:]}")
    tally.seconds = time.perf_counter() - started
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every target's case count")
    parser.add_argument("--target", action="append", help="run only these targets (repeatable)")
    parser.add_argument("--stack", type=int, default=100, help="frames already on the stack for each case")
    parser.add_argument("--case-timeout", type=float, default=10.0, help="seconds before a case counts as Timeout")
    parser.add_argument("--show", type=int, default=0, help="print this many examples of each undocumented type")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # the codecs' warnings about bad input are the point here
    warnings.simplefilter("ignore")  # e.g. a fuzzed regex in a match key warning about nested sets

    with tempfile.TemporaryDirectory(prefix="llmock-fuzz-") as scratch:
        os.environ["LLMOCK_PROXY_CACHE_DIR"] = str(Path(scratch) / "env-cache")
        targets = Targets(Seeds.load(), Path(scratch)).all()
        chosen = [t for t in targets if not args.target or t.name in args.target]
        unknown = set(args.target or ()) - {t.name for t in targets}
        if unknown:
            parser.error(f"unknown target(s) {sorted(unknown)}; known: {[t.name for t in targets]}")
        print(f"python {sys.version.split()[0]}, seed {args.seed}, {args.stack} frames on the stack, "
              f"case timeout {args.case_timeout:g} s")
        header = f"{'target':<20}{'cases':>8}{'ok':>8}{'documented':>12}{'undocumented':>14}{'slowest':>10}{'time':>8}  undocumented by type"
        print(header)
        print("-" * len(header))
        totals = Tally()
        started = time.perf_counter()
        for target in chosen:
            count = max(1, round(target.cases * args.scale))
            tally = fuzz(target, count, args.seed, args.stack, args.case_timeout, args.show)
            bad = sum(tally.undocumented.values())
            kinds = ", ".join(f"{name} {n}" for name, n in tally.undocumented.most_common()) or "-"
            print(f"{target.name:<20}{tally.cases:>8}{tally.ok:>8}{tally.documented:>12}{bad:>14}"
                  f"{tally.slowest * 1000:>8.0f}ms{tally.seconds:>7.0f}s  {kinds}", flush=True)
            totals.cases += tally.cases
            totals.ok += tally.ok
            totals.documented += tally.documented
            totals.undocumented.update(tally.undocumented)
            for kind, shown in tally.examples.items():
                for example in shown:
                    print(f"    [{target.name}] {kind}: {example}")
        bad = sum(totals.undocumented.values())
        print("-" * len(header))
        print(f"{'total':<20}{totals.cases:>8}{totals.ok:>8}{totals.documented:>12}{bad:>14}"
              f"{'':>10}{time.perf_counter() - started:>7.0f}s")
        print("contracts: " + "; ".join(f"{t.name}: {t.contract}" for t in chosen))


if __name__ == "__main__":
    main()
