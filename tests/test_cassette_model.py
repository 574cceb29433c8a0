"""The cassette model and its YAML form: round trips, readability, safety, atomic saves."""

from __future__ import annotations

import base64
import gc
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmock_proxy.canonical import Summary, ToolCall
from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette import yamlio
from llmock_proxy.cassette.model import (
    Cassette,
    EventStreamFrame,
    Interaction,
    NDJSONLine,
    Payload,
    Request,
    Response,
    SSEEvent,
    WebSocketSession,
    WSClose,
    WSMessage,
)
from llmock_proxy.cassette.redact import SecretFound
from llmock_proxy.errors import CassetteError

# -- strategies (also used by test_schemas) ---------------------------------------------

# Text as recordings hold it: any Unicode except lone surrogates (they cannot
# be written as UTF-8 at all, so no recording can contain them).
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
names = st.text("abcdefghijklmnopqrstuvwxyz-_:", min_size=1, max_size=12)
offsets = st.floats(min_value=0, max_value=600_000, allow_nan=False).map(lambda t: round(t, 1))

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)
    ),
    max_leaves=12,
)
json_documents = st.one_of(
    st.lists(json_values, max_size=4), st.dictionaries(texts, json_values, max_size=4)
)
headers = st.dictionaries(names, texts, max_size=4)
base64_values = st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode("ascii"))
payloads = st.one_of(
    json_documents.map(Payload.json),
    texts.map(lambda t: Payload("text", t)),
    base64_values.map(lambda b: Payload("base64", b)),
)

requests = st.builds(
    Request,
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    url=st.sampled_from(
        [
            "https://api.openai.com/v1/chat/completions",
            "https://api.anthropic.com/v1/messages",
            "https://example.test/v1beta/models/gemini:streamGenerateContent?alt=sse",
        ]
    ),
    headers=headers,
    body=st.none() | payloads,
)
sse_events = st.builds(
    SSEEvent,
    data=st.none() | json_documents | texts,
    event=st.none() | names,
    id=st.none() | texts,
    retry=st.none() | st.integers(min_value=0, max_value=10**6),
    comment=st.none() | texts,
    t=offsets,
)
ndjson_lines = st.builds(NDJSONLine, data=json_values, t=offsets)
frame_header_values = st.one_of(
    texts,
    st.builds(lambda v: {"type": "bool", "value": v}, st.booleans()),
    st.builds(lambda v: {"type": "int", "value": v}, st.integers(-(2**31), 2**31 - 1)),
    st.builds(lambda v: {"type": "bytes", "value": v}, base64_values),
)
frames = st.builds(
    EventStreamFrame,
    headers=st.dictionaries(names, frame_header_values, max_size=3),
    payload=payloads,
    t=offsets,
)
ws_messages = st.builds(
    WSMessage, from_client=st.booleans(), payload=payloads, binary=st.booleans(), t=offsets
)
ws_sessions = st.builds(
    WebSocketSession,
    messages=st.lists(ws_messages, max_size=4),
    subprotocol=st.none() | names,
    close=st.none()
    | st.builds(
        WSClose,
        code=st.none() | st.integers(1000, 4999),
        reason=texts,
        by=st.none() | st.sampled_from(["client", "server"]),
        t=st.none() | offsets,
    ),
)
statuses = st.integers(min_value=100, max_value=599)
responses = st.one_of(
    st.builds(Response, status=statuses, headers=headers, body=st.none() | payloads),
    st.builds(Response, status=statuses, headers=headers, events=st.lists(sse_events, max_size=5)),
    st.builds(Response, status=statuses, headers=headers, lines=st.lists(ndjson_lines, max_size=5)),
    st.builds(Response, status=statuses, headers=headers, frames=st.lists(frames, max_size=3)),
    st.builds(Response, status=statuses, headers=headers, websocket=ws_sessions),
)
summaries = st.builds(
    Summary,
    text=texts,
    tool_calls=st.lists(
        st.builds(ToolCall, name=names, arguments=json_values, id=st.none() | texts), max_size=2
    ),
    finish_reason=st.none() | names,
    usage=st.none() | st.dictionaries(names, st.integers(0, 10**6), max_size=3),
    model=st.none() | names,
    reasoning=st.none() | texts,
    embeddings=st.none() | st.lists(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=3), max_size=2),
).map(lambda s: s.to_dict())
matches = st.fixed_dictionaries(
    {
        "family": st.sampled_from(["openai.chat", "anthropic.messages", "generic"]),
        "stream": st.booleans(),
        "fingerprint": st.text("0123456789abcdef", min_size=32, max_size=32).map(lambda h: f"sha256:{h}"),
    },
    optional={
        "model": names,
        "userMessage": texts,
        "inputText": texts,
        "toolCallId": texts,
        "toolNames": st.lists(names, max_size=3),
        "responseFormat": names,
        "sequenceIndex": st.integers(0, 5),  # an extra key a person may add
    },
)
interactions = st.builds(
    Interaction,
    request=requests,
    response=st.none() | responses,
    match=matches,
    summary=st.none() | summaries,
    recorded_at=st.none() | st.just("2025-01-02T03:04:05.678Z"),
    incomplete=st.none() | texts,
    error=st.none() | texts,
)
cassettes = st.builds(
    Cassette,
    interactions=st.lists(interactions, max_size=3),
    meta=st.dictionaries(names, json_values, max_size=2),
)

