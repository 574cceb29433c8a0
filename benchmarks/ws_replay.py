"""WebSocket replay throughput and turn timing accuracy.

A long recorded Realtime session (``--turns`` client turns, each answered by
``--messages`` server events: deltas and a ``response.done``) is replayed
with ``--timing instant`` by

* ``bare aiohttp``        a WebSocket handler sending the same frames: the ceiling;
* ``llmock-proxy serve``  the replay engine, the client dialing it directly;
* ``replay addon``        ``mitmdump -s addons/replay.py`` in reverse mode, which
                          re-targets the upgrade to its in-process engine;

and server messages per second are reported (median of ``--runs`` sessions,
each from connect to the last ``response.done``). Every server runs as its
own process; the client is the ``websockets`` library the OpenAI SDK uses,
with its default permessage-deflate, and checks every turn's messages against
the recording.

Then turn timing: a session whose server events have uneven recorded gaps
(5-40 ms) is replayed with ``--timing recorded`` by serve and by the addon,
and |replayed gap - recorded gap| is reported (p50/p95/max).

    .venv/bin/python benchmarks/ws_replay.py [--turns 20] [--messages 500] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._servers import Server, free_port, percentile  # noqa: E402
from llmock_proxy.cassette import yamlio
from llmock_proxy.cassette.model import (
    Cassette,
    Interaction,
    Payload,
    Request,
    Response,
    WebSocketSession,
    WSClose,
    WSMessage,
    compact_json,
)
from llmock_proxy.match.key import derive_match
from llmock_proxy.providers.catalog import identify

BIN = Path(sys.executable).parent
TARGET = "https://api.openai.com"
PATH = "/v1/realtime?model=gpt-realtime"
GAPS_MS = [5, 10, 20, 40, 7, 15, 30, 12] * 5  # 40 events per timed turn, uneven on purpose

BARE_SERVER = """
import json, sys
from aiohttp import web, WSMsgType
port, script_file = int(sys.argv[1]), sys.argv[2]
script = json.load(open(script_file))
async def handle(request):
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    for frame in script["opening"]:
        await ws.send_str(frame)
    turn = 0
    async for message in ws:
        if message.type == WSMsgType.TEXT and turn < len(script["turns"]):
            for frame in script["turns"][turn]:
                await ws.send_str(frame)
            turn += 1
    return ws
