"""Shape inference, JSON Schema export and grading of live answers (no network)."""

from __future__ import annotations

import copy
import json

import pytest
from jsonschema import Draft202012Validator

from llmock_proxy.cassette.model import (
    Interaction,
    NDJSONLine,
    Payload,
    Request,
    Response,
    SSEEvent,
    WebSocketSession,
    WSMessage,
)
from llmock_proxy.drift.findings import Finding, Policy
from llmock_proxy.drift.schema import check_response, shape_schema, validate_recording
from llmock_proxy.drift.shape import infer_shapes

ANTHROPIC_STREAM = [
    ("message_start", {"type": "message_start", "message": {"id": "msg_01", "type": "message", "role": "assistant",
                                                             "model": "claude-x", "content": [],
                                                             "usage": {"input_tokens": 12, "output_tokens": 1}}}),
    ("ping", {"type": "ping"}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                       "usage": {"output_tokens": 5}}),
    ("message_stop", {"type": "message_stop"}),
]


def sse(events, *, status=200, ctype="text/event-stream"):
    return Response(status, {"content-type": ctype}, events=[SSEEvent(event=n, data=d) for n, d in events])


def interaction(response, family="anthropic.messages"):
    return Interaction(request=Request("POST", "https://api.example/v1/x"), response=response, match={"family": family})


@pytest.fixture
def stream_doc():
    shapes = infer_shapes([(interaction(sse(ANTHROPIC_STREAM)), "a.yaml#0")])
    return shape_schema(shapes["anthropic.messages.sse"])


def kinds(findings: list[Finding]) -> list[tuple[str, str, str]]:
    return sorted((f.severity, f.kind, f.path) for f in findings)


def test_exported_schema_is_valid_2020_12_and_validates_its_recordings(stream_doc):
    Draft202012Validator.check_schema(stream_doc)
    assert validate_recording(stream_doc, sse(ANTHROPIC_STREAM)) == []
    assert stream_doc["x-llmock"]["requiredEventTypes"] == sorted({n for n, _ in ANTHROPIC_STREAM})


def test_a_recording_missing_a_required_event_fails_schema_validation(stream_doc):
    errors = validate_recording(stream_doc, sse([e for e in ANTHROPIC_STREAM if e[0] != "message_stop"]))
    assert errors and "contain" in errors[0]


