"""The redaction choke point: every default rule, rules files, the refuse-to-write scan."""

from __future__ import annotations

import base64
import binascii
import copy
import fnmatch
import json
import urllib.parse
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmock_proxy.cassette import store as cassette_store
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
from llmock_proxy.cassette.redact import (
    BUILTIN_PATTERNS,
    PLACEHOLDER,
    URL_PLACEHOLDER,
    Redactor,
    RulesError,
    SecretFound,
    mask,
)
from llmock_proxy.cassette.secret_names import DEFAULT_NOT_SECRET_NAMES, DEFAULT_SECRET_NAMES, NameRules, normalize
from llmock_proxy.cassette.secret_streams import cut
from llmock_proxy.cassette.secret_values import MAX_VALUES, spellings, trie_pattern

# Key-shaped test values, one per built-in pattern. None of them is a real credential.
KEYS = {
    "sk-test": "sk-test-" + "a1b2c3d4e5",
    "sk-proj": "sk-proj-" + "Zx9" * 10,
    "sk-ant": "sk-ant-api03-" + "Q7w" * 10,
    "sk-plain": "sk-" + "0123456789abcdefghijKLMN",
    "google": "AIza" + "SyDUMMYdummy0123456789_abcdefghij",
    "google-oauth": "ya29." + "a0DUMMYdummy0123456789",
    "aws-akia": "AKIA" + "IOSFODNN7EXAMPLE",
    "aws-asia": "ASIA" + "Y34FZKBOKMUTVV7A",
    "github": "ghp_" + "x" * 36,
    "github-pat": "github_pat_" + "11AAAAAAA0" * 4,
    "slack": "xoxb-" + "1234567890-abcdefghij",
    "openai-ephemeral": "ek_" + "68af0123456789abcdef0123",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "groq": "gsk_" + "testFAKE0123456789abcdefghijKLMN",
    "xai": "xai-" + "testFAKE0123456789abcdefghijKLMN",
    "huggingface": "hf_" + "testFAKE0123456789abcdefghij",
    "replicate": "r8_" + "testFAKE0123456789abcdefghij",
    "gitlab": "glpat-" + "test-FAKE-0123456789ab",
    "stripe-live": "sk_live_" + "testFAKE0123456789",
    "stripe-restricted": "rk_live_" + "testFAKE0123456789",
    "stripe-test": "sk_test_" + "testFAKE0123456789",
    "perplexity": "pplx-" + "testFAKE0123456789abcdefghij",
    "bedrock": "ABSK" + "QmVkcm9ja0FQSUtleS10ZXN0RkFLRS0wMTIzNDU2Nzg5YWJjZGVm",
    "npm": "npm_" + "testFAKE0123456789abcdefghijklmnop",
    "pypi": "pypi-AgE" + "testFAKE0123456789abcdefghij",
    "google-client-secret": "GOCSPX-" + "testFAKE0123456789abcdef",
    "langsmith": "lsv2_pt_" + "testFAKE0123456789abcdef_01",
    "private-key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\ntestFAKE+/=\n-----END PRIVATE KEY-----",
}
# Shapes known by what stands before them: (text, the part that is secret).
CONTEXT_SECRETS = {
    "slack-webhook": ("https://hooks.slack.com/services/" + "T0TESTFAKE/B0TESTFAKE/testFAKE0123456789abcd",
                      "T0TESTFAKE/B0TESTFAKE/testFAKE0123456789abcd"),
    "aws-secret": ("aws_secret_access_key = " + "testFAKEtestFAKE/testFAKE+testFAKE012345",
                   "testFAKEtestFAKE/testFAKE+testFAKE012345"),
}
BEARER_TOKEN = "abcDEF0123456789ghiJKL"

redactor = Redactor.default()


def _interaction(**parts: object) -> Interaction:
    return Interaction(
        request=parts.get("request") or Request("POST", "https://api.test/v1/x"),  # type: ignore[arg-type]
        response=parts.get("response"),  # type: ignore[arg-type]
    )


# -- request headers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["x-api-key", "api-key", "x-goog-api-key", "cookie", "x-amz-security-token",
             "openai-organization", "openai-project"],
)
def test_sensitive_request_headers_become_the_placeholder(name: str) -> None:
    request = Request("POST", "https://api.test/", {name: "anything-at-all", "content-type": "application/json"})
    out = redactor.redact_request(request)
    assert out.headers == {name: PLACEHOLDER, "content-type": "application/json"}


@pytest.mark.parametrize("name", ["authorization", "proxy-authorization", "Authorization"])
@pytest.mark.parametrize(
    "value, expected",
    [
        (f"Bearer {KEYS['sk-test']}", "Bearer <redacted>"),
        ("Bearer short", "Bearer <redacted>"),
        ("Basic dXNlcjpwYXNz", "Basic <redacted>"),
        ("token-without-scheme", "<redacted>"),
        ("Bearer <redacted>", "Bearer <redacted>"),
    ],
)
def test_authorization_keeps_its_scheme(name: str, value: str, expected: str) -> None:
    assert redactor.redact_request(Request("GET", "https://api.test/", {name: value})).headers == {name: expected}


def test_aws_sigv4_authorization_keeps_scope_and_signed_headers() -> None:
    value = (
        f"AWS4-HMAC-SHA256 Credential={KEYS['aws-akia']}/20250101/us-east-1/bedrock/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, "
        "Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"
    )
    out = redactor.redact_request(Request("POST", "https://bedrock.test/", {"authorization": value}))
    assert out.headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=<redacted>/20250101/us-east-1/bedrock/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, Signature=<redacted>"
    )


# -- query parameters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "param",
    ["key", "api_key", "apikey", "access_token", "token", "X-Amz-Signature", "X-Amz-Credential",
     "X-Amz-Security-Token", "sig", "signature", "KEY", "x-amz-signature"],
)
def test_sensitive_query_parameters_are_redacted_url_safely(param: str) -> None:
    url = f"https://api.test/v1/models/m:generate?alt=sse&{param}=s3cr3t%2Fvalue&x=1#frag"
    assert redactor.redact_url(url) == f"https://api.test/v1/models/m:generate?alt=sse&{param}={URL_PLACEHOLDER}&x=1#frag"


def test_query_redaction_leaves_the_rest_of_the_url_verbatim() -> None:
    url = "https://api.test/p%20q?a=1&&b&c=%7E&key=abc&key=def&token=&d=x%3Dy"
    assert redactor.redact_url(url) == "https://api.test/p%20q?a=1&&b&c=%7E&key=REDACTED&key=REDACTED&token=&d=x%3Dy"


def test_percent_encoded_parameter_names_are_recognised() -> None:
    assert redactor.redact_url("https://a.test/?api%5Fkey=v") == "https://a.test/?api%5Fkey=REDACTED"


