"""The sans-IO HTTP/1.1 request parser and answer heads (llmock_proxy.wire.http1), bytes in, events out."""

from __future__ import annotations

import json

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmock_proxy.wire.http1 import (
    Handover,
    HTTPRequest,
    Refusal,
    RequestParser,
    ResponseHeads,
    chunk,
    response_head,
)

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}).encode()


def post(body: bytes = BODY, *, target: str = "/v1/chat/completions", extra: str = "", version: str = "1.1") -> bytes:
    return (
        f"POST {target} HTTP/{version}\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer sk-test-parser\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def events(parser: RequestParser) -> list[HTTPRequest | Handover | Refusal]:
    out: list[HTTPRequest | Handover | Refusal] = []
    while (event := parser.next_request()) is not None:
        out.append(event)
    return out


def parse(data: bytes, **limits: int) -> list[HTTPRequest | Handover | Refusal]:
    parser = RequestParser(**limits)
    parser.feed(data)
    return events(parser)


def test_a_request_reads_whole() -> None:
    [request] = parse(post())
    assert isinstance(request, HTTPRequest)
    assert (request.method, request.target, request.version) == ("POST", "/v1/chat/completions", "1.1")
    assert request.headers == {
        "host": "127.0.0.1:8080",
        "content-type": "application/json",
        "authorization": "Bearer sk-test-parser",
        "content-length": str(len(BODY)),
    }
    assert request.body == BODY
    assert request.keep_alive


def test_split_byte_by_byte_reads_the_same_request_once_it_is_all_in() -> None:
    data = post()
    parser = RequestParser()
    for i in range(len(data) - 1):
        parser.feed(data[i : i + 1])
        assert parser.next_request() is None
    parser.feed(data[-1:])
    [request] = events(parser)
    assert isinstance(request, HTTPRequest) and request.body == BODY


def test_pipelined_requests_come_out_in_order() -> None:
    second = post(b'{"n": 2}', target="/v1/embeddings")
    requests = parse(post() + second + b"GET /__llmock/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [(r.method, r.target, r.body) for r in requests if isinstance(r, HTTPRequest)] == [
        ("POST", "/v1/chat/completions", BODY),
        ("POST", "/v1/embeddings", b'{"n": 2}'),
        ("GET", "/__llmock/health", b""),
    ]


def test_a_head_sent_again_reads_the_same_and_each_request_has_its_own_headers() -> None:
    # The parser reads a head it has just read from what it kept: what it
    # keeps must not leak from one request into the next.
    parser = RequestParser()
    parser.feed(post() + post())
    first, second = events(parser)
    assert isinstance(first, HTTPRequest) and isinstance(second, HTTPRequest)
    assert (second.method, second.target, second.headers, second.body, second.keep_alive) == (
        first.method, first.target, first.headers, first.body, first.keep_alive)
    first.headers["authorization"] = second.headers["authorization"] = "changed by a caller"
    parser.feed(post())
    [third] = events(parser)
    assert isinstance(third, HTTPRequest) and third.headers["authorization"] == "Bearer sk-test-parser"
    # The same head but for one header, and one that closes: each read as sent.
    parser.feed(post(extra="Connection: close\r\n"))
    [fourth] = events(parser)
    assert isinstance(fourth, HTTPRequest) and not fourth.keep_alive and fourth.headers["connection"] == "close"


def test_a_bad_head_sent_after_a_good_one_is_still_refused() -> None:
    parser = RequestParser()
    parser.feed(post() + post().replace(b"Content-Type:", b"Content Type:"))
    good, refused = events(parser)
    assert isinstance(good, HTTPRequest)
    assert isinstance(refused, Refusal) and refused.status == 400


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=30))
def test_any_split_of_pipelined_requests_reads_the_same(cuts: list[int]) -> None:
    data = post() + post(b"{}", extra="Connection: close\r\n")
    parser = RequestParser()
    seen: list[HTTPRequest | Handover | Refusal] = []
    pos = 0
    for size in [*cuts, len(data)]:
        parser.feed(data[pos : pos + size])
        pos += size
        seen += events(parser)
    assert [(r.body, r.keep_alive) for r in seen if isinstance(r, HTTPRequest)] == [(BODY, True), (b"{}", False)]


