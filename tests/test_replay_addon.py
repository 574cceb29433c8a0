"""The replay addon inside a real mitmproxy: streams, timing, misses, modes, options."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from mitmproxy import http

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette.model import SSEEvent
from llmock_proxy.mitm.record import Record
from llmock_proxy.mitm.replay import Replay
from llmock_proxy.wire import SSEDecoder
from tests.fakes import AnthropicFake, FakeServer, OpenAIFake, Script, TestPKI
from tests.harness import InProcessProxy, ProxyStartError, UpstreamRouter, routes_for
from tests.harness import clients as sdk
from tests.harness.http import httpx

ANTHROPIC_MESSAGES = "https://api.anthropic.com/v1/messages"
ANTHROPIC_HEADERS = {"x-api-key": sdk.TEST_ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
STREAM_BODY = {
    "model": "claude-3-5-haiku-latest",
    "max_tokens": 100,
    "stream": True,
    "messages": [{"role": "user", "content": "Tell me slowly"}],
}
EVENT_DELAY = 0.04  # seconds between the fake upstream's events while recording


@pytest.fixture(scope="module")
def paced_cassette(tmp_path_factory: pytest.TempPathFactory, test_pki: TestPKI) -> Path:
    """An Anthropic stream recorded through the record addon from a slow upstream."""
    cassette_dir = tmp_path_factory.mktemp("paced")
    fake = FakeServer(
        AnthropicFake(Script(text="one two three four five six", first_event_delay=0.05, event_delay=EVENT_DELAY)),
        pki=test_pki,
    ).start()
    record = Record()
    proxy = InProcessProxy(
        confdir=tmp_path_factory.mktemp("mitm-paced"),
        addons=[record],
        options={"llmock_cassette_dir": str(cassette_dir), "llmock_cassette": "paced.yaml"},
        router=UpstreamRouter(routes_for(fake)),
        upstream_trusted_ca=test_pki.ca_cert_path,
    )
    try:
        with proxy, sdk.raw_client(proxy) as client:
            with client.stream("POST", ANTHROPIC_MESSAGES, json=STREAM_BODY, headers=ANTHROPIC_HEADERS) as response:
                assert response.status_code == 200
                response.read()
            assert record.flush(30)
    finally:
        fake.stop()
    return cassette_dir / "paced.yaml"


class UrlSeen:
    """Sees flows after the replay addon: what logs and saved flows show."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def response(self, flow: http.HTTPFlow) -> None:
        self.urls.append(flow.request.url)


CONTROL = {"x-llmock-control": "1"}


def start_replay(tmp_path: Path, options: dict[str, Any], *, mode: str = "regular",
                 fakes: tuple[FakeServer, ...] = (), extra: tuple[Any, ...] = (),
                 pki: TestPKI | None = None) -> tuple[InProcessProxy, Replay, UpstreamRouter]:
    replay = Replay()
    router = UpstreamRouter(routes_for(*fakes))
    proxy = InProcessProxy(
        confdir=tmp_path / "mitm",
        mode=mode,
        addons=[replay, *extra],
        options={"llmock_cassette_dir": "", **options},
        router=router,
        upstream_trusted_ca=pki.ca_cert_path if pki else None,
    )
    proxy.start()
    return proxy, replay, router


@pytest.fixture
def stopping() -> Iterator[list[InProcessProxy]]:
    proxies: list[InProcessProxy] = []
    yield proxies
    for proxy in proxies:
        proxy.stop()


def read_events(client: httpx.Client) -> list[tuple[float, SSEEvent]]:
    decoder = SSEDecoder()
    arrivals: list[tuple[float, SSEEvent]] = []
    start = time.perf_counter()
    with client.stream("POST", ANTHROPIC_MESSAGES, json=STREAM_BODY, headers=ANTHROPIC_HEADERS) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for chunk in response.iter_raw():
            now = time.perf_counter() - start
            arrivals.extend((now, event) for event in decoder.feed(chunk))
    return arrivals