ROUND_TRIP = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# -- round trips ---------------------------------------------------------------------------


@ROUND_TRIP
@given(cassettes)
def test_load_of_dump_is_the_same_cassette(cassette: Cassette) -> None:
    text = cassette_store.dumps(cassette)
    assert cassette_store.parse(text) == cassette


@ROUND_TRIP
@given(cassettes)
def test_dump_of_load_of_dump_is_the_same_text(cassette: Cassette) -> None:
    text = cassette_store.dumps(cassette)
    assert cassette_store.dumps(cassette_store.parse(text)) == text


@ROUND_TRIP
@given(json_values)
def test_dumps_writes_what_pyyaml_would(value: Any) -> None:
    # yamlio feeds the emitter directly; the bytes must be PyYAML's own.
    reference = yaml.dump(value, Dumper=yamlio._Dumper, **yamlio._DUMP_OPTIONS)
    assert yamlio.dumps(value) == reference


@ROUND_TRIP
@given(json_values)
def test_loads_reads_what_pyyaml_reads(value: Any) -> None:
    text = yamlio.dumps(value)
    assert yamlio.loads(text) == yaml.load(text, Loader=yaml.SafeLoader) == value


def test_every_wire_form_round_trips() -> None:
    cassette = Cassette(
        meta={"recorded_with": "llmock-proxy"},
        interactions=[
            Interaction(
                request=Request("POST", "https://api.openai.com/v1/chat/completions",
                                {"content-type": "application/json"},
                                Payload.json({"model": "gpt-4o-mini", "stream": True})),
                response=Response(200, {"content-type": "text/event-stream"}, events=[
                    SSEEvent(data={"choices": [{"delta": {"content": "Hi"}}]}, t=12.3),
                    SSEEvent(comment="keep-alive", t=13.0),
                    SSEEvent(data="[DONE]", t=20.0),
                ]),
                match={"family": "openai.chat", "stream": True, "fingerprint": "sha256:" + "a" * 32},
                summary=Summary(text="Hi", finish_reason="stop").to_dict(),
                recorded_at="2025-01-01T00:00:00Z",
            ),
            Interaction(
                request=Request("POST", "http://127.0.0.1:11434/api/chat", body=Payload("text", "{}")),
                response=Response(200, lines=[NDJSONLine({"done": False}, 1.0), NDJSONLine({"done": True}, 2.5)]),
            ),
            Interaction(
                request=Request("POST", "https://bedrock-runtime.us-east-1.amazonaws.com/model/x/converse-stream"),
                response=Response(200, frames=[EventStreamFrame(
                    {":event-type": "messageStart", ":flag": {"type": "bool", "value": True}},
                    Payload.json({"role": "assistant"}), 5.0)]),
            ),
            Interaction(
                request=Request("GET", "wss://api.openai.com/v1/realtime?model=gpt-realtime"),
                response=Response(101, websocket=WebSocketSession(
                    subprotocol="realtime",
                    messages=[WSMessage(True, Payload.json({"type": "session.update"}), t=1.0),
                              WSMessage(False, Payload("base64", "AAEC"), binary=True, t=2.0)],
                    close=WSClose(1000, "bye", "client", 3.0))),
            ),
            Interaction(request=Request("GET", "https://down.test/"), error="connection refused",
                        incomplete="client disconnected"),
        ],
    )
    text = cassette_store.dumps(cassette)
    assert cassette_store.parse(text, "x.yaml") == Cassette(cassette.interactions, Path("x.yaml"), cassette.meta)


