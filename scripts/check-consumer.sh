#!/usr/bin/env bash
# Proves that the package can be depended on by version, as users depend on it: a bare
# copy of a commit (HEAD by default) tagged 99.0.0 in a temporary folder, and a consumer
# package that depends on it with `.package(url: "file://...", from: "99.0.0")`. The
# consumer's executable is one node embedded in a Hummingbird application (the node's
# HTTP API, `SessionAPI`) and in a Vapor application (`DRSSessionDriver`); the script
# builds it, runs two processes of it on loopback and shares one session between them:
# written through Vapor on one, read through Vapor on the other, read and changed through
# the HTTP API, read again through Vapor. SwiftPM refuses `unsafeFlags` in a dependency
# pinned by version, so this also fails while any product's target uses them.
#
# Usage: scripts/check-consumer.sh [REV]      (REV: a commit of this repository; default HEAD)
# Everything (the copy, the consumer, its build folder, logs) lives in one temporary
# folder, removed on exit with the processes, unless CONSUMER_SCRATCH names a build folder
# to use instead: `make test` passes the project's own .build, so the consumer reuses the
# dependencies (Vapor, Hummingbird, SwiftNIO) already compiled there and compiles only
# the tagged copy of this package and itself. Exits 0 on success, 1 with a message naming
# the failed step otherwise.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REV=${1:-HEAD}
SWIFT=${SWIFT:-swift}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/drs-consumer.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
  # SwiftPM's lock files for the build folder, left beside it in the temporary directory.
  rm -f "$(dirname "$WORK")/$(echo "$WORK/build" | tr / _)"*
}
trap cleanup EXIT

fail() {
  echo "check-consumer: FAILED: $*" >&2
  for log in "$WORK"/n*.log; do
    [ -f "$log" ] || continue
    echo "--- last lines of $(basename "$log")" >&2
    tail -n 20 "$log" >&2
  done
  exit 1
}

# 1. A bare repository holding the commit, tagged as a release.
COMMIT=$(git -C "$ROOT" rev-parse --verify "$REV^{commit}") || fail "no commit $REV in $ROOT"
if [ "$REV" = HEAD ] && [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ]; then
  echo "check-consumer: note: uncommitted changes are not part of the check (it uses the commit $COMMIT)"
fi
git init --quiet --bare "$WORK/drs.git"
if [ "$(git -C "$ROOT" rev-parse --is-shallow-repository)" = true ]; then
  # A shallow clone (CI may make one) cannot push its commit ("shallow update not
  # allowed"): the commit's files go into a new repository of one commit instead.
  mkdir "$WORK/src"
  git -C "$ROOT" archive "$COMMIT" | tar -x -C "$WORK/src" || fail "could not export $COMMIT"
  git -C "$WORK/src" init --quiet
  git -C "$WORK/src" add -A
  git -C "$WORK/src" -c user.name=check-consumer -c user.email=check-consumer@localhost commit --quiet --no-verify -m "drs $COMMIT"
  git -C "$WORK/src" push --quiet --no-verify "$WORK/drs.git" HEAD:refs/heads/main || fail "could not copy $COMMIT"
  TAGGED=$(git -C "$WORK/src" rev-parse HEAD)
else
  git -C "$ROOT" push --quiet --no-verify "$WORK/drs.git" "$COMMIT:refs/heads/main" || fail "could not copy $COMMIT"
  TAGGED=$COMMIT
fi
git -C "$WORK/drs.git" symbolic-ref HEAD refs/heads/main
git -C "$WORK/drs.git" tag 99.0.0 "$TAGGED"
echo "check-consumer: drs $COMMIT tagged 99.0.0 in $WORK/drs.git"

# 2. The consumer package.
mkdir -p "$WORK/consumer/Sources/consumer"
cat > "$WORK/consumer/Package.swift" <<SWIFT
// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "drs-consumer",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "file://$WORK/drs.git", from: "99.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/vapor.git", from: "4.122.3"),
    ],
    targets: [
        .executableTarget(
            name: "consumer",
            dependencies: [
                .product(name: "SessionReplication", package: "drs"),
                .product(name: "SessionReplicationHummingbird", package: "drs"),
                .product(name: "SessionReplicationVapor", package: "drs"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Vapor", package: "vapor"),
            ]
        ),
    ]
)
SWIFT
cat > "$WORK/consumer/Sources/consumer/Consumer.swift" <<'SWIFT'
import Foundation
import Hummingbird
import Logging
import SessionReplication
import SessionReplicationHummingbird
import SessionReplicationVapor
import Vapor

