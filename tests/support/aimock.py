"""aimock (npm ``@copilotkit/aimock``), the reference implementation of the
llmock fixture format, as a test oracle and a benchmark opponent.

The version is pinned by ``tests/aimock/package.json`` and its lock file, so
a new upstream release never changes what the tests compare against.
:func:`install` puts it into ``tests/aimock/node_modules`` with ``npm ci``
when it is not there yet (under a file lock: two pytest processes never
install at once); :class:`Aimock` runs its CLI on 127.0.0.1, on a port the
system picks, and stops it by PID.

Node and npm are requirements of the test suite, like the Python lanes: when
either is missing, or npm cannot reach its registry, :func:`install` raises
:class:`AimockUnavailable` with what to do, and the tests using it fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import fcntl
import hashlib
import json
import os
import pprint
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parents[1] / "aimock"  # package.json + package-lock.json
PACKAGE = PROJECT / "node_modules" / "@copilotkit" / "aimock"
CLI = PACKAGE / "dist" / "cli.js"
FIXTURES = PACKAGE / "fixtures"  # aimock's own example fixtures, as shipped

_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
INSTALL_TIMEOUT = 600.0
START_TIMEOUT = 30.0


class AimockUnavailable(RuntimeError):
    """aimock cannot be installed or started here; the message says why and what to do."""


def pinned_version() -> str:
    return str(json.loads((PROJECT / "package.json").read_text())["dependencies"]["@copilotkit/aimock"])


def installed_version() -> str | None:
    try:
        return str(json.loads((PACKAGE / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """An exclusive lock for this checkout's install (outside node_modules,
    which ``npm ci`` deletes first), held while one process installs."""
    digest = hashlib.sha256(str(PROJECT).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"llmock-proxy-aimock-{digest}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise AimockUnavailable(
            f"{name} is not on PATH: the aimock differential tests and benchmarks/vs_aimock.py run aimock "
            f"{pinned_version()} (npm @copilotkit/aimock) as their oracle and need Node.js >= 20.15 with npm. "
            "Install Node.js (https://nodejs.org) and run the tests again."
        )
    return found


def install() -> Path:
    """The installed aimock package directory, installing the pinned version
    with ``npm ci`` first when it is missing or another version is there."""
    node = _tool("node")
    wanted = pinned_version()
    if installed_version() == wanted:
        return PACKAGE
    npm = _tool("npm")
    with _install_lock():
        if installed_version() == wanted:  # another process installed it meanwhile
            return PACKAGE
        command = [npm, "ci", "--no-audit", "--no-fund"]
        try:
            done = subprocess.run(
                command, cwd=PROJECT, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            raise AimockUnavailable(
                f"`npm ci` in {PROJECT} did not finish in {INSTALL_TIMEOUT:.0f} s: can npm reach its registry "
                "(npm config get registry; proxy settings)?"
            ) from None
        if done.returncode != 0 or installed_version() != wanted:
            output = (done.stdout + done.stderr).strip()[-3000:]
            raise AimockUnavailable(
                f"`{' '.join(command)}` in {PROJECT} failed (exit {done.returncode}), so aimock {wanted} "
                f"could not be installed; the differential tests need npm to reach its registry "
                f"(node: {node}).\n{output}"
            )
    return PACKAGE


class Aimock:
    """A running aimock CLI (``dist/cli.js``) on 127.0.0.1, serving ``fixtures``
    (files or directories); ``url`` once it answers its health check."""

    def __init__(self, fixtures: Sequence[str | Path], *args: str, cwd: Path | None = None) -> None:
        package = install()
        command = [_tool("node"), str(package / "dist" / "cli.js"), "--host", "127.0.0.1", "--port", "0"]
        for source in fixtures:
            command += ["--fixtures", str(source)]
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        self.process = subprocess.Popen(
            [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd
        )
        self.lines: list[str] = []
        self.url = ""
        self._listening = threading.Event()
        threading.Thread(target=self._drain, name="aimock-output", daemon=True).start()
        if not self._listening.wait(START_TIMEOUT) or not self.url:
            self.stop()
            raise AimockUnavailable("aimock did not start:\n" + "".join(self.lines[-50:]))
        health = self.get("/health")
        if health.get("status") != "ok":
            self.stop()
            raise AimockUnavailable(f"aimock's health check answered {health!r}")

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:  # ends when the process exits
            self.lines.append(line)
            if len(self.lines) > 2000:
                del self.lines[:1000]
            found = _LISTENING.search(line)
            if found and not self.url:
                self.url = found.group(1)
                self._listening.set()
        self._listening.set()

    # -- control API ----------------------------------------------------------------

    def _call(self, method: str, path: str, data: Any = None) -> Any:
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=body, method=method,
                                         headers={"content-type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"aimock {method} {path} answered {exc.code}: {exc.read()[:2000]!r}") from None

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def reset(self) -> None:
        """Forget everything: fixtures, journal and sequence counts."""
        self._call("POST", "/__aimock/reset")

    def serve(self, fixture_file: dict[str, Any]) -> int:
        """Serve the fixtures of one fixture file's content instead of what was
        loaded before (aimock's control API, which loads entries as its file
        loader does); how many it took."""
        self.reset()
        return int(self._call("POST", "/__aimock/fixtures", fixture_file)["added"])

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def __enter__(self) -> Aimock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serving(fixture_files: list[Path]) -> Iterator[Aimock]:
    """A module fixture's body: aimock on ``fixture_files`` until the module
    ends; a missing node, npm or registry fails the test, saying why."""
    try:
        server = Aimock(fixture_files)
    except AimockUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


def example_fixture_files() -> list[Path]:
    """aimock's shipped examples that hold LLM fixtures: files with a top-level
    ``fixtures`` list, and config files whose ``llm`` section names fixtures."""
    found = []
    for path in sorted([*FIXTURES.glob("*.json"), *(FIXTURES / "examples").rglob("*.json")]):
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            continue
        llm = data.get("llm")
        if isinstance(data.get("fixtures"), list) or (isinstance(llm, dict) and llm.get("fixtures")):
            found.append(path)
    return found


# -- what an SDK user sees, in a form two servers' answers can be compared in ----------------------
#
# Each view keeps what a program reads from the SDK's objects (text, tool calls
# with parsed arguments, finish reasons, whether usage is there, the error's
# class and code, the order of stream events) and leaves out what differs on
# purpose (generated ids, timestamps, token estimates): see the section
# "Compared with aimock" of docs/llmock-compatibility.md.

_ID_PREFIX = re.compile(r"^[A-Za-z]+[_-]")


def call_id(value: str | None, keep: Iterable[str] = ()) -> str | None:
    """A tool call id as compared: a fixture's own id exactly, a generated one
    by its prefix (``call_``, ``toolu_``)."""
    if not value:
        return None
    if value in set(keep):
        return value
    found = _ID_PREFIX.match(value)
    return f"{found.group(0)}…" if found else "…"


def arguments(text: str | None) -> Any:
    """Tool call arguments as a program reads them: parsed JSON (the raw text when it is not JSON)."""
    try:
        return json.loads(text or "")
    except ValueError:
        return text


def collapse(kinds: Iterable[str]) -> list[str]:
    """A stream's event kinds with runs of the same kind merged: how many text
    deltas a text takes is a chunking detail, what follows what is not."""
    out: list[str] = []
    for kind in kinds:
        if not out or out[-1] != kind:
            out.append(kind)
    return out


def _extra(model: Any, name: str) -> Any:
    extra = getattr(model, "model_extra", None) or {}
    return extra.get(name)


class Clients:
    """The three SDKs pointed at one server (``base`` without ``/v1``), no retries,
    no proxies from the environment; ``headers`` go with every request. Each
    client is made when first used (google-genai's takes a while)."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.headers = dict(headers or {})
        self._made: dict[str, Any] = {}

    def _client(self, name: str) -> Any:
        if name not in self._made:
            from google import genai
            from google.genai import types as genai_types

            from tests.harness import clients as sdk

            if name == "openai":
                self._made[name] = sdk.openai_client(base_url=f"{self.base}/v1", default_headers=self.headers)
            elif name == "anthropic":
                self._made[name] = sdk.anthropic_client(base_url=self.base, default_headers=self.headers)
            else:
                # v1beta: aimock serves only it; google-genai 3 defaults to v1.
                self._made[name] = genai.Client(
                    api_key=sdk.TEST_GEMINI_KEY,
                    http_options=genai_types.HttpOptions(
                        base_url=self.base, api_version="v1beta", headers=self.headers,
                        client_args={"trust_env": False},
                    ),
                )
        return self._made[name]

    @property
    def openai(self) -> Any:
        return self._client("openai")

    @property
    def anthropic(self) -> Any:
        return self._client("anthropic")

    @property
    def genai(self) -> Any:
        return self._client("genai")

    def close(self) -> None:
        for client in self._made.values():
            client.close()
        self._made.clear()

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def error_view(exc: Exception) -> dict[str, Any]:
    """An SDK's exception for an error answer: class, status, the envelope's
    type and code (each SDK's own attributes), and whether it was a miss."""
    status = getattr(exc, "status_code", None) or getattr(exc, "code", None)
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    body = getattr(exc, "body", None)
    if not isinstance(body, dict):  # google-genai keeps the envelope in .details
        body = getattr(exc, "details", None)
    error = body.get("error", body) if isinstance(body, dict) else {}
    error = error if isinstance(error, dict) else {}
    miss = headers.get("x-llmock-miss") == "1" or error.get("code") == "no_fixture_match" or (
        "No fixture matched" in str(error.get("message", ""))
    )
    if miss:  # 421 here, 404 in aimock: a deliberate difference, see the compatibility doc
        return {"miss": True}
    view: dict[str, Any] = {"error": type(exc).__name__, "status": status, "message": error.get("message")}
    if "type" in error and not isinstance(error.get("code"), int):
        view["type"] = error.get("type")
    if isinstance(error.get("code"), str):
        view["code"] = error["code"]
    return view


def agree(seen: dict[str, Any], oracle: str = "aimock") -> Any:
    """The oracle's view, once every other server's view equals it; else a
    failure showing the difference line by line."""
    theirs = seen[oracle]
    for name, view in seen.items():
        if view != theirs:
            diff = difflib.unified_diff(pprint.pformat(theirs, width=100).splitlines(),
                                        pprint.pformat(view, width=100).splitlines(), oracle, name, lineterm="")
            raise AssertionError(f"{name} answers differently from {oracle}:\n" + "\n".join(diff))
    return theirs


def answer(call: Callable[[], Any]) -> Any:
    """``call()``'s view, or the view of the API error it raised."""
    import anthropic
    import openai
    from google.genai import errors as genai_errors

    try:
        return call()
    except (openai.APIStatusError, anthropic.APIStatusError, genai_errors.APIError) as exc:
        return error_view(exc)


# -- OpenAI chat ---------------------------------------------------------------------------------------


def chat_view(completion: Any, keep: Iterable[str] = ()) -> dict[str, Any]:
    choice = completion.choices[0]
    message = choice.message
    return {
        "object": completion.object,
        "role": message.role,
        "content": message.content,
        "reasoning": _extra(message, "reasoning_content"),
        "tool_calls": [
            {"type": c.type, "id": call_id(c.id, keep), "name": c.function.name,
             "arguments": arguments(c.function.arguments)}
            for c in message.tool_calls or []
        ],
        "finish_reason": choice.finish_reason,
        "usage": completion.usage is not None,
    }


def chat_stream_view(chunks: Iterable[Any], keep: Iterable[str] = ()) -> dict[str, Any]:
    kinds: list[str] = []
    roles: list[str] = []
    content = reasoning = ""
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    usage = False
    objects = set()
    for chunk in chunks:
        objects.add(chunk.object)
        usage = usage or chunk.usage is not None
        if not chunk.choices:
            kinds.append("usage")
            continue
        choice = chunk.choices[0]
        delta = choice.delta
        kind = []
        if delta.role:
            roles.append(delta.role)
        if delta.content:
            kind.append("content")
            content += delta.content
        thought = _extra(delta, "reasoning_content")
        if thought:
            kind.append("reasoning")
            reasoning += thought
        for part in delta.tool_calls or []:
            kind.append("tool_calls")
            entry = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += part.id or ""
            if part.function is not None:
                entry["name"] += part.function.name or ""
                entry["arguments"] += part.function.arguments or ""
        if choice.finish_reason:
            kind.append("finish")
            finish = choice.finish_reason
        kinds.append("+".join(dict.fromkeys(kind)) or "empty")
    return {
        "objects": sorted(objects),
        "roles": roles,
        # The role's own chunk (aimock) or the role on the first content
        # chunk (OpenAI, llmock-proxy) is not compared: both read the same.
        "events": collapse(k for k in kinds if k != "empty"),
        "content": content or None,
        "reasoning": reasoning or None,
        "tool_calls": [
            {"id": call_id(c["id"], keep), "name": c["name"], "arguments": arguments(c["arguments"])}
            for _, c in sorted(calls.items())
        ],
        "finish_reason": finish,
        "usage": usage,
    }


# -- OpenAI Responses -------------------------------------------------------------------------------------


def responses_item_view(item: Any, keep: Iterable[str] = ()) -> dict[str, Any]:
    kind = item.type
    if kind == "message":
        return {"type": kind, "role": item.role, "status": item.status,
                "content": [(p.type, getattr(p, "text", None) or getattr(p, "refusal", None)) for p in item.content]}
    if kind == "function_call":
        return {"type": kind, "name": item.name, "arguments": arguments(item.arguments),
                "call_id": call_id(item.call_id, keep), "status": item.status}
    if kind == "reasoning":
        return {"type": kind, "summary": [s.text for s in item.summary or []],
                "content": [c.text for c in getattr(item, "content", None) or []]}
    return {"type": kind}


def responses_view(response: Any, keep: Iterable[str] = ()) -> dict[str, Any]:
    return {
        "object": response.object,
        "status": response.status,
        "output": [responses_item_view(item, keep) for item in response.output],
        "output_text": response.output_text,
        "usage": response.usage is not None,
    }


def responses_stream_view(events: Iterable[Any], keep: Iterable[str] = ()) -> dict[str, Any]:
    kinds: list[str] = []
    final = None
    text = ""
    for event in events:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type in ("response.completed", "response.incomplete", "response.failed"):
            final = event.response
    return {
        "events": collapse(kinds),
        "text": text or None,
        "final": responses_view(final, keep) if final is not None else None,
    }


# -- Anthropic messages -------------------------------------------------------------------------------------


def anthropic_block_view(block: Any, keep: Iterable[str] = ()) -> dict[str, Any]:
    if block.type == "text":
        return {"type": "text", "text": block.text}
    if block.type == "tool_use":
        return {"type": "tool_use", "id": call_id(block.id, keep), "name": block.name, "input": block.input}
    if block.type == "thinking":
        return {"type": "thinking", "thinking": block.thinking, "signed": bool(block.signature)}
    return {"type": block.type}


def anthropic_view(message: Any, keep: Iterable[str] = ()) -> dict[str, Any]:
    return {
        "type": message.type,
        "role": message.role,
        "content": [anthropic_block_view(b, keep) for b in message.content],
        "stop_reason": message.stop_reason,
        "usage": message.usage is not None,
    }


def _empty_delta(event: Any) -> bool:
    """Anthropic opens a tool_use block with an empty ``input_json_delta``
    (and the SDK passes it on as an empty ``input_json`` event); aimock does
    not send it. An empty delta carries nothing a program reads."""
    delta = getattr(event, "delta", None) if event.type == "content_block_delta" else event
    if event.type not in ("content_block_delta", "input_json", "text"):
        return False
    payload = getattr(delta, "partial_json", None)
    if payload is None:
        payload = getattr(delta, "text", None)
    return payload == ""


def anthropic_stream_view(stream: Any, keep: Iterable[str] = ()) -> dict[str, Any]:
    """``client.messages.stream(...)`` as entered: every event's type (raw
    events and the SDK's own, deltas by their delta type), then the message
    the SDK accumulated. ``ping`` is not compared: Anthropic sends it, aimock does not."""
    kinds = []
    for event in stream:
        if event.type == "ping" or _empty_delta(event):
            continue
        delta = getattr(event, "delta", None)
        delta_type = getattr(delta, "type", None) if event.type == "content_block_delta" else None
        block = getattr(event, "content_block", None) if event.type == "content_block_start" else None
        kinds.append(event.type + (f":{delta_type}" if delta_type else "") + (f":{block.type}" if block else ""))
    return {"events": collapse(kinds), "final": anthropic_view(stream.get_final_message(), keep)}


# -- Gemini --------------------------------------------------------------------------------------------------


def _finish(reason: Any) -> str | None:
    return None if reason is None else str(getattr(reason, "value", reason))


def gemini_parts_view(parts: Iterable[Any], keep: Iterable[str] = ()) -> list[Any]:
    out: list[Any] = []
    for part in parts:
        if part.function_call is not None:
            out.append({"function_call": part.function_call.name, "args": part.function_call.args,
                        "id": call_id(part.function_call.id, keep)})
        elif part.thought:
            out.append({"thought": part.text})
        elif part.text is not None:
            out.append({"text": part.text})
        else:
            out.append({"other": sorted(k for k, v in part.model_dump(exclude_none=True).items())})
    return out


def gemini_view(response: Any, keep: Iterable[str] = ()) -> dict[str, Any]:
    candidate = response.candidates[0]
    return {
        "role": candidate.content.role if candidate.content else None,
        "parts": gemini_parts_view(candidate.content.parts or [] if candidate.content else [], keep),
        "text": response.text,
        # Gemini ends a function call with STOP; aimock says FUNCTION_CALL
        # (see the compatibility doc): compared where no function is called.
        "finish_reason": None if response.function_calls else _finish(candidate.finish_reason),
        "usage": response.usage_metadata is not None,
    }


def gemini_stream_view(chunks: Iterable[Any], keep: Iterable[str] = ()) -> dict[str, Any]:
    kinds = []
    parts: list[Any] = []
    finish = None
    usage = False
    called = False
    for chunk in chunks:
        kind = []
        candidate = chunk.candidates[0] if chunk.candidates else None
        if candidate is not None and candidate.content is not None:
            these = gemini_parts_view(candidate.content.parts or [], keep)
            parts += these
            kind += [next(iter(p)) for p in these]
            called = called or any("function_call" in p for p in these)
        if candidate is not None and candidate.finish_reason is not None:
            kind.append("finish")
            finish = _finish(candidate.finish_reason)
        if chunk.usage_metadata is not None:
            usage = True
        kinds.append("+".join(dict.fromkeys(kind)) or "empty")
    text = "".join(p["text"] for p in parts if "text" in p)
    return {
        "events": collapse(kinds),
        "text": text or None,
        "function_calls": [p for p in parts if "function_call" in p],
        "thoughts": "".join(p["thought"] or "" for p in parts if "thought" in p) or None,
        "finish_reason": None if called else finish,
        "usage": usage,
    }


# -- one conversation, asked through any of the SDKs ----------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """One message of a conversation, in no API's form: ``user`` / ``assistant``
    text, an assistant ``call`` (id, name, arguments), or a ``tool`` result."""

    kind: str
    text: str = ""
    id: str | None = None
    name: str = ""
    args: dict[str, Any] = field(default_factory=dict)


def user(text: str) -> Turn:
    return Turn("user", text)


def assistant(text: str) -> Turn:
    return Turn("assistant", text)


def call(id: str | None, name: str, args: dict[str, Any]) -> Turn:
    return Turn("call", id=id, name=name, args=args)


def tool(id: str | None, name: str, result: str) -> Turn:
    return Turn("tool", result, id=id, name=name)


@dataclass(frozen=True)
class Ask:
    """What a request says: the conversation, and what goes with it."""

    turns: tuple[Turn, ...]
    system: str | None = None
    tools: tuple[str, ...] = ()
    model: str | None = None
    response_format: str | None = None


APIS = ("chat", "chat.stream", "responses", "responses.stream", "anthropic", "anthropic.stream", "gemini",
        "gemini.stream")
MODELS = {"chat": "gpt-4o-mini", "responses": "gpt-4.1", "anthropic": "claude-sonnet-4-5",
          "gemini": "gemini-2.0-flash"}
_PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}}


def _chat_messages(ask: Ask) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": ask.system}] if ask.system else []
    for turn in ask.turns:
        if turn.kind in ("user", "assistant"):
            messages.append({"role": turn.kind, "content": turn.text})
        elif turn.kind == "call":
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": turn.id, "type": "function",
                 "function": {"name": turn.name, "arguments": json.dumps(turn.args)}}]})
        else:
            messages.append({"role": "tool", "tool_call_id": turn.id, "content": turn.text})
    return messages


def _responses_input(ask: Ask) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for turn in ask.turns:
        if turn.kind in ("user", "assistant"):
            items.append({"role": turn.kind, "content": turn.text})
        elif turn.kind == "call":
            items.append({"type": "function_call", "call_id": turn.id, "name": turn.name,
                          "arguments": json.dumps(turn.args)})
        else:
            items.append({"type": "function_call_output", "call_id": turn.id, "output": turn.text})
    return items


def _anthropic_messages(ask: Ask) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for turn in ask.turns:
        if turn.kind in ("user", "assistant"):
            messages.append({"role": turn.kind, "content": turn.text})
        elif turn.kind == "call":
            messages.append({"role": "assistant", "content": [
                {"type": "tool_use", "id": turn.id, "name": turn.name, "input": turn.args}]})
        else:
            messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": turn.id, "content": turn.text}]})
    return messages


def _gemini_contents(ask: Ask) -> list[Any]:
    from google.genai import types as genai_types

    contents = []
    for turn in ask.turns:
        if turn.kind == "user":
            part = genai_types.Part(text=turn.text)
        elif turn.kind == "assistant":
            part = genai_types.Part(text=turn.text)
        elif turn.kind == "call":
            part = genai_types.Part(function_call=genai_types.FunctionCall(id=turn.id, name=turn.name, args=turn.args))
        else:
            part = genai_types.Part(function_response=genai_types.FunctionResponse(
                id=turn.id, name=turn.name, response={"result": turn.text}))
        role = "model" if turn.kind in ("assistant", "call") else "user"
        contents.append(genai_types.Content(role=role, parts=[part]))
    return contents


def send(clients: Clients, api: str, ask: Ask, keep: Iterable[str] = ()) -> Any:
    """``ask`` through one SDK (``api`` is one of :data:`APIS`), as that SDK's
    user would write it; the view of what came back."""
    family, _, stream = api.partition(".")
    model = ask.model or MODELS[family]
    keep = tuple(keep)
    if family == "chat":
        kwargs: dict[str, Any] = {"model": model, "messages": _chat_messages(ask)}
        if ask.tools:
            kwargs["tools"] = [{"type": "function", "function": {"name": name, "parameters": _PARAMETERS}}
                               for name in ask.tools]
        if ask.response_format:
            kwargs["response_format"] = {"type": ask.response_format}
        if stream:
            return answer(lambda: chat_stream_view(clients.openai.chat.completions.create(
                stream=True, stream_options={"include_usage": True}, **kwargs), keep))
        return answer(lambda: chat_view(clients.openai.chat.completions.create(**kwargs), keep))
    if family == "responses":
        kwargs = {"model": model, "input": _responses_input(ask)}
        if ask.system:
            kwargs["instructions"] = ask.system
        if ask.tools:
            kwargs["tools"] = [{"type": "function", "name": name, "parameters": _PARAMETERS, "strict": False}
                               for name in ask.tools]
        if ask.response_format:
            kwargs["text"] = {"format": {"type": ask.response_format}}
        if stream:
            return answer(lambda: responses_stream_view(clients.openai.responses.create(stream=True, **kwargs), keep))
        return answer(lambda: responses_view(clients.openai.responses.create(**kwargs), keep))
    if family == "anthropic":
        kwargs = {"model": model, "max_tokens": 512, "messages": _anthropic_messages(ask)}
        if ask.system:
            kwargs["system"] = ask.system
        if ask.tools:
            kwargs["tools"] = [{"name": name, "input_schema": _PARAMETERS} for name in ask.tools]

        def streamed() -> Any:
            with clients.anthropic.messages.stream(**kwargs) as events:
                return anthropic_stream_view(events, keep)

        if stream:
            return answer(streamed)
        return answer(lambda: anthropic_view(clients.anthropic.messages.create(**kwargs), keep))
    if family == "gemini":
        from google.genai import types as genai_types

        config = genai_types.GenerateContentConfig(
            system_instruction=ask.system,
            tools=[genai_types.Tool(function_declarations=[
                genai_types.FunctionDeclaration(name=name, parameters_json_schema=_PARAMETERS)
                for name in ask.tools])] if ask.tools else None,
            response_mime_type="application/json" if ask.response_format == "json_object" else None,
        )
        contents = _gemini_contents(ask)
        if stream:
            return answer(lambda: gemini_stream_view(clients.genai.models.generate_content_stream(
                model=model, contents=contents, config=config), keep))
        return answer(lambda: gemini_view(clients.genai.models.generate_content(
            model=model, contents=contents, config=config), keep))
    raise ValueError(f"unknown API {api!r}; known: {APIS}")


def embed(clients: Clients, inputs: str | list[str], model: str = "text-embedding-3-small") -> Any:
    """Embeddings through the openai SDK (which asks for base64 and decodes it)."""

    def view() -> Any:
        result = clients.openai.embeddings.create(model=model, input=inputs)
        return {"object": result.object, "model": result.model, "usage": result.usage is not None,
                "data": [(d.object, d.index, [round(x, 6) for x in d.embedding]) for d in result.data]}

    return answer(view)


# -- WebSocket sessions ---------------------------------------------------------------------------------------


def realtime_view(events: list[dict[str, Any]], keep: Iterable[str] = ()) -> dict[str, Any]:
    """OpenAI Realtime or Responses-over-WebSocket server events as a client reads
    them: the order of event types (delta runs merged), the text and the function
    calls of every finished response, and the error events."""
    # GA Realtime announces every conversation item (conversation.item.added
    # and .done) where aimock sends a few: not compared.
    kinds = [str(e.get("type")) for e in events if not str(e.get("type")).startswith("conversation.item.")]
    done = [e.get("response", {}) for e in events if e.get("type") in ("response.done", "response.completed")]
    responses = []
    for response in done:
        items = []
        for item in response.get("output", []):
            if item.get("type") == "function_call":
                items.append({"function_call": item.get("name"), "arguments": arguments(item.get("arguments")),
                              "call_id": call_id(item.get("call_id"), keep)})
            elif item.get("type") == "message":
                items.append({"message": "".join(
                    p.get("text") or p.get("transcript") or "" for p in item.get("content", []))})
            else:
                items.append({"other": item.get("type")})
        responses.append({"status": response.get("status"), "output": items})
    errors = [{k: v for k, v in (e.get("error") or {}).items() if k in ("type", "code")}
              for e in events if e.get("type") == "error"]
    return {"events": collapse(kinds), "responses": responses, "errors": errors}


LIVE_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


async def live_session(base: str, text: str, *, model: str = "gemini-live-2.5-flash-preview",
                       tools: Sequence[str] = (), tool_result: dict[str, Any] | None = None) -> list[Any]:
    """A Gemini Live session on ``base`` (``http://host:port``), as google-genai
    sends it (setup, one user turn, the tool response when a function is
    called), each server message read as the SDK reads it
    (``LiveServerMessage``). google-genai itself always dials ``wss://``, which
    neither server speaks on loopback, so the client is ``websockets`` here."""
    import websockets
    from google.genai import types as genai_types

    from tests.harness import clients as sdk

    uri = base.replace("http://", "ws://", 1) + LIVE_PATH + f"?key={sdk.TEST_GEMINI_KEY}"
    setup: dict[str, Any] = {"model": f"models/{model}", "generationConfig": {"responseModalities": ["TEXT"]}}
    if tools:
        setup["tools"] = [{"functionDeclarations": [{"name": n, "parameters": _PARAMETERS} for n in tools]}]
    seen: list[Any] = []
    async with websockets.connect(uri, proxy=None, open_timeout=10) as socket:
        await socket.send(json.dumps({"setup": setup}))
        await socket.send(json.dumps({"clientContent": {
            "turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": True}}))
        answered = False
        spoken = False  # model content since the tool response
        while True:
            try:
                raw = await asyncio.wait_for(socket.recv(), 10)
            except websockets.ConnectionClosed as closed:
                seen.append({"closed": closed.rcvd.code if closed.rcvd else None})
                break
            message = genai_types.LiveServerMessage._from_response(response=json.loads(raw), kwargs={})
            seen.append(message)
            content = message.server_content
            if message.tool_call is not None and not answered:
                answered = True
                await socket.send(json.dumps({"toolResponse": {"functionResponses": [
                    {"id": c.id, "name": c.name, "response": tool_result or {}}
                    for c in message.tool_call.function_calls or []]}}))
            elif content is not None and content.model_turn is not None:
                spoken = True
            # aimock ends the turn right after a tool call too; the answer
            # to the tool response comes after that.
            if content is not None and content.turn_complete and (spoken or not tools):
                break
    return seen


def live_view(messages: list[Any]) -> dict[str, Any]:
    kinds = []
    text = ""
    calls = []
    for message in messages:
        if isinstance(message, dict):  # the close code of a session the server ended
            kinds.append(f"closed:{message['closed']}")
            continue
        kind = []
        if message.setup_complete is not None:
            kind.append("setupComplete")
        content = message.server_content
        if content is not None:
            if content.model_turn is not None:
                kind.append("modelTurn")
                text += "".join(p.text or "" for p in content.model_turn.parts or [])
            # generationComplete: the real service sends it before turnComplete, aimock never.
            if content.turn_complete and not (kinds and kinds[-1] == "toolCall"):
                kind.append("turnComplete")  # not the one aimock sends right after a tool call
        if message.tool_call is not None:
            kind.append("toolCall")
            calls += [{"name": c.name, "args": c.args} for c in message.tool_call.function_calls or []]
        # usageMetadata: the real service reports it, aimock does not (not compared).
        if kind or content is None:
            kinds.append("+".join(kind) or "other")
    return {"events": collapse(kinds), "text": text or None, "function_calls": calls}


async def responses_ws_tool_loop(base: str, *, model: str = "gpt-4.1") -> list[Any]:
    """Responses over WebSocket: ask, then send the whole conversation with the
    tool output (no ``previous_response_id``: aimock keeps no conversation
    state between responses, the real API and llmock-proxy do)."""
    from tests.support.websocket import QUESTION, TOOL_OUTPUT, WEATHER_TOOL_RESPONSES, Target

    target = Target.at(base)
    seen: list[Any] = []
    client = target.openai()

    async def until_done(conn: Any) -> dict[str, Any]:
        while True:
            event = json.loads(await conn.recv_bytes())
            seen.append(event)
            if event.get("type") in ("response.completed", "error"):
                return dict(event)

    async with client.responses.connect(websocket_connection_options=target.websocket_options()) as conn:
        await conn.response.create(model=model, input=QUESTION, tools=[WEATHER_TOOL_RESPONSES])  # type: ignore[list-item]
        first = await until_done(conn)
        calls = [i for i in first.get("response", {}).get("output", []) if i.get("type") == "function_call"]
        if calls:
            c = calls[0]
            await conn.response.create(model=model, tools=[WEATHER_TOOL_RESPONSES], input=[  # type: ignore[list-item]
                {"role": "user", "content": QUESTION},
                {"type": "function_call", "call_id": c["call_id"], "name": c["name"], "arguments": c["arguments"]},
                {"type": "function_call_output", "call_id": c["call_id"], "output": json.dumps(TOOL_OUTPUT)},
            ])
            await until_done(conn)
    await client.close()
    return seen
