# wsd: the two commands a new machine needs are `make run` and `make test`.
GO      ?= go
PORT    ?= 3000
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILDINFO := github.com/wsd-server/wsd/internal/buildinfo
LDFLAGS := -s -w -X $(BUILDINFO).Version=$(VERSION) -X $(BUILDINFO).Revision=$(REVISION)

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
UNITDIR ?= /etc/systemd/system
CONFDIR ?= /etc/wsd

.PHONY: all build run test vet conformance fuzz bench e2e chaos install clean docs man image image-test

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/wsd ./cmd/wsd
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/wsd-bench ./cmd/wsd-bench
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/wsd-baseline ./cmd/wsd-baseline

# Serves the spec's example on port $(PORT): GET / says Hello World!, ws://host:$(PORT)/ echoes.
run: build
	./bin/wsd serve --port $(PORT)

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo 'gofmt needed'; exit 1; }
	$(GO) vet -tags chaos ./...

# make test = vet + every test with the race detector (a Fuzz function's
# seeds in testdata/fuzz run as ordinary tests), the conformance suite's
# summary line, and a short fuzzing run of the parsers that face the network.
test: vet
	$(GO) test -race -count=1 -timeout 600s ./...
	$(GO) run ./cmd/wsd-conformance -self
	$(MAKE) fuzz FUZZTIME=3s FUZZ_TARGETS="$(FUZZ_WIRE)"

# The RFC 6455 conformance suite against an in-process server, with its table.
conformance:
	$(GO) run ./cmd/wsd-conformance -self -v

# The parsers of untrusted bytes: upgrade requests, client frames, UTF-8,
# the cluster relay's frames. `make fuzz` runs every Fuzz target instead.
# A failure shows the fuzzer's output. One that found an input (written to
# testdata/fuzz, so every later run replays it) fails at once; one without
# (a fuzzing worker that died under the load of a busy machine) gets one
# more try.
FUZZ_WIRE = ./worker:FuzzUpgrade ./wsext:FuzzReader ./wsext:FuzzFrameReader ./wsext:FuzzUTF8State ./pubsub/cluster:FuzzReadFrame ./pubsub/redis:FuzzParsePositioned
FUZZTIME ?= 60s
fuzz:
	@targets="$(FUZZ_TARGETS)"; \
	if [ -z "$$targets" ]; then \
	  for pkg in $$($(GO) list ./...); do \
	    for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do targets="$$targets $$pkg:$$f"; done; \
	  done; \
	fi; \
	out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for t in $$targets; do \
	  pkg=$${t%%:*}; f=$${t##*:}; echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	  if ! $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg >$$out 2>&1; then \
	    tail -n 30 $$out; \
	    if grep -q 'Failing input written to' $$out; then exit 1; fi; \
	    echo "fuzz: $$f stopped without a failing input (the machine's load?); once more"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg >$$out 2>&1 || { tail -n 30 $$out; exit 1; }; \
	  fi; \
	done

# The standard benchmark set against the raw fasthttp/websocket baseline and
# wsd as of $(WSD_BEFORE) (the last commit before engine v2, built from
# `git archive`; without git history the suite runs without it); rewrites
# the measured section of BENCHMARKS.md.
WSD_BEFORE ?= 578ecfd
bench: build
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./wsext | tee bin/gobench.txt
	@rm -f bin/wsd-before; tmp=$$(mktemp -d) && mkdir $$tmp/src && \
	if git archive -o $$tmp/src.tar $(WSD_BEFORE) && tar -xf $$tmp/src.tar -C $$tmp/src && \
	   (cd $$tmp/src && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w -X main.version=$(WSD_BEFORE)' -o $(CURDIR)/bin/wsd-before ./cmd/wsd); \
	then echo "bench: bin/wsd-before is wsd at $(WSD_BEFORE)"; \
	else rm -f bin/wsd-before; echo "bench: cannot build wsd at $(WSD_BEFORE) (a shallow clone?); running without --before"; fi; \
	rm -rf $$tmp
	./bin/wsd-bench suite --wsd bin/wsd --baseline bin/wsd-baseline $$(test -x bin/wsd-before && echo --before bin/wsd-before) --out BENCHMARKS.md

# The adversarial suite (chaos/doc.go): the real daemon under hostile clients,
# one scenario at a time, about 5 minutes; the Redis scenario needs redis-server.
chaos:
	$(GO) test -tags chaos -count=1 -timeout 900s -v ./chaos/

# The chat demo in headless Chromium (e2e/README.md): needs Node.js 20+, npm and /usr/bin/chromium.
e2e: build
	cd e2e && npm ci --no-audit --no-fund && WSD_BIN=../bin/wsd node --test chat.test.js

# The generated documentation: the metrics reference (from a running daemon's
# registries; admin/internal/genmetrics's test fails when it is stale) and the
# man pages (from the cobra command tree; cmd/wsd's test fails when stale).
docs: man
	$(GO) run ./admin/internal/genmetrics > docs/metrics.md.new && mv docs/metrics.md.new docs/metrics.md

man:
	rm -rf docs/man
	$(GO) run ./cmd/wsd man --dir docs/man

# The container image, built by podman or docker with the version and the OCI
# labels stamped; `make image-test` builds it with a local Go build of wsd in
# place of the golang stage (no registry needed), runs it as Docker would and
# checks it (scripts/image-test).
ENGINE  ?= $(shell command -v podman 2>/dev/null || command -v docker 2>/dev/null)
IMAGE   ?= wsd:$(subst +,-,$(VERSION))
CREATED ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
IMAGE_ARGS = --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) --build-arg CREATED=$(CREATED)
image:
	@test -n "$(ENGINE)" || { echo 'make image: needs podman or docker'; exit 1; }
	$(ENGINE) build $(if $(findstring podman,$(ENGINE)),--format docker) $(IMAGE_ARGS) -t $(IMAGE) .

image-test:
	ENGINE="$(ENGINE)" VERSION="$(VERSION)" REVISION="$(REVISION)" CREATED="$(CREATED)" LDFLAGS="$(LDFLAGS)" GO="$(GO)" scripts/image-test

install:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/wsd ./cmd/wsd
	install -D -m 0755 bin/wsd $(DESTDIR)$(BINDIR)/wsd
	sed 's|/usr/local/bin/wsd|$(BINDIR)/wsd|' systemd/wsd.service > bin/wsd.service
	install -D -m 0644 bin/wsd.service $(DESTDIR)$(UNITDIR)/wsd.service
	test -e $(DESTDIR)$(CONFDIR)/wsd.env || install -D -m 0644 systemd/wsd.env $(DESTDIR)$(CONFDIR)/wsd.env
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

clean:
	rm -rf bin