/// `consumer CONFIG NAME VAPOR_PORT`: one node, served by two applications: the node's
/// HTTP API through Hummingbird on the node's httpPort, and a Vapor application keeping
/// its sessions in the node on VAPOR_PORT.
@main
struct Consumer {
    static func main() async throws {
        let arguments = CommandLine.arguments
        guard arguments.count == 4, let vaporPort = Int(arguments[3]) else {
            FileHandle.standardError.write(Data("usage: consumer CONFIG NAME VAPOR_PORT\n".utf8))
            exit(2)
        }
        let configuration = try ClusterConfiguration.load(path: arguments[1])
        guard let endpoint = configuration.node(named: arguments[2]) else { exit(2) }
        var logger = Logger(label: "consumer")
        logger.logLevel = .notice
        let node = try ReplicationNode(configuration: configuration, name: endpoint.name, logger: logger)

        let web = try await Vapor.Application.make(Vapor.Environment(name: "production", arguments: ["consumer"]))
        web.logger = logger
        web.http.server.configuration.hostname = endpoint.address
        web.http.server.configuration.port = vaporPort
        web.sessions.use(.drs(node))
        web.middleware.use(web.sessions.middleware)
        web.post("value", ":value") { request -> String in
            let value = try request.parameters.require("value")
            request.session.data["value"] = value
            return value
        }
        web.get("value") { request -> String in request.session.data["value"] ?? "" }

        // A request for a session another node owns and keeps is forwarded there, as
        // `drs node` does.
        let forwarder = SessionForwarder()
        let router = Hummingbird.Router()
        SessionAPI(backend: node, settings: .init(configuration: configuration), forwarder: forwarder).addRoutes(to: router)
        let api = Hummingbird.Application(router: router,
                                          configuration: .init(address: .hostname(endpoint.address, port: endpoint.httpPort)),
                                          logger: logger)

        try await web.asyncBoot()  // starts the node (DRSNodeLifecycle)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await api.runService() }
            group.addTask { try await web.execute() }
            try await group.next()
            group.cancelAll()
        }
        try await web.asyncShutdown()
        await forwarder.shutdown()
    }
}
SWIFT

# 3. Build it (its build folder inside the temporary folder).
echo "check-consumer: building the consumer (a first build of Vapor and Hummingbird takes minutes)"
start=$(date +%s)
SCRATCH=${CONSUMER_SCRATCH:-$WORK/build}
if ! "$SWIFT" build --package-path "$WORK/consumer" --scratch-path "$SCRATCH" > "$WORK/build.log" 2>&1; then
  echo "--- swift build output (errors and the last lines)" >&2
  grep -E "error:" "$WORK/build.log" | head -n 20 >&2 || true
  tail -n 15 "$WORK/build.log" >&2
  fail "the consumer package does not build against drs 99.0.0 (commit $COMMIT)"
fi
BUILD_SECONDS=$(( $(date +%s) - start ))
echo "check-consumer: consumer built in ${BUILD_SECONDS}s"
BIN=$("$SWIFT" build --package-path "$WORK/consumer" --scratch-path "$SCRATCH" --show-bin-path)/consumer

# 4. Two processes on loopback.
base=$(( 30000 + RANDOM % 20000 ))
cat > "$WORK/cluster.yaml" <<YAML
cluster: {id: consumer, insecure: true}
nodes:
  - {name: n1, address: 127.0.0.1, httpPort: $base, replicationPort: $((base + 10)), membershipPort: $((base + 20))}
  - {name: n2, address: 127.0.0.1, httpPort: $((base + 1)), replicationPort: $((base + 11)), membershipPort: $((base + 21))}
replication: {mode: synchronous, replicas: 1}
YAML
for i in 1 2; do
  "$BIN" "$WORK/cluster.yaml" "n$i" $((base + 30 + i)) > "$WORK/n$i.log" 2>&1 &
  PIDS+=($!)
done
api() { echo "http://127.0.0.1:$((base + $1 - 1))"; }
web() { echo "http://127.0.0.1:$((base + 30 + $1))"; }

# Polls CMD until it succeeds, for at most 60 s.
eventually() {
  local deadline=$(( $(date +%s) + 60 ))
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}
both_alive() {
  for i in 1 2; do
    [ "$(curl -sf "$(api $i)/cluster/members" | grep -o '"alive"' | wc -l)" = 2 ] || return 1
  done
}
eventually both_alive || fail "the two consumer processes did not see each other alive within 60 s"

# 5. One session, shared. `call METHOD URL [curl arguments]` sets STATUS and BODY.
call() {
  local method=$1 url=$2
  shift 2
  STATUS=$(curl -s -o "$WORK/body" -w '%{http_code}' -X "$method" "$@" "$url") || STATUS=000
  BODY=$(cat "$WORK/body" 2>/dev/null || true)
}
expect() {  # expect WHAT EXPECTED_BODY
  [ "$STATUS" = 200 ] && [ "$BODY" = "$2" ] || fail "$1 answered $STATUS \"$BODY\", expected 200 \"$2\""
}
jar="$WORK/cookies"
write_n1() { call POST "$(web 1)/value/hello" -c "$jar"; [ "$STATUS" = 200 ]; }
eventually write_n1 || expect "POST /value/hello through Vapor on n1" hello
expect "POST /value/hello through Vapor on n1" hello
cookie=$(awk '$6 == "DRSSESSIONID" { print $7 }' "$jar")
[[ "$cookie" =~ ^[0-9a-f]{32}\.n1$ ]] || fail "Vapor on n1 set DRSSESSIONID=\"$cookie\", expected <32 hex>.n1"
id=${cookie%%.*}
call GET "$(web 2)/value" -H "Cookie: DRSSESSIONID=$cookie"
expect "GET /value through Vapor on n2 (written through n1)" hello
# n2 took the session over; n1 forwards these to it.
call GET "$(api 1)/sessions/$id/attributes/value"
expect "GET /sessions/$id/attributes/value through the HTTP API on n1" hello
call PUT "$(api 1)/sessions/$id/attributes/value" --data-binary world
[ "$STATUS" = 200 ] || fail "PUT /sessions/$id/attributes/value through the HTTP API on n1 answered $STATUS \"$BODY\""
call GET "$(web 2)/value" -H "Cookie: DRSSESSIONID=$cookie"
expect "GET /value through Vapor on n2 (written through the HTTP API on n1)" world

echo "check-consumer: OK: drs 99.0.0 builds as a versioned dependency (in ${BUILD_SECONDS}s) and two processes share a session through Vapor and the HTTP API"
