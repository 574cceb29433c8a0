"""The redaction choke point: every default rule, rules files, the refuse-to-write scan."""

from __future__ import annotations

import base64
import copy
import json
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


def test_every_builtin_pattern_is_exercised() -> None:
    hit = {p.name for p in BUILTIN_PATTERNS for key in list(KEYS.values()) + [f"Bearer {BEARER_TOKEN}"] if p.regex.search(key)}
    assert hit == {p.name for p in BUILTIN_PATTERNS}


def test_each_builtin_patterns_matches_contain_one_of_its_literals() -> None:
    # The fast path skips texts holding none of a pattern's literals.
    for pattern in BUILTIN_PATTERNS:
        for sample in list(KEYS.values()) + [f"Bearer {BEARER_TOKEN}"]:
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
  - items[1].token
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
            "items": [{"token": "keep"}, {"token": "drop"}], "user": {"pin": 1234, "name": "n"}}
    expected = {"client_secret": {"value": PLACEHOLDER, "expires_at": 1},
                "data": [{"secret": PLACEHOLDER, "id": "a"}, {"id": "b"}],
                "items": [{"token": "keep"}, {"token": PLACEHOLDER}], "user": {"pin": PLACEHOLDER, "name": "n"}}
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
}
_PIECES = ["sk-", "test-", "proj-", "AIza", "ya29.", "AKIA", "ASIA", "ghp_", "github_pat_", "xoxb-", "ek_",
           "eyJ", ".", "Bearer ", "a", "Z", "7", "_", "-", " ", "\n", "x" * 20, "A1" * 10]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=30).map("".join))
def test_builtin_key_shapes_find_what_their_reference_form_finds(text: str) -> None:
    import re

    assert {p.name for p in BUILTIN_PATTERNS} == set(REFERENCE_SHAPES)
    for pattern in BUILTIN_PATTERNS:
        reference = re.compile(REFERENCE_SHAPES[pattern.name])
        shipped = [(m.span(), m.group(pattern.group)) for m in pattern.regex.finditer(text)]
        assert shipped == [(m.span(), m.group(pattern.group)) for m in reference.finditer(text)], pattern.name
