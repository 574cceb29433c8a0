"""mitmproxy addons: thin shells that declare options and forward hooks.

Each addon maps mitmproxy's flow hooks onto a sans-mitmproxy core
(:mod:`llmock_proxy.record.recorder`, :mod:`llmock_proxy.cassette.writer`, ...) and
holds no protocol logic of its own. The scripts in ``addons/`` instantiate
them for ``mitmdump -s``.
"""
