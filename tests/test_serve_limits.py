"""``serve`` caps request bodies: a body past ``--max-body-size`` as sent, or
once its Content-Encoding is undone (a decompression bomb), is answered 413
in the provider's error envelope, and the next client is answered as usual;
an honest gzip-encoded request still matches its fixture. Through the
engine's own HTTP/1.1 server (Content-Length bodies), through aiohttp
(chunked bodies) and through the real console script."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import brotli
import openai
import pytest

from llmock_proxy.cassette import yamlio
from llmock_proxy.errors import CassetteError
from llmock_proxy.replay.llmock_format import parse_fixture_entries
from llmock_proxy.replay.session import ReplaySession
from llmock_proxy.wire import content_encoding
from tests.harness.clients import TEST_ANTHROPIC_KEY, TEST_OPENAI_KEY, openai_client
from tests.harness.http import httpx
from tests.support.replay import EngineThread
from tests.test_schemas import valid_cassette
from tests.test_serve import Serve, run

CAP = 1024 * 1024  # the engines below refuse bodies past 1 MiB
FIXTURES = [
    {"match": {"userMessage": "ping"}, "response": {"content": "pong"}},
]
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ping"}]}
MESSAGES = {"model": "claude-3-5-haiku-latest", "max_tokens": 16, "messages": [{"role": "user", "content": "ping"}]}
JSON = {"content-type": "application/json"}


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


CODINGS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "deflate (raw)": _raw_deflate,
    "br": lambda data: brotli.compress(data, quality=1),
    "zstd": content_encoding.zstd.compress,
}


def coding_name(label: str) -> str:
    return label.split(" ", 1)[0]


def json_padded(body: dict[str, Any], size: int) -> bytes:
    """``body`` as JSON followed by blanks up to ``size`` bytes: a request that
    would match, were it not that large once decoded."""
    data = json.dumps(body).encode()
    return data + b" " * (size - len(data))


@pytest.fixture(scope="module")
def engine() -> Iterator[EngineThread]:
    session = ReplaySession(parse_fixture_entries({"fixtures": FIXTURES}, "limits.json"))
    with EngineThread(session, max_body_size=CAP) as running:
        yield running


def ask(client: Any, engine: EngineThread) -> str:
    answer = client.post(f"{engine.url}/v1/chat/completions", json=CHAT)
    assert answer.status_code == 200, answer.text[:300]
    return str(answer.json()["choices"][0]["message"]["content"])


def openai_error(answer: Any) -> dict[str, Any]:
    """The error object of an answer in OpenAI's envelope."""
    assert answer.status_code == 413, (answer.status_code, answer.text[:300])
    error = answer.json()["error"]
    assert error["type"] == "request_too_large" and set(error) >= {"message", "param", "code"}
    assert answer.headers["x-should-retry"] == "false"
    return dict(error)


# -- the engine's own HTTP/1.1 server ------------------------------------------------------------------


@pytest.mark.parametrize("label", list(CODINGS))
def test_a_bomb_is_answered_413_in_the_providers_envelope_and_the_next_request_as_usual(
    engine: EngineThread, label: str
) -> None:
    bomb = CODINGS[label](json_padded(CHAT, 16 * CAP))
    assert len(bomb) < CAP // 10  # well under the cap as sent: only decoding finds it too large
    with httpx.Client(timeout=30) as client:
        answer = client.post(f"{engine.url}/v1/chat/completions", content=bomb,
                             headers={**JSON, "content-encoding": coding_name(label)})
        error = openai_error(answer)
        assert f"from {coding_name(label)} is larger than {CAP} bytes" in error["message"]
        assert ask(client, engine) == "pong"  # the same connection goes on
    with httpx.Client(timeout=30) as other:
        assert ask(other, engine) == "pong"


