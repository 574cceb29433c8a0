"""``python -m app "What is the weather in Oslo?"``: ask the assistant from the command line.

The example's tests run this in a subprocess: the child reads the same
``OPENAI_BASE_URL`` the plugin set for the test, so the test's cassette
answers it too.
"""

from __future__ import annotations

import sys

from app.assistant import weather_answer


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print('usage: python -m app "QUESTION"', file=sys.stderr)
        return 2
    answer = weather_answer(argv[0])
    for name, arguments in answer.tool_calls:
        print(f"[tool] {name} {arguments}")
    print(answer.text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
