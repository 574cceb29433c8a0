"""What the drift tests share: a baseline recorded from unmutated fakes, and a
Realtime WebSocket fake.

The baseline is recorded the way a team records: the real SDKs (and raw HTTP
for Ollama, Cohere and Bedrock) talk to the real provider hostnames through
an in-process mitmproxy running the record addon, which the test router
sends to the local fakes. It is then split into one cassette per API family
and wire form, so a test can re-send just the recordings it mutates.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette.model import Cassette, Interaction
from llmock_proxy.mitm.record import Record
from tests.fakes import (
    AnthropicFake,
    BedrockFake,
    CohereFake,
    FakeProvider,
    FakeServer,
    GeminiFake,
    OllamaFake,
    OpenAIFake,
    RecordedRequest,
    Script,
    StreamEvent,
    TestPKI,
)
from tests.fakes.base import bearer_token, random_id
from tests.harness import InProcessProxy, UpstreamRouter, routes_for
from tests.harness import clients as sdk

# What the canary finds in its environment. Different from the keys the
# baseline was recorded with, so a test can tell which one went where.
CANARY_ENV = {
    "OPENAI_API_KEY": "sk-test-canary-openai-0001",
    "ANTHROPIC_API_KEY": "sk-test-canary-anthropic-0002",
    "GEMINI_API_KEY": "sk-test-canary-gemini-0003",
    "COHERE_API_KEY": "sk-test-canary-cohere-0004",
    # Not key-shaped on purpose: a hosted Ollama's token can be anything.
    "OLLAMA_API_KEY": "llmock-canary-ollama-token-0008",
    "AWS_ACCESS_KEY_ID": sdk.TEST_AWS_ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": sdk.TEST_AWS_SECRET,
}
CREDENTIAL_VARIABLES = (
    "OPENAI_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "COHERE_API_KEY",
    "OLLAMA_API_KEY",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)

# API family prefix -> the fake that plays it.
FAKE_FOR_FAMILY = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "ollama": "ollama",
    "cohere": "cohere",
    "bedrock": "bedrock",
}


def set_canary_env(monkeypatch: Any, **overrides: str | None) -> None:
    """Exactly the canary's credentials in the environment (None removes one)."""
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**CANARY_ENV, **overrides}.items():
        if value is not None:
            monkeypatch.setenv(name, value)


@dataclass
class DriftWorld:
    """Started fakes and the baseline cassettes recorded from them."""

    fakes: dict[str, FakeServer]
    cassette_dir: Path  # one <family>.<form>.yaml per shape
    cassettes: dict[str, Path] = field(default_factory=dict)  # "family.form" -> file

    def fake(self, family: str) -> FakeServer:
        return self.fakes[FAKE_FOR_FAMILY[family.split(".", 1)[0]]]

    def upstream_args(self) -> list[str]:
        args: list[str] = []
        for prefix, name in FAKE_FOR_FAMILY.items():
            args += ["--upstream", f"{prefix}={self.fakes[name].url}"]
        return args

    def reset(self) -> None:
        for server in self.fakes.values():
            server.script = Script()
            server.provider._queued.clear()
            server.requests.clear()

    def stop(self) -> None:
        for server in self.fakes.values():
            server.stop()


def start_fakes(pki: TestPKI) -> dict[str, FakeServer]:
    providers: list[FakeProvider] = [
        OpenAIFake(),
        AnthropicFake(),
        GeminiFake(),
        OllamaFake(),
        CohereFake(),
        BedrockFake(credentials=sdk.TEST_AWS_CREDENTIALS),
    ]
    return {p.name: FakeServer(p, pki=pki).start() for p in providers}


