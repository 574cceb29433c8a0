"""What mitmdump prints per exchange with the record and replay addons.

One line of ours per exchange (family, model, status, events or body, the
file), instead of mitmdump's flow dump, whose "(content missing)" for every
streamed response reads like an error; a warning once, even with the drift
addon recording the same exchange; mitmproxy's own dump back when asked for.
"""

from __future__ import annotations

import re
from typing import Any

from tests.fakes import Script
from tests.test_record_mitmdump import CHAT_URL, HEADERS, RECORD_SCRIPT, chat_body, start_recorder, wait_for_lines

ADDONS = RECORD_SCRIPT.parent
REPLAYED_LINE = re.compile(r"llmock: replayed (\S+) (\S+) (\d+) (.+) <- (\S+): interactions\[(\d+)\]$", re.MULTILINE)
CONTENT_MISSING = "(content missing)"


def exchange(raw: Any, text: str, stream: bool) -> None:
    """One exchange through the proxy, its body read raw (as sent, not decoded)."""
    with raw.stream("POST", CHAT_URL, json=chat_body(text, stream=stream), headers=HEADERS) as response:
        b"".join(response.iter_raw())


def mentions_of_the_url(output: str) -> list[str]:
    return [line for line in output.splitlines() if "/v1/chat/completions" in line]


def test_one_line_per_recorded_and_per_replayed_exchange(mitmdump, fake_openai, tmp_path, sdk_clients) -> None:
    recorder = start_recorder(mitmdump, tmp_path, [fake_openai])
    raw = sdk_clients.raw(recorder)
    exchange(raw, "a body", stream=False)
    exchange(raw, "a stream", stream=True)
    body, stream = wait_for_lines(recorder, 2)
    assert recorder.terminate() == 0
    cassette = tmp_path / "shared.yaml"
    assert body.group(1, 2, 3, 4, 5) == ("openai.chat", "gpt-4o-mini", "200", "body", str(cassette))
    assert stream.group(1, 2, 3, 5) == ("openai.chat", "gpt-4o-mini", "200", str(cassette))
    assert re.fullmatch(r"\d+ events", stream.group(4)), stream.group(0)
    assert CONTENT_MISSING not in recorder.output, recorder.output
    assert mentions_of_the_url(recorder.output) == [], recorder.output  # no flow dump: our lines name the file

    replay = mitmdump(scripts=[ADDONS / "replay.py"], options={"llmock_cassette_dir": str(tmp_path)})
    raw = sdk_clients.raw(replay)
    exchange(raw, "a body", stream=False)
    exchange(raw, "a stream", stream=True)
    exchange(raw, "not recorded", stream=False)
    assert replay.terminate() == 0
    replayed = [m.group(1, 2, 3, 4, 5, 6) for m in REPLAYED_LINE.finditer(replay.output)]
    assert replayed == [
        ("openai.chat", "gpt-4o-mini", "200", "body", str(cassette), "0"),
        ("openai.chat", "gpt-4o-mini", "200", stream.group(4), str(cassette), "1"),
    ], replay.output
    assert CONTENT_MISSING not in replay.output, replay.output
    # The miss: its warning is its one line.
    (miss,) = mentions_of_the_url(replay.output)
    assert "not recorded" in miss and "replay miss" in miss, replay.output


def test_a_warning_is_printed_once_with_the_drift_addon_recording_too(mitmdump, fake_openai, tmp_path, sdk_clients) -> None:
    shapes = tmp_path / "shapes"
    shapes.mkdir()
    process = mitmdump(
        scripts=[RECORD_SCRIPT, ADDONS / "drift.py"],
        fakes=[fake_openai],
        options={"llmock_cassette_dir": str(tmp_path), "llmock_cassette": "shared.yaml",
                 "llmock_drift_cassettes": str(shapes)},
    )
    # The upstream says gzip and sends plain JSON: both addons fail to decode it.
    fake_openai.queue(Script(extra_headers={"content-encoding": "gzip"}))
    exchange(sdk_clients.raw(process), "mislabelled", stream=False)
    (line,) = wait_for_lines(process, 1)
    assert process.terminate() == 0
    assert line.group(1, 3, 4) == ("openai.chat", "200", "body")
    warnings = [text for text in process.output.splitlines() if "keeping the body encoded" in text]
    assert len(warnings) == 1, process.output
    assert "POST https://api.openai.com/v1/chat/completions: response:" in warnings[0]


def test_more_detail_asked_for_brings_the_flow_dump_back(mitmdump, fake_openai, tmp_path, sdk_clients) -> None:
    process = start_recorder(mitmdump, tmp_path, [fake_openai], flow_detail=2)
    exchange(sdk_clients.raw(process), "verbose", stream=True)
    wait_for_lines(process, 1)
    assert process.terminate() == 0
    assert mentions_of_the_url(process.output), process.output  # mitmproxy's dump of the flow, as asked


def test_stopping_with_a_client_connection_still_open_prints_no_traceback(
    mitmdump, fake_openai, tmp_path, sdk_clients
) -> None:
    """An SDK client keeps its connection after the answer; stopping mitmdump
    then is a clean stop (Python 3.11 reported each such connection with a
    CancelledError traceback)."""
    recorder = start_recorder(mitmdump, tmp_path, [fake_openai])
    raw = sdk_clients.raw(recorder)
    exchange(raw, "a body", stream=False)
    wait_for_lines(recorder, 1)
    assert recorder.terminate() == 0
    assert "Traceback" not in recorder.output, recorder.output

    replay = mitmdump(scripts=[ADDONS / "replay.py"], options={"llmock_cassette_dir": str(tmp_path)})
    raw = sdk_clients.raw(replay)
    exchange(raw, "a body", stream=False)
    assert replay.terminate() == 0
    assert REPLAYED_LINE.search(replay.output), replay.output
    assert "Traceback" not in replay.output, replay.output