def test_replayed_events_equal_the_recorded_ones_and_keep_their_gaps(
    tmp_path: Path, paced_cassette: Path, stopping: list[InProcessProxy]
) -> None:
    recorded = cassette_store.load(paced_cassette).interactions[0].response.events  # type: ignore[union-attr]
    assert recorded and recorded[-1].t - recorded[0].t >= EVENT_DELAY * 1000 * 3  # the pacing was recorded
    seen = UrlSeen()
    proxy, _, router = start_replay(tmp_path, {"llmock_cassettes": [str(paced_cassette)]}, extra=(seen,))
    stopping.append(proxy)
    with sdk.raw_client(proxy) as client:
        arrivals = read_events(client)
    replayed = [event for _, event in arrivals]
    assert [(e.event, e.data) for e in replayed] == [(e.event, e.data) for e in recorded]
    # At their recorded offsets: never early, late by a generous margin at
    # most, gaps as recorded (the accuracy figures are in the benchmark).
    got = [at * 1000 for at, _ in arrivals]
    want = [event.t for event in recorded]
    for at, t in zip(got, want):
        assert t - 1 <= at <= t + 150, (got, want)
    gap_errors = sorted(abs((b - a) - (tb - ta)) for a, b, ta, tb in zip(got, got[1:], want, want[1:]))
    assert gap_errors[len(gap_errors) // 2] <= 15, gap_errors
    # Streamed through the engine on 127.0.0.1 only; logs show the original URL.
    assert all(a.requested[0] == "127.0.0.1" for a in router.attempts)
    assert seen.urls == [ANTHROPIC_MESSAGES]
    assert proxy.master is not None and proxy.master.options.connection_strategy == "lazy"


def test_instant_timing_through_the_addon(tmp_path: Path, paced_cassette: Path, stopping: list[InProcessProxy]) -> None:
    proxy, _, _ = start_replay(tmp_path, {"llmock_cassettes": [str(paced_cassette)], "llmock_timing": "instant"})
    stopping.append(proxy)
    recorded = cassette_store.load(paced_cassette).interactions[0].response.events  # type: ignore[union-attr]
    with sdk.raw_client(proxy) as client:
        arrivals = read_events(client)
    assert arrivals[-1][0] * 1000 < recorded[-1].t / 2


def test_miss_is_answered_in_the_providers_envelope_and_never_forwarded(
    tmp_path: Path, paced_cassette: Path, stopping: list[InProcessProxy]
) -> None:
    proxy, replay, router = start_replay(tmp_path, {"llmock_cassettes": [str(paced_cassette)]})
    stopping.append(proxy)
    client = sdk.anthropic_client(proxy, max_retries=2)
    with pytest.raises(Exception) as caught:
        client.messages.create(model="claude-3-5-haiku-latest", max_tokens=100,
                               messages=[{"role": "user", "content": "Tell me quickly"}])
    error = caught.value
    assert getattr(error, "status_code", None) == 421
    body = error.body  # type: ignore[attr-defined]
    assert body["type"] == "error"
    message = body["error"]["message"]
    assert "no recording or fixture matches POST /v1/messages" in message
    assert f"closest: {paced_cassette}: interactions[0]" in message
    assert "stream: expected True, got False" in message
    assert body["llmock"]["nearMisses"][0]["source"] == f"{paced_cassette}: interactions[0]"
    assert router.attempts == []  # nothing left the proxy
    assert replay.session.misses == 1  # not retried
    misses = [line for line in proxy.log_lines() if "replay miss" in line]
    assert len(misses) == 1 and "Tell me quickly" in misses[0]


def test_auto_mode_records_a_miss_and_answers_it_from_then_on(
    tmp_path: Path, test_pki: TestPKI, stopping: list[InProcessProxy]
) -> None:
    fake = FakeServer(OpenAIFake(Script(text="Fresh from upstream.")), pki=test_pki).start()
    cassette_dir = tmp_path / "auto"
    try:
        proxy, replay, _ = start_replay(
            tmp_path,
            {"llmock_mode": "auto", "llmock_cassette_dir": str(cassette_dir), "llmock_cassette": "auto.yaml"},
            fakes=(fake,),
            pki=test_pki,
        )
        stopping.append(proxy)
        client = sdk.openai_client(proxy)

        def ask(stream: bool = False) -> str:
            kwargs = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": "brand new"}])
            if stream:
                return "".join(c.choices[0].delta.content or "" for c in
                               client.chat.completions.create(stream=True, **kwargs) if c.choices)
            return client.chat.completions.create(**kwargs).choices[0].message.content

        assert ask() == "Fresh from upstream."
        assert ask() == "Fresh from upstream."
        assert ask(stream=True) == "Fresh from upstream."  # re-rendered from the recording
        assert len(fake.requests) == 1
        assert replay._record.flush(30)
    finally:
        fake.stop()
    written = cassette_store.load(cassette_dir / "auto.yaml")
    assert len(written.interactions) == 1
    assert written.interactions[0].match["userMessage"] == "brand new"


def test_passthrough_forwards_misses_without_recording(
    tmp_path: Path, test_pki: TestPKI, stopping: list[InProcessProxy]
) -> None:
    fake = FakeServer(OpenAIFake(Script(text="Passed through.")), pki=test_pki).start()
    try:
        proxy, _, _ = start_replay(
            tmp_path, {"llmock_mode": "passthrough", "llmock_cassette_dir": str(tmp_path / "none")},
            fakes=(fake,), pki=test_pki,
        )
        stopping.append(proxy)
        client = sdk.openai_client(proxy)
        for _ in range(2):
            answer = client.chat.completions.create(model="gpt-4o-mini",
                                                    messages=[{"role": "user", "content": "anything"}])
            assert answer.choices[0].message.content == "Passed through."
        streamed = "".join(
            c.choices[0].delta.content or "" for c in client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "anything"}], stream=True) if c.choices
        )
        assert streamed == "Passed through."
        assert len(fake.requests) == 3
    finally:
        fake.stop()
    assert not (tmp_path / "none").exists()