# -- readability -------------------------------------------------------------------------------


def test_multi_line_text_is_a_block_scalar() -> None:
    prompt = "Line one\nLine two\n  indented line\n"
    cassette = Cassette([Interaction(Request("POST", "https://x.test/", body=Payload("text", prompt)),
                                     summary={"text": "First\nSecond"})])
    text = cassette_store.dumps(cassette)
    assert "    text: |\n      Line one\n      Line two\n        indented line\n" in text
    assert "    text: |-\n      First\n      Second\n" in text
    assert cassette_store.parse(text) == cassette


def test_text_a_block_scalar_cannot_hold_is_still_kept_exactly() -> None:
    awkward = "trailing space \nand a tab\t\n\x07bell"
    cassette = Cassette([Interaction(Request("POST", "https://x.test/", body=Payload("text", awkward)))])
    assert cassette_store.parse(cassette_store.dumps(cassette)).interactions[0].request.body == Payload("text", awkward)


def test_request_json_body_is_yaml_data_not_an_escaped_string() -> None:
    cassette = Cassette([Interaction(Request("POST", "https://x.test/", body=Payload.json({"model": "m", "n": 2})))])
    assert "- request:\n    method: POST\n    url: https://x.test/\n    json:\n      model: m\n      n: 2\n" in cassette_store.dumps(cassette)


def test_a_value_shared_between_interactions_is_written_out_twice_without_anchors() -> None:
    shared = {"text": "same"}
    cassette = Cassette([Interaction(Request("GET", "https://x.test/"), summary=shared) for _ in range(2)])
    text = cassette_store.dumps(cassette)
    assert "&id" not in text and "*id" not in text
    assert text.count("text: same") == 2


# -- the garbage collector while loading ---------------------------------------------------------


def _in_oldest_generation(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects(generation=2))


def test_what_a_large_pause_built_goes_straight_to_the_oldest_generation() -> None:
    assert gc.isenabled()
    with yamlio.gc_paused():
        assert not gc.isenabled()
        built = [[] for _ in range(2 * yamlio._PROMOTE_AFTER)]
    assert gc.isenabled()
    assert _in_oldest_generation(built[-1])


def test_a_small_pause_promotes_nothing() -> None:
    with yamlio.gc_paused():
        built = [[] for _ in range(100)]
    assert gc.isenabled()
    assert not _in_oldest_generation(built[-1])


def test_only_the_outermost_pause_turns_the_collector_back_on() -> None:
    with yamlio.gc_paused():
        with yamlio.gc_paused():
            built = [[] for _ in range(2 * yamlio._PROMOTE_AFTER)]
        assert not gc.isenabled()
        assert not _in_oldest_generation(built[-1])
    assert gc.isenabled()
    assert _in_oldest_generation(built[-1])


def test_objects_frozen_by_someone_else_stay_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with yamlio.gc_paused():
            built = [[] for _ in range(2 * yamlio._PROMOTE_AFTER)]
        assert gc.isenabled()
        assert gc.get_freeze_count() >= frozen
        assert not _in_oldest_generation(built[-1])
    finally:
        gc.unfreeze()


# -- safe loading -----------------------------------------------------------------------------


