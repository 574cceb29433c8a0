"""The proxy transport: one ``mitmdump`` with the replay addon per pytest process.

For code under test that keeps the providers' real hostnames (or opens
WebSockets that insist on TLS), the plugin runs ``mitmdump -s
<this package>/mitm_addon.py`` on ``127.0.0.1`` with a free port and its own
confdir (so its CA) in a temporary directory of the run, and points clients at
it with ``HTTPS_PROXY``/``HTTP_PROXY`` and the CA variables. The proxy user
name is the test's session id: ``http://<session>:llmock@127.0.0.1:PORT``.

Sessions are opened, read and closed through the addon's control endpoints
(``POST http://llmock.invalid/__llmock/sessions`` and friends), sent as plain
HTTP proxy requests to mitmdump itself, never through the environment's own
proxy settings. The addon's named sessions replay only (it forwards through
mitmproxy for the whole process, not per session): recording from tests needs
the base-URL transport.

mitmdump's port is read from its own log line (``listening at
127.0.0.1:PORT.``) by a thread that drains its output, so the pipe never fills
and startup waits on that line or on the process exiting, never on a guess.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmock_proxy.pytest_plugin.environment import proxy_environment
from llmock_proxy.pytest_plugin.transport import ClosedSession, SessionSpec, entry_from_dict, origin_from_dict

if TYPE_CHECKING:
    from llmock_proxy.replay.journal import JournalEntry, Origin

ADDON_SCRIPT = Path(__file__).with_name("mitm_addon.py")
# As llmock_proxy.replay.control names them (not imported: the engine's import is heavy).
CONTROL_HOST = "llmock.invalid"
CONTROL_HEADER = "x-llmock-control"
CA_CERT_FILE = "mitmproxy-ca-cert.pem"
PROXY_PASSWORD = "llmock"
START_TIMEOUT = 60.0
CALL_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_LISTENING = re.compile(r"listening at (?:\[[^\]]+\]|[^\s:]+):(?P<port>\d+)\.")
_KEPT_LINES = 200  # mitmdump's last lines, for an error message


class ProxyError(RuntimeError):
    """mitmdump failed to start or a control request failed; the message says which and why."""


def mitmdump_executable() -> str:
    """The ``mitmdump`` next to this interpreter (a virtualenv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "mitmdump"
    if beside.exists():
        return str(beside)
    found = shutil.which("mitmdump")
    if found is None:
        raise ProxyError("--llmock-transport=proxy needs mitmdump (mitmproxy), and none was found")
    return found


class MitmdumpProxy:
    """The mitmdump subprocess and its control client; see the module docstring."""

    name = "proxy"

    def __init__(self, timing: str = "instant") -> None:
        self.timing = timing
        self.port: int | None = None
        self.process: subprocess.Popen[str] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._lines: deque[str] = deque(maxlen=_KEPT_LINES)
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def confdir(self) -> Path:
        if self._dir is None:
            raise ProxyError("mitmdump is not running")
        return Path(self._dir.name)

    @property
    def ca_file(self) -> Path:
        return self.confdir / CA_CERT_FILE

    def proxy_url(self, session_id: str | None = None) -> str:
        user = f"{session_id}:{PROXY_PASSWORD}@" if session_id else ""
        return f"http://{user}127.0.0.1:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> MitmdumpProxy:
        if self.process is not None:
            return self
        self._dir = tempfile.TemporaryDirectory(prefix="llmock-mitmdump-")
        command = [
            mitmdump_executable(),
            "--listen-host", "127.0.0.1",
            "--listen-port", "0",
            "-s", str(ADDON_SCRIPT),
            "--set", f"confdir={self.confdir}",
            "--set", "llmock_cassette_dir=",  # sessions name their files; nothing is loaded by default
            "--set", f"llmock_timing={self.timing}",
            "--set", "flow_detail=0",
        ]
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            env.pop(name, None)  # mitmdump itself connects nowhere through another proxy
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, env=env, start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name="llmock-mitmdump-output", daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT) or self.port is None:
            output = self.output
            self.stop()
            raise ProxyError(f"mitmdump did not start (waited {START_TIMEOUT:.0f}s); it said:\n{output}")
        if not self.ca_file.is_file():
            output = self.output
            self.stop()
            raise ProxyError(f"mitmdump started without writing its CA {self.ca_file}; it said:\n{output}")
        return self

    def _read(self) -> None:
        process = self.process
        assert process is not None and process.stdout is not None
        for line in process.stdout:
            self._lines.append(line)
            if self.port is None:
                found = _LISTENING.search(line)
                if found:
                    self.port = int(found["port"])
                    self._ready.set()
        self._ready.set()  # exited: whoever waits finds no port

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def stop(self) -> None:
        process = self.process
        if process is not None:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)  # its own session: only mitmdump and its children
                except ProcessLookupError:
                    pass
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(STOP_TIMEOUT)
            if self._reader is not None:
                self._reader.join(STOP_TIMEOUT)
            self.process = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def allowed_threads(self) -> frozenset[int]:
        return frozenset()

    # -- control endpoints -----------------------------------------------------------------

    def control(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """``method path`` on the addon's control endpoints (through the proxy, plain HTTP)."""
        if self.port is None:
            raise ProxyError("mitmdump is not running")
        data = json.dumps(body).encode() if body is not None else None
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CALL_TIMEOUT)
        try:
            headers = {"Host": CONTROL_HOST, CONTROL_HEADER: "1"}
            if data:
                headers["Content-Type"] = "application/json"
            connection.request(method, f"http://{CONTROL_HOST}{path}", body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        except OSError as exc:
            raise ProxyError(f"llmock: {method} {path} to mitmdump at 127.0.0.1:{self.port} failed: {exc}") from exc
        finally:
            connection.close()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode("utf-8", "replace")
        return response.status, payload

    def _checked(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
        status, payload = self.control(method, path, body)
        if status not in ok:
            raise ProxyError(f"llmock: mitmdump answered {method} {path} with {status}: {_message(payload)}")
        return payload

    # -- sessions ------------------------------------------------------------------------------

    def open(self, spec: SessionSpec) -> ProxySession:
        if spec.mode != "replay":
            raise ProxyError(
                f"llmock: --llmock-transport=proxy replays only (the replay addon's sessions do not record); "
                f"mode {spec.mode!r} needs --llmock-transport=base-url"
            )
        self.start()
        body = {
            "id": spec.session_id,
            "cassettes": [str(p) for p in (*spec.cassettes, *spec.shared_cassettes)],
            "fixtures": [str(p) for p in (*spec.fixtures, *spec.shared_fixtures)],
            "mode": "replay",
        }
        opened = self._checked("POST", "/__llmock/sessions", body, ok=(201,))
        prefix = opened.get("prefix") if isinstance(opened, dict) else None
        base_url = f"http://{CONTROL_HOST}{prefix or '/__llmock/session/' + spec.session_id}"
        proxy_url = self.proxy_url(spec.session_id)
        return ProxySession(self, spec.session_id, base_url, proxy_environment(proxy_url, str(self.ca_file)),
                            proxy_url)


@dataclass
class ProxySession:
    """A test's session in the mitmdump addon, read through the control endpoints."""

    transport: MitmdumpProxy
    session_id: str
    base_url: str
    env: dict[str, str]
    proxy_url: str | None = None
    closed: ClosedSession | None = field(default=None, init=False)

    def journal(self) -> list[JournalEntry]:
        if self.closed is not None:
            return list(self.closed.journal)
        payload = self.transport._checked("GET", f"/__llmock/sessions/{self.session_id}/requests")
        return [entry_from_dict(e) for e in payload.get("requests", [])]

    def unused(self) -> list[Origin]:
        if self.closed is not None:
            return list(self.closed.unused)
        payload = self.transport._checked("GET", f"/__llmock/sessions/{self.session_id}/unused")
        return [origin_from_dict(o) for o in payload.get("unused", [])]

    def reset(self) -> None:
        self.transport._checked("POST", f"/__llmock/sessions/{self.session_id}/reset")

    def close(self) -> ClosedSession:
        if self.closed is None:
            payload = self.transport._checked("DELETE", f"/__llmock/sessions/{self.session_id}")
            self.closed = ClosedSession(
                [entry_from_dict(e) for e in payload.get("requests", [])],
                [origin_from_dict(o) for o in payload.get("unused", [])],
            )
        return self.closed


def _message(payload: Any) -> str:
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            return str(error.get("message", error))
        if error is not None:
            return str(error)
    return str(payload)