app = web.Application()
app.router.add_route("GET", "/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
"""


# -- the recorded session -------------------------------------------------------------------------


@dataclass
class Session:
    client_turns: list[str]  # what the client sends, turn by turn
    opening: list[str]  # server frames sent on connect
    turns: list[list[str]]  # server frames answering each client turn
    cassette: Path

    @property
    def server_messages(self) -> int:
        return len(self.opening) + sum(len(t) for t in self.turns)


def _event(kind: str, turn: int, index: int, **fields: object) -> dict[str, object]:
    return {"type": kind, "event_id": f"event_{turn:03d}_{index:05d}", **fields}


def build_session(workdir: Path, name: str, turns: int, messages: int, gaps_ms: list[float] | None = None) -> Session:
    """A Realtime session as the record addon writes it: ``turns`` client
    messages, each answered by ``messages`` server events."""
    upgrade = Request("GET", TARGET + PATH, {"upgrade": "websocket", "connection": "Upgrade"})
    transcript: list[WSMessage] = []
    t = 0.0
    opening = [_event("session.created", 0, 0, session={"model": "gpt-realtime", "object": "realtime.session"})]
    transcript.append(WSMessage(False, Payload.json(opening[0]), t=t))
    client_turns: list[str] = []
    server_turns: list[list[str]] = []
    for turn in range(turns):
        t += 50.0
        ask = {"type": "response.create", "response": {"instructions": f"turn {turn}"}}
        transcript.append(WSMessage(True, Payload.json(ask), t=t))
        client_turns.append(compact_json(ask))
        frames = []
        for index in range(messages):
            t += gaps_ms[index % len(gaps_ms)] if gaps_ms else 1.0
            if index == messages - 1:
                event = _event("response.done", turn + 1, index, response={"status": "completed", "output": []})
            else:
                event = _event("response.output_text.delta", turn + 1, index, response_id=f"resp_{turn:03d}",
                               item_id=f"item_{turn:03d}", output_index=0, content_index=0,
                               delta=f"token {index} of turn {turn} ")
            transcript.append(WSMessage(False, Payload.json(event), t=t))
            frames.append(compact_json(event))
        server_turns.append(frames)
    canonical = identify(upgrade.method, upgrade.url, upgrade.headers).canonical(upgrade)
    interaction = Interaction(
        request=upgrade,
        response=Response(101, websocket=WebSocketSession(transcript, close=WSClose(1000, "", "client", t + 10))),
        match=derive_match(canonical),
    )
    path = workdir / f"{name}.yaml"
    path.write_text(yamlio.dumps(Cassette([interaction]).to_dict()))
    return Session(client_turns, [compact_json(e) for e in opening], server_turns, path)


# -- servers ------------------------------------------------------------------------------------------


def start_server(name: str, session: Session, workdir: Path, timing: str) -> Server:
    port = free_port()
    if name == "bare aiohttp":
        script = workdir / "script.json"
        script.write_text(json.dumps({"opening": session.opening, "turns": session.turns}))
        command = [sys.executable, "-c", BARE_SERVER, str(port), str(script)]
    elif name == "llmock-proxy serve":
        command = [str(BIN / "llmock-proxy"), "serve", "--quiet", "--port", str(port),
                   "--cassettes", str(session.cassette), "--timing", timing]
    elif name == "replay addon":
        command = [str(BIN / "mitmdump"), "-q", "--listen-host", "127.0.0.1", "--listen-port", str(port),
                   "--mode", f"reverse:{TARGET}", "--set", f"confdir={workdir / 'confdir'}",
                   "-s", str(ROOT / "addons" / "replay.py"), "--set", f"llmock_cassettes={session.cassette}",
                   "--set", "llmock_cassette_dir=", "--set", f"llmock_timing={timing}"]
    else:
        raise ValueError(name)
    return Server(name, command, port, workdir)


# -- the client ----------------------------------------------------------------------------------------


async def replay_once(port: int, session: Session, *, check: bool) -> tuple[float, list[list[float]]]:
    """One whole session: seconds from connect to the last turn's end, and
    each turn's message arrival times (seconds after its client message)."""
    started = time.perf_counter()
    arrivals: list[list[float]] = []
    async with websockets.connect(f"ws://127.0.0.1:{port}{PATH}", proxy=None, max_size=None) as ws:
        for expected in session.opening:
            frame = await ws.recv()
            assert not check or frame == expected, (frame, expected)
        for ask, expected in zip(session.client_turns, session.turns):
            await ws.send(ask)
            sent = time.perf_counter()
            times = []
            for want in expected:
                frame = await ws.recv()
                times.append(time.perf_counter() - sent)
                if check and frame != want:
                    raise AssertionError(f"replayed {frame[:120]!r}, recorded {want[:120]!r}")
            arrivals.append(times)
        elapsed = time.perf_counter() - started
    return elapsed, arrivals


def throughput(name: str, session: Session, workdir: Path, runs: int) -> tuple[float, float]:
    server = start_server(name, session, workdir, "instant")
    try:
        asyncio.run(replay_once(server.port, session, check=True))  # warm-up, and every message checked
        times = [asyncio.run(replay_once(server.port, session, check=False))[0] for _ in range(runs)]
    finally:
        server.stop()
    median = statistics.median(times)
    return session.server_messages / median, median


def gap_errors(name: str, session: Session, workdir: Path, gaps_ms: list[float], runs: int) -> list[float]:
    server = start_server(name, session, workdir, "recorded")
    errors: list[float] = []
    try:
        for _ in range(runs):
            _, arrivals = asyncio.run(replay_once(server.port, session, check=True))
            for times in arrivals:
                for index in range(1, len(times)):
                    replayed = (times[index] - times[index - 1]) * 1000
                    errors.append(abs(replayed - gaps_ms[index % len(gaps_ms)]))
    finally:
        server.stop()
    return errors



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--messages", type=int, default=500, help="server messages per turn")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timing-runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ws-bench-") as tmp:
        workdir = Path(tmp)
        long_session = build_session(workdir, "long", args.turns, args.messages)
        print(f"Instant replay of one session: {args.turns} turns x {args.messages} server messages "
              f"({long_session.server_messages} messages, median of {args.runs} sessions)")
        for name in ("bare aiohttp", "llmock-proxy serve", "replay addon"):
            rate, seconds = throughput(name, long_session, workdir, args.runs)
            print(f"  {name:20s} {rate:9.0f} messages/s  ({seconds * 1000:.0f} ms per session)")
        timed = build_session(workdir, "timed", 3, len(GAPS_MS), gaps_ms=GAPS_MS)
        print(f"Recorded timing: |replayed gap - recorded gap| over {args.timing_runs} sessions of "
              f"3 turns x {len(GAPS_MS)} messages (gaps 5-40 ms)")
        for name in ("llmock-proxy serve", "replay addon"):
            errors = gap_errors(name, timed, workdir, GAPS_MS, args.timing_runs)
            print(f"  {name:20s} p50 {percentile(errors, 0.5):5.2f} ms   p95 {percentile(errors, 0.95):5.2f} ms"
                  f"   max {max(errors):5.2f} ms")


if __name__ == "__main__":
    main()
