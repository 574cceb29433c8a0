"""The HTTP library the installed SDKs are built on, for tests that speak HTTP themselves.

openai 3, anthropic 2 and google-genai 3 moved to httpx2 (a fork of httpx
under its own import name); the releases before them use httpx. Each lane's
environment has the one its SDKs need, so tests import it from here::

    from tests.harness.http import httpx

and anything they hand to an SDK (a transport, a client) is of the SDK's own
library. The choice is read from the openai SDK's own client class.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import openai


def _sdk_http_library() -> ModuleType:
    for cls in openai.DefaultHttpxClient.__mro__:
        package = cls.__module__.split(".")[0]
        if package in ("httpx", "httpx2"):
            return importlib.import_module(package)
    raise ImportError("openai.DefaultHttpxClient derives from neither httpx nor httpx2")


httpx = _sdk_http_library()
