# The one test command: `make test` installs what the tests need when it is
# missing, then runs every check CI runs. See README.md.

GO ?= go

.PHONY: test check unit build run bench

test: check unit

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
