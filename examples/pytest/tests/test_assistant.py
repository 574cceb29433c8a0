"""The assistant's tests, answered from per-test cassettes by the llmock pytest plugin.

Each test's traffic is replayed from ``cassettes/tests/test_assistant/<test name>.yaml``
(recorded with ``--llmock-mode=rewrite``; see README.md). No API key and no
network are needed to run them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app import assistant

# Every test in this module gets its own replay session and cassette.
pytestmark = pytest.mark.llmock


def test_openai_tool_loop(llmock) -> None:
    answer = assistant.weather_answer("What's the weather like in Paris right now?")

    assert answer.tool_calls == [("get_weather", {"city": "Paris"})]
    assert answer.turns == 2
    assert "Paris" in answer.text
    # What the app asked: the question, then the same conversation with the tool's result.
    assert [entry.family for entry in llmock.requests] == ["openai.chat", "openai.chat"]
    llmock.assert_all_used()


def test_openai_streamed_answer(llmock) -> None:
    pieces = list(assistant.stream_answer("Describe a sunny afternoon in Tokyo in one sentence."))

    assert len(pieces) > 1, "the answer should arrive in several chunks"
    assert "Tokyo" in "".join(pieces)
    llmock.assert_all_used()


def test_anthropic_tool_use_round_trip(llmock) -> None:
    answer = assistant.claude_weather_answer("Should I take an umbrella in Oslo today?")

    assert answer.tool_calls == [("get_weather", {"city": "Oslo"})]
    assert answer.turns == 2
    assert "Oslo" in answer.text
    assert [entry.family for entry in llmock.requests] == ["anthropic.messages", "anthropic.messages"]
    llmock.assert_all_used()


def test_anthropic_streamed_answer(llmock) -> None:
    pieces = list(assistant.claude_stream_answer("Describe a snowy evening in Oslo in one sentence."))

    assert len(pieces) > 1
    assert "Oslo" in "".join(pieces)
    llmock.assert_all_used()


def test_command_line_in_a_subprocess(llmock, request: pytest.FixtureRequest) -> None:
    """A child process reads the OPENAI_BASE_URL the plugin set for this test,
    so this test's cassette answers it too."""
    project = Path(request.config.rootpath)
    done = subprocess.run(
        [sys.executable, "-m", "app", "What's the weather in Tokyo?"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert "[tool] get_weather {'city': 'Tokyo'}" in done.stdout
    assert "Tokyo" in done.stdout
    assert len(llmock.requests) == 2  # the child's two requests, in this test's journal
    llmock.assert_all_used()