def test_a_big_body_in_many_reads_is_read_whole_with_what_follows_it() -> None:
    body = json.dumps({"input": "x" * 5_000_000}).encode()
    data = post(body) + post()
    parser = RequestParser()
    seen: list[HTTPRequest | Handover | Refusal] = []
    for pos in range(0, len(data), 65536):
        parser.feed(data[pos : pos + 65536])
        seen += events(parser)
    assert [r.body for r in seen if isinstance(r, HTTPRequest)] == [body, BODY]


def test_empty_lines_before_a_request_are_skipped() -> None:
    [request] = parse(b"\r\n\r\n" + post())
    assert isinstance(request, HTTPRequest) and request.body == BODY


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        ("1.1", None, True),
        ("1.1", "close", False),
        ("1.1", "keep-alive", True),
        ("1.0", None, False),
        ("1.0", "keep-alive", True),
        ("1.0", "close", False),
    ],
)
def test_keep_alive_follows_the_version_and_connection_header(version: str, connection: str | None,
                                                              keep_alive: bool) -> None:
    extra = f"Connection: {connection}\r\n" if connection else ""
    [request] = parse(post(extra=extra, version=version))
    assert isinstance(request, HTTPRequest)
    assert request.version == version and request.keep_alive is keep_alive


def test_header_values_lose_surrounding_blanks_and_keep_inner_ones() -> None:
    [request] = parse(b"GET / HTTP/1.1\r\nX-Test:   a  b \t\r\nX-Empty:\r\n\r\n")
    assert isinstance(request, HTTPRequest)
    assert request.headers == {"x-test": "a  b", "x-empty": ""}


@pytest.mark.parametrize(
    "data",
    [
        b"NONSENSE\r\n\r\n",
        b"GET /\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"G\xc9T / HTTP/1.1\r\n\r\n",
        b"GET / HTTX/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Fold: a\r\n  folded\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab",
    ],
)
def test_what_is_not_a_request_is_refused_with_400_and_ends_the_parse(data: bytes) -> None:
    parser = RequestParser()
    parser.feed(data + post())
    refusal = parser.next_request()
    assert isinstance(refusal, Refusal) and refusal.status == 400, refusal
    assert parser.next_request() is None  # what follows cannot be trusted to start a request


def test_an_http_version_we_do_not_speak_is_505() -> None:
    [refusal] = parse(b"GET / HTTP/2.0\r\n\r\n")
    assert isinstance(refusal, Refusal) and refusal.status == 505


def test_limits_on_the_head_are_414_and_431() -> None:
    [long_line] = parse(b"GET /" + b"a" * 200 + b" HTTP/1.1\r\n\r\n", max_request_line=100)
    assert isinstance(long_line, Refusal) and long_line.status == 414
    [long_header] = parse(b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 200 + b"\r\n\r\n", max_header_line=100)
    assert isinstance(long_header, Refusal) and long_header.status == 431
    [many] = parse(b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(20)) + b"\r\n", max_headers=10)
    assert isinstance(many, Refusal) and many.status == 431


def test_a_head_that_never_ends_is_refused_before_it_fills_memory() -> None:
    parser = RequestParser(max_head=1000)
    parser.feed(b"GET / HTTP/1.1\r\n")
    for _ in range(20):  # 1816 bytes of head and no end
        parser.feed(b"X-More: " + b"m" * 80 + b"\r\n")
    refusal = parser.next_request()
    assert isinstance(refusal, Refusal) and refusal.status == 431
    parser = RequestParser(max_request_line=100)
    parser.feed(b"GET /" + b"a" * 200)  # no line end yet, already too long
    refusal = parser.next_request()
    assert isinstance(refusal, Refusal) and refusal.status == 414