def test_key_shaped_values_in_url_paths_use_the_url_placeholder() -> None:
    url = f"https://api.test/v1/keys/{KEYS['sk-proj']}/usage?q={KEYS['google']}"
    assert redactor.redact_url(url) == "https://api.test/v1/keys/REDACTED/usage?q=REDACTED"


# -- response headers ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["set-cookie", "openai-organization", "openai-project", "anthropic-organization-id"])
def test_sensitive_response_headers_become_the_placeholder(name: str) -> None:
    response = Response(200, {name: "org-abc", "x-request-id": "req_123"})
    assert redactor.redact_response(response).headers == {name: PLACEHOLDER, "x-request-id": "req_123"}


# -- key-shaped values anywhere -------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_each_key_shape_is_redacted_in_text(kind: str) -> None:
    key = KEYS[kind]
    text = f"the key is {key}, keep it safe"
    assert redactor.redact_text(text) == f"the key is {PLACEHOLDER}, keep it safe"


def test_bearer_tokens_anywhere_keep_the_word_bearer() -> None:
    assert redactor.redact_text(f"curl -H 'Authorization: Bearer {BEARER_TOKEN}'") == (
        "curl -H 'Authorization: Bearer <redacted>'"
    )
    assert redactor.redact_text(f"bearer   {BEARER_TOKEN}") == "bearer   <redacted>"


@pytest.mark.parametrize(
    "harmless",
    [
        "Use Bearer authentication with your token.",
        "scikit-learn and sk-learn are libraries",
        "task-" + "1234567890abcdefghijklmnop",  # split so repository key scans stay quiet
        "chatcmpl-AbCdEf0123456789xyzXYZ",
        "msg_01XFDUDYJgAACzvnptvVoYEL",
        "week_number_of_the_year_2025_is_here",
        "AKIAshort",
        "The word BEARER alone",
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk",
    ],
)
def test_ordinary_text_is_left_alone(harmless: str) -> None:
    assert redactor.redact_text(harmless) == harmless


@pytest.mark.parametrize("kind", sorted(CONTEXT_SECRETS))
def test_shapes_known_by_their_context_lose_the_secret_part(kind: str) -> None:
    text, secret = CONTEXT_SECRETS[kind]
    out = redactor.redact_text(f"config: {text}\n")
    assert secret not in out and PLACEHOLDER in out
    assert out == f"config: {text.replace(secret, PLACEHOLDER)}\n"


@pytest.mark.parametrize(
    "harmless",
    [
        "the hf_hub_download helper", "use sk_live mode", "xai-grok-2 is a model", "an r8_ prefix",
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOC\n-----END PUBLIC KEY-----",
        "secret_access_key = short", "https://hooks.slack.com/services/",
    ],
)
def test_new_key_shapes_leave_look_alikes_alone(harmless: str) -> None:
    assert redactor.redact_text(harmless) == harmless


_SAMPLES = [*KEYS.values(), f"Bearer {BEARER_TOKEN}", *(text for text, _ in CONTEXT_SECRETS.values())]


def test_every_builtin_pattern_is_exercised() -> None:
    hit = {p.name for p in BUILTIN_PATTERNS for key in _SAMPLES if p.regex.search(key)}
    assert hit == {p.name for p in BUILTIN_PATTERNS}


def test_each_builtin_patterns_matches_contain_one_of_its_literals() -> None:
    # The fast path skips texts holding none of a pattern's literals.
    for pattern in BUILTIN_PATTERNS:
        for sample in _SAMPLES:
            for m in pattern.regex.finditer(sample):
                found = m.group(0).lower() if pattern.fold_case else m.group(0)
                assert any(lit in found for lit in pattern.literals), (pattern.name, sample)


def _secret_free(value: object) -> bool:
    text = json.dumps(value, default=lambda o: o.__dict__)
    return not any(key in text for key in KEYS.values()) and BEARER_TOKEN not in text


def test_keys_are_redacted_in_every_part_of_an_interaction() -> None:
    k = KEYS
    interaction = Interaction(
        request=Request(
            "POST",
            f"https://api.test/v1/{k['sk-plain']}?key={k['google']}",
            {"x-custom-token": k["github"], "user-agent": f"app (key {k['slack']})"},
            Payload.json({"messages": [{"role": "user", "content": f"use {k['sk-test']}"}]}),
        ),
        response=Response(
            200,
            {"x-echo": k["sk-ant"]},
            events=[
                SSEEvent(data={"delta": k["sk-proj"]}, event="message", id=k["openai-ephemeral"], comment=k["google-oauth"], t=1),
                SSEEvent(data=f"text {k['aws-asia']}", t=2),
            ],
        ),
        match={"family": "openai.chat", "userMessage": f"use {k['sk-test']}", "toolNames": [k["github-pat"]]},
        summary={"text": f"I saw {k['jwt']}", "tool_calls": [{"name": "f", "arguments": {"k": k["slack"]}}]},
        error=f"upstream said {k['sk-plain']}",
        incomplete=f"closed after {k['sk-test']}",
    )
    out = redactor.redact_interaction(interaction)
    assert _secret_free(out.to_dict())
    assert out.request.url == "https://api.test/v1/REDACTED?key=REDACTED"
    assert out.request.headers["user-agent"] == "app (key <redacted>)"
    assert out.response.events[0].data == {"delta": PLACEHOLDER}
    assert out.match["userMessage"] == "use <redacted>"
    assert out.summary["tool_calls"][0]["arguments"] == {"k": PLACEHOLDER}


@pytest.mark.parametrize(
    "response",
    [
        Response(200, lines=[NDJSONLine({"message": {"content": KEYS["sk-test"]}}, 1.0)]),
        Response(200, frames=[EventStreamFrame({":event-type": "chunk", ":note": KEYS["aws-akia"]},
                                               Payload.json({"bytes": KEYS["sk-ant"]}), 1.0)]),
        Response(200, frames=[EventStreamFrame({":event-type": "chunk"},
                                               Payload("base64", base64.b64encode(f"\x00\x01{KEYS['sk-proj']}\xff".encode("latin-1")).decode()), 1.0)]),
        Response(101, websocket=WebSocketSession(messages=[
            WSMessage(True, Payload.json({"type": "session.update", "key": KEYS["google"]}), t=1),
            WSMessage(False, Payload("text", f"hello {KEYS['slack']}"), t=2),
            WSMessage(False, Payload("base64", base64.b64encode(KEYS["github"].encode()).decode()), binary=True, t=3),
        ], close=WSClose(1008, f"bad key {KEYS['sk-plain']}", "server", 4))),
        Response(200, body=Payload("text", f"key={KEYS['sk-test']}")),
        Response(200, body=Payload("base64", base64.b64encode(f"bin {KEYS['jwt']} bin".encode()).decode())),
    ],
    ids=["ndjson", "frame-json", "frame-base64", "websocket", "text-body", "base64-body"],
)
def test_keys_are_redacted_in_every_wire_form(response: Response) -> None:
    out = redactor.redact_response(response)
    dumped = cassette_store.dumps(Cassette([Interaction(Request("GET", "https://a.test/"), out)]))
    decoded = [base64.b64decode(b) for b in _base64_values(out.to_dict())]
    for key in KEYS.values():
        assert key not in dumped
        assert all(key.encode() not in raw for raw in decoded)
    assert cassette_store.parse(dumped).interactions[0].response == out  # still a valid cassette


