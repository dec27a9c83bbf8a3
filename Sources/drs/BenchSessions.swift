import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOConcurrencyHelpers
import NIOPosix
import SessionReplication
import SessionReplicationCore

/// `drs bench --sessions N`: what a node holding many sessions costs. Two nodes in this
/// process (acknowledged over TCP, one backup each); the owner is filled with `N`
/// sessions of one `--size`-byte attribute. It reports the creation rate, the memory each
/// copy adds (the process's resident set grows by the owner's copy plus the backup's),
/// and the latency of writes to a few hot sessions on an empty pair and on the filled
/// pair, in the same run, while anti-entropy runs every `--repair-interval` seconds.
extension BenchCommand {
    struct SessionsRun {
        var created: Int
        var createSeconds: Double
        var bytesPerCopy: Double
        var empty: Percentiles
        var filled: Percentiles
        var digestRounds: Int
        var refusedCreates: Int
        /// Sessions re-placed or transferred while the filled pair was measured, and
        /// while it was filled (non-zero when the backup was held gone for a while).
        var transfers: Int
        var fillTransfers: Int
        /// Digest buckets found differing, in all.
        var digestMismatches: Int
    }

    /// One run. Only the first run of a process measures memory: the heap keeps what a
    /// finished run freed (its resident set stays), and the next run's sessions reuse it.
    func measureSessions(_ count: Int) async throws -> SessionsRun {
        let before = Self.residentBytes()
        let (nodes, group) = try await Self.startNodes(["a", "b"], policy: Self.repairPolicy(repairInterval), room: count + writers)
        let (a, b) = (nodes[0], nodes[1])
        // The empty pair's latency first, on the same nodes that are filled next.
        let hot = try await Self.hotSessions(a, writers: writers, size: size)
        let empty = try await Self.writeLatency(a, hot, seconds: duration, size: size)
        let start = ContinuousClock.now
        let created = NIOLockedValueBox(0), refused = NIOLockedValueBox(0)
        // Progress on stderr every 5 s: a fill of a million sessions takes a while.
        let progress = Self.reportProgress {
            let members = a.members().map { "\($0.name) \($0.state)" }.joined(separator: ", ")
            return "created \(created.withLockedValue { $0 }), backup holds \(b.counters.backups), a sees: \(members), under-replicated \(a.status().underReplicated)"
        }
        defer { progress.cancel() }
        try await Self.fill(a, count: count, size: size, created: created, refused: refused)
        let createSeconds = Double((ContinuousClock.now - start).nanosecondsClamped) / 1e9
        let waitStart = ContinuousClock.now
        while b.counters.backups < count + hot.count {
            if ContinuousClock.now - waitStart > .seconds(600) { throw ValidationError("the backup did not hold every session within 600 s") }
            try await Task.sleep(for: .milliseconds(50))
        }
        let after = Self.residentBytes()
        let filledAt = a.counters.replication
        let filled = try await Self.writeLatency(a, hot, seconds: duration, size: size)
        let end = a.counters.replication
        let digestRounds = end.digestRounds - filledAt.digestRounds
        let transfers = (end.stateTransfers - filledAt.stateTransfers) + (end.rereplications - filledAt.rereplications)
        await a.shutdown()
        await b.shutdown()
        try await group.shutdownGracefully()
        return SessionsRun(created: created.withLockedValue { $0 }, createSeconds: createSeconds,
                           bytesPerCopy: Double(after - before) / Double(2 * count),
                           empty: empty, filled: filled, digestRounds: digestRounds, refusedCreates: refused.withLockedValue { $0 },
                           transfers: transfers, fillTransfers: filledAt.stateTransfers + filledAt.rereplications,
                           digestMismatches: end.digestMismatches)
    }

    func runSessions(_ count: Int) async throws {
        print("drs bench: \(count) sessions of \(size) bytes on one owner (1 backup, acknowledged TCP), repair every \(repairInterval) s, \(writers) hot-session writers for \(duration) s, \(runs) runs, \(System.coreCount) cores")
        var all: [SessionsRun] = []
        for _ in 0..<runs {
            var r = try await measureSessions(count)
            if !all.isEmpty { r.bytesPerCopy = .nan }
            all.append(r)
            print(String(format: "  created %d in %.1f s (%.0f/s, %d creates refused overloaded and retried); %.0f bytes per copy; writes empty p50 %.3f p99 %.3f max %.3f ms | filled p50 %.3f p99 %.3f max %.3f ms (p99 %.2fx; %d digest rounds meanwhile, %d differing buckets in all; sessions re-placed or transferred: %d while filling, %d while measuring)",
                         r.created, r.createSeconds, Double(r.created) / r.createSeconds, r.refusedCreates, r.bytesPerCopy,
                         r.empty.p50Ms, r.empty.p99Ms, r.empty.maxMs, r.filled.p50Ms, r.filled.p99Ms, r.filled.maxMs,
                         r.filled.p99Ms / r.empty.p99Ms, r.digestRounds, r.digestMismatches, r.fillTransfers, r.transfers))
        }
        func med(_ f: (SessionsRun) -> Double) -> Double { all.map(f).sorted()[all.count / 2] }
        print(String(format: "median: %.0f created/s, %.0f bytes per copy (first run), p99 %.3f vs %.3f ms empty (%.2fx), max %.3f vs %.3f ms",
                     med { Double($0.created) / $0.createSeconds }, all[0].bytesPerCopy, med(\.filled.p99Ms), med(\.empty.p99Ms),
                     med { $0.filled.p99Ms / $0.empty.p99Ms }, med(\.filled.maxMs), med(\.empty.maxMs)))
    }

