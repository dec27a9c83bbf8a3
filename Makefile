# swift-session-replication: the two commands are `make demo` and `make test`.
SWIFT ?= swift
CONFIG ?= cluster-configs/local-3.yaml
RELEASE_FLAGS = -c release

.PHONY: all build release demo test simulate failover-timing bench bench-http cluster drill clean check-consumer

all: build

build:
	$(SWIFT) build

release:
	$(SWIFT) build $(RELEASE_FLAGS) --product drs

# Every node of $(CONFIG) as its own process on loopback: sessions created on one node,
# read through another (which takes them over), the owner killed, every session read
# again from a survivor; then the cluster stops. Ends with a short kill-primary drill
# (load straight to the nodes, so nothing needs installing). `drs demo` shows
# replication in one process.
demo: release
	python3 ./scripts/demo.py --config $(CONFIG) --drs ./.build/release/drs
	./.build/release/drs drill kill-primary --config $(CONFIG) --direct --sessions 50 --rate 200 --duration 8s

# The standard drill set against $(CONFIG) through HAProxy (installs haproxy and nftables
# when missing; packet-loss and partition need root): reports in drill-reports/.
DRILL_DURATION ?= 20s
drill: release
	./scripts/drill-set.sh $(CONFIG) $(DRILL_DURATION)

# Unit, codec, simulation and loopback integration tests (Swift Testing).
test:
	SWIFT_DETERMINISTIC_HASHING=1 $(SWIFT) test

# Many more simulated seeds than `make test`, in an optimised test build of its own
# (SEEDS standard-scenario seeds; the other scenarios scale with it). A failing seed prints
# its replay command.
SEEDS ?= 20000
simulate:
	SWIFT_DETERMINISTIC_HASHING=1 DRS_SIM_CLUSTER_SEEDS=$(SEEDS) DRS_SIM_SEEDS=$$(( $(SEEDS) / 4 )) \
	DRS_SIM_TWO_BACKUP_SEEDS=$$(( $(SEEDS) / 4 )) \
	$(SWIFT) test -c release -Xswiftc -enable-testing --scratch-path .build-simulate --filter 'SimulationTests'

# Crash-to-dead and crash-to-promoted with real drs processes of $(CONFIG) (release).
failover-timing: release
	./scripts/failover-timing.py --config $(CONFIG)

# Replication throughput and lag (release build; its own two-node cluster in one process).
bench: release
	./.build/release/drs bench

# The package as users depend on it: HEAD copied to a temporary bare repository and tagged
# 99.0.0, a consumer package depending on it by version (one node inside a Hummingbird and
# a Vapor application), built there and run as two processes sharing a session.
check-consumer:
	./scripts/check-consumer.sh

clean:
	rm -rf .build .build-simulate .drs drill-reports

# HTTP PUT throughput through one node of local-3.yaml vs replicas: 0 (wrk; installs it if missing).
bench-http: release
	./scripts/bench-http.sh

# A local cluster for you: every node of $(CONFIG) as its own process; Ctrl-C stops it.
cluster: release
	./.build/release/drs cluster up --config $(CONFIG)