def _base64_values(value: object) -> list[str]:
    if isinstance(value, dict):
        return [v for k, v in value.items() if k == "base64" and isinstance(v, str)] + [
            x for v in value.values() for x in _base64_values(v)
        ]
    if isinstance(value, list):
        return [x for v in value for x in _base64_values(v)]
    return []


def test_a_secret_behind_an_escaped_character_is_still_found() -> None:
    # The fast path looks at the JSON spelling; escapes must not hide a key.
    for before in ["\t", '"', "\\", "\n", "é", "\u2028"]:
        out = redactor.redact_interaction(
            Interaction(Request("POST", "https://a.test/", body=Payload.json({"x": f"{before}{KEYS['sk-test']}"})))
        )
        assert out.request.json == {"x": f"{before}{PLACEHOLDER}"}


@settings(max_examples=150, deadline=None)
@given(
    st.text(" \n\t.,:;=\"'(){}[]<>/abcXYZ019", max_size=20),
    st.sampled_from(sorted(KEYS.values())),
    st.text(" \n\t.,:;=\"'(){}[]<>/", max_size=20),
)
def test_a_key_between_any_separators_is_removed(before: str, key: str, after: str) -> None:
    out = redactor.redact_interaction(
        Interaction(Request("POST", "https://a.test/", body=Payload.json({"v": f"{before} {key}{after}"})))
    )
    assert key not in json.dumps(out.to_dict())


# -- copies and idempotence --------------------------------------------------------------------


def _full_interaction() -> Interaction:
    return Interaction(
        request=Request("POST", f"https://a.test/?key={KEYS['google']}", {"authorization": f"Bearer {KEYS['sk-test']}"},
                        Payload.json({"k": KEYS["sk-proj"]})),
        response=Response(200, {"set-cookie": "s=1"}, events=[SSEEvent(data={"k": KEYS["sk-ant"]}, t=1)]),
        match={"userMessage": KEYS["sk-test"]},
        summary={"text": KEYS["jwt"]},
    )


def test_the_callers_objects_are_never_mutated() -> None:
    original = _full_interaction()
    before = copy.deepcopy(original)
    redactor.redact_interaction(original)
    redactor.redact_request(original.request)
    redactor.redact_response(original.response)  # type: ignore[arg-type]
    redactor.checked_dump(Cassette([original]), where="x.yaml")
    assert original == before


def test_redaction_is_idempotent() -> None:
    once = redactor.redact_interaction(_full_interaction())
    assert redactor.redact_interaction(once) == once


# -- the refuse-to-write scan ------------------------------------------------------------------


def test_checked_dump_returns_redacted_yaml() -> None:
    text = redactor.checked_dump(Cassette([_full_interaction()]), where="x.yaml")
    assert _secret_free(text)
    assert "authorization: Bearer <redacted>" in text
    assert "key=REDACTED" in text
    assert redactor.scan(text) == []
    assert len(cassette_store.parse(text).interactions) == 1


def test_a_key_that_survives_redaction_refuses_the_write_naming_where() -> None:
    key = KEYS["sk-test"]
    cassette = Cassette([
        _interaction(),
        _interaction(response=Response(200, body=Payload.json({"choices": [{"logprobs": {key: -0.1}}]}))),
    ])
    with pytest.raises(SecretFound) as info:
        redactor.checked_dump(cassette, where="cassettes/chat.yaml")
    message = str(info.value)
    assert message.startswith("cassettes/chat.yaml: refusing to write:")
    assert "interactions[1].response.json.choices[0].logprobs.sk-te… (a mapping key)" in message
    assert "'sk-te…'" in message
    assert key not in message and key not in repr(info.value.findings)
    assert isinstance(info.value, ValueError)


def test_meta_is_redacted_and_scanned_too() -> None:
    text = redactor.checked_dump(Cassette(meta={"note": KEYS["aws-akia"]}), where="x.yaml")
    assert KEYS["aws-akia"] not in text
    with pytest.raises(SecretFound, match=r"meta\.AKIAI… \(a mapping key\)"):
        redactor.checked_dump(Cassette(meta={KEYS["aws-akia"]: 1}), where="x.yaml")


def test_scan_of_text_reports_line_numbers_with_masked_prefixes() -> None:
    text = f"a: 1\nb: {KEYS['sk-test']}\nc: ok\nd: Bearer {BEARER_TOKEN}\n"
    findings = redactor.scan(text)
    assert [(f.where, f.masked) for f in findings] == [("line 2", "sk-te…"), ("line 4", "abcDE…")]
    assert all(KEYS["sk-test"] not in str(f) for f in findings)


def test_scan_of_data_reports_field_paths_and_unredacted_sensitive_headers() -> None:
    interaction = Interaction(
        Request("GET", "https://a.test/", {"x-api-key": "plain-value", "authorization": "Bearer <redacted>"}),
        Response(200, {"set-cookie": "<redacted>"}, body=Payload("base64", base64.b64encode(KEYS["slack"].encode()).decode())),
    )
    findings = redactor.scan(Cassette([interaction]))
    assert [(f.where, f.rule) for f in findings] == [
        ("interactions[0].request.headers.x-api-key", "sensitive header"),
        ("interactions[0].response.base64", "Slack token"),
    ]


def test_mask_shows_five_characters() -> None:
    assert mask(KEYS["sk-proj"]) == "sk-pr…"


def test_cassette_save_goes_through_the_choke_point(tmp_path: Path) -> None:
    target = cassette_store.save(Cassette([_full_interaction()]), tmp_path / "c.yaml")
    assert _secret_free(target.read_text())


# -- rules files -----------------------------------------------------------------------------


RULES_YAML = r"""
# extra rules for our own services
headers: [X-Internal-Token]
request_headers: [x-tenant]
response_headers: [x-debug-session]
query_params: [session_id]
json_paths:
  - client_secret.value
  - data[*].secret
  - "[*].password"
  - items[1].ref
  - "*.pin"
patterns:
  - 'acme_[A-Za-z0-9]{16}'
  - 'password=(\S+)'
"""


@pytest.fixture
def custom(tmp_path: Path) -> Redactor:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES_YAML)
    return Redactor.from_file(path)