def _record_traffic(proxy: InProcessProxy) -> None:
    """One exchange of each kind the drift tests re-send, through the proxy."""
    question = [{"role": "user", "content": "Say hello"}]
    with sdk.openai_client(proxy) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=question)
        for _ in client.chat.completions.create(
            model="gpt-4o-mini", messages=question, stream=True, stream_options={"include_usage": True}
        ):
            pass
        for _ in client.responses.create(model="gpt-4o-mini", input="Say hello", stream=True):
            pass
    with sdk.anthropic_client(proxy) as client:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=question)
        for _ in client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=question, stream=True):
            pass
    genai = sdk.genai_client(proxy)
    genai.models.generate_content(model="gemini-2.5-flash", contents="Say hello")
    for _ in genai.models.generate_content_stream(model="gemini-2.5-flash", contents="Say hello"):
        pass
    with sdk.raw_client(proxy) as http:
        http.post(f"{sdk.OLLAMA_URL}/api/chat", json={"model": "llama3.2", "messages": question}).raise_for_status()
        http.post(
            f"{sdk.COHERE_URL}/v2/chat",
            json={"model": "command-a-03-2025", "messages": question, "stream": True},
            headers={"authorization": f"Bearer {sdk.TEST_COHERE_KEY}"},
        ).raise_for_status()
        url = f"{sdk.bedrock_url()}/model/amazon.nova-lite-v1/converse-stream"
        body = json.dumps({"messages": [{"role": "user", "content": [{"text": "Say hello"}]}]}).encode()
        headers = sdk.sigv4_headers("POST", url, body, headers={"content-type": "application/json"})
        http.post(url, content=body, headers=headers).raise_for_status()


def record_baseline(pki: TestPKI, workdir: Path) -> DriftWorld:
    """Start the fakes, record the baseline through the record addon, split it per shape."""
    fakes = start_fakes(pki)
    try:
        record = Record()
        raw_dir = workdir / "recorded"
        with InProcessProxy(
            confdir=workdir / "mitmproxy",
            addons=[record],
            options={"llmock_cassette_dir": str(raw_dir), "llmock_cassette": "baseline.yaml"},
            router=UpstreamRouter(routes_for(*fakes.values())),
            upstream_trusted_ca=pki.ca_cert_path,
        ) as proxy:
            _record_traffic(proxy)
            assert record.flush(10), "the record addon did not write the baseline"
        baseline = cassette_store.load(raw_dir / "baseline.yaml")
    except BaseException:
        for server in fakes.values():
            server.stop()
        raise
    world = DriftWorld(fakes=fakes, cassette_dir=workdir / "cassettes")
    by_shape: dict[str, list[Interaction]] = {}
    for interaction in baseline.interactions:
        assert interaction.response is not None and interaction.response.status == 200, interaction.to_dict()
        key = f"{interaction.match['family']}.{interaction.response.wire_form}"
        by_shape.setdefault(key, []).append(interaction)
    for key, interactions in sorted(by_shape.items()):
        path = world.cassette_dir / f"{key}.yaml"
        cassette_store.save(Cassette(interactions), path)
        world.cassettes[key] = path
    for server in fakes.values():
        server.requests.clear()
    return world


# -- a Realtime WebSocket fake ----------------------------------------------------------


