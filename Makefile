# Every target creates the virtual environment it needs when it is missing,
# so `make run` and `make test` are the whole set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Replay proxy settings for `make run` (override on the command line).
PORT      ?= 8080
CASSETTES ?= cassettes/examples

.PHONY: run test venv bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "llmock-proxy needs Python 3.11 or newer (PYTHON=$(PYTHON))" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# The replay proxy: mitmdump -s addons/replay.py in regular proxy mode,
# answering from the cassettes and llmock fixture files under $(CASSETTES),
# never from the network. mitmproxy's CA lives in $(CONFDIR).
CONFDIR   ?= $(HOME)/.mitmproxy
CA_CERT   := $(CONFDIR)/mitmproxy-ca-cert.pem
DEMO_BODY := {"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello"}]}

run: $(STAMP)
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

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	for script in benchmarks/[!_]*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