def test_rules_file_adds_headers_and_query_params(custom: Redactor) -> None:
    request = Request("GET", "https://a.test/?session_id=42&key=9", {"x-internal-token": "t", "x-tenant": "acme", "authorization": "Bearer x"})
    out = custom.redact_request(request)
    assert out.url == "https://a.test/?session_id=REDACTED&key=REDACTED"
    assert out.headers == {"x-internal-token": PLACEHOLDER, "x-tenant": PLACEHOLDER, "authorization": "Bearer <redacted>"}
    response = custom.redact_response(Response(200, {"X-Internal-Token": "t", "x-debug-session": "d", "x-tenant": "kept"}))
    assert response.headers == {"X-Internal-Token": PLACEHOLDER, "x-debug-session": PLACEHOLDER, "x-tenant": "kept"}


def test_rules_file_json_paths_apply_to_bodies_events_lines_and_messages(custom: Redactor) -> None:
    body = {"client_secret": {"value": "ek_live", "expires_at": 1}, "data": [{"secret": 1, "id": "a"}, {"id": "b"}],
            "items": [{"ref": "keep"}, {"ref": "drop"}], "user": {"pin": 1234, "name": "n"}}
    expected = {"client_secret": {"value": PLACEHOLDER, "expires_at": 1},
                "data": [{"secret": PLACEHOLDER, "id": "a"}, {"id": "b"}],
                "items": [{"ref": "keep"}, {"ref": PLACEHOLDER}], "user": {"pin": PLACEHOLDER, "name": "n"}}
    out = custom.redact_interaction(Interaction(
        Request("POST", "https://a.test/", body=Payload.json([{"password": "hunter2", "user": "u"}])),
        Response(200, body=Payload.json(body)),
    ))
    assert out.request.json == [{"password": PLACEHOLDER, "user": "u"}]
    assert out.response.json == expected
    events = custom.redact_response(Response(200, events=[SSEEvent(data=body, t=1), SSEEvent(data=json.dumps(body), t=2)]))
    assert events.events[0].data == expected
    assert json.loads(events.events[1].data) == expected
    lines = custom.redact_response(Response(200, lines=[NDJSONLine(body, 1)]))
    assert lines.lines[0].data == expected
    ws = custom.redact_response(Response(101, websocket=WebSocketSession([
        WSMessage(False, Payload.json(body), t=1), WSMessage(False, Payload("text", json.dumps(body)), t=2)])))
    assert ws.websocket.messages[0].payload.value == expected
    assert json.loads(ws.websocket.messages[1].payload.value) == expected
    text_body = custom.redact_request(Request("POST", "https://a.test/", body=Payload("text", json.dumps(body))))
    assert json.loads(text_body.body.value) == expected


def test_rules_file_patterns_replace_the_match_or_its_first_group(custom: Redactor) -> None:
    assert custom.redact_text("id acme_0123456789abcdef here") == "id <redacted> here"
    assert custom.redact_text("login password=hunter2 done") == "login password=<redacted> done"
    findings = custom.scan("x: acme_0123456789abcdef\n")
    assert [(f.where, f.rule, f.masked) for f in findings] == [("line 1", "rule patterns[0]", "acme_…")]


def test_rules_file_keeps_the_defaults(custom: Redactor) -> None:
    assert custom.redact_text(KEYS["sk-test"]) == PLACEHOLDER


def test_rules_file_in_json(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"query_params": ["sid"], "json_paths": ["a.b"]}))
    custom = Redactor.from_file(path)
    assert custom.redact_url("https://a.test/?sid=1") == "https://a.test/?sid=REDACTED"
    out = custom.redact_request(Request("POST", "https://a.test/", body=Payload.json({"a": {"b": 1}})))
    assert out.json == {"a": {"b": PLACEHOLDER}}


def test_an_empty_rules_file_means_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("# nothing yet\n")
    assert Redactor.from_file(path).rules == Redactor.default().rules


@pytest.mark.parametrize(
    "text, problem",
    [
        ("header: [x]\n", r"rules\.yaml: unknown key\(s\) header; use headers, json_paths"),
        ("headers: x-token\n", r"rules\.yaml: headers: expected a list of non-empty strings"),
        ("patterns: ['([a-z']\n", r"rules\.yaml: patterns\[0\]: not a valid regular expression"),
        ("patterns: ['a*']\n", r"rules\.yaml: patterns\[0\]: 'a\*' matches the empty string"),
        ("json_paths: ['a..b']\n", r"rules\.yaml: json_paths\[0\]: empty step"),
        ("json_paths: ['a[x]']\n", r"rules\.yaml: json_paths\[0\]: cannot read JSON path"),
        ("- headers\n", r"rules\.yaml: expected a mapping of rule lists"),
        ("headers: [\n", r"rules\.yaml: not valid YAML"),
    ],
)
def test_bad_rules_files_name_the_file_and_entry(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(RulesError, match=problem):
        Redactor.from_file(path)


def test_a_missing_rules_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"nope\.yaml: cannot read redaction rules"):
        Redactor.from_file(tmp_path / "nope.yaml")


def test_the_rules_file_example_in_docs_loads(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "redaction.md").read_text(encoding="utf-8")
    (example,) = [b.split("\n", 1)[1] for b in text.split("```")[1::2] if b.startswith("yaml\n")]
    path = tmp_path / "redaction.yaml"
    path.write_text(example)
    custom = Redactor.from_file(path)
    assert custom.redact_url("https://a.test/?session_id=1") == "https://a.test/?session_id=REDACTED"
    out = custom.redact_response(Response(200, body=Payload.json({"client_secret": {"value": "ek_x"}})))
    assert out.json == {"client_secret": {"value": PLACEHOLDER}}


