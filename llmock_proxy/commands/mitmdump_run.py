"""``llmock-proxy record`` / ``replay``: one of our addons in a ``mitmdump`` child process.

The commands are a friendly door to what ``mitmdump -s addons/record.py``
does, not a second proxy: they build the mitmdump command line (the
``mitmdump`` beside this interpreter and the addon scripts the package ships,
found as the pytest plugin finds them), relay its output, learn the port it
really listens on from its own ``listening at`` line, print how to point
SDKs at it, and on Ctrl-C (or SIGTERM, SIGHUP) stop it and report.

mitmdump runs in a process group of its own, so a Ctrl-C in the terminal
reaches this process only: the command asks the running proxy what it needs
for its report first (the replay addon's health counts), then sends mitmdump
the SIGINT, and mitmdump shuts down cleanly (the record addon waits for its
worker to write everything).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from llmock_proxy.pytest_plugin.environment import CA_VARIABLES
from llmock_proxy.pytest_plugin.mitmdump import _LISTENING, CA_CERT_FILE, ProxyError, mitmdump_executable

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_CONFDIR = "~/.mitmproxy"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0  # the record addon's shutdown waits for its worker's writes
CONTROL_HOST = "llmock.invalid"  # as llmock_proxy.replay.control names it (its import is heavy)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# What each CA variable is read by, for the printed lines.
CA_READERS = {
    "SSL_CERT_FILE": "Python: httpx/httpx2 (openai, anthropic, google-genai), aiohttp",
    "REQUESTS_CA_BUNDLE": "Python: requests, botocore",
    "NODE_EXTRA_CA_CERTS": "Node",
}


def add_proxy_arguments(parser: argparse.ArgumentParser) -> None:
    """Where mitmdump listens, its confdir (CA), and what passes through to it."""
    group = parser.add_argument_group("mitmdump")
    # mitmdump's names, and serve's (--host/--port) for users coming from it.
    group.add_argument(
        "--listen-host", "--host", dest="listen_host", default=DEFAULT_HOST, metavar="HOST",
        help=f"address to listen on (default {DEFAULT_HOST})",
    )
    group.add_argument(
        "--listen-port", "--port", dest="listen_port", type=int, default=DEFAULT_PORT, metavar="PORT",
        help=f"port to listen on, 0 = any free port (default {DEFAULT_PORT})",
    )
    group.add_argument(
        "--confdir", default=DEFAULT_CONFDIR, metavar="DIR",
        help=f"mitmproxy's configuration directory, where its CA lives (default {DEFAULT_CONFDIR}; "
        "the CA is created there on first start)",
    )
    group.add_argument(
        "--set", dest="options", action="append", default=[], metavar="NAME=VALUE",
        help="a mitmproxy or llmock_* option, passed on as mitmdump --set NAME=VALUE; repeatable",
    )
    group.add_argument(
        "-s", "--script", dest="scripts", action="append", default=[], metavar="FILE",
        help="another mitmdump script to load after ours (e.g. addons/drift.py); repeatable",
    )


def ca_file(confdir: str) -> Path:
    return Path(confdir).expanduser().absolute() / CA_CERT_FILE


def proxy_lines(proxy_url: str, ca: Path) -> list[str]:
    """The environment lines that point Python and Node clients at the proxy."""
    lines = [f"  export HTTPS_PROXY={proxy_url}"]
    lines += [f"  export {name}={ca}   # {CA_READERS.get(name, '')}".rstrip(" #") for name in CA_VARIABLES]
    return lines


def option_conflicts(options: Sequence[str], owned: dict[str, str]) -> str | None:
    """A usage error when ``--set`` names an option the command has its own flag for."""
    for option in options:
        name, sep, _ = option.partition("=")
        if not sep:
            return f"--set {option}: expected NAME=VALUE"
        if name.strip() in owned:
            return f"--set {name.strip()}: use {owned[name.strip()]} instead"
    return None


def mitmdump_command(args: argparse.Namespace, script: Path, options: dict[str, str],
                     mode: str | None = None) -> list[str]:
    """The mitmdump command line: our addon first, then the user's scripts and options."""
    command = [mitmdump_executable(), "--listen-host", args.listen_host, "--listen-port", str(args.listen_port)]
    if mode:
        command += ["--mode", mode]
    command += ["-s", str(script)]
    for extra in args.scripts:
        command += ["-s", extra]
    settings = {"confdir": str(Path(args.confdir).expanduser()), **options}
    for name, value in settings.items():
        command += ["--set", f"{name}={value}"]
    for option in args.options:
        command += ["--set", option]
    return command


@dataclass
class MitmdumpChild:
    """The mitmdump process: started, relayed, stopped; see the module docstring."""

    command: list[str]
    prog: str
    process: subprocess.Popen[str] | None = None
    port: int | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop_requested: bool = False
    _reader: threading.Thread | None = None

    def run(self, on_listening: Callable[[int], None], before_stop: Callable[[int], None]) -> int:
        """Start mitmdump, call ``on_listening(port)``, wait for a stop signal
        or mitmdump's exit, call ``before_stop(port)`` while it still runs,
        stop it. The exit code: 0 stopped on request, else 1."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            try:
                self._start()
            except ProxyError as exc:
                print(f"{self.prog}: {exc}", file=sys.stderr)
                return 1
            if not self._ready.wait(START_TIMEOUT) or self.port is None:
                if self._stop_requested:
                    self._stop()
                    return 0
                code = self._stop()
                print(f"{self.prog}: mitmdump did not start (exit status {code}); its output is above",
                      file=sys.stderr)
                return 1
            on_listening(self.port)
            self._wake.wait()
            assert self.process is not None
            if not self._stop_requested:  # woken by the end of mitmdump's output: it is exiting by itself
                code = self.process.wait()
                self._join()
                print(f"{self.prog}: mitmdump exited with status {code}; its output is above", file=sys.stderr)
                return 1
            try:
                before_stop(self.port)
            finally:
                self._stop()
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop_requested and self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # asked again: pass it on (mitmdump's shutdown is idempotent)
        self._stop_requested = True
        self._wake.set()
        self._ready.set()

    def _start(self) -> None:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        try:
            self.process = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                text=True, bufsize=1, env=env, process_group=0,
            )
        except OSError as exc:
            raise ProxyError(f"cannot run {self.command[0]}: {exc}") from exc
        self._reader = threading.Thread(target=self._relay, name="llmock-mitmdump-output", daemon=True)
        self._reader.start()

    def _relay(self) -> None:
        """mitmdump's output, line by line, as our own; its listening line gives the port."""
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if self.port is None:
                found = _LISTENING.search(line)
                if found:
                    self.port = int(found["port"])
                    self._ready.set()
        self._ready.set()  # exited
        self._wake.set()

    def _stop(self) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"{self.prog}: mitmdump did not stop within {STOP_TIMEOUT:.0f}s; killing it", file=sys.stderr)
                process.kill()
                process.wait()
        self._join()
        return process.returncode

    def _join(self) -> None:
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT)


def control_get(host: str, port: int, path: str, timeout: float = 10.0) -> Any:
    """``GET http://llmock.invalid<path>`` as a plain proxy request to the replay addon; None when it fails."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", f"http://{CONTROL_HOST}{path}", headers={"Host": CONTROL_HOST})
        response = connection.getresponse()
        body = response.read()
        return json.loads(body) if response.status == 200 else None
    except (OSError, ValueError):
        return None
    finally:
        connection.close()
