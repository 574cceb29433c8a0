"""A miss as a user meets it through the OpenAI SDK: the error the SDK
raises names the recordings of the same API and model first, each with what
differed in one line (issue 14, item 1).

Only our own text is asserted (the message in the error envelope and the
report under ``llmock``), never the SDK's wording around it.
"""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from llmock_proxy.replay.session import ReplaySession
from tests.harness import clients as sdk
from tests.support.replay import EngineThread

EXAMPLES = Path(__file__).resolve().parent.parent / "cassettes" / "examples"


def test_the_sdk_error_of_a_changed_question_names_the_recordings_of_its_model_and_what_differed() -> None:
    session = ReplaySession.load([EXAMPLES], [EXAMPLES])
    openai_recordings = {f.source for f in session.fixtures() if f.recorded and f.family == "openai.chat"}
    hello = next(f.source for f in session.fixtures() if f.recorded and f.match.get("userMessage") == "Hello")
    with EngineThread(session) as engine:
        client = sdk.openai_client(base_url=f"{engine.url}/v1", max_retries=2)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "What is the capital of France?"}]
            )
    assert caught.value.status_code == 421
    body = caught.value.body
    assert isinstance(body, dict)
    message = body["message"]
    assert f"closest: {hello} differs in: last user message — userMessage: expected 'Hello'" in message
    assert "Say hello" not in message and "simulate a rate limit" not in message
    assert "this is use" not in message
    report = caught.value.response.json()["llmock"]["nearMisses"]  # next to the envelope the SDK reads
    assert {n["source"] for n in report} == openai_recordings
    assert report[0]["summary"] == "differs in: last user message"
    assert session.misses == 1  # the SDK did not retry