# The built-in key shapes as first written: the boundary lookbehind in front.
# The shipped patterns put it after the literal start (much faster over long
# texts); they must find exactly the same things.
_T = r"(?<![A-Za-z0-9_\-])"
REFERENCE_SHAPES = {
    "sk- API key": _T + r"sk-(?:test-[A-Za-z0-9_\-]+|(?:proj|ant|svcacct|admin|live)-[A-Za-z0-9_\-]{8,}"
                        r"|[A-Za-z0-9][A-Za-z0-9_\-]{19,})",
    "Google API key": _T + r"AIza[0-9A-Za-z_\-]{20,}",
    "Google OAuth token": _T + r"ya29\.[0-9A-Za-z_\-]{20,}",
    "AWS access key id": r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])",
    "GitHub token": r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})",
    "Slack token": r"(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9\-]{10,}",
    "OpenAI ephemeral key": r"(?<![A-Za-z0-9_])ek_[A-Za-z0-9]{24,}",
    "JWT": _T + r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    "Bearer token": r"(?<![A-Za-z0-9])(?i:bearer)\s+((?=[A-Za-z0-9._~+/\-]*[0-9])[A-Za-z0-9._~+/\-]{16,}=*)",
    "Groq API key": r"(?<![A-Za-z0-9_])gsk_[A-Za-z0-9]{20,}",
    "xAI API key": _T + r"xai-[A-Za-z0-9]{20,}",
    "Hugging Face token": r"(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{20,}",
    "Replicate token": r"(?<![A-Za-z0-9_])r8_[A-Za-z0-9]{20,}",
    "GitLab token": _T + r"glpat-[A-Za-z0-9_\-]{20,}",
    "Stripe key": r"(?<![A-Za-z0-9_])[sr]k_(?:live|test)_[A-Za-z0-9]{10,}",
    "Perplexity API key": _T + r"pplx-[A-Za-z0-9]{20,}",
    "Bedrock API key": r"(?<![A-Za-z0-9+/])ABSK[A-Za-z0-9+/]{40,}={0,2}",
    "npm token": r"(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{30,}",
    "PyPI token": _T + r"pypi-AgE[A-Za-z0-9_\-]{20,}",
    "Google OAuth client secret": _T + r"GOCSPX-[A-Za-z0-9_\-]{20,}",
    "LangSmith key": r"(?<![A-Za-z0-9_])lsv2_(?:pt|sk)_[A-Za-z0-9_]{20,}",
    # No lookbehind trick in these three: the shipped form is the reference.
    "Slack webhook": next(p.regex.pattern for p in BUILTIN_PATTERNS if p.name == "Slack webhook"),
    "private key": next(p.regex.pattern for p in BUILTIN_PATTERNS if p.name == "private key"),
    "AWS secret access key": next(p.regex.pattern for p in BUILTIN_PATTERNS if p.name == "AWS secret access key"),
}
_PIECES = ["sk-", "test-", "proj-", "AIza", "ya29.", "AKIA", "ASIA", "ghp_", "github_pat_", "xoxb-", "ek_",
           "eyJ", ".", "Bearer ", "a", "Z", "7", "_", "-", " ", "\n", "x" * 20, "A1" * 10,
           "gsk_", "xai-", "hf_", "r8_", "glpat-", "sk_live_", "rk_test_", "pplx-", "npm_", "pypi-AgE", "GOCSPX-",
           "lsv2_pt_", "ABSK", "+/", "="]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=30).map("".join))
def test_builtin_key_shapes_find_what_their_reference_form_finds(text: str) -> None:
    import re

    assert {p.name for p in BUILTIN_PATTERNS} == set(REFERENCE_SHAPES)
    for pattern in BUILTIN_PATTERNS:
        reference = re.compile(REFERENCE_SHAPES[pattern.name])
        shipped = [(m.span(), m.group(pattern.group)) for m in pattern.regex.finditer(text)]
        assert shipped == [(m.span(), m.group(pattern.group)) for m in reference.finditer(text)], pattern.name


# -- by name, generically ------------------------------------------------------------------------

SECRET_HEADER_NAMES = [
    "x-portkey-api-key", "x-api-token", "X-Auth-Token", "x-session-token", "helicone-auth", "X-Goog-Api-Key",
    "xApiToken", "X-API-Token", "x-custom-password", "x-access-key", "x-client-credentials", "x-refresh-token",
    "cf-access-client-secret", "x-upstream-authorization", "x-db-passwd",
]
KEPT_HEADER_NAMES = [
    "x-request-id", "x-ratelimit-remaining-tokens", "x-ratelimit-limit-tokens", "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-remaining", "x-amzn-bedrock-input-token-count", "access-control-allow-credentials",
    "content-type", "user-agent", "openai-processing-ms", "idempotency-key", "x-stainless-retry-count",
]


@pytest.mark.parametrize("name", SECRET_HEADER_NAMES)
def test_header_names_that_say_credential_are_redacted_in_requests_and_responses(name: str) -> None:
    value = "opaque-value-0042"
    out = redactor.redact_interaction(Interaction(Request("GET", "https://a.test/", {name: value}),
                                                  Response(200, {name: value})))
    assert out.request.headers == {name: PLACEHOLDER}
    assert out.response is not None and out.response.headers == {name: PLACEHOLDER}


@pytest.mark.parametrize("name", KEPT_HEADER_NAMES)
def test_header_names_that_only_mention_tokens_or_credentials_are_kept(name: str) -> None:
    value = "value-kept-0042"
    out = redactor.redact_interaction(Interaction(Request("GET", "https://a.test/", {name: value}),
                                                  Response(200, {name: value})))
    assert out.request.headers == {name: value}
    assert out.response is not None and out.response.headers == {name: value}


@pytest.mark.parametrize(
    "query, expected",
    [
        ("auth=abc123", "auth=REDACTED"),
        ("client_secret=abc123&client_id=app", "client_secret=REDACTED&client_id=app"),
        ("x-goog-api-key=abc123", "x-goog-api-key=REDACTED"),
        ("apiKey=abc123", "apiKey=REDACTED"),
        ("password=abc123", "password=REDACTED"),
        ("refresh_token=abc123", "refresh_token=REDACTED"),
        ("alt=sse;key=abc123", "alt=sse;key=REDACTED"),
        ("pageToken=next-page&pageSize=10", "pageToken=next-page&pageSize=10"),
        ("max_tokens=5&alt=sse", "max_tokens=5&alt=sse"),
    ],
)
def test_query_parameter_names_that_say_credential_are_redacted(query: str, expected: str) -> None:
    assert redactor.redact_url(f"https://a.test/v1/x?{query}") == f"https://a.test/v1/x?{expected}"


def test_a_credential_in_the_url_fragment_is_redacted() -> None:
    url = "https://a.test/callback#access_token=abc123&state=xyz"
    assert redactor.redact_url(url) == "https://a.test/callback#access_token=REDACTED&state=xyz"


SECRET_FIELDS = {
    "api_key": "body-key-0042",
    "apiKey": "body-key-0042",
    "aws_secret_access_key": "aws-secret-0042",
    "client_secret": "client-secret-0042",
    "refresh_token": "refresh-0042",
    "private_key": "pem-0042",
    "passphrase": "passphrase-0042",
    "auth": "auth-0042",
    "secretKey": "secret-0042",
    "session_token": "session-0042",
}


@pytest.mark.parametrize("name", sorted(SECRET_FIELDS))
def test_json_field_names_that_say_credential_are_redacted_in_requests_and_answers(name: str) -> None:
    body = {"model": "m", name: SECRET_FIELDS[name]}
    out = redactor.redact_interaction(Interaction(
        Request("POST", "https://a.test/", body=Payload.json(body)),
        Response(200, events=[SSEEvent(data=body, t=1)], lines=None),
    ))
    assert out.request.json == {"model": "m", name: PLACEHOLDER}
    assert out.response is not None and out.response.events is not None
    assert out.response.events[0].data == {"model": "m", name: PLACEHOLDER}


