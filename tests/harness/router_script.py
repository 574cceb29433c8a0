"""``mitmdump -s tests/harness/router_script.py --set test_upstream_routes=host=PLAIN/TLS``.

The subprocess flavour of :class:`tests.harness.router.UpstreamRouter`; the
mitmdump runner puts the repository root on PYTHONPATH so this import works.
"""

from tests.harness.router import UpstreamRouter

addons = [UpstreamRouter()]