def test_the_c_safe_loader_is_used() -> None:
    assert yaml.__with_libyaml__, "pyyaml without libyaml: install a wheel built with it"
    assert issubclass(yamlio.SafeLoader, yaml.CSafeLoader)


@pytest.mark.parametrize(
    "tag",
    [
        '!!python/object/apply:os.system ["touch {marker}"]',
        '!!python/object/new:subprocess.check_output [["touch", "{marker}"]]',
        "!!python/name:os.system",
        "!!binary aGVsbG8=",
        "!!set {{a: null}}",
        "!custom value",
    ],
)
def test_object_building_and_non_json_tags_are_refused(tmp_path: Path, tag: str) -> None:
    marker = tmp_path / "pwned"
    text = f"version: 1\ninteractions: []\nmeta:\n  x: {tag.format(marker=marker)}\n"
    with pytest.raises(CassetteError) as info:
        cassette_store.parse(text, "evil.yaml")
    assert str(info.value).startswith("evil.yaml: not valid YAML:")
    assert "is not allowed" in str(info.value)
    assert not marker.exists()


def test_dates_stay_text() -> None:
    text = "version: 1\ninteractions:\n- recorded_at: 2025-01-02T03:04:05Z\n  request: {method: GET, url: 'https://x.test/', json: {day: 2025-01-02}}\n"
    loaded = cassette_store.parse(text)
    assert loaded.interactions[0].recorded_at == "2025-01-02T03:04:05Z"
    assert loaded.interactions[0].request.json == {"day": "2025-01-02"}


@pytest.mark.parametrize("depth", [yamlio.MAX_DEPTH + 1, 1001, 100_000])
@pytest.mark.parametrize("style", ["flow", "block", "json"])
def test_deep_nesting_is_our_error_not_a_crash(depth: int, style: str) -> None:
    # PyYAML's C composer overflows the C stack on this, and newer PyYAML
    # releases refuse flow nesting past 1000 with their own wording: the
    # refusal must be ours either way, naming the file.
    if style == "flow":
        text = "[" * depth + "]" * depth
    elif style == "json":
        text = '{"a":' * depth + "1" + "}" * depth
    else:
        text = "- " * depth + "x\n"  # compact nested block sequences
    with pytest.raises(CassetteError, match=rf"deep\.yaml.*nested deeper than {yamlio.MAX_DEPTH} levels"):
        cassette_store.parse(text, "deep.yaml")


def test_nesting_up_to_the_limit_loads() -> None:
    depth = yamlio.MAX_DEPTH
    assert yamlio.loads("[" * depth + "]" * depth) is not None


def test_anchors_and_merge_keys_in_hand_written_files_work() -> None:
    text = """
version: 1
interactions:
- request: &req {method: POST, url: "https://x.test/", headers: &h {content-type: application/json}}
  response: {status: 200, headers: *h, json: {ok: true}}
- request:
    <<: *req
    url: https://y.test/
"""
    loaded = cassette_store.parse(text)
    assert loaded.interactions[1].request == Request("POST", "https://y.test/", {"content-type": "application/json"})
    assert loaded.interactions[0].response.headers == {"content-type": "application/json"}


def test_repeated_plain_scalars_read_as_pyyaml_reads_them() -> None:
    # The loader resolves each plain spelling once per document; a spelling
    # seen as a key, a value, an anchor, a merge key and in a list must still
    # come out as PyYAML's safe loader makes it.
    text = """
base: &base {1: one, true: yes, null: none, 0x1F: hex, 1.5: x, <<: {extra: 1}}
again: {1: one-again, true: 7, 0x1F: 0x1F, "1": quoted, <<: *base}
list: [1, 1, true, true, null, null, 0x1F, 0o17, 017, 1_000, 1.5, .inf, -.inf, "<<", yes, no, on, off, ~]
anchored: &n 1
alias: *n
"""
    ours = yamlio.loads(text)
    assert ours == yaml.load(text, Loader=yaml.CSafeLoader)
    assert [type(v) for v in ours["list"]] == [type(v) for v in yaml.load(text, Loader=yaml.CSafeLoader)["list"]]
    # PyYAML refuses a bare ``<<`` outside key position; here it is text, also after a merge key.
    assert yamlio.loads("a: {<<: {b: 1}}\nc: [<<, <<]\n") == {"a": {"b": 1}, "c": ["<<", "<<"]}