def test_strings_under_a_credential_name_are_redacted_at_any_depth_numbers_stay() -> None:
    body = {
        "credentials": {"password": "pw-0042", "user": "bob"},
        "client_secret": {"value": "opaque-0042", "expires_at": 1750000000},
        "tools": [{"type": "mcp", "server_url": "https://mcp.test", "authorization": "mcp-0042",
                   "headers": {"Authorization": "Bearer mcp-0043", "X-Trace": "t"}}],
        "mcp_servers": [{"name": "s", "authorization_token": "mcp-0044"}],
    }
    out = redactor.redact_request(Request("POST", "https://a.test/", body=Payload.json(body)))
    assert out.json == {
        "credentials": {"password": PLACEHOLDER, "user": PLACEHOLDER},
        "client_secret": {"value": PLACEHOLDER, "expires_at": 1750000000},
        "tools": [{"type": "mcp", "server_url": "https://mcp.test", "authorization": PLACEHOLDER,
                   "headers": {"Authorization": PLACEHOLDER, "X-Trace": "t"}}],
        "mcp_servers": [{"name": "s", "authorization_token": PLACEHOLDER}],
    }


def test_llm_fields_that_mention_tokens_or_signatures_are_kept() -> None:
    body = {
        "max_tokens": 5, "max_output_tokens": 9, "max_response_output_tokens": "inf", "tokenizer": "cl100k_base",
        "usage": {"prompt_tokens": 1, "total_tokens": 2, "prompt_tokens_details": {"cached_tokens": 0},
                  "input_token_details": {"text_tokens": 1}},
        "usageMetadata": {"promptTokenCount": 3, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 3}]},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "content": [{"type": "thinking", "thinking": "hmm", "signature": "EqQBCkgIARABGAIiQL"}],
        "parts": [{"text": "a", "thoughtSignature": "CiQB0e2Kb7"}],
        "logprobs": {"content": [{"token": "Hel", "logprob": -0.1, "bytes": [72],
                                  "top_logprobs": [{"token": "Hel", "logprob": -0.1}]}]},
        "logprobsResult": {"chosenCandidates": [{"token": "lo", "logProbability": -0.2}]},
        "token_likelihoods": [{"token": "x", "likelihood": -1.5}],
        "nextPageToken": "page-2", "next_page_token": "page-3", "token_type": "Bearer",
        "model_info": {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a", "b"]},
    }
    out = redactor.redact_response(Response(200, body=Payload.json(body)))
    assert out.json == body


@pytest.mark.parametrize(
    "name, normal",
    [("X-API-Token", "x_api_token"), ("xApiToken", "x_api_token"), ("x_api__token", "x_api_token"),
     ("APIKey", "api_key"), ("promptTokenCount", "prompt_token_count"), ("tokenizer.ggml.model", "tokenizer_ggml_model")],
)
def test_names_are_normalised_before_the_globs_apply(name: str, normal: str) -> None:
    assert normalize(name) == normal


def test_explain_names_the_rule_that_decides() -> None:
    names = NameRules()
    assert names.explain("x-portkey-api-key") == "'x-portkey-api-key' (x_portkey_api_key) is a secret name: '*api_key*'"
    assert names.explain("max_tokens") == (
        "'max_tokens' (max_tokens) matches secret name '*token*' but also not-secret name '*tokens'"
    )
    assert names.explain("model") == "'model' (model) matches no secret name"


def test_every_default_secret_glob_and_allow_list_entry_is_exercised() -> None:
    secret_names = [*SECRET_HEADER_NAMES, *SECRET_FIELDS, "credentials", "x-cookie-jar", "token", "x_auth",
                    "authorization", "x-apikey"]
    kept_names = [*KEPT_HEADER_NAMES, "max_tokens", "prompt_tokens_details", "promptTokenCount", "token_counts",
                  "input_token_details", "input_token_limit", "thinking_token_budget", "stop_token_id",
                  "stop_token_ids", "token_type", "token_strings", "token_likelihoods", "token_logprobs",
                  "tokenizer", "hf_tokenizer_name", "page_token", "next_token", "continuation_token"]
    names = NameRules()
    assert all(names.is_secret(n) for n in secret_names), [n for n in secret_names if not names.is_secret(n)]
    assert not any(names.is_secret(n) for n in kept_names), [n for n in kept_names if names.is_secret(n)]
    used_secret = {g for n in secret_names for g in DEFAULT_SECRET_NAMES if fnmatch.fnmatchcase(normalize(n), g)}
    used_allowed = {g for n in kept_names for g in DEFAULT_NOT_SECRET_NAMES if fnmatch.fnmatchcase(normalize(n), g)}
    assert used_secret == set(DEFAULT_SECRET_NAMES)
    assert used_allowed == set(DEFAULT_NOT_SECRET_NAMES)


