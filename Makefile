# Every target creates the virtual environment it needs when it is missing,
# so `make run` and `make test` are the whole set-up on a fresh machine.
# Environments install the exact versions of requirements/pyX.Y.txt (make lock).

# The interpreter for `make run` (a command or a version: PYTHON=python3.13 or 3.13).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

# The test lanes: Python 3.11 runs mitmproxy 11 with the httpx-era SDKs,
# Python 3.13 mitmproxy 12 with the newest SDKs (httpx2). Each lane has its own
# environment, .venv-test-X.Y. `make test LANES=3.13` runs one.
LANES  ?= 3.11 3.13
# pytest-xdist workers per lane (default: one per CPU, at most 4); 0 runs
# the tests in one process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ "$$n" -gt 4 ] && n=4; echo $$n)
# The Python versions `make lock` writes lock files for.
LOCK_VERSIONS ?= 3.11 3.12 3.13
UV_VERSION    ?= 0.13.9

# Replay proxy settings for `make run` (override on the command line).
PORT      ?= 8080
CASSETTES ?= cassettes/examples

.PHONY: run test test-latest venv bench lock clean

venv:
	@scripts/make-venv $(PYTHON) $(VENV)

# The replay proxy: mitmdump -s addons/replay.py in regular proxy mode,
# answering from the cassettes and llmock fixture files under $(CASSETTES),
# never from the network. mitmproxy's CA lives in $(CONFDIR).
CONFDIR   ?= $(HOME)/.mitmproxy
CA_CERT   := $(CONFDIR)/mitmproxy-ca-cert.pem
DEMO_BODY := {"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello"}]}

run: venv
	@echo 'llmock-proxy replay proxy on http://127.0.0.1:$(PORT), answering from $(CASSETTES) (Ctrl-C stops it).'
	@echo 'Point an SDK at it (the CA is created on first start):'
	@echo '  export HTTPS_PROXY=http://127.0.0.1:$(PORT)'
	@echo '  export SSL_CERT_FILE=$(CA_CERT)         # Python (requests: REQUESTS_CA_BUNDLE)'
	@echo '  export NODE_EXTRA_CA_CERTS=$(CA_CERT)   # Node'
	@echo 'Try it:'
	@echo '  curl -sN --proxy http://127.0.0.1:$(PORT) --cacert $(CA_CERT) https://api.openai.com/v1/chat/completions -H "content-type: application/json" -d '"'"'$(DEMO_BODY)'"'"
	@echo 'Clients that take a base URL instead: $(BIN)/llmock-proxy serve --cassettes $(CASSETTES) --fixtures $(CASSETTES)'
	@echo 'Options and matching rules: docs/replay.md'
	exec $(BIN)/mitmdump -s addons/replay.py --listen-host 127.0.0.1 --listen-port $(PORT) \
	  --set confdir=$(CONFDIR) --set llmock_cassette_dir= \
	  --set llmock_cassettes=$(CASSETTES) --set llmock_fixtures=$(CASSETTES)

# Every lane runs, even after one fails; the target fails when any did. A lane
# whose interpreter is missing fails, naming it: it is never skipped.
test:
	@failed=; \
	for lane in $(LANES); do \
	  echo "=== lane: Python $$lane (requirements/py$$lane.txt) ==="; \
	  if scripts/make-venv $$lane .venv-test-$$lane; then \
	    .venv-test-$$lane/bin/python -c 'import mitmproxy.version as m, openai, anthropic, google.genai as g; print(f"mitmproxy {m.VERSION}, openai {openai.__version__}, anthropic {anthropic.__version__}, google-genai {g.__version__}")'; \
	    .venv-test-$$lane/bin/ruff check llmock_proxy tests benchmarks addons || failed="$$failed $$lane(ruff)"; \
	    .venv-test-$$lane/bin/mypy || failed="$$failed $$lane(mypy)"; \
	    .venv-test-$$lane/bin/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS) || failed="$$failed $$lane"; \
	  else \
	    failed="$$failed $$lane"; \
	  fi; \
	done; \
	if [ -n "$$failed" ]; then echo "=== failed lanes:$$failed ==="; exit 1; fi; \
	echo "=== all lanes passed: $(LANES) ==="

# The newest releases pyproject.toml allows, not the lock files: run before
# `make lock` to see what an upgrade would bring. Not part of CI.
test-latest:
	@failed=; \
	for lane in $(LANES); do \
	  echo "=== latest, lane: Python $$lane ==="; \
	  scripts/make-venv $$lane .venv-latest-$$lane latest && \
	  .venv-latest-$$lane/bin/python -m pytest $(PYTEST_ARGS) || failed="$$failed $$lane"; \
	done; \
	if [ -n "$$failed" ]; then echo "=== failed lanes:$$failed ==="; exit 1; fi

# Re-resolve the lock files (one per Python version, for every platform) from
# pyproject.toml, with requirements/lock-preferences.txt as constraints.
lock:
	test -x .venv-tools/bin/uv || { $(PYTHON) -m venv .venv-tools && .venv-tools/bin/python -m pip install --quiet uv==$(UV_VERSION); }
	for version in $(LOCK_VERSIONS); do \
	  .venv-tools/bin/uv pip compile pyproject.toml --extra test --universal --python-version $$version \
	    --constraint requirements/lock-preferences.txt --upgrade --quiet \
	    --custom-compile-command 'make lock' -o requirements/py$$version.txt || exit 1; \
	done

bench: venv
	for script in benchmarks/[!_]*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .venv-test-* .venv-latest-* .venv-tools .pytest_cache
