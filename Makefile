# The one test command: `make test` installs what the tests need when it is
# missing, then runs every check CI runs. See README.md.

GO ?= go

.PHONY: test deps check unit build run bench

test: deps check unit

# What the tests need beyond Go, installed when missing: a real
# redis-server (Debian's package) for the store and limit tests.
deps:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server (Debian package)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; \
	}
	@command -v redis-server >/dev/null 2>&1 || { echo "redis-server is still missing"; exit 1; }

# Formatting and vet: cheap, and they fail fast.
check:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

# Every Go test, with the race detector.
unit:
	$(GO) test -race -count=1 ./...

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/consortium ./cmd/consortium

run:
	$(GO) run ./cmd/consortium serve --demo

# The benchmark harness (minutes; never part of `make test`): writes
# docs/benchmarks.md. BENCHFLAGS=-others adds LiteLLM and Portkey.
bench:
	$(GO) run ./bench/cmd/bench $(BENCHFLAGS)
