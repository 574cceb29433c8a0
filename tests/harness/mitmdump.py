"""A ``mitmdump`` subprocess, for tests where a separate process is the point (kill -9...).

Runs the virtualenv's ``mitmdump`` (next to ``sys.executable``) on
127.0.0.1 port 0 and learns the real port from its own log line
``<mode> listening at 127.0.0.1:PORT.``, read by a thread that drains the
output as it comes (so the pipe never fills). Startup waits on that line or
on the process exiting, never on a guessed sleep. The repository root is put
on PYTHONPATH so ``-s`` scripts can import ``llmock_proxy`` and ``tests``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.harness.inprocess import CA_CERT_FILE
from tests.harness.router import ROUTES_OPTION, Route

REPO_ROOT = Path(__file__).resolve().parents[2]
ROUTER_SCRIPT = Path(__file__).with_name("router_script.py")
_LISTENING = re.compile(r"listening at (?:\[(?P<ip6>[^\]]+)\]|(?P<host>[^\s:]+)):(?P<port>\d+)\.")
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


def mitmdump_executable() -> Path:
    return Path(sys.executable).parent / "mitmdump"


def _option_args(options: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for name, value in options.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            if isinstance(item, bool):
                item = "true" if item else "false"
            args += ["--set", f"{name}={item}"]
    return args


class MitmdumpProcess:
    """``mitmdump`` listening on 127.0.0.1; ``url``, ``port``, ``pid``, ``output``.

    The test router script is always loaded (``use_router=False`` to skip it):
    ``routes`` send provider hosts to local fakes and every other
    non-loopback destination is refused. ``upstream_trusted_ca`` is the CA
    mitmproxy trusts upstream (the fakes' CA).
    """

    def __init__(
        self,
        *,
        confdir: Path,
        mode: str = "regular",
        scripts: Iterable[Path | str] = (),
        options: dict[str, Any] | None = None,
        routes: Iterable[Route] = (),
        use_router: bool = True,
        upstream_trusted_ca: Path | None = None,
        extra_args: Iterable[str] = (),
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.confdir = Path(confdir)
        self.mode = mode
        self.scripts = [Path(s).resolve() for s in scripts]
        self.options = dict(options or {})
        self.routes = list(routes)
        self.use_router = use_router
        self.upstream_trusted_ca = upstream_trusted_ca
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.cwd = cwd
        self.process: subprocess.Popen[str] | None = None
        self.port: int | None = None
        self._lines: list[str] = []
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    # -- what tests use --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("mitmdump is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca_cert_path(self) -> Path:
        return self.confdir / CA_CERT_FILE

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("mitmdump was not started")
        return self.process.pid

    @property
    def output(self) -> str:
        """Everything mitmdump printed so far (stdout and stderr)."""
        return "".join(self._lines)

    def command(self) -> list[str]:
        args = [
            str(mitmdump_executable()),
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            "0",
            "--mode",
            self.mode,
            "--set",
            f"confdir={self.confdir}",
        ]
        scripts = list(self.scripts)
        options = dict(self.options)
        if self.use_router:
            scripts.append(ROUTER_SCRIPT)
            if self.routes:
                options[ROUTES_OPTION] = [r.to_spec() for r in self.routes]
        elif self.routes:
            raise ValueError("routes need the router script (use_router=True)")
        if self.upstream_trusted_ca is not None:
            options.setdefault("ssl_verify_upstream_trusted_ca", str(self.upstream_trusted_ca))
        for script in scripts:
            args += ["-s", str(script)]
        return args + _option_args(options) + self.extra_args

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, timeout: float = _START_TIMEOUT) -> MitmdumpProcess:
        if self.process is not None:
            raise RuntimeError("mitmdump already started")
        self.confdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        for proxy_var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            env.pop(proxy_var, None)
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            env=env,
            cwd=str(self.cwd or REPO_ROOT),
        )
        self._reader = threading.Thread(target=self._read_output, name=f"mitmdump-{self.process.pid}", daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout) or self.port is None:
            code = self.process.poll()
            self.kill()
            state = f"exited with {code}" if code is not None else f"no listening line within {timeout}s"
            raise RuntimeError(f"mitmdump did not start ({state}); output:\n{self.output}")
        return self

    def _read_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line)
            if self.port is None:
                match = _LISTENING.search(line)
                if match:
                    self.port = int(match["port"])
                    self._ready.set()
        self._ready.set()  # EOF: the process ended; start() reports it

    def send_signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def terminate(self, timeout: float = _STOP_TIMEOUT) -> int | None:
        """SIGTERM and wait: mitmdump shuts down cleanly (``done`` hooks run)."""
        self.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self, timeout: float = _STOP_TIMEOUT) -> int | None:
        """SIGKILL (kill -9) and wait: no hook runs, as in a crash."""
        self.send_signal(signal.SIGKILL)
        return self.wait(timeout)

    def wait(self, timeout: float = _STOP_TIMEOUT) -> int | None:
        if self.process is None:
            return None
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            code = self.process.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.wait()
        return self.terminate()

    def __enter__(self) -> MitmdumpProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
