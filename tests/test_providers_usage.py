"""A summary's token counts survive re-rendering in another family's wire form.

Replaying a Gemini recording to an Ollama, Cohere or Bedrock client (or any
other pair) must report the recorded counts, whatever spelling they were kept in.
"""

from __future__ import annotations

import pytest

from llmock_proxy.canonical import CanonicalRequest, Summary
from llmock_proxy.providers.catalog import by_family

RECORDED_USAGE = {
    "gemini": {"promptTokenCount": 6, "candidatesTokenCount": 9, "totalTokenCount": 15},
    "openai": {"prompt_tokens": 6, "completion_tokens": 9, "total_tokens": 15},
    "anthropic": {"input_tokens": 6, "output_tokens": 9},
    "bedrock": {"inputTokens": 6, "outputTokens": 9},
    "ollama": {"prompt_eval_count": 6, "eval_count": 9},
}


def counts(family: str, body: dict) -> tuple[int, int]:
    if family == "ollama.chat":
        return body["prompt_eval_count"], body["eval_count"]
    if family == "cohere.chat":
        return body["usage"]["tokens"]["input_tokens"], body["usage"]["tokens"]["output_tokens"]
    return body["usage"]["inputTokens"], body["usage"]["outputTokens"]


@pytest.mark.parametrize("spelling", sorted(RECORDED_USAGE))
@pytest.mark.parametrize("family", ["ollama.chat", "cohere.chat", "bedrock.converse"])
def test_recorded_counts_reach_the_rendered_answer(family: str, spelling: str) -> None:
    summary = Summary(text="hi", finish_reason="stop", usage=RECORDED_USAGE[spelling])
    response = by_family(family).render(summary, CanonicalRequest(family=family, model="m"), stream=False)
    assert counts(family, response.json) == (6, 9)