def test_options_reload_the_session_and_the_control_endpoints_work(
    tmp_path: Path, stopping: list[InProcessProxy]
) -> None:
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"fixtures": [{"match": {"userMessage": "roll", "sequenceIndex": 0},
                                               "response": {"content": "one"}},
                                              {"match": {"userMessage": "roll"}, "response": {"content": "many"}}]}))
    second = tmp_path / "second.json"
    second.write_text(json.dumps({"fixtures": [{"match": {"userMessage": "roll"}, "response": {"content": "other"}}]}))
    proxy, _, _ = start_replay(tmp_path, {"llmock_fixtures": [str(first)]})
    stopping.append(proxy)
    client = sdk.openai_client(proxy)

    def roll() -> str:
        return client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "roll"}]
        ).choices[0].message.content

    assert [roll(), roll()] == ["one", "many"]
    with sdk.raw_client(proxy) as raw:
        # On a provider's host, a control path is an ordinary request (a miss here).
        assert raw.post("https://api.openai.com/__llmock/reset", headers=CONTROL).status_code == 421
        # A state change needs the control header (a web page cannot send it cross-origin).
        assert raw.post("http://llmock.invalid/__llmock/reset").status_code == 403
        assert roll() == "many"  # nothing was reset
        assert raw.post("http://llmock.invalid/__llmock/reset", headers=CONTROL).json()["reset"] is True
        assert roll() == "one"
        health = raw.get("http://llmock.invalid/__llmock/health").json()
        assert health["hits"] == 1 and health["mode"] == "replay"
    proxy.set_options(llmock_fixtures=[str(second)])
    assert roll() == "other"


def test_a_misspelled_match_key_stops_the_start_unless_lenient(tmp_path: Path, stopping: list[InProcessProxy]) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"fixtures": [{"match": {"userMesage": "hi"}, "response": {"content": "x"}}]}))
    with pytest.raises(ProxyStartError) as caught:
        start_replay(tmp_path, {"llmock_fixtures": [str(broken)]})
    assert "broken.json" in str(caught.value) and "fixtures[0].match.userMesage" in str(caught.value)
    proxy, _, _ = start_replay(tmp_path, {"llmock_fixtures": [str(broken)], "llmock_lenient_fixtures": True})
    stopping.append(proxy)
    assert any("userMesage" in line for line in proxy.log_lines())
    reply = sdk.openai_client(proxy).chat.completions.create(model="m", messages=[{"role": "user", "content": "yo"}])
    assert reply.choices[0].message.content == "x"  # the unknown key ignored, as aimock does