def test_each_provider_gets_its_own_envelope(engine: EngineThread) -> None:
    bomb = gzip.compress(json_padded(MESSAGES, 4 * CAP))
    headers = {**JSON, "content-encoding": "gzip"}
    with httpx.Client(timeout=30) as client:
        messages = client.post(f"{engine.url}/v1/messages", content=bomb, headers=headers)
        assert messages.status_code == 413
        assert messages.json()["type"] == "error" and messages.json()["error"]["type"] == "request_too_large"
        gemini = client.post(f"{engine.url}/v1beta/models/gemini-2.0-flash:generateContent", content=bomb,
                             headers=headers)
        assert gemini.status_code == 413 and gemini.json()["error"]["code"] == 413
    transport = GzipRequests()
    transport.pad_to = 4 * CAP
    sdk = anthropic.Anthropic(api_key=TEST_ANTHROPIC_KEY, base_url=engine.url, max_retries=2,
                              http_client=anthropic.DefaultHttpxClient(transport=transport))
    with pytest.raises(anthropic.APIStatusError) as info:
        sdk.messages.create(**MESSAGES)
    assert info.value.status_code == 413
    assert info.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]


def test_an_encoding_under_the_cap_and_garbage_for_its_coding_are_read_as_ever(engine: EngineThread) -> None:
    with httpx.Client(timeout=30) as client:
        for label, compress in CODINGS.items():
            answer = client.post(f"{engine.url}/v1/chat/completions", content=compress(json_padded(CHAT, CAP)),
                                 headers={**JSON, "content-encoding": coding_name(label)})
            assert answer.status_code == 200, (label, answer.text[:300])
            assert answer.json()["choices"][0]["message"]["content"] == "pong"
        # Not gzip at all: kept as sent, read as a body that is no JSON (a miss, not a 413 or a 500).
        garbage = client.post(f"{engine.url}/v1/chat/completions", content=b"\x1f\x8b not gzip",
                              headers={**JSON, "content-encoding": "gzip"})
        assert 400 <= garbage.status_code < 500 and garbage.status_code != 413
        assert ask(client, engine) == "pong"


def test_a_body_past_the_cap_as_sent_is_refused_before_it_is_read(engine: EngineThread) -> None:
    with httpx.Client(timeout=30) as client:
        answer = client.post(f"{engine.url}/v1/chat/completions", content=json_padded(CHAT, CAP + 1), headers=JSON)
        assert answer.status_code == 413
        assert f"larger than {CAP} bytes" in answer.json()["error"]["message"]
        assert ask(client, engine) == "pong"
        at_the_cap = client.post(f"{engine.url}/v1/chat/completions", content=json_padded(CHAT, CAP), headers=JSON)
        assert at_the_cap.status_code == 200


# -- the real openai SDK ------------------------------------------------------------------------------------


class GzipRequests(httpx.HTTPTransport):  # type: ignore[misc,name-defined]
    """Sends the SDK's request gzip-encoded, its JSON padded with blanks to
    ``pad_to`` bytes first (0: as the SDK wrote it)."""

    def __init__(self) -> None:
        super().__init__()
        self.pad_to = 0

    def handle_request(self, request: Any) -> Any:
        body = request.read()
        if self.pad_to:
            body += b" " * (self.pad_to - len(body))
        headers = [(k, v) for k, v in request.headers.items() if k.lower() != "content-length"]
        encoded = httpx.Request(request.method, request.url, headers=[*headers, ("content-encoding", "gzip")],
                                content=gzip.compress(body, compresslevel=1))
        return super().handle_request(encoded)


def test_the_openai_sdk_sees_413_for_a_bomb_and_its_gzip_request_matches(engine: EngineThread) -> None:
    transport = GzipRequests()
    client = openai.OpenAI(api_key=TEST_OPENAI_KEY, base_url=engine.url + "/v1", max_retries=2,
                           http_client=openai.DefaultHttpxClient(transport=transport))

    def create() -> str:
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "ping"}])
        return answer.choices[0].message.content or ""

    assert create() == "pong"  # gzip-encoded, decoded, matched
    transport.pad_to = 8 * CAP
    with pytest.raises(openai.APIStatusError) as info:
        create()
    assert info.value.status_code == 413
    assert f"larger than {CAP} bytes" in info.value.message
    transport.pad_to = 0
    assert create() == "pong"


