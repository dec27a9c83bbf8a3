# swift-session-replication: the two commands are `make demo` and `make test`.
SWIFT ?= swift
CONFIG ?= cluster-configs/local-3.yaml
RELEASE_FLAGS = -c release

.PHONY: all build release demo test bench clean

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

# Replication throughput and lag (release build).
bench: release
	./.build/release/drs bench --config $(CONFIG)

clean:
	rm -rf .build .drs
