"""Re-record the example's cassettes against llmock-proxy's fake providers.

    python examples/pytest/record_against_fakes.py

Starts the fake OpenAI and Anthropic servers of llmock-proxy's own test suite
(``tests/fakes``: written from the providers' wire formats, on 127.0.0.1),
then runs each of the example's tests with ``--llmock-mode=rewrite`` and
``OPENAI_BASE_URL``/``ANTHROPIC_BASE_URL`` pointing at them: the plugin
forwards each test's requests to the base URL the environment already had and
writes what came back into the test's cassette, through the recorder's
redaction. Each test runs on its own with the answers it needs queued on the
fakes (a tool call, then the text after the tool's result), so the recordings
are what those SDK calls really get from a server speaking the provider's
wire format. The API keys are ``sk-test-...``; none reaches a cassette (the
last step checks the cassettes with ``llmock-proxy cassette validate``, which
refuses key-shaped values).

Needs a checkout of llmock-proxy (for ``tests/fakes``) and an environment with
llmock-proxy, openai, anthropic, aiohttp and pytest installed. To record
against the real APIs instead, see README.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent
REPOSITORY = EXAMPLE.parents[1]
sys.path.insert(0, str(REPOSITORY))

from tests.fakes import AnthropicFake, FakeServer, OpenAIFake, Script, ToolCall  # noqa: E402

TEST_MODULE = "tests/test_assistant.py"


@dataclass(frozen=True)
class Scenario:
    """One example test and what the fake models answer it, in order."""

    test: str
    openai: tuple[Script, ...] = ()
    anthropic: tuple[Script, ...] = ()


def call(name: str, **arguments: str) -> Script:
    return Script(text="", tool_calls=[ToolCall(name, dict(arguments))])


SCENARIOS = (
    Scenario(
        "test_openai_tool_loop",
        openai=(call("get_weather", city="Paris"), Script(text="It is 18 °C and sunny in Paris right now.")),
    ),
    Scenario(
        "test_openai_streamed_answer",
        openai=(Script(text="Tokyo basks in warm afternoon sun while a light breeze moves along the river."),),
    ),
    Scenario(
        "test_anthropic_tool_use_round_trip",
        anthropic=(
            call("get_weather", city="Oslo"),
            Script(text="There is light snow in Oslo at 4 °C, so take an umbrella or a good hood."),
        ),
    ),
    Scenario(
        "test_anthropic_streamed_answer",
        anthropic=(Script(text="Snow drifts softly over Oslo's harbour as the street lamps come on."),),
    ),
    Scenario(
        "test_command_line_in_a_subprocess",
        openai=(call("get_weather", city="Tokyo"), Script(text="Tokyo is cloudy and 22 °C at the moment.")),
    ),
)

# Variables that would send the SDKs anywhere but the fakes.
_CLEARED = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY", "all_proxy")


def record(scenario: Scenario, openai: FakeServer, anthropic: FakeServer) -> None:
    openai.queue(*scenario.openai)
    anthropic.queue(*scenario.anthropic)
    seen = (len(openai.requests), len(anthropic.requests))
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(
        OPENAI_BASE_URL=f"{openai.url}/v1",
        ANTHROPIC_BASE_URL=anthropic.url,
        OPENAI_API_KEY="sk-test-example-openai",
        ANTHROPIC_API_KEY="sk-test-example-anthropic",
    )
    command = [
        sys.executable,
        "-m",
        "pytest",
        f"{TEST_MODULE}::{scenario.test}",
        "--llmock-mode=rewrite",
        "-p",
        "no:cacheprovider",
        "-q",
    ]
    print(f"recording {scenario.test}", flush=True)
    done = subprocess.run(command, cwd=EXAMPLE, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{scenario.test}: pytest exited {done.returncode} while recording")
    asked = (len(openai.requests) - seen[0], len(anthropic.requests) - seen[1])
    expected = (len(scenario.openai), len(scenario.anthropic))
    if asked != expected:
        raise SystemExit(f"{scenario.test}: the fakes got {asked} (openai, anthropic) requests, expected {expected}")


def main() -> int:
    with FakeServer(OpenAIFake()) as openai, FakeServer(AnthropicFake()) as anthropic:
        for scenario in SCENARIOS:
            record(scenario, openai, anthropic)
    check = subprocess.run(
        [sys.executable, "-m", "llmock_proxy.cli", "cassette", "validate", "-v", "cassettes"], cwd=EXAMPLE
    )
    return check.returncode


if __name__ == "__main__":
    sys.exit(main())