def test_a_bad_timing_value_is_an_option_error(tmp_path: Path) -> None:
    with pytest.raises(ProxyStartError, match="recorded, instant or scale:X"):
        start_replay(tmp_path, {"llmock_timing": "fast"})


def test_a_miss_status_that_is_not_4xx_is_an_option_error(tmp_path: Path) -> None:
    with pytest.raises(ProxyStartError, match="llmock_miss_status: 500 is not a 4xx status"):
        start_replay(tmp_path, {"llmock_miss_status": 500})


def test_compatibility_options_miss_status_and_embedding_fallback(tmp_path: Path, stopping: list[InProcessProxy]) -> None:
    fixtures = tmp_path / "f.json"
    fixtures.write_text(json.dumps({"fixtures": [{"match": {"userMessage": "hello"}, "response": {"content": "Hi"}}]}))
    proxy, replay, router = start_replay(tmp_path, {"llmock_fixtures": [str(fixtures)], "llmock_miss_status": 404,
                                                    "llmock_embedding_fallback": True})
    stopping.append(proxy)
    client = sdk.openai_client(proxy)

    def miss() -> int:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "unknown"}])
        return caught.value.status_code

    assert miss() == 404
    with sdk.raw_client(proxy) as raw:
        unknown = raw.post("https://api.openai.com/v1/no/such/api", json={"a": 1})
        assert unknown.status_code == 404 and unknown.headers["x-llmock-miss"] == "1"
    vectors = client.embeddings.create(model="text-embedding-3-small", input=["a", "b", "a"], dimensions=4).data
    assert [len(v.embedding) for v in vectors] == [4, 4, 4] and vectors[0].embedding == vectors[2].embedding
    # Options change on a running proxy, and a reload of the files keeps them.
    proxy.set_options(llmock_miss_status=421, llmock_embedding_fallback=False)
    assert miss() == 421
    proxy.set_options(llmock_miss_status=404, llmock_fixtures=[str(fixtures), str(fixtures)])
    assert miss() == 404
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="a")
    assert replay.session.miss_status == 404 and not replay.session.embedding_fallback
    assert router.attempts == []


def test_openai_sdk_streams_a_fixture_through_reverse_mode(tmp_path: Path, stopping: list[InProcessProxy]) -> None:
    fixtures = tmp_path / "f.json"
    fixtures.write_text(json.dumps({"fixtures": [{"match": {"userMessage": "count"},
                                                  "response": {"content": "1 2 3 4 5"}, "chunkSize": 2}]}))
    proxy, _, router = start_replay(tmp_path, {"llmock_fixtures": [str(fixtures)]},
                                    mode="reverse:https://api.openai.com")
    stopping.append(proxy)
    client = sdk.openai_client(base_url=f"{proxy.url}/v1")
    deltas = [c.choices[0].delta.content for c in client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "count"}], stream=True)
        if c.choices and c.choices[0].delta.content]
    assert deltas == ["1 ", "2 ", "3 ", "4 ", "5"]
    assert all(a.requested[0] == "127.0.0.1" for a in router.attempts)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "nothing"}])
    assert caught.value.status_code == 421


