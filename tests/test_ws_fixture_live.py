"""Gemini Live answered from llmock fixtures, as google-genai's Live client
(``client.aio.live.connect()``) relies on it.

google-genai always dials ``wss://``, so the client reaches the replay
addon (the same WebSocket session code as ``llmock-proxy serve``) through
an in-process mitmproxy with its CA. As the service does:

* a model turn ends with ``generationComplete``, then a message of its own
  with ``turnComplete`` and ``usageMetadata``: ``session.receive()`` ends
  there and nowhere earlier;
* a turn that calls a tool pauses on the ``toolCall`` without
  ``turnComplete``, and goes on after the ``toolResponse``, so the Live API
  docs' loop (answer the call inside ``receive()``) reads the whole turn;
* errors close the connection with a close code and the reason (1008 for a
  refused model or key, 1011 for quota and failures, 1007 for a bad
  request) and send no error message; the SDK raises ``APIError`` with the code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.genai import errors as genai_errors
from google.genai import types

from llmock_proxy.mitm.replay import Replay
from tests.harness import InProcessProxy, UpstreamRouter
from tests.support.websocket import WEATHER_DECLARATION, Target

pytestmark = pytest.mark.timeout(60)

MODEL = "gemini-live-2.5-flash-preview"
FIXTURES = {"fixtures": [
    {"match": {"toolCallId": "call_live_1"}, "response": {"content": "Sunny in Paris, 24 degrees."}},
    {"match": {"userMessage": "weather"},
     "response": {"toolCalls": [{"id": "call_live_1", "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}]}},
    {"match": {"userMessage": "hello"}, "response": {"content": "Hi from a Live fixture!"}, "chunkSize": 5},
    {"match": {"userMessage": "quota"}, "response": {"error": {"message": "You exceeded your current quota."},
                                                     "status": 429}},
    {"match": {"userMessage": "no model"}, "response": {"error": {"message": "models/x is not found."},
                                                        "status": 404}},
    {"match": {"userMessage": "bad request"}, "response": {"error": {"message": "Invalid argument."},
                                                           "status": 400}},
]}


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    fixtures = tmp_path / "live-fixtures.json"
    fixtures.write_text(json.dumps(FIXTURES))
    proxy = InProcessProxy(confdir=tmp_path / "mitm", addons=[Replay()], router=UpstreamRouter(),
                           options={"llmock_cassette_dir": "", "llmock_fixtures": [str(fixtures)],
                                    "llmock_timing": "instant"})
    with proxy:
        yield Target.through(proxy)


def dump(message: types.LiveServerMessage) -> dict[str, Any]:
    return message.model_dump(mode="json", exclude_none=True)


async def one_turn(target: Target, text: str, *, tools: bool = False) -> list[dict[str, Any]]:
    """Ask once and read with one ``receive()`` loop, answering a tool call inside it."""
    seen = []
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.TEXT],
        tools=[types.Tool(function_declarations=[WEATHER_DECLARATION])] if tools else None,
    )
    async with target.genai().aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=text)]),
                                          turn_complete=True)
        async for message in session.receive():  # ends after turnComplete
            seen.append(dump(message))
            if message.tool_call is not None:
                call = message.tool_call.function_calls[0]  # type: ignore[index]
                await session.send_tool_response(function_responses=[
                    types.FunctionResponse(id=call.id, name=call.name, response={"sky": "clear"})])
    return seen


def content(message: dict[str, Any]) -> dict[str, Any]:
    return message.get("server_content") or {}


def test_a_model_turn_ends_with_generation_complete_then_turn_complete_with_usage(target: Target) -> None:
    seen = run(one_turn(target, "hello"))
    text = "".join(p["text"] for m in seen for p in content(m).get("model_turn", {}).get("parts", []))
    assert text == "Hi from a Live fixture!"
    *turn, generation_done, turn_done = seen
    assert all("model_turn" in content(m) and "turn_complete" not in content(m) for m in turn)
    assert content(generation_done) == {"generation_complete": True}
    assert content(turn_done) == {"turn_complete": True}
    assert turn_done["usage_metadata"]["total_token_count"] >= 0


def test_a_tool_call_pauses_the_turn_without_turn_complete(target: Target) -> None:
    seen = run(one_turn(target, "what is the weather?", tools=True))
    calls = [m["tool_call"]["function_calls"][0] for m in seen if "tool_call" in m]
    assert [(c["id"], c["name"], c["args"]) for c in calls] == [("call_live_1", "get_weather", {"city": "Paris"})]
    # One receive() loop read the call and the answer after it: turnComplete came once, last.
    assert [i for i, m in enumerate(seen) if content(m).get("turn_complete")] == [len(seen) - 1]
    text = "".join(p["text"] for m in seen for p in content(m).get("model_turn", {}).get("parts", []))
    assert text == "Sunny in Paris, 24 degrees."


@pytest.mark.parametrize(("question", "code", "reason"), [
    ("quota", 1011, "You exceeded your current quota."),
    ("no model", 1008, "models/x is not found."),
    ("bad request", 1007, "Invalid argument."),
])
def test_errors_close_the_session_with_the_services_close_code(target: Target, question: str, code: int,
                                                               reason: str) -> None:
    with pytest.raises(genai_errors.APIError) as caught:
        run(one_turn(target, question))
    assert caught.value.code == code
    assert reason in str(caught.value)


def test_a_turn_no_fixture_answers_closes_with_1008_naming_the_closest(target: Target) -> None:
    with pytest.raises(genai_errors.APIError) as caught:
        run(one_turn(target, "something nobody wrote a fixture for"))
    assert caught.value.code == 1008
    assert "no fixture matches" in str(caught.value)
