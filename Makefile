# swift-session-replication: the two commands are `make demo` and `make test`.
SWIFT ?= swift
CONFIG ?= cluster-configs/local-3.yaml
RELEASE_FLAGS = -c release

.PHONY: all build release demo test simulate failover-timing bench bench-http bench-round-robin cluster drill docs clean fuzz fuzz-build fuzz-corpus check-consumer k8s-validate multihost-drill bench-embedded benchmarks bench-compare bench-create

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
# The simulation matrix runs optimised in `drs-simulate` (the core and the simulator
# alone, minutes to build in release where the whole `drs` takes far longer), which the
# tests call: build it first. The process tests run the debug `drs` that `swift test`
# builds anyway. Then the package as a versioned dependency of a consumer
# (check-consumer, below), built in this .build so the dependencies compiled for the
# tests are reused (about a minute instead of twenty).
# At most 8 tests at once: started all together, the loopback clusters of some 85 suites
# starved each other on two cores for seconds (lapsed leases, false deaths).
test:
	$(SWIFT) build $(RELEASE_FLAGS) --product drs-simulate
	SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH=8 SWIFT_DETERMINISTIC_HASHING=1 DRS_SIMULATOR_BINARY=$(CURDIR)/.build/release/drs-simulate $(SWIFT) test
	CONSUMER_SCRATCH=$(CURDIR)/.build ./scripts/check-consumer.sh

# Many more simulated seeds than `make test` (SEEDS seeds of the matrix, from BASE), in
# the release drs-simulate on two threads. A failing seed prints the command that replays it.
SEEDS ?= 20000
BASE ?= 1000000
simulate:
	$(SWIFT) build $(RELEASE_FLAGS) --product drs-simulate
	./.build/release/drs-simulate --seeds $(SEEDS) --base $(BASE) --jobs 2

# Crash-to-dead and crash-to-promoted with real drs processes of $(CONFIG) (release).
failover-timing: release
	./scripts/failover-timing.py --config $(CONFIG)

# Replication throughput and lag (release build; its own two-node cluster in one process).
bench: release
	./.build/release/drs bench

# DocC documentation of the library modules (swift-docc-plugin): one .doccarchive per
# module in .build/plugins/Swift-DocC/outputs/.
DOC_TARGETS = SessionReplicationCore SessionReplication SessionReplicationHummingbird
docs:
	$(SWIFT) package generate-documentation $(foreach t,$(DOC_TARGETS),--target $(t))

# The package as users depend on it: HEAD copied to a temporary bare repository and tagged
# 99.0.0, a consumer package depending on it by version (one node inside a Hummingbird and
# a Vapor application), built there and run as two processes sharing a session.
check-consumer:
	./scripts/check-consumer.sh

clean:
	rm -rf .build .build-fuzz .build-fuzz-corpus .drs drill-reports Fuzz/.build Fuzz/.build-corpus

# libFuzzer targets (Fuzz/Sources, targets of this package only when DRS_FUZZ is set) for
# the frame, message and membership decoders and the configuration loader, each run for
# FUZZ_SECONDS from the seed corpus in Fuzz/corpus/<target>/ (new inputs that reach new
# code go to .build-fuzz/corpus/<target>/). A crash leaves its input in
# .build-fuzz/crashes/<target>/; copied into Fuzz/regressions/<target>/, it is decoded by
# a normal test in `make test` from then on. FUZZ_TARGETS picks some of them.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= frame message membership config
FUZZ_FLAGS = -c release --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
fuzz-build:
	DRS_FUZZ=1 $(SWIFT) build $(FUZZ_FLAGS) --product FuzzFrame
	DRS_FUZZ=1 $(SWIFT) build $(FUZZ_FLAGS) --product FuzzMessage
	DRS_FUZZ=1 $(SWIFT) build $(FUZZ_FLAGS) --product FuzzMembership
	DRS_FUZZ=1 $(SWIFT) build $(FUZZ_FLAGS) --product FuzzConfig

# Rewrites the seed corpus (valid encodings of every message kind, frames, membership
# messages, the shipped configurations): run after a wire format change.
fuzz-corpus:
	DRS_FUZZ=1 $(SWIFT) run --scratch-path .build-fuzz-corpus FuzzCorpus Fuzz/corpus
	mkdir -p Fuzz/corpus/config && cp cluster-configs/*.yaml Fuzz/corpus/config/

fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  case $$t in frame) p=FuzzFrame;; message) p=FuzzMessage;; membership) p=FuzzMembership;; config) p=FuzzConfig;; *) echo "unknown fuzz target $$t"; exit 2;; esac; \
	  mkdir -p .build-fuzz/corpus/$$t .build-fuzz/crashes/$$t; \
	  echo "== $$t for $(FUZZ_SECONDS) s"; \
	  .build-fuzz/release/$$p -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=4096 -print_final_stats=1 \
	    -artifact_prefix=.build-fuzz/crashes/$$t/ .build-fuzz/corpus/$$t Fuzz/corpus/$$t; \
	done

# HTTP PUT throughput through one node of local-3.yaml vs replicas: 0 (wrk; installs it if missing).
bench-http: release
	./scripts/bench-http.sh

# The embedded path: the Hummingbird cart example over DRSPersistDriver in a node of
# local-3, against the same cart over MemoryPersistDriver, with CPU per request (installs wrk).
bench-embedded: release
	$(SWIFT) build $(RELEASE_FLAGS) --product drs-cart
	./scripts/bench-embedded.sh

# The ordo-one/benchmark suite in Benchmarks/ (codec, sealing, shards, PersistDriver, one
# HTTP request through the router), with allocation counts; BENCH_ARGS passes options,
# e.g. BENCH_ARGS="baseline update main" then BENCH_ARGS="baseline compare main".
BENCH_ARGS ?=
benchmarks:
	DRS_BENCHMARKS=1 $(SWIFT) package --allow-writing-to-package-directory benchmark --target DRSBenchmarks $(BENCH_ARGS)

# The HTTP API, a bare Hummingbird route, the SessionMiddleware cart over both drivers,
# Redis SET (with a replica) and SET + WAIT 1, and synchronous replication through the
# Swift API, side by side and interleaved, with the ratios of our goals (installs wrk,
# gcc and redis-server when missing).
bench-compare: release
	$(SWIFT) build $(RELEASE_FLAGS) --product drs-cart
	./scripts/bench-compare.sh

# POST /sessions (creation, 1 KiB attribute) against PUT through one node (installs wrk).
bench-create: release
	./scripts/bench-create.sh

# Round-robin against sticky balancing through HAProxy on local-3 (installs wrk and haproxy).
bench-round-robin: release
	./scripts/bench-round-robin.sh

# Three nodes in three network namespaces, configured by host names only (root; installs
# nftables when missing): one node killed and started again under its name at a new IP,
# one host cut off by nftables. `make test` runs it too (as root), without the cut when
# nftables is missing.
multihost-drill: release
	@command -v nft >/dev/null || { echo "multihost-drill: installing nftables (apt-get)"; apt-get update && apt-get install -y nftables; }
	python3 ./scripts/multihost.py --drs ./.build/release/drs

# A local cluster for you: every node of $(CONFIG) as its own process; Ctrl-C stops it.
cluster: release
	./.build/release/drs cluster up --config $(CONFIG)

# The Kubernetes manifests in deploy/kubernetes/, checked offline (no cluster): rendered by
# kustomize, every manifest decoded, the schema (kubernetes-validate, installed into
# .build-k8s-validate/ when missing), haproxy -c on the HAProxy example, pods vs node list.
k8s-validate:
	./scripts/check-k8s.sh
