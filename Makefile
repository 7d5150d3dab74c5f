# The one test command: `make test` installs what the tests need when it is
# missing, then runs every check CI runs. See README.md.

GO ?= go

.PHONY: test deps check unit compat build run bench

test: deps check unit compat

# What the tests need beyond Go, installed when missing: a real
# redis-server (Debian's package) for the store and limit tests, which
# also runs the Sentinels (redis-server --sentinel); redis-cli (Debian's
# redis-tools, a dependency of redis-server) that joins the test Cluster
# (redis-cli --cluster create); and Debian's chromium for the web pages'
# browser tests (proxy/ui).
deps:
	@{ command -v redis-server && command -v redis-cli; } >/dev/null 2>&1 || { \
		echo "installing redis-server and redis-tools (Debian packages)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server redis-tools >/dev/null; \
	}
	@command -v redis-server >/dev/null 2>&1 || { echo "redis-server is still missing"; exit 1; }
	@command -v redis-cli >/dev/null 2>&1 || { echo "redis-cli is still missing"; exit 1; }
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing chromium (Debian package)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	}
	@command -v chromium >/dev/null 2>&1 || { echo "chromium is still missing"; exit 1; }

# Formatting, vet and go.mod: cheap, and they fail fast. `go mod tidy
# -diff` fails (printing the diff) when go.mod or go.sum is not what tidy
# would write, e.g. a direct dependency marked indirect.
check:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
	$(GO) mod tidy -diff
	$(GO) vet ./...

# Every Go test, with the race detector. The browser tests (proxy/ui) need
# chromium: they skip without it, but fail in CI ($$CI set).
unit:
	$(GO) test -race -count=1 ./...

# The client compatibility suites (compat/, docs/clients.md): the real
# client packages, pinned in their lock files, against the built binary and
# the fake provider on free loopback ports. The packages are installed into
# compat/python/.venv and compat/node/node_modules when missing or when a
# lock file changed; the binaries are built once into a temporary directory.
# Both suites run even when the first fails.
COMPAT_PY := compat/python/.venv/.installed
COMPAT_NODE := compat/node/node_modules/.installed

compat: $(COMPAT_PY) $(COMPAT_NODE)
	@bin=$$(mktemp -d) && trap 'rm -rf "$$bin"' EXIT && \
	$(GO) build -o "$$bin/consortium" ./cmd/consortium && \
	$(GO) build -o "$$bin/fakeprovider" ./upstream/upstreamtest/fakeprovider && \
	export CONSORTIUM_BIN="$$bin/consortium" FAKEPROVIDER_BIN="$$bin/fakeprovider" && \
	echo "compat/python: openai-python (chat, Responses), the Agents SDK, LangChain, the anthropic SDK, llm, the README's curl examples" && \
	{ (cd compat/python && .venv/bin/python -m pytest -q); py=$$?; } && \
	echo "compat/node: openai-node (chat, Responses), LangChain.js, the Vercel AI SDK (compatible and Responses providers)" && \
	{ (cd compat/node && node run.js); node=$$?; } && \
	exit $$((py || node))

$(COMPAT_PY): compat/python/requirements.txt
	rm -rf compat/python/.venv
	python3 -m venv compat/python/.venv
	compat/python/.venv/bin/pip install -q --disable-pip-version-check --no-input -r compat/python/requirements.txt
	touch $@

$(COMPAT_NODE): compat/node/package.json compat/node/package-lock.json
	cd compat/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The binary. `consortium version` gives the tag it was built from (git
# describe) or, without tags, the version and commit Go records.
VERSION ?= $(shell git describe --tags --dirty 2>/dev/null)

build:
	CGO_ENABLED=0 $(GO) build -trimpath $(if $(VERSION),-ldflags "-X main.version=$(VERSION)") -o bin/consortium ./cmd/consortium

run:
	$(GO) run ./cmd/consortium serve --demo

# The benchmark harness (minutes; never part of `make test`): writes
# docs/benchmarks.md. BENCHFLAGS=-others adds LiteLLM and Portkey.
bench:
	$(GO) run ./bench/cmd/bench $(BENCHFLAGS)
