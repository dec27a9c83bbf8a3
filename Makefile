# swift-session-replication: the two commands are `make demo` and `make test`.
SWIFT ?= swift
CONFIG ?= cluster-configs/local-3.yaml
RELEASE_FLAGS = -c release

.PHONY: all build release demo test bench bench-http cluster clean

all: build

build:
	$(SWIFT) build

release:
	$(SWIFT) build $(RELEASE_FLAGS) --product drs

# Three nodes of $(CONFIG) on loopback doing real replication.
demo: release
	./.build/release/drs demo --config $(CONFIG)

# Unit, codec, simulation and loopback integration tests (Swift Testing).
test:
	SWIFT_DETERMINISTIC_HASHING=1 $(SWIFT) test

# Replication throughput and lag (release build; its own two-node cluster in one process).
bench: release
	./.build/release/drs bench

clean:
	rm -rf .build .drs

# HTTP PUT throughput through one node of local-3.yaml vs replicas: 0 (wrk; installs it if missing).
bench-http: release
	./scripts/bench-http.sh

# A local cluster for you: every node of $(CONFIG) as its own process; Ctrl-C stops it.
cluster: release
	./.build/release/drs cluster up --config $(CONFIG)