class RealtimeFake(FakeProvider):
    """OpenAI Realtime over WebSocket (``GET /v1/realtime?model=...``), text only.

    Wire facts followed (platform.openai.com, Realtime API reference, GA event
    names): the server opens with ``session.created``; ``session.update`` is
    answered by ``session.updated``, ``conversation.item.create`` by
    ``conversation.item.created``, ``response.create`` by ``response.created``,
    ``response.output_item.added``, ``response.output_text.delta`` per piece of
    text, ``response.output_text.done``, ``response.output_item.done`` and
    ``response.done``; every server event has an ``event_id``. The script's
    drift knobs act on the server events of a response.
    """

    name = "openai-realtime"
    hosts = ("api.openai.com",)

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("GET", "/v1/realtime", self.realtime)]

    def is_authorized(self, request: RecordedRequest) -> bool:
        return bearer_token(request) is not None

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "invalid_request_error", "code": None}}

    @staticmethod
    def _event(kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": random_id("event_", 20), **fields}

    def response_events(self, script: Script, model: str) -> list[StreamEvent]:
        response_id, item_id = random_id("resp_", 20), random_id("item_", 20)
        response = {"id": response_id, "object": "realtime.response", "status": "in_progress", "output": []}
        item = {"id": item_id, "type": "message", "role": "assistant", "status": "in_progress", "content": []}
        events = [
            self._event("response.created", response=response),
            self._event("response.output_item.added", response_id=response_id, output_index=0, item=item),
        ]
        for piece in script.text_chunks():
            events.append(self._event("response.output_text.delta", response_id=response_id, item_id=item_id,
                                      output_index=0, content_index=0, delta=piece))
        events.append(self._event("response.output_text.done", response_id=response_id, item_id=item_id,
                                  output_index=0, content_index=0, text=script.text))
        done_item = {**item, "status": "completed", "content": [{"type": "output_text", "text": script.text}]}
        events.append(self._event("response.output_item.done", response_id=response_id, output_index=0,
                                  item=done_item))
        usage = {"total_tokens": len(script.text_chunks()) + 5, "input_tokens": 5,
                 "output_tokens": len(script.text_chunks())}
        events.append(self._event("response.done", response={**response, "status": "completed",
                                                             "output": [done_item], "usage": usage}))
        return [StreamEvent(None, e) for e in events]

    async def realtime(self, request: web.Request, script: Script, recorded: RecordedRequest) -> web.StreamResponse:
        model = recorded.query.get("model", "gpt-realtime")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session = {"id": random_id("sess_", 20), "object": "realtime.session", "model": model,
                   "output_modalities": ["text"]}
        await ws.send_json(self._event("session.created", session=session))
        async for message in ws:
            if message.type != web.WSMsgType.TEXT:
                continue
            event = json.loads(message.data)
            kind = event.get("type")
            if kind == "session.update":
                await ws.send_json(self._event("session.updated", session={**session, **event.get("session", {})}))
            elif kind == "conversation.item.create":
                item = {**event.get("item", {}), "id": random_id("item_", 20), "status": "completed"}
                await ws.send_json(self._event("conversation.item.created", item=item))
            elif kind == "response.create":
                for shaped in script.shape_events(self.response_events(script, model)):
                    await ws.send_json(shaped.data)
        return ws


REALTIME_CLIENT_TURNS = [
    {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}},
    {"type": "conversation.item.create",
     "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}},
    {"type": "response.create"},
]


async def realtime_session(url: str, *, proxy: str | None = None, ssl: Any = None) -> list[str]:
    """A text conversation over the Realtime WebSocket, as a client has it:
    wait for ``session.created``, send each of :data:`REALTIME_CLIENT_TURNS`
    and read until its reply. Returns the server event types seen."""
    import aiohttp

    seen: list[str] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(
        url, proxy=proxy, ssl=ssl, headers={"authorization": f"Bearer {sdk.TEST_OPENAI_KEY}"}
    ) as ws:

        async def receive_until(kind: str) -> None:
            while True:
                seen.append((await ws.receive_json(timeout=10))["type"])
                if seen[-1] == kind:
                    return

        await receive_until("session.created")
        for turn, reply in zip(REALTIME_CLIENT_TURNS, ("session.updated", "conversation.item.created", "response.done")):
            await ws.send_json(turn)
            await receive_until(reply)
    return seen


def record_realtime_baseline(fake: FakeServer, pki: TestPKI, workdir: Path) -> Path:
    """A Realtime session with the unmutated fake, recorded by the record addon
    (regular mode: the client opens wss://api.openai.com through the proxy)."""
    import ssl

    record = Record()
    with InProcessProxy(
        confdir=workdir / "mitmproxy",
        addons=[record],
        options={"llmock_cassette_dir": str(workdir / "cassettes"), "llmock_cassette": "realtime.yaml"},
        router=UpstreamRouter(routes_for(fake)),
        upstream_trusted_ca=pki.ca_cert_path,
    ) as proxy:
        context = ssl.create_default_context(cafile=str(proxy.ca_cert_path))
        url = "wss://api.openai.com/v1/realtime?model=gpt-realtime"
        # Its own thread and loop: the caller may be inside pytest's event loop.
        result: list[list[str]] = []
        worker = threading.Thread(
            target=lambda: result.append(asyncio.run(realtime_session(url, proxy=proxy.url, ssl=context)))
        )
        worker.start()
        worker.join(30)
        assert result and result[0][-1] == "response.done", "could not hold the Realtime baseline session"
        assert record.flush(10), "the record addon did not write the Realtime session"
    path = workdir / "cassettes" / "realtime.yaml"
    (interaction,) = cassette_store.load(path).interactions
    assert interaction.match["family"] == "openai.realtime" and interaction.response.websocket is not None
    return path