def test_values_only_changes_are_not_drift(stream_doc):
    live = json.loads(json.dumps(ANTHROPIC_STREAM).replace("msg_01", "msg_zz").replace("Hel", "Bonjour"))
    live = [tuple(e) for e in live]
    live[0][1]["message"]["usage"]["input_tokens"] = 999
    # More delta events than recorded: still the same grammar.
    live.insert(4, ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": "!"}}))
    assert check_response(stream_doc, sse(live)) == []


def mutate(index, fn):
    events = copy.deepcopy(ANTHROPIC_STREAM)
    fn(events[index][1])
    return events


@pytest.mark.parametrize(
    "events, expected",
    [
        (mutate(0, lambda d: d["message"].update(extra=True)),
         [("warning", "field-added", "events.message_start.message.extra")]),
        (mutate(0, lambda d: d["message"].pop("role")),
         [("critical", "field-removed", "events.message_start.message.role")]),
        (mutate(0, lambda d: d["message"]["usage"].update(input_tokens="12")),
         [("critical", "type-changed", "events.message_start.message.usage.input_tokens")]),
        (mutate(6, lambda d: d["delta"].update(stop_reason="refusal")),
         [("warning", "enum-added", "events.message_delta.delta.stop_reason")]),
    ],
    ids=["add-field", "remove-field", "change-type", "add-enum-value"],
)
def test_payload_mutations_are_graded(stream_doc, events, expected):
    assert kinds(check_response(stream_doc, sse(events))) == expected



@pytest.mark.parametrize(
    "events, expected",
    [
        # stop_sequence was null in every recording: a stop sequence that hit fills it in.
        (mutate(6, lambda d: d["delta"].update(stop_sequence="END")),
         [("warning", "null-changed", "events.message_delta.delta.stop_sequence")]),
        (mutate(0, lambda d: d["message"].update(model=None)),
         [("warning", "null-changed", "events.message_start.message.model")]),
        (mutate(0, lambda d: d["message"].update(model=["claude-x"])),
         [("critical", "type-changed", "events.message_start.message.model")]),
    ],
    ids=["value-where-null-was-recorded", "null-where-a-value-was-recorded", "array-where-a-string-was"],
)
def test_null_is_a_warning_not_a_type_change(stream_doc, events, expected):
    """A nullable field shows one of its two types in a recording: the other
    one live is worth a look, not a failed canary."""
    assert kinds(check_response(stream_doc, sse(events))) == expected


def test_usage_counters_that_come_and_go_are_info():
    """Token counters are values: proto3 JSON (Gemini) leaves out a zero one,
    a thinking model adds thoughtsTokenCount, Ollama leaves out
    prompt_eval_count for a cached prompt. Their type still counts."""
    recorded = {"candidates": [{"finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6}}
    body = Response(200, {"content-type": "application/json"}, body=Payload.json(recorded))
    doc = shape_schema(infer_shapes([(interaction(body, "gemini.generate"), "g#0")])["gemini.generate.body"])
    live = {"candidates": [{"finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 4, "thoughtsTokenCount": 9, "totalTokenCount": 13}}
    found = check_response(doc, Response(200, {"content-type": "application/json"}, body=Payload.json(live)))
    assert kinds(found) == [("info", "field-added", "usageMetadata.thoughtsTokenCount"),
                            ("info", "field-removed", "usageMetadata.candidatesTokenCount")]
    live["usageMetadata"]["promptTokenCount"] = "4"
    found = check_response(doc, Response(200, {"content-type": "application/json"}, body=Payload.json(live)))
    assert ("critical", "type-changed", "usageMetadata.promptTokenCount") in kinds(found)

    ollama = [NDJSONLine({"model": "m", "done": False, "message": {"role": "assistant", "content": "Hi"}}),
              NDJSONLine({"model": "m", "done": True, "done_reason": "stop", "prompt_eval_count": 5,
                          "eval_count": 2, "total_duration": 10})]
    response = Response(200, {"content-type": "application/x-ndjson"}, lines=ollama)
    doc = shape_schema(infer_shapes([(interaction(response, "ollama.chat"), "o#0")])["ollama.chat.ndjson"])
    cached = copy.deepcopy(ollama)
    del cached[1].data["prompt_eval_count"]
    found = check_response(doc, Response(200, {"content-type": "application/x-ndjson"}, lines=cached))
    assert kinds(found) == [("info", "field-removed", "events.done.prompt_eval_count")]

def test_event_grammar_mutations_are_graded(stream_doc):
    renamed = [("message_end" if n == "message_stop" else n, d) for n, d in ANTHROPIC_STREAM]
    assert kinds(check_response(stream_doc, sse(renamed))) == [
        ("critical", "event-removed", "events.message_stop"),
        ("warning", "event-added", "events.message_end"),
    ]
    dropped = [e for e in ANTHROPIC_STREAM if e[0] != "ping"]
    assert kinds(check_response(stream_doc, sse(dropped))) == [("critical", "event-removed", "events.ping")]
    reordered = list(ANTHROPIC_STREAM)
    reordered[5], reordered[6] = reordered[6], reordered[5]
    assert ("critical", "order-changed", "events.content_block_stop") in kinds(check_response(stream_doc, sse(reordered)))


def test_status_and_content_type_changes_are_critical(stream_doc):
    found = kinds(check_response(stream_doc, sse(ANTHROPIC_STREAM, status=529, ctype="text/plain")))
    assert ("critical", "status-changed", "status") in found
    assert ("critical", "content-type-changed", "content-type") in found


def test_payloads_merge_over_every_instance_and_every_recording():
    # A field that is a string in one delta and null in another is both, not drift.
    first = [("m", {"type": "m", "content": "a"}), ("m", {"type": "m", "content": None})]
    second = [("m", {"type": "m", "content": "b", "refusal": None})]
    shapes = infer_shapes([(interaction(sse(first)), "x#0"), (interaction(sse(second)), "x#1")])
    doc = shape_schema(shapes["anthropic.messages.sse"])
    data = doc["$defs"]["events"]["m"]
    assert data["properties"]["content"]["type"] == ["null", "string"]
    assert data["required"] == ["content", "type"]  # refusal was not in every instance
    assert check_response(doc, sse([("m", {"type": "m", "content": "z"})])) == []


def test_body_shape_and_free_form_tool_arguments():
    def body(args):
        return Response(200, {"content-type": "application/json"}, body=Payload.json({
            "id": "x", "object": "chat.completion",
            "choices": [{"finish_reason": "tool_calls", "message": {"role": "assistant", "tool_calls": [
                {"type": "function", "function": {"name": "f", "arguments": json.dumps(args)}}]}}]}))

    shapes = infer_shapes([(interaction(body({"city": "Paris"}), "openai.chat"), "c#0")])
    doc = shape_schema(shapes["openai.chat.body"])
    assert check_response(doc, body({"town": "Lyon", "n": 2})) == []
    changed = body({})
    changed.body.value["choices"][0]["finish_reason"] = "function_call"
    assert kinds(check_response(doc, changed)) == [("warning", "enum-added", "choices[].finish_reason")]


def test_ndjson_lines_are_typed_by_their_done_flag():
    lines = [NDJSONLine({"model": "m", "message": {"role": "assistant", "content": "a"}, "done": False}),
             NDJSONLine({"model": "m", "done": True, "done_reason": "stop", "eval_count": 3})]
    response = Response(200, {"content-type": "application/x-ndjson"}, lines=lines)
    doc = shape_schema(infer_shapes([(interaction(response, "ollama.chat"), "o#0")])["ollama.chat.ndjson"])
    assert doc["x-llmock"]["order"] == [["chunk", "done"]]
    assert validate_recording(doc, response) == []


def test_incomplete_and_failed_interactions_are_not_shapes():
    cut = interaction(sse(ANTHROPIC_STREAM[:2]))
    cut.incomplete = "client disconnected"
    assert infer_shapes([(cut, "x#0")]) == {}


def test_policy_mutes_and_regrades(tmp_path):
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        "anthropic.*:\n  ignore: ['events.ping*']\n  severity:\n    'events.message_start.message.*': info\n"
    )
    policy = Policy.load(policy_file)
    doc = shape_schema(infer_shapes([(interaction(sse(ANTHROPIC_STREAM)), "a#0")])["anthropic.messages.sse"])
    live = mutate(0, lambda d: d["message"].pop("role"))
    live = [e for e in live if e[0] != "ping"]
    found = policy.filter(check_response(doc, sse(live)))
    assert kinds(found) == [("info", "field-removed", "events.message_start.message.role")]


def test_policy_errors_name_the_file_and_family(tmp_path):
    bad = tmp_path / "policy.yaml"
    bad.write_text("openai.chat:\n  severity:\n    usage: fatal\n")
    with pytest.raises(ValueError, match=r"policy.yaml: openai.chat.severity: 'fatal'"):
        Policy.load(bad)


# As Gemini streamed before it added modelVersion and responseId to every chunk.
GEMINI_STREAM = [
    {"candidates": [{"content": {"parts": [{"text": "Red, "}], "role": "model"}, "index": 0}]},
    {"candidates": [{"content": {"parts": [{"text": "yellow and blue."}], "role": "model"},
                     "finishReason": "STOP", "index": 0}],
     "usageMetadata": {"promptTokenCount": 6, "candidatesTokenCount": 8, "totalTokenCount": 14}},
]


def gemini_sse(chunks):
    return Response(200, {"content-type": "text/event-stream"}, events=[SSEEvent(data=c) for c in chunks])


@pytest.mark.parametrize("where", [0, 1])
def test_a_gemini_chunk_that_gains_a_top_level_field_is_a_warning_only(where):
    # Gemini's stream chunks are one type whatever fields they carry: a new
    # field is a new field, not an event type that disappeared.
    recorded = interaction(gemini_sse(GEMINI_STREAM), family="gemini.generate")
    doc = shape_schema(infer_shapes([(recorded, "g.yaml#0")])["gemini.generate.sse"])
    live = copy.deepcopy(GEMINI_STREAM)
    live[where]["modelVersion"] = "gemini-2.5-flash"
    findings = check_response(doc, gemini_sse(live))
    assert kinds(findings) == [("warning", "field-added", "events.GenerateContentResponse.modelVersion")]


def test_a_gemini_chunk_that_loses_its_candidates_is_still_critical():
    recorded = interaction(gemini_sse(GEMINI_STREAM), family="gemini.generate")
    doc = shape_schema(infer_shapes([(recorded, "g.yaml#0")])["gemini.generate.sse"])
    live = copy.deepcopy(GEMINI_STREAM)
    for chunk in live:
        del chunk["candidates"]
    assert ("critical", "field-removed", "events.GenerateContentResponse.candidates") in kinds(
        check_response(doc, gemini_sse(live))
    )


def test_categorical_fields_are_the_families_own():
    # Gemini's provider names finishReason as categorical: its values are the contract.
    recorded = interaction(gemini_sse(GEMINI_STREAM), family="gemini.generate")
    shape = infer_shapes([(recorded, "g.yaml#0")])["gemini.generate.sse"]
    assert shape.stream is not None
    finish = shape.stream.payloads["GenerateContentResponse"].properties["candidates"].items.properties["finishReason"]
    assert finish.values == {"STOP"}
    live = copy.deepcopy(GEMINI_STREAM)
    live[1]["candidates"][0]["finishReason"] = "MALFORMED_FUNCTION_CALL"
    doc = shape_schema(shape)
    assert ("warning", "enum-added", "events.GenerateContentResponse.candidates[].finishReason") in kinds(
        check_response(doc, gemini_sse(live))
    )


OPENAI_STREAM = [
    {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
    {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
     "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]},
    {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
     "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    "[DONE]",
]


def test_an_openai_chunk_that_gains_a_type_field_is_a_warning_only():
    # OpenAI chat chunks say what they are in `object`: a `type` the API adds
    # later is a new field, not a new kind of chunk (nor a vanished one).
    recorded = interaction(gemini_sse(OPENAI_STREAM), family="openai.chat")
    doc = shape_schema(infer_shapes([(recorded, "o.yaml#0")])["openai.chat.sse"])
    assert doc["x-llmock"]["requiredEventTypes"] == ["[DONE]", "chat.completion.chunk"]
    live = copy.deepcopy(OPENAI_STREAM)
    for chunk in live[:-1]:
        chunk["type"] = "chunk"
    assert kinds(check_response(doc, gemini_sse(live))) == [
        ("warning", "field-added", "events.chat.completion.chunk.type")
    ]


def live_session(messages):
    return Response(101, {}, websocket=WebSocketSession(messages=[WSMessage(False, Payload.json(m)) for m in messages]))


LIVE_TURN = [
    {"setupComplete": {}},
    {"serverContent": {"modelTurn": {"parts": [{"text": "Hi"}]}}},
    {"serverContent": {"turnComplete": True}, "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 5}},
]


def test_a_gemini_live_message_that_gains_a_top_level_field_is_a_warning_only():
    # Live messages are typed by their kind (serverContent, ...), not by
    # every top-level field they carry.
    recorded = interaction(live_session(LIVE_TURN), family="gemini.live")
    doc = shape_schema(infer_shapes([(recorded, "l.yaml#0")])["gemini.live.websocket"])
    assert doc["x-llmock"]["requiredEventTypes"] == ["serverContent", "setupComplete"]
    live = copy.deepcopy(LIVE_TURN)
    live[1]["groundingInfo"] = {"sources": []}
    assert kinds(check_response(doc, live_session(live))) == [
        ("warning", "field-added", "events.serverContent.groundingInfo")
    ]