@pytest.mark.parametrize(
    "text, problem",
    [
        ("a: &a [*a]\n", "recursive alias"),
        ("a: *missing\n", "undefined alias"),
        ("? [x]\n: 1\n", "cannot be a mapping key"),
        ("--- 1\n--- 2\n", "single document"),
        ("a: [\n", "did not find expected"),
    ],
)
def test_malformed_yaml_names_the_problem(text: str, problem: str) -> None:
    with pytest.raises(CassetteError, match=problem):
        cassette_store.parse(text, "bad.yaml")


def test_unreadable_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(CassetteError, match=r"missing\.yaml: cannot read"):
        cassette_store.load(tmp_path / "missing.yaml")


# -- atomic, redacted saving --------------------------------------------------------------------


def _entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "cassettes" / "chat.yaml"
    cassette = Cassette([Interaction(Request("GET", "https://x.test/"), Response(200, body=Payload.json({"a": 1})))])
    assert cassette_store.save(cassette, target) == target
    assert _entries(target.parent) == ["chat.yaml"]
    assert cassette_store.load(target) == Cassette(cassette.interactions, target)
    cassette.interactions.append(Interaction(Request("GET", "https://x.test/2")))
    cassette_store.save(cassette)
    assert _entries(target.parent) == ["chat.yaml"]
    assert len(cassette_store.load(target).interactions) == 2


def test_a_refused_save_keeps_the_old_file_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "chat.yaml"
    good = Cassette([Interaction(Request("GET", "https://x.test/"), Response(200, body=Payload.json({"a": 1})))])
    cassette_store.save(good, target)
    before = target.read_bytes()
    # A key used as a mapping key survives redaction (keys are not rewritten): the scan refuses.
    secret_key = "sk-test-" + "k" * 24
    bad = Cassette([Interaction(Request("GET", "https://x.test/"), Response(200, body=Payload.json({secret_key: 1})))])
    with pytest.raises(SecretFound) as info:
        cassette_store.save(bad, target)
    assert secret_key not in str(info.value)
    assert target.read_bytes() == before
    assert _entries(tmp_path) == ["chat.yaml"]


def test_a_failed_write_removes_its_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "chat.yaml"
    target.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        yamlio.atomic_write_text(target, "\ud800 lone surrogate")
    assert target.read_text() == "old\n"
    assert _entries(tmp_path) == ["chat.yaml"]


def test_save_redacts_what_it_writes(tmp_path: Path) -> None:
    key = "sk-test-" + "abc123" * 4
    cassette = Cassette([Interaction(
        Request("POST", "https://api.openai.com/v1/chat/completions", {"authorization": f"Bearer {key}"},
                Payload.json({"note": f"my key is {key}"})),
        Response(200, body=Payload.json({"ok": True})))])
    target = cassette_store.save(cassette, tmp_path / "x.yaml")
    written = target.read_text()
    assert key not in written
    assert "authorization: Bearer <redacted>" in written
    # The caller's objects are untouched.
    assert cassette.interactions[0].request.headers["authorization"] == f"Bearer {key}"


def test_save_without_a_path_is_an_error() -> None:
    with pytest.raises(ValueError, match="no path"):
        cassette_store.save(Cassette())


def test_saved_files_are_shareable_and_keep_their_mode(tmp_path: Path) -> None:
    # mkstemp creates 0600 files; a cassette is meant to be shared and committed.
    target = cassette_store.save(Cassette(), tmp_path / "x.yaml")
    assert target.stat().st_mode & 0o777 == yamlio.NEW_FILE_MODE
    target.chmod(0o664)
    cassette_store.save(Cassette(), target)
    assert target.stat().st_mode & 0o777 == 0o664
