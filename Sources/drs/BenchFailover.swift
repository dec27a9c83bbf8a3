import ArgumentParser
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SessionReplication
import SessionReplicationCore

/// `drs bench --sessions N --failover`: the failover of a node that owns N sessions.
/// Three nodes in this process (acknowledged TCP, one backup); `a` is filled with N
/// sessions of one `--size`-byte attribute, backed by `b` and `c`. Writers rewrite hot
/// sessions owned by `b`; one second in, `a` closes every socket at once (no drain, no
/// leave: its peers find it dead as they would a killed process). Reported: the time from
/// that moment until `b` and `c` own every one of `a`'s sessions, and the latency of the
/// writes on `b` meanwhile against the same writes before `a` was filled.
extension BenchCommand {
    struct FailoverRun {
        var promoted: Int
        var secondsToAll: Double
        var secondsToDead: Double
        var quiet: Percentiles
        var during: Percentiles
    }

    func measureFailover(_ count: Int) async throws -> FailoverRun {
        let names = ["a", "b", "c"]
        let key = (0..<32).map { _ in UInt8.random(in: 0...255) }
        var policy = ReplicationPolicy()
        policy.repairInterval = .milliseconds(Int64(repairInterval * 1000))
        var sessions = SessionPolicy()
        sessions.maxSessions = max(sessions.maxSessions, count + writers)
        sessions.maxBytes = nil
        let config = ClusterConfiguration(
            clusterID: "bench", keys: ClusterKeys(current: key),
            nodes: names.map { NodeEndpoint(name: $0, address: "127.0.0.1", httpPort: 0, replicationPort: 0, membershipPort: 0) },
            replication: policy, sessions: sessions)
        var logger = Logger(label: "drs.bench")
        logger.logLevel = .error
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let nodes = try names.map { try ReplicationNode(configuration: config, name: $0, logger: logger, eventLoopGroup: group) }
        for n in nodes { try await n.start() }
        for x in nodes { for y in nodes where x !== y {
            x.setPeerEndpoint(y.endpoint.name, host: "127.0.0.1", port: y.replicationPort!, membershipPort: y.membershipPort)
        } }
        let (a, b, c) = (nodes[0], nodes[1], nodes[2])
        while !nodes.allSatisfy({ n in n.members().filter { $0.state == "alive" }.count == 3 }) { try await Task.sleep(for: .milliseconds(10)) }
        let hot = try await Self.hotSessions(b, writers: writers, size: size)
        for id in hot { _ = try await b.withSession(id) { $0.set("payload", [1]) } }
        let quiet = try await Self.writeLatency(b, hot, seconds: duration, size: size)
        let payload = [UInt8](repeating: 7, count: size)
        try await withThrowingTaskGroup(of: Void.self) { group in
            let creators = 32
            for k in 0..<creators {
                group.addTask {
                    for _ in stride(from: k, to: count, by: creators) {
                        while true {
                            do {
                                _ = try await a.createSession(attributes: ["payload": payload])
                                break
                            } catch let e as SessionError where e.code == .overloaded {
                                try await Task.sleep(for: .milliseconds(1))
                            }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let held = { b.counters.backups + c.counters.backups }
        let waitStart = ContinuousClock.now
        // Every one of a's sessions has its backup (hot sessions are b's, backed by a or c).
        while held() < count || a.status().underReplicated > 0 {
            if ContinuousClock.now - waitStart > .seconds(600) { throw ValidationError("the backups did not hold every session within 600 s") }
            try await Task.sleep(for: .milliseconds(50))
        }
        let ownedBefore = b.counters.primaries + c.counters.primaries
        // Writers on b throughout; a dies one second in.
        let writes = Task { try await Self.writeLatency(b, hot, seconds: duration, size: size) }
        try await Task.sleep(for: .seconds(1))
        let killed = ContinuousClock.now
        await a.shutdown()
        var dead: Duration?
        var all: Duration?
        var shown = killed
        while all == nil {
            let now = ContinuousClock.now
            if now - shown > .seconds(5) {
                shown = now
                let seen = [b, c].map { n in n.members().first { $0.name == "a" }?.state ?? "-" }
                printError("  ... \(Double((now - killed).nanosecondsClamped) / 1e9) s: a is \(seen) to b and c; owned by b \(b.counters.primaries), c \(c.counters.primaries); backups b \(b.counters.backups), c \(c.counters.backups)")
            }
            if dead == nil, [b, c].allSatisfy({ n in n.members().first { $0.name == "a" }?.state == "dead" }) { dead = now - killed }
            if b.counters.primaries + c.counters.primaries >= ownedBefore + count { all = now - killed }
            if now - killed > .seconds(120) {
                throw ValidationError("a's sessions were not all owned again within 120 s: b and c own \(b.counters.primaries + c.counters.primaries - ownedBefore) of \(count) more than before")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        let during = try await writes.value
        let promoted = b.counters.primaries + c.counters.primaries - ownedBefore
        await b.shutdown()
        await c.shutdown()
        try await group.shutdownGracefully()
        func seconds(_ d: Duration?) -> Double { d.map { Double($0.nanosecondsClamped) / 1e9 } ?? .nan }
        return FailoverRun(promoted: promoted, secondsToAll: seconds(all), secondsToDead: seconds(dead), quiet: quiet, during: during)
    }

    func runFailover(_ count: Int) async throws {
        print("drs bench: failover of a node owning \(count) sessions of \(size) bytes (3 nodes, 1 backup, acknowledged TCP), \(writers) writers on a survivor for \(duration) s, \(runs) runs, \(System.coreCount) cores")
        var all: [FailoverRun] = []
        for _ in 0..<runs {
            let r = try await measureFailover(count)
            all.append(r)
            print(String(format: "  %d sessions owned again %.3f s after the death (found dead after %.3f s); survivor writes before p50 %.3f p99 %.3f max %.3f ms | during p50 %.3f p99 %.3f max %.3f ms",
                         r.promoted, r.secondsToAll, r.secondsToDead, r.quiet.p50Ms, r.quiet.p99Ms, r.quiet.maxMs, r.during.p50Ms, r.during.p99Ms, r.during.maxMs))
        }
        func med(_ f: (FailoverRun) -> Double) -> Double { all.map(f).sorted()[all.count / 2] }
        print(String(format: "median: all owned again after %.3f s (dead after %.3f s); survivor write max %.3f ms during against %.3f ms before",
                     med(\.secondsToAll), med(\.secondsToDead), med(\.during.maxMs), med(\.quiet.maxMs)))
    }
}