def test_rules_file_adds_secret_names_and_exempts_others(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("secret_names: ['*tenant*']\nnot_secret_names: [x_session_token]\n")
    custom = Redactor.from_file(path)
    out = custom.redact_interaction(Interaction(
        Request("GET", "https://a.test/?tenant_id=acme", {"x-tenant": "acme", "x-session-token": "s-1"},
                Payload.json({"tenantName": "acme", "api_key": "k-1"})),
    ))
    assert out.request.url == "https://a.test/?tenant_id=REDACTED"
    assert out.request.headers == {"x-tenant": PLACEHOLDER, "x-session-token": "s-1"}
    assert out.request.json == {"tenantName": PLACEHOLDER, "api_key": PLACEHOLDER}
    assert Redactor.from_file(path).rules.names.explain("x-session-token").endswith("not-secret name 'x_session_token'")


def test_form_bodies_are_redacted_by_field_name() -> None:
    form = "grant_type=client_credentials&client_id=app&client_secret=form-secret-0042&scope=a+b"
    request = Request("POST", "https://a.test/oauth/token", {"content-type": "application/x-www-form-urlencoded"},
                      Payload("text", form))
    out = redactor.redact_request(request)
    assert out.body == Payload("text", "grant_type=client_credentials&client_id=app&client_secret=REDACTED&scope=a+b")
    # Text that merely looks like pairs is left alone without the form content type.
    assert redactor.redact_request(replace(request, headers={})).body == request.body


def test_url_userinfo_is_dropped_and_its_password_redacted_everywhere() -> None:
    out = redactor.redact_interaction(Interaction(
        Request("POST", "http://gateway-user:gateway-pass-0042@127.0.0.1:8080/v1/chat/completions"),
        error="ClientConnectorError: Cannot connect to host (user gateway-pass-0042)",
    ))
    assert out.request.url == "http://127.0.0.1:8080/v1/chat/completions"
    assert out.error == "ClientConnectorError: Cannot connect to host (user <redacted>)"


def test_websocket_subprotocol_keys_are_redacted() -> None:
    value = "realtime, openai-insecure-api-key.opaque-ws-key-0042, openai-beta.realtime-v1"
    out = redactor.redact_interaction(Interaction(
        Request("GET", "wss://api.test/v1/realtime", {"sec-websocket-protocol": value}),
        Response(101, websocket=WebSocketSession([WSMessage(False, Payload.json({"echo": "opaque-ws-key-0042"}))],
                                                 subprotocol="realtime")),
    ))
    assert out.request.headers["sec-websocket-protocol"] == (
        "realtime, openai-insecure-api-key.<redacted>, openai-beta.realtime-v1"
    )
    assert out.response is not None and out.response.websocket is not None
    assert out.response.websocket.messages[0].payload.value == {"echo": PLACEHOLDER}


# -- by value: what was sent, wherever it comes back -----------------------------------------------

OPAQUE = "opaque-portkey-credential-0042"  # no key shape: only its name gives it away


def _echo_everywhere(value: str) -> Response:
    quoted = urllib.parse.quote(value, safe="")
    chunk = base64.b64encode(json.dumps({"delta": {"text": f"key {value}"}}).encode()).decode()
    return Response(
        200,
        {"x-echo": value, "content-type": "application/json"},
        body=Payload.json({"error": {"message": f"Incorrect API key provided: {value}.", "url": f"?k={quoted}",
                                     "basic": base64.b64encode(f"user:{value}".encode()).decode()}}),
        events=[SSEEvent(data={"text": value}, event="echo", id=value, t=1), SSEEvent(data=f"raw {value}", t=2)],
        lines=[NDJSONLine({"message": {"content": value}}, 3)],
        frames=[EventStreamFrame({":event-type": "chunk"}, Payload.json({"bytes": chunk, "p": "abc"}), 4),
                EventStreamFrame({":event-type": "blob"}, Payload("base64", base64.b64encode(
                    b"\x00\x01" + value.encode() + b"\xff").decode()), 5)],
        websocket=WebSocketSession([WSMessage(False, Payload.json({"type": "session.updated", "key": value}), t=6),
                                    WSMessage(False, Payload("text", f"hello {value}"), t=7)],
                                   close=WSClose(1008, f"bad key {value}", "server", 8)),
    )


def _holds(interaction: Interaction, value: str) -> list[str]:
    """Where ``value`` (or its base64 at any alignment, or its percent-encoding) is in the interaction."""
    forms = spellings(value)
    found = []
    for path, text, _ in _leaves_of(interaction.to_dict()):
        texts = [text]
        try:
            texts.append(base64.b64decode(text, validate=True).decode("latin-1"))
        except (binascii.Error, ValueError):
            pass
        if any(form in t for form in forms for t in texts):
            found.append(path)
    return found


def _leaves_of(data: object) -> list[tuple[str, str, bool]]:
    from llmock_proxy.cassette.redact import _leaves  # the scan's own walker

    return [(".".join(map(str, path)), text, is_key) for path, text, is_key in _leaves(data, ())]


@pytest.mark.parametrize(
    "request_",
    [
        Request("POST", "https://a.test/v1/x", {"x-portkey-api-key": OPAQUE}),
        Request("POST", "https://a.test/v1/x", {"authorization": f"Bearer {OPAQUE}"}),
        Request("POST", "https://a.test/v1/x", {"authorization": "Basic " + base64.b64encode(f"me:{OPAQUE}".encode()).decode()}),
        Request("POST", f"https://a.test/v1/x?key={OPAQUE}"),
        Request("POST", f"https://me:{OPAQUE}@a.test/v1/x"),
        Request("POST", "https://a.test/v1/x", body=Payload.json({"api_key": OPAQUE})),
        Request("GET", "wss://a.test/v1/realtime", {"sec-websocket-protocol": f"realtime, openai-insecure-api-key.{OPAQUE}"}),
    ],
    ids=["header", "bearer", "basic", "query", "userinfo", "json-field", "subprotocol"],
)
def test_a_value_sent_as_a_credential_is_removed_from_the_whole_interaction(request_: Request) -> None:
    interaction = Interaction(request_, _echo_everywhere(OPAQUE), match={"userMessage": f"what is {OPAQUE}?"},
                              summary={"text": f"it is {OPAQUE}"}, incomplete=f"closed after {OPAQUE}")
    out = redactor.redact_interaction(interaction)
    assert _holds(out, OPAQUE) == []
    assert out.response is not None and out.response.json is not None
    assert out.response.json["error"]["message"] == f"Incorrect API key provided: {PLACEHOLDER}."
    assert out.match["userMessage"] == f"what is {PLACEHOLDER}?"
    # The rest is untouched.
    assert out.response.events is not None and out.response.events[1].data == f"raw {PLACEHOLDER}"
    frames = out.response.frames or []
    inner = json.loads(base64.b64decode(frames[0].payload.value["bytes"]))
    assert inner == {"delta": {"text": f"key {PLACEHOLDER}"}} and frames[0].payload.value["p"] == "abc"


def test_values_found_by_a_json_path_are_removed_everywhere(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("json_paths: [session.ref]\n")
    custom = Redactor.from_file(path)
    out = custom.redact_interaction(Interaction(
        Request("POST", "https://a.test/", body=Payload.json({"session": {"ref": "ref-value-0042"}})),
        Response(200, body=Payload.json({"echo": "you sent ref-value-0042"})),
    ))
    assert out.response is not None and out.response.json == {"echo": f"you sent {PLACEHOLDER}"}


def test_short_values_are_redacted_only_where_they_were_found() -> None:
    out = redactor.redact_interaction(Interaction(
        Request("POST", "http://127.0.0.1:11434/v1/chat/completions", {"authorization": "Bearer ollama"}),
        Response(200, body=Payload.json({"model": "llama3", "system_fingerprint": "fp_ollama"})),
    ))
    assert out.request.headers["authorization"] == "Bearer <redacted>"
    assert out.response is not None and out.response.json == {"model": "llama3", "system_fingerprint": "fp_ollama"}


def test_an_interaction_without_credentials_is_returned_as_it_was() -> None:
    interaction = Interaction(
        Request("POST", "https://a.test/v1/x", {"content-type": "application/json"}, Payload.json({"q": "hi"})),
        Response(200, events=[SSEEvent(data={"delta": {"text": piece}}, t=i) for i, piece in enumerate("Hello there")]),
    )
    assert redactor.redact_interaction(interaction) == interaction


# -- by value and shape, across the items of a stream ----------------------------------------------

SPLIT_SECRET = "opaque-streamed-credential-0042"


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _split_forms(text: str, size: int) -> dict[str, Response]:
    pieces = _pieces(text, size)
    chunk = lambda piece: base64.b64encode(json.dumps({"type": "content_block_delta",  # noqa: E731
                                                       "delta": {"type": "text_delta", "text": piece}}).encode()).decode()
    return {
        "sse": Response(200, events=[SSEEvent(data={"choices": [{"index": 0, "delta": {"content": p}}]}, t=i)
                                     for i, p in enumerate(pieces)]),
        "sse-text": Response(200, events=[SSEEvent(data=p, t=i) for i, p in enumerate(pieces)]),
        "ndjson": Response(200, lines=[NDJSONLine({"message": {"role": "assistant", "content": p}, "done": False}, i)
                                       for i, p in enumerate(pieces)]),
        "eventstream": Response(200, frames=[
            EventStreamFrame({":event-type": "contentBlockDelta"},
                             Payload.json({"contentBlockIndex": 0, "delta": {"text": p}, "p": "abcdef"}), i)
            for i, p in enumerate(pieces)]),
        "eventstream-bytes": Response(200, frames=[
            EventStreamFrame({":event-type": "chunk"}, Payload.json({"bytes": chunk(p), "p": "ab"}), i)
            for i, p in enumerate(pieces)]),
        "websocket": Response(101, websocket=WebSocketSession([
            WSMessage(True, Payload.json({"type": "response.create"}), t=0),
            *(WSMessage(False, Payload.json({"type": "response.output_text.delta", "delta": p}), t=i + 1)
              for i, p in enumerate(pieces)),
        ])),
    }


def _stream_text(response: Response) -> str:
    if response.events is not None:
        return "".join(e.data if isinstance(e.data, str) else e.data["choices"][0]["delta"]["content"]
                       for e in response.events)
    if response.lines is not None:
        return "".join(x.data["message"]["content"] for x in response.lines)
    if response.frames is not None:
        out = ""
        for frame in response.frames:
            value = frame.payload.value
            inner = json.loads(base64.b64decode(value["bytes"])) if "bytes" in value else value
            out += inner["delta"]["text"]
        return out
    assert response.websocket is not None
    return "".join(m.payload.value["delta"] for m in response.websocket.messages if not m.from_client)


def _item_count_and_times(response: Response) -> list[float]:
    items = response.events or response.lines or response.frames or (
        response.websocket.messages if response.websocket else [])
    return [item.t for item in items]


@pytest.mark.parametrize("form", ["sse", "sse-text", "ndjson", "eventstream", "eventstream-bytes", "websocket"])
@pytest.mark.parametrize("size", [1, 3, 7])
def test_a_sent_value_streamed_back_in_pieces_is_removed_from_the_events_it_spans(form: str, size: int) -> None:
    text = f"Your key is {SPLIT_SECRET}, keep it safe."
    response = _split_forms(text, size)[form]
    out = redactor.redact_interaction(Interaction(
        Request("POST", "https://a.test/v1/x", {"x-api-token": SPLIT_SECRET}), response))
    assert out.response is not None
    assert _stream_text(out.response) == f"Your key is {PLACEHOLDER}, keep it safe."
    assert _item_count_and_times(out.response) == _item_count_and_times(response)
    assert _holds(out, SPLIT_SECRET) == []


@pytest.mark.parametrize("kind", ["sk-test", "groq", "huggingface", "github-pat", "jwt", "aws-akia"])
@pytest.mark.parametrize("size", [2, 5])
def test_a_key_shape_streamed_in_pieces_is_removed_without_having_been_sent(kind: str, size: int) -> None:
    text = f"Here: {KEYS[kind]} (do not share)"
    response = _split_forms(text, size)["sse"]
    out = redactor.redact_response(response)
    assert _stream_text(out) == f"Here: {PLACEHOLDER} (do not share)"


@settings(max_examples=300, deadline=None)
@given(
    st.text("ab \n", max_size=12),
    st.text("ab \n", max_size=12),
    st.lists(st.integers(1, 60), min_size=1, max_size=8),
)
def test_cut_removes_each_span_from_whatever_pieces_hold_it(before: str, after: str, cuts: list[int]) -> None:
    text = before + SPLIT_SECRET + after
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    pieces = [text[a:b] for a, b in zip(bounds, bounds[1:])]
    start = len(before)
    out = cut(pieces, [(start, start + len(SPLIT_SECRET))], PLACEHOLDER)
    assert len(out) == len(pieces)
    assert "".join(out) == before + PLACEHOLDER + after


def test_websocket_directions_are_separate_texts() -> None:
    # The client's and the server's messages interleave; a key split between
    # them is not one text (and neither side alone holds it).
    key = KEYS["sk-test"]
    session = WebSocketSession([WSMessage(True, Payload.json({"delta": key[:6]}), t=1),
                                WSMessage(False, Payload.json({"delta": key[6:]}), t=2)])
    out = redactor.redact_response(Response(101, websocket=session))
    assert out.websocket == session


def test_redaction_with_every_stage_is_idempotent() -> None:
    text = f"Your key is {SPLIT_SECRET}; also {KEYS['groq']}."
    once = redactor.redact_interaction(Interaction(
        Request("POST", f"https://u:{OPAQUE}@a.test/?auth={SPLIT_SECRET}", {"x-api-token": SPLIT_SECRET},
                Payload.json({"api_key": OPAQUE})),
        _split_forms(text, 3)["eventstream-bytes"],
    ))
    assert redactor.redact_interaction(once) == once


# -- the combined search of sent values -------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text("abc-", min_size=1, max_size=7), min_size=1, max_size=8), st.text("abc- ", max_size=40))
def test_the_values_trie_finds_what_a_longest_first_alternation_finds(words: list[str], text: str) -> None:
    import re

    flat = re.compile("|".join(re.escape(w) for w in sorted(set(words), key=lambda w: (-len(w), w))))
    trie = re.compile(trie_pattern(words))
    assert [m.span() for m in trie.finditer(text)] == [m.span() for m in flat.finditer(text)]


def test_the_values_trie_handles_long_values_and_deep_nesting() -> None:
    import re

    long = "k" * 4096
    assert re.compile(trie_pattern([long, long + "-x"])).fullmatch(long + "-x")
    nested = ["prefix-" + "y" * i for i in range(300)]  # each a prefix of the next
    assert re.compile(trie_pattern(nested)).fullmatch(nested[-1])


def test_past_the_caps_values_are_only_redacted_where_found() -> None:
    fields = {f"password_{i}": f"hostile-value-{i:04d}-xyz" for i in range(MAX_VALUES + 10)}
    echo = " ".join(fields.values())
    out = redactor.redact_interaction(Interaction(
        Request("POST", "https://a.test/"),
        Response(200, body=Payload.json({**fields, "echo": echo})),
    ))
    assert out.response is not None and out.response.json is not None
    assert all(out.response.json[name] == PLACEHOLDER for name in fields)
    kept = out.response.json["echo"].split(" ")
    assert kept.count(PLACEHOLDER) == MAX_VALUES and len(kept) == len(fields)


def test_a_deeply_nested_bedrock_chunk_is_left_encoded_not_a_crash() -> None:
    raw = b"[" * 5000 + b'"end"' + b"]" * 5000
    frame = EventStreamFrame({":event-type": "chunk"}, Payload.json({"bytes": base64.b64encode(raw).decode()}), 1)
    out = redactor.redact_response(Response(200, frames=[frame]))
    assert out.frames == [frame]
