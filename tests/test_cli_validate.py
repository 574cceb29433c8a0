"""``llmock-proxy cassette validate``: messages and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmock_proxy import cli
from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette import yamlio
from llmock_proxy.cassette.model import (
    Cassette,
    Interaction,
    Payload,
    Request,
    Response,
    SSEEvent,
)
from tests.test_schemas import valid_cassette, valid_fixture_file


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = cli.main(["cassette", "validate", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """cassettes/ with a saved cassette, a nested hand-written one and a fixture file."""
    root = tmp_path / "cassettes"
    cassette_store.save(Cassette([Interaction(
        Request("POST", "https://api.openai.com/v1/chat/completions", body=Payload.json({"model": "m"})),
        Response(200, {"content-type": "text/event-stream"},
                 events=[SSEEvent(data={"x": 1}, t=1.0), SSEEvent(data="[DONE]", t=2.0)]),
    )]), root / "chat.yaml")
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "nested" / "deeper" / "all.yml").write_text(yamlio.dumps(valid_cassette()))
    (root / "nested" / "fixtures.json").write_text(json.dumps(valid_fixture_file()))
    (root / "README.md").write_text("not checked\n")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "broken.yaml").write_text("version: [\n")
    return root


def test_a_valid_tree_exits_0(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    code, out, err = run(capsys, str(tree))
    assert code == 0, out
    assert out == ["checked 2 cassettes and 1 fixture file: all valid"]
    assert err == ""


def test_verbose_lists_the_valid_files(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    code, out, _ = run(capsys, "-v", str(tree))
    assert code == 0
    assert out == [
        f"{tree / 'chat.yaml'}: ok (1 interaction)",
        f"{tree / 'nested' / 'deeper' / 'all.yml'}: ok (7 interactions)",
        f"{tree / 'nested' / 'fixtures.json'}: ok (5 fixtures)",
        "checked 2 cassettes and 1 fixture file: all valid",
    ]


def test_a_corrupted_copy_of_a_valid_cassette_exits_1_naming_the_place(
    capsys: pytest.CaptureFixture[str], tree: Path
) -> None:
    good = (tree / "chat.yaml").read_text()
    assert "t: 2.0" in good
    broken = tree / "broken.yaml"
    broken.write_text(good.replace("t: 2.0", "t: abc"))
    code, out, _ = run(capsys, str(tree))
    assert code == 1
    assert out == [
        f"{broken}: interactions[0].response.events[1].t: 'abc' is not of type 'number'",
        "checked 3 cassettes and 1 fixture file: 1 problem in 1 file",
    ]


def test_every_problem_of_every_file_is_printed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = valid_cassette()
    data["interactions"][3]["response"]["websocket"]["messages"][0]["from"] = "browser"
    data["interactions"][0]["response"]["json"] = {}
    (tmp_path / "a.yaml").write_text(yamlio.dumps(data))
    fixtures = valid_fixture_file()
    fixtures["fixtures"][2]["response"]["embedding"] = []
    (tmp_path / "b.json").write_text(json.dumps(fixtures))
    (tmp_path / "c.json").write_text("{not json")
    (tmp_path / "d.yaml").write_text("version: 1\ninteractions:\n- request: !!python/object/apply:os.system ['true']\n")
    code, out, _ = run(capsys, str(tmp_path))
    assert code == 1
    assert out[:4] == [
        f"{tmp_path / 'a.yaml'}: interactions[0].response: has json and events; give at most one of "
        "json, text, base64, events, lines, frames, websocket",
        f"{tmp_path / 'a.yaml'}: interactions[3].response.websocket.messages[0].from: 'browser' is not one of 'client', 'server'",
        f"{tmp_path / 'b.json'}: fixtures[2].response.embedding: must not be empty",
        f"{tmp_path / 'c.json'}: not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
    ]
    assert out[4].startswith(f"{tmp_path / 'd.yaml'}: not valid YAML: the tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed")
    assert out[-1] == "checked 2 cassettes and 2 fixture files: 5 problems in 4 files"


def test_files_can_be_named_directly(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    code, out, _ = run(capsys, str(tree / "chat.yaml"), str(tree / "nested" / "fixtures.json"), str(tree / "chat.yaml"))
    assert code == 0
    assert out == ["checked 1 cassette and 1 fixture file: all valid"]


def test_an_empty_directory_is_fine_but_said(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, str(tmp_path))
    assert code == 0
    assert out == ["checked 0 cassettes and 0 fixture files: all valid"]
    assert "no cassette" in err


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give at least one file or directory"),
        (["{tmp}/missing"], "{tmp}/missing: no such file or directory"),
        (["{tmp}/notes.txt"], "{tmp}/notes.txt: not a cassette (*.yaml, *.yml) or fixture file (*.json)"),
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "notes.txt").write_text("x")
    code, out, err = run(capsys, *[a.format(tmp=tmp_path) for a in args])
    assert code == 2
    assert out == []
    assert message.format(tmp=tmp_path) in err


def test_cassette_without_a_sub_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cassette"]) == 2
    assert "a sub-command is required" in capsys.readouterr().err


def test_the_console_script_exit_codes(tree: Path) -> None:
    script = Path(sys.executable).parent / "llmock-proxy"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "llmock_proxy.cli"]
    ok = subprocess.run([*command, "cassette", "validate", str(tree)], capture_output=True, text=True)
    assert (ok.returncode, ok.stdout) == (0, "checked 2 cassettes and 1 fixture file: all valid\n")
    (tree / "bad.yml").write_text("version: 1\ninteractions:\n- request: {method: GET}\n")
    bad = subprocess.run([*command, "cassette", "validate", str(tree)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert f"{tree / 'bad.yml'}: interactions[0].request: missing required field 'url'" in bad.stdout
    usage = subprocess.run([*command, "cassette", "validate", str(tree / "nope")], capture_output=True, text=True)
    assert usage.returncode == 2


def test_what_replay_would_refuse_is_a_problem_too(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Schema-valid, but `llmock-proxy serve` / the replay addon would not load them.
    (tmp_path / "f.json").write_text(json.dumps({"fixtures": [
        {"match": {"userMessage": "/[unclosed/"}, "response": {"content": "x"}},
        {"match": {"userMessage": "fine"}, "response": {"content": "y"}},
    ]}))
    data = valid_cassette()
    data["interactions"][0]["match"]["userMesage"] = "a typo that would loosen the match"
    (tmp_path / "c.yaml").write_text(yamlio.dumps(data))
    code, out, _ = run(capsys, str(tmp_path))
    assert code == 1
    assert out[0].startswith(f"{tmp_path / 'c.yaml'}: interactions[0].match.userMesage: unknown match key")
    assert out[1].startswith(f"{tmp_path / 'f.json'}: fixtures[0].match.userMessage: bad regex '/[unclosed/'")
    assert out[2] == "checked 1 cassette and 1 fixture file: 2 problems in 2 files"


def test_a_key_shaped_value_is_a_problem_naming_its_field(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # The recorder refuses to write these; a hand edit must not slip one in.
    key = "sk-proj-" + "A1b2C3d4" * 4
    cassette_store.save(Cassette([Interaction(
        Request("POST", "https://api.openai.com/v1/chat/completions", {"authorization": "Bearer <redacted>"},
                body=Payload.json({"model": "m"})),
        Response(200, {"content-type": "application/json"}, Payload.json({"ok": True})),
    )]), tmp_path / "c.yaml")
    edited = (tmp_path / "c.yaml").read_text().replace("Bearer <redacted>", f"Bearer {key}")
    (tmp_path / "c.yaml").write_text(edited)
    (tmp_path / "f.json").write_text(json.dumps({"fixtures": [{"match": {}, "response": {"content": f"use {key}"}}]}))
    code, out, _ = run(capsys, str(tmp_path))
    assert code == 1
    assert out[0].startswith(f"{tmp_path / 'c.yaml'}: interactions[0].request.headers.authorization: holds a key-shaped value (sk- API key 'sk-pr…'")
    assert out[1].startswith(f"{tmp_path / 'f.json'}: fixtures[0].response.content: holds a key-shaped value (sk- API key")
    assert key not in "\n".join(out)  # masked
    assert out[2] == "checked 1 cassette and 1 fixture file: 2 problems in 2 files"


def test_json_of_another_kind_in_a_directory_is_skipped_but_named_it_is_a_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "fixtures.json").write_text(json.dumps({"fixtures": [{"match": {}, "response": {"content": "x"}}]}))
    (tmp_path / "mcp-config.json").write_text(json.dumps({"mcp": {"tools": []}}))
    code, out, _ = run(capsys, str(tmp_path), "-v")
    assert code == 0
    assert any(line.startswith(f"{tmp_path / 'mcp-config.json'}: skipped (JSON that is not a fixture file")
               for line in out)
    assert out[-1] == "checked 0 cassettes and 1 fixture file: all valid"
    code, out, _ = run(capsys, str(tmp_path / "mcp-config.json"))
    assert code == 1
    assert out[0].startswith(f"{tmp_path / 'mcp-config.json'}: not a fixture file")


def test_a_misspelled_match_key_fails_validate_unless_lenient(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "typo.json"
    path.write_text(json.dumps({"fixtures": [{"match": {"userMesage": "hi"}, "response": {"content": "x"}}]}))
    code, out, _ = run(capsys, str(path))
    assert code == 1
    assert out[0].startswith(f"{path}: fixtures[0].match.userMesage: unknown match key; did you mean 'userMessage'?")
    code, out, _ = run(capsys, str(path), "--lenient-fixtures")
    assert code == 0
    assert any(line.startswith("warning: ") and "userMesage" in line for line in out)


def test_a_recorded_answer_replay_could_not_send_is_a_problem_naming_the_item(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Schema-valid hand edits that replay would answer with a 500 when a request matched them.
    data = valid_cassette()
    interactions = data["interactions"]
    long_name = "x" * 300
    interactions[2]["response"]["frames"][0]["headers"][long_name] = "v"
    interactions[0]["response"]["events"][1]["event"] = "ping\nevent: forged"
    interactions[1]["response"]["lines"][1]["data"] = "two\nlines"
    interactions[4]["response"]["headers"] = {"x-note": "a\r\nSet-Cookie: forged=1"}
    websocket = interactions[3]["response"]["websocket"]
    websocket["messages"][2] = {"from": "server", "base64": "/w==", "t": 2.5}  # 0xff in a text frame
    websocket["close"]["code"] = 70000
    path = tmp_path / "c.yaml"
    path.write_text(yamlio.dumps(data))
    code, out, _ = run(capsys, str(path))
    assert code == 1
    where = f"{path}: interactions"
    assert out[0].startswith(f"{where}[0].response.events[1].event: ")
    assert "line break" in out[0]
    assert out[1].startswith(f"{where}[1].response.lines[1].data: ")
    assert out[2].startswith(f"{where}[2].response.frames[0].headers['{long_name[:59]}...']: ")
    assert "EventStream header name" in out[2] and "255" in out[2]
    assert out[3].startswith(f"{where}[3].response.websocket.messages[2].base64: cannot be a text frame")
    assert out[4].startswith(f"{where}[3].response.websocket.close.code: 70000 ")
    assert out[5].startswith(f"{where}[4].response.headers['x-note']: cannot be sent")
    assert out[6] == "checked 1 cassette and 0 fixture files: 6 problems in 1 file"


def test_every_unsendable_eventstream_part_of_a_frame_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = valid_cassette()
    frame = data["interactions"][2]["response"]["frames"][0]
    frame["headers"][":event-type"] = "y" * 70_000  # a value past 65535 bytes
    frame["headers"][":n"] = {"type": "byte", "value": 300}  # no byte holds 300
    path = tmp_path / "c.yaml"
    path.write_text(yamlio.dumps(data))
    code, out, _ = run(capsys, str(path))
    assert code == 1
    frame_at = f"{path}: interactions[2].response.frames[0]"
    assert out[0].startswith(f"{frame_at}.headers[':event-type']: ") and "65535" in out[0]
    assert out[1].startswith(f"{frame_at}.headers[':n']: ")
    assert out[2] == "checked 1 cassette and 0 fixture files: 2 problems in 1 file"
    # What the recorder writes always sends: the same cassette untouched is valid.
    path.write_text(yamlio.dumps(valid_cassette()))
    assert run(capsys, str(path))[0] == 0
