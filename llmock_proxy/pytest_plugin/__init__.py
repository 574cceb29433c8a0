"""The llmock pytest plugin: per-test cassettes replayed (or recorded) by llmock-proxy.

Registered through the ``pytest11`` entry point (:mod:`llmock_proxy.pytest_plugin.plugin`),
so installing llmock-proxy is the whole set-up. Importing the plugin is cheap on
purpose: every pytest run of every project in the environment loads it, and
nothing is started (no replay engine, no mitmdump, no cassette read) until a
test uses the ``llmock`` fixture or carries ``@pytest.mark.llmock``.

One file per idea: :mod:`.options` (command line, ini, marker, modes),
:mod:`.paths` (cassette paths, session ids), :mod:`.environment` (the variables
SDKs read), :mod:`.network` (``--block-network``), :mod:`.engine_thread` and
:mod:`.mitmdump` (the two transports), :mod:`.runtime` (one per pytest
process: what a test gets), :mod:`.fixture` (the ``llmock`` object),
:mod:`.verdict` (misses and blocked connections fail the test) and
:mod:`.unused` (``--llmock-report-unused``).
"""