    /// The default policy (acknowledged TCP, one backup) with anti-entropy every
    /// `seconds`.
    static func repairPolicy(_ seconds: Double) -> ReplicationPolicy {
        var policy = ReplicationPolicy()
        policy.repairInterval = .milliseconds(Int64(seconds * 1000))
        return policy
    }

    /// Nodes named `names` in this process on loopback under `policy`, each listing every
    /// other alive. With `room`, each has room for that many sessions and no byte budget;
    /// without, the default session limits.
    static func startNodes(_ names: [String], policy: ReplicationPolicy, room count: Int? = nil) async throws -> ([ReplicationNode], MultiThreadedEventLoopGroup) {
        let key = (0..<32).map { _ in UInt8.random(in: 0...255) }
        var sessions = SessionPolicy()
        if let count {
            sessions.maxSessions = max(sessions.maxSessions, count)
            sessions.maxBytes = nil
        }
        let config = ClusterConfiguration(
            clusterID: "bench", keys: ClusterKeys(current: key),
            nodes: names.map { NodeEndpoint(name: $0, address: "127.0.0.1", httpPort: 0, replicationPort: 0, membershipPort: 0) },
            replication: policy, sessions: sessions)
        var logger = Logger(label: "drs.bench")
        logger.logLevel = .error
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let nodes = try names.map { try ReplicationNode(configuration: config, name: $0, logger: logger, eventLoopGroup: group) }
        for n in nodes { try await n.start() }
        for x in nodes {
            for y in nodes where x !== y {
                x.setPeerEndpoint(y.endpoint.name, host: "127.0.0.1", port: y.replicationPort!, membershipPort: y.membershipPort)
            }
        }
        while !nodes.allSatisfy({ n in n.members().filter { $0.state == "alive" }.count == names.count }) {
            try await Task.sleep(for: .milliseconds(10))
        }
        return (nodes, group)
    }

    /// Creates `count` sessions of one `size`-byte attribute (each its own bytes) on `node`
    /// from 32 tasks. A full queue to a backup refuses a create (`overloaded`, nothing
    /// created): the creator waits 1 ms and tries again (counted in `refused`).
    static func fill(_ node: ReplicationNode, count: Int, size: Int, created: NIOLockedValueBox<Int>, refused: NIOLockedValueBox<Int>) async throws {
        let payload = [UInt8](repeating: 7, count: size)
        try await withThrowingTaskGroup(of: Void.self) { group in
            let creators = 32
            for c in 0..<creators {
                group.addTask {
                    for i in stride(from: c, to: count, by: creators) {
                        // Bytes of its own per session, as sessions made from requests have
                        // (one array shared by every session would count its bytes once).
                        var own = payload
                        if !own.isEmpty { own[0] = UInt8(truncatingIfNeeded: i) }
                        while true {
                            do {
                                _ = try await node.createSession(attributes: ["payload": own])
                                break
                            } catch let e as SessionError where e.code == .overloaded {
                                refused.withLockedValue { $0 += 1 }
                                try await Task.sleep(for: .milliseconds(1))
                            }
                        }
                        created.withLockedValue { $0 += 1 }
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    /// Prints `line()` on stderr every 5 s (after "  ... ") until the task is cancelled.
    static func reportProgress(_ line: @escaping @Sendable () -> String) -> Task<Void, Never> {
        Task.detached {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(5))
                if !Task.isCancelled { printError("  ... \(line())") }
            }
        }
    }

    /// `writers` sessions on `node`, each written once: the first write waits for the
    /// backup's lease, and must not count as a measured write.
    static func hotSessions(_ node: ReplicationNode, writers: Int, size: Int) async throws -> [SessionID] {
        var ids: [SessionID] = []
        for _ in 0..<writers {
            if let id = try await node.createSession(attributes: ["payload": [UInt8](repeating: 1, count: size)]).state?.id { ids.append(id) }
        }
        for id in ids { _ = try await node.withSession(id) { $0.set("payload", [1]) } }
        return ids
    }

    /// Each writer rewrites its own session back to back for `seconds`; every write's
    /// time from call to answer is a sample.
    static func writeLatency(_ node: ReplicationNode, _ ids: [SessionID], seconds: Double, size: Int) async throws -> Percentiles {
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        let samples = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for id in ids {
                group.addTask {
                    var out: [Int64] = []
                    let payload = [UInt8](repeating: 2, count: size)
                    while ContinuousClock.now < deadline {
                        let t = ContinuousClock.now
                        _ = try await node.withSession(id) { $0.set("payload", payload) }
                        out.append((ContinuousClock.now - t).nanosecondsClamped)
                    }
                    return out
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }.sorted()
        func pct(_ q: Double) -> Double {
            samples.isEmpty ? .nan : Double(samples[min(samples.count - 1, Int(Double(samples.count) * q))]) / 1e6
        }
        return Percentiles(samples: samples.count, p50Ms: pct(0.5), p99Ms: pct(0.99), p999Ms: pct(0.999), maxMs: pct(1))
    }

    /// This process's resident set in bytes (`VmRSS` of /proc/self/status; 0 where absent),
    /// after handing freed heap memory back to the system (`malloc_trim`), so that a run
    /// does not reuse what the previous run freed and measure nothing.
    static func residentBytes() -> Int {
        #if canImport(Glibc)
        // Not in Swift's Glibc module: looked up by name (RTLD_DEFAULT is the null handle).
        typealias Trim = @convention(c) (Int) -> Int32
        if let trim = dlsym(nil, "malloc_trim") { _ = unsafeBitCast(trim, to: Trim.self)(0) }
        #endif
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kb = Int(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kb * 1024
    }
}