def test_a_compressed_request_body_is_matched_on_its_content(tmp_path: Path, stopping: list[InProcessProxy]) -> None:
    import gzip

    fixtures = tmp_path / "f.json"
    fixtures.write_text(json.dumps({"fixtures": [{"match": {"userMessage": "zipped"}, "response": {"content": "ok"}}]}))
    proxy, _, _ = start_replay(tmp_path, {"llmock_fixtures": [str(fixtures)]})
    stopping.append(proxy)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "zipped question"}]}).encode()
    with sdk.raw_client(proxy) as client:
        answer = client.post("https://api.openai.com/v1/chat/completions", content=gzip.compress(body),
                             headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "ok"


def test_the_make_run_demo_gets_a_replayed_stream(tmp_path: Path, stopping: list[InProcessProxy]) -> None:
    """`make run` serves cassettes/examples; the curl it prints (and the
    README shows) gets a streamed answer."""
    root = Path(__file__).resolve().parents[1]
    makefile = (root / "Makefile").read_text()
    demo_body = next(line.split(":=", 1)[1].strip() for line in makefile.splitlines() if line.startswith("DEMO_BODY"))
    assert demo_body in (root / "README.md").read_text()
    examples = str(root / "cassettes" / "examples")
    proxy, _, router = start_replay(tmp_path, {"llmock_cassettes": [examples], "llmock_fixtures": [examples],
                                               "llmock_timing": "instant"})
    stopping.append(proxy)
    with sdk.raw_client(proxy) as client:
        response = client.post("https://api.openai.com/v1/chat/completions", content=demo_body,
                               headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    decoder = SSEDecoder()
    events = decoder.feed(response.content) + decoder.close()
    text = "".join(
        e.data["choices"][0]["delta"].get("content") or ""
        for e in events if isinstance(e.data, dict) and e.data.get("choices")
    )
    assert text and events[-1].data == "[DONE]"
    assert all(a.requested[0] == "127.0.0.1" for a in router.attempts)


# -- failing closed ---------------------------------------------------------------------------------


def test_a_catch_all_fixture_and_an_unknown_api_is_a_miss_never_forwarded(
    tmp_path: Path, test_pki: TestPKI, stopping: list[InProcessProxy]
) -> None:
    fixtures = tmp_path / "catch-all.json"
    fixtures.write_text(json.dumps({"fixtures": [{"match": {}, "response": {"content": "catch-all"}}]}))
    fake = FakeServer(OpenAIFake(), pki=test_pki).start()
    try:
        proxy, _, router = start_replay(tmp_path, {"llmock_fixtures": [str(fixtures)]}, fakes=(fake,), pki=test_pki)
        stopping.append(proxy)
        with sdk.raw_client(proxy) as client:
            other = client.post("https://api.openai.com/v1/some/other/api", json={"a": 1})
            chat = client.post("https://api.openai.com/v1/chat/completions",
                               json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        assert other.status_code == 421, other.text
        assert "family: expected 'any LLM API family', got 'generic'" in other.text
        assert chat.json()["choices"][0]["message"]["content"] == "catch-all"
        assert fake.requests == [] and router.attempts == []
        assert not proxy.errors(), proxy.errors()
    finally:
        fake.stop()


class _FailingSession:
    """Stands in for a replay session whose lookup hits a bug."""

    name = "failing"
    hits = misses = 0
    matcher: list[Any] = []

    def __len__(self) -> int:
        return 0

    def resolve_raw(self, *args: Any) -> Any:
        raise RuntimeError("the lookup broke")


def test_a_failing_lookup_is_answered_500_and_never_forwarded(
    tmp_path: Path, test_pki: TestPKI, stopping: list[InProcessProxy]
) -> None:
    fake = FakeServer(OpenAIFake(), pki=test_pki).start()
    try:
        proxy, replay, router = start_replay(tmp_path, {}, fakes=(fake,), pki=test_pki)
        stopping.append(proxy)
        replay.session = replay.engine.session = _FailingSession()  # type: ignore[assignment]
        client = sdk.openai_client(proxy, max_retries=2)
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert "RuntimeError: the lookup broke" in caught.value.body["message"]  # type: ignore[index]
        assert caught.value.response.headers["x-llmock-error"] == "1"
        assert fake.requests == [] and router.attempts == []
        assert len([line for line in proxy.log_lines() if "failed to replay POST" in line]) == 1
    finally:
        fake.stop()


def test_chaos_through_the_addon_never_sticks_to_a_recording(tmp_path: Path, stopping: list[InProcessProxy]) -> None:
    examples = Path(__file__).resolve().parents[1] / "cassettes" / "examples" / "openai-chat.yaml"
    proxy, _, router = start_replay(tmp_path, {"llmock_cassettes": [str(examples)]})
    stopping.append(proxy)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}
    with sdk.raw_client(proxy) as client:
        def ask(**headers: str) -> httpx.Response:
            return client.post("https://api.openai.com/v1/chat/completions", json=body, headers=headers)

        assert ask().json()["choices"][0]["message"]["content"] == "Hello! How can I help you today?"
        dropped = ask(**{"x-llmock-chaos-drop": "1"})
        assert dropped.status_code == 500 and dropped.json()["error"]["message"] == "Chaos: request dropped"
        assert ask(**{"x-llmock-chaos-malformed": "1"}).text == "{malformed json: <<<chaos>>>"
        # The recording's cached answer is untouched by the chaos answers.
        assert ask().json()["choices"][0]["message"]["content"] == "Hello! How can I help you today?"
        cut = ask(**{"x-llmock-chaos-disconnect": "1"})
        assert cut.status_code == 502  # mitmproxy's answer to a dropped upstream connection
    assert all(a.requested[0] == "127.0.0.1" for a in router.attempts)  # the engine only


async def test_a_request_that_arrives_before_the_engine_runs_waits_for_it() -> None:
    # mitmproxy 12 accepts connections before the addons' running hooks are
    # done; a stream asked for in that window must wait for the replay engine,
    # and the proxy must already be lazy (never connect upstream first).
    import asyncio

    from mitmproxy.addons.proxyserver import Proxyserver
    from mitmproxy.test import taddons, tflow

    examples = Path(__file__).resolve().parent.parent / "cassettes" / "examples"
    addon = Replay()
    with taddons.context(Proxyserver(), addon) as tctx:
        tctx.configure(addon, llmock_cassettes=[str(examples)], llmock_fixtures=[str(examples)],
                       llmock_cassette_dir="")
        assert tctx.options.connection_strategy == "lazy"
        flow = tflow.tflow()
        flow.request = http.Request.make(
            "POST", "https://api.openai.com/v1/chat/completions",
            json.dumps({"model": "gpt-4o-mini", "stream": True,
                        "messages": [{"role": "user", "content": "Say hello"}]}),
            {"content-type": "application/json"},
        )
        answering = asyncio.create_task(addon.request(flow))
        done, _ = await asyncio.wait({answering}, timeout=0.05)
        assert not done and flow.response is None  # waiting, not failed
        await addon.running()
        await answering
        assert flow.response is None  # a stream: sent to the engine to be played out
        assert (flow.request.host, flow.request.port) == ("127.0.0.1", addon.engine.port)
        await addon.done()


def test_the_log_line_counts_a_templated_answers_events_as_a_rendered_one(
    tmp_path: Path, stopping: list[InProcessProxy], caplog: pytest.LogCaptureFixture
) -> None:
    """From its second new question on, a fixture's answer is filled in from a
    template: its line still says how many events went out."""
    fixtures = tmp_path / "f.json"
    fixtures.write_text(json.dumps({"fixtures": [{"match": {"userMessage": "count"},
                                                  "response": {"content": "1 2 3 4 5 6 7"}, "chunkSize": 2}]}))
    proxy, _, _ = start_replay(tmp_path, {"llmock_fixtures": [str(fixtures)]}, mode="reverse:https://api.openai.com")
    stopping.append(proxy)
    caplog.set_level("INFO", logger="llmock_proxy")
    sent = []
    with sdk.raw_client(proxy) as client:
        for n in range(3):
            body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": f"count {n}"}]}
            with client.stream("POST", f"{proxy.url}/v1/chat/completions", json=body,
                               headers={"authorization": f"Bearer {sdk.TEST_OPENAI_KEY}"}) as response:
                assert response.status_code == 200
                decoder = SSEDecoder()
                sent.append(sum(len(decoder.feed(chunk)) for chunk in response.iter_raw()))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("llmock: replayed")]
    assert len(lines) == 3 and len(set(sent)) == 1, (lines, sent)
    assert all(f" 200 {sent[0]} events <- " in line for line in lines), (lines, sent)