def test_a_body_over_the_limit_is_413_before_it_arrives() -> None:
    parser = RequestParser(max_body=1000)
    parser.feed(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 1001\r\n\r\n")
    refusal = parser.next_request()
    assert isinstance(refusal, Refusal) and refusal.status == 413


@pytest.mark.parametrize(
    "extra",
    ["Transfer-Encoding: chunked\r\n", "Expect: 100-continue\r\n"],
)
def test_bodies_this_parser_does_not_read_are_handed_over_from_the_start_of_their_request(extra: str) -> None:
    first = post()
    handed = post(extra=extra)
    parser = RequestParser()
    parser.feed(first + handed[:40])
    assert isinstance(parser.next_request(), HTTPRequest)
    parser.feed(handed[40:])
    handover = parser.next_request()
    assert isinstance(handover, Handover)
    assert parser.pending() == handed  # a server taking over reads the whole request
    assert parser.next_request() is None


def test_a_target_that_is_not_a_path_is_handed_over() -> None:
    [handover] = parse(b"GET http://example.com/v1/models HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert isinstance(handover, Handover)


def test_bare_lf_line_ends_are_handed_over() -> None:
    [handover] = parse(b"GET / HTTP/1.1\nHost: x\n\n")
    assert isinstance(handover, Handover)


def test_pending_is_the_last_request_and_what_came_after_it() -> None:
    parser = RequestParser()
    parser.feed(post() + b"GET /next")
    assert isinstance(parser.next_request(), HTTPRequest)
    assert parser.pending() == post() + b"GET /next"
    assert parser.next_request() is None
    parser.feed(b" HTTP/1.1\r\n\r\n")
    assert isinstance(parser.next_request(), HTTPRequest)
    assert parser.pending() == b"GET /next HTTP/1.1\r\n\r\n"


# -- answers ------------------------------------------------------------------------------------------


def read_with_h11(data: bytes, method: str = "POST") -> list[object]:
    """What an independent HTTP/1.1 client reads from ``data``."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "x"), ("Content-Length", "0")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    out: list[object] = []
    while (event := client.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
        out.append(event)
    return out


def test_an_answer_head_and_body_read_as_http() -> None:
    body = b'{"ok":true}'
    head = response_head(200, [("content-type", "application/json"), ("x-request-id", "req_1")],
                         f"Content-Length: {len(body)}\r\n", date="Sun, 06 Dec 2026 03:01:37 GMT")
    response, data, end = read_with_h11(head + body)
    assert isinstance(response, h11.Response) and response.status_code == 200
    assert dict(response.headers)[b"date"] == b"Sun, 06 Dec 2026 03:01:37 GMT"
    assert dict(response.headers)[b"x-request-id"] == b"req_1"
    assert isinstance(data, h11.Data) and data.data == body
    assert isinstance(end, h11.EndOfMessage)


def test_a_chunked_answer_reads_chunk_by_chunk() -> None:
    head = response_head(200, [("content-type", "text/event-stream")], "Transfer-Encoding: chunked\r\n", date="d")
    pieces = [b"data: 1\n\n", b"data: [DONE]\n\n"]
    events_read = read_with_h11(head + chunk(pieces[0]) + chunk(b"") + chunk(pieces[1]) + b"0\r\n\r\n")
    assert [e.data for e in events_read if isinstance(e, h11.Data)] == pieces
    assert isinstance(events_read[-1], h11.EndOfMessage)


def test_a_recorded_date_is_kept_and_not_doubled() -> None:
    head = response_head(200, [("date", "Mon, 01 Jan 2024 00:00:00 GMT")], "Content-Length: 0\r\n", date="now")
    assert head.count(b"ate:") == 1 and b"Mon, 01 Jan 2024" in head


def test_a_header_with_a_line_break_cannot_make_a_head() -> None:
    with pytest.raises(ValueError, match="x-evil"):
        response_head(200, [("x-evil", "a\r\nSet-Cookie: b")], "", date="d")


def test_a_server_remembering_heads_makes_each_as_response_head_does() -> None:
    heads = ResponseHeads(limit=2)
    answers = [
        (200, [("content-type", "application/json"), ("x-request-id", "req_1")], "Content-Length: 11\r\n", "d1", "1.1"),
        (200, [("content-type", "application/json"), ("x-request-id", "req_1")], "Content-Length: 7\r\n", "d2", "1.1"),
        (200, [("content-type", "application/json"), ("x-request-id", "req_2")], "Content-Length: 7\r\n", "d2", "1.1"),
        (200, [("content-type", "application/json"), ("x-request-id", "req_1")], "Connection: close\r\n", "d3", "1.0"),
        (429, [("content-type", "application/json"), ("x-request-id", "req_1")], "", "d3", "1.1"),
        (200, [("date", "Mon, 01 Jan 2024 00:00:00 GMT")], "Content-Length: 0\r\n", "d4", "1.1"),
        (200, [("content-type", "application/json"), ("x-request-id", "req_1")], "Content-Length: 11\r\n", "d5", "1.1"),
    ]
    for status, headers, framing, date, version in answers * 2:
        expected = response_head(status, headers, framing, date=date, version=version)
        assert heads.head(status, headers, framing, date=date, version=version) == expected
    with pytest.raises(ValueError, match="x-evil"):
        heads.head(200, [("x-evil", "a\r\nSet-Cookie: b")], "", date="d")