# -- aiohttp: chunked request bodies ------------------------------------------------------------------------


def chunked(data: bytes, piece: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


def test_chunked_bodies_are_capped_as_sent_and_as_decoded(engine: EngineThread) -> None:
    url = f"{engine.url}/v1/chat/completions"
    with httpx.Client(timeout=30) as client:
        bomb = gzip.compress(json_padded(CHAT, 16 * CAP))
        answer = client.post(url, content=chunked(bomb), headers={**JSON, "content-encoding": "gzip"})
        assert f"from gzip is larger than {CAP} bytes" in openai_error(answer)["message"]
        assert ask(client, engine) == "pong"
        large = client.post(url, content=chunked(json_padded(CHAT, 2 * CAP)), headers=JSON)
        assert f"larger than {CAP} bytes" in openai_error(large)["message"]
        assert ask(client, engine) == "pong"
    with httpx.Client(timeout=30) as client:  # under the cap: decoded once, by us, and matched
        honest = client.post(url, content=chunked(gzip.compress(json_padded(CHAT, CAP // 2))),
                             headers={**JSON, "content-encoding": "gzip"})
        assert honest.status_code == 200 and honest.json()["choices"][0]["message"]["content"] == "pong"


# -- the console script -------------------------------------------------------------------------------------


def test_serve_takes_max_body_size_and_answers_after_a_bomb(tmp_path: Path) -> None:
    fixtures = tmp_path / "ping.json"
    fixtures.write_text(json.dumps({"fixtures": FIXTURES}))
    server = Serve("--fixtures", str(fixtures), "--max-body-size", "512K", "--quiet")
    try:
        client = openai_client(base_url=server.url + "/v1")
        with httpx.Client(timeout=30) as raw:
            bomb = raw.post(f"{server.url}/v1/chat/completions", content=gzip.compress(json_padded(CHAT, 1024 * 1024)),
                            headers={**JSON, "content-encoding": "gzip"})
            assert "larger than 524288 bytes" in openai_error(bomb)["message"]
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "ping"}])
        assert answer.choices[0].message.content == "pong"
    finally:
        assert server.stop() == 0
    assert "larger than 524288 bytes" in "".join(server.lines)  # the refusal is logged


def test_serve_refuses_a_max_body_size_that_is_no_size() -> None:
    for bad in ("0", "ten", "1.5M"):
        result = run("--max-body-size", bad)
        assert result.returncode == 2 and "--max-body-size" in result.stderr


# -- recorded answers that cannot be sent ------------------------------------------------------------------


def test_serve_refuses_a_cassette_whose_answer_it_could_not_send_naming_the_item(tmp_path: Path) -> None:
    data = valid_cassette()
    data["interactions"][2]["response"]["frames"][0]["headers"]["n" * 256] = "v"  # one byte past 255
    data["interactions"][0]["response"]["events"][0]["id"] = "a\0b"
    path = tmp_path / "edited.yaml"
    path.write_text(yamlio.dumps(data))
    result = run("--cassettes", str(path), "--port", "0")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{path}: interactions[0].response.events[0].id: SSE event field 'id' cannot hold NUL" in result.stderr
    assert f"{path}: interactions[2].response.frames[0].headers['nnn" in result.stderr
    assert "must be 1 to 255 bytes, not 256" in result.stderr
    with pytest.raises(CassetteError) as info:  # the replay addon and the pytest plugin load through the same path
        ReplaySession.load([path])
    assert len(info.value.problems) == 2
    # The cassette as recorded loads and answers.
    path.write_text(yamlio.dumps(valid_cassette()))
    assert len(ReplaySession.load([path])) == 6
