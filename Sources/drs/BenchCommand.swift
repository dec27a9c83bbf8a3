import NIOCore
import ArgumentParser
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOPosix
import SessionReplication
import SessionReplicationCore

/// `drs bench`: replicated writes of a 1 KiB attribute to one backup, in this process,
/// over loopback with sealed frames: the writes per second a node sustains, and the
/// primary-to-backup lag (commit on the owner to applied on the backup) both at full
/// speed and paced at half of it. Build with `-c release` before quoting its numbers.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "Measure replicated write throughput and lag.")

    @Option(help: "Seconds per measurement.")
    var duration: Double = 3

    @Option(help: "Runs per workload; the median is reported.")
    var runs: Int = 3

    @Option(help: "Concurrent writers (each on its own session).")
    var writers: Int = 64

    @Option(help: "Attribute size in bytes.")
    var size: Int = 1024

    @Option(help: "Workloads: acknowledged-tcp, best-effort-udp, synchronous-tcp, local (replicas 0).")
    var workloads: [String] = ["acknowledged-tcp", "best-effort-udp"]

    @Option(help: "udpMaxPayload for the UDP workload (default 1400; loopback allows up to 65000).")
    var udpMaxPayload: Int?

    @Option(help: "Only run paced at this many writes per second (skips the full-speed runs).")
    var rate: Double?

    @Option(help: "Write the results as JSON to this file.")
    var json: String?

    @Option(help: "Instead of the write workloads: state transfer to a joining node, with this many sessions on the owner (each with one attribute of --size bytes).")
    var joinSessions: Int?

    @Option(help: "Instead of the write workloads: fill one owner with this many sessions (one attribute of --size bytes each) and report creation rate, memory per copy, and write latency against an empty node in the same run.")
    var sessions: Int?

    @Option(help: "With --sessions: the anti-entropy interval in seconds (default 1, so that digest passes run during the measurement).")
    var repairInterval: Double = 1

    @Flag(help: "With --sessions: measure the failover of a node that owns them instead (three nodes).")
    var failover = false

    struct Result: Codable {
        var workload: String
        /// Writes the owner committed per second (writers do not wait for replication
        /// except in synchronous mode).
        var writesPerSecond: [Double]
        var medianWritesPerSecond: Double
        /// Changes the backup applied per second during the same runs.
        var appliedPerSecond: [Double]
        var medianAppliedPerSecond: Double
        var lagAtFullRate: Percentiles
        var pacedRate: Double
        var lagAtHalfRate: Percentiles
        var drops: Int
        var retries: Int
        var rejectedFrames: Int
    }

    struct Percentiles: Codable {
        var samples: Int
        var p50Ms: Double
        var p99Ms: Double
        var p999Ms: Double
        var maxMs: Double
    }

    func run() async throws {
        if let sessions {
            guard sessions > 0, repairInterval > 0 else { throw ValidationError("--sessions and --repair-interval must be positive") }
            return try await (failover ? runFailover(sessions) : runSessions(sessions))
        }
        if let joinSessions {
            var runs: [JoinRun] = []
            print("drs bench: state transfer to a joining node, \(joinSessions) sessions of \(size) bytes on the owner, \(self.runs) runs, \(System.coreCount) cores")
            for _ in 0..<self.runs {
                let r = try await measureJoin(sessions: joinSessions)
                runs.append(r)
                print(String(format: "  moved %d sessions in %.3f s after the joiner was seen alive: %.0f sessions/s, %.1f MiB/s",
                             r.moved, r.seconds, Double(r.moved) / r.seconds, Double(r.moved * size) / r.seconds / 1_048_576))
            }
            let rates = runs.map { Double($0.moved) / $0.seconds }.sorted()
            print(String(format: "median %.0f sessions/s", rates[rates.count / 2]))
            return
        }
        var results: [Result] = []
        print("drs bench: \(size)-byte attribute, 1 backup, \(writers) writers, \(duration)s x \(runs) runs per workload, \(System.coreCount) cores")
        for workload in workloads {
            guard var policy = Self.policy(workload) else {
                printError("drs bench: unknown workload \(workload)")
                throw ExitCode(2)
            }
            if let udpMaxPayload { policy.udpMaxPayload = udpMaxPayload }
            var rates: [Double] = []
            var applied: [Double] = []
            var fullLag: [Percentiles] = []
            var drops = 0, retries = 0, rejected = 0
            for _ in 0..<(rate == nil ? runs : 0) {
                let r = try await measure(policy: policy, rate: nil)
                rates.append(r.rate)
                applied.append(r.appliedRate)
                fullLag.append(r.lag)
                drops += r.drops; retries += r.retries; rejected += r.rejected
            }
            let median = rates.isEmpty ? .nan : rates.sorted()[rates.count / 2]
            let medianApplied = applied.isEmpty ? .nan : applied.sorted()[applied.count / 2]
            // Half of what was really replicated (for local, half of the write rate).
            let paced = rate ?? (workload == "local" ? median : min(median, medianApplied)) / 2
            var halfLag: [Percentiles] = []
            for _ in 0..<runs {
                let r = try await measure(policy: policy, rate: paced)
                halfLag.append(r.lag)
                drops += r.drops; retries += r.retries; rejected += r.rejected
            }
            let result = Result(workload: workload, writesPerSecond: rates, medianWritesPerSecond: median,
                                appliedPerSecond: applied, medianAppliedPerSecond: medianApplied,
                                lagAtFullRate: Self.median(fullLag), pacedRate: paced, lagAtHalfRate: Self.median(halfLag),
                                drops: drops, retries: retries, rejectedFrames: rejected)
            results.append(result)
            print(String(format: "%-17@ %8.0f writes/s, %8.0f applied/s (runs: %@)  lag full: p50 %.3f p99 %.3f ms | at %.0f/s: p50 %.3f p99 %.3f p99.9 %.3f ms  drops %d retries %d",
                         workload, median, medianApplied, rates.map { String(format: "%.0f", $0) }.joined(separator: ", "),
                         result.lagAtFullRate.p50Ms, result.lagAtFullRate.p99Ms, result.pacedRate,
                         result.lagAtHalfRate.p50Ms, result.lagAtHalfRate.p99Ms, result.lagAtHalfRate.p999Ms, drops, retries))
        }
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            try encoder.encode(results).write(to: URL(fileURLWithPath: json))
        }
    }

    static func policy(_ workload: String) -> ReplicationPolicy? {
        var p = ReplicationPolicy()
        switch workload {
        case "acknowledged-tcp": p.mode = .acknowledged; p.transport = .tcp
        case "best-effort-udp": p.mode = .bestEffort; p.transport = .udp
        case "synchronous-tcp": p.mode = .synchronous; p.transport = .tcp; p.minSyncReplicas = 1
        case "local": p.replicas = .count(0)
        default: return nil
        }
        return p
    }

    static func median(_ ps: [Percentiles]) -> Percentiles {
        func med(_ f: (Percentiles) -> Double) -> Double { ps.isEmpty ? .nan : ps.map(f).sorted()[ps.count / 2] }
        return Percentiles(samples: ps.map(\.samples).reduce(0, +), p50Ms: med(\.p50Ms), p99Ms: med(\.p99Ms), p999Ms: med(\.p999Ms), maxMs: med(\.maxMs))
    }

    struct Run {
        var rate: Double
        var appliedRate: Double
        var lag: Percentiles
        var drops: Int
        var retries: Int
        var rejected: Int
    }

    /// One measurement on a fresh two-node cluster; `rate` paces the writers (total writes
    /// per second), `nil` runs them flat out.
    struct JoinRun {
        var moved: Int
        var seconds: Double
    }

    /// Nodes a and b of a three-node cluster hold `sessions` sessions owned by a (backed
    /// by b); c starts; timed from a seeing c alive until every session whose placement
    /// names c is on c and the moves are complete.
    func measureJoin(sessions: Int) async throws -> JoinRun {
        let key = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let config = ClusterConfiguration(
            clusterID: "bench", keys: ClusterKeys(current: key),
            nodes: ["a", "b", "c"].map { NodeEndpoint(name: $0, address: "127.0.0.1", httpPort: 0, replicationPort: 0, membershipPort: 0) })
        var logger = Logger(label: "drs.bench")
        logger.logLevel = .error
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let nodes = try ["a", "b", "c"].map { try ReplicationNode(configuration: config, name: $0, logger: logger, eventLoopGroup: group) }
        let (a, b, c) = (nodes[0], nodes[1], nodes[2])
        defer { Task { for n in nodes { await n.shutdown() }; try? await group.shutdownGracefully() } }
        try await a.start()
        try await b.start()
        a.setPeerEndpoint("b", host: "127.0.0.1", port: b.replicationPort!, membershipPort: b.membershipPort)
        b.setPeerEndpoint("a", host: "127.0.0.1", port: a.replicationPort!, membershipPort: a.membershipPort)
        while !(a.members().first { $0.name == "b" }?.state == "alive") { try await Task.sleep(for: .milliseconds(10)) }
        let payload = [UInt8](repeating: 7, count: size)
        for _ in 0..<sessions { _ = try await a.createSession(attributes: ["payload": payload]) }
        while b.counters.backups < sessions { try await Task.sleep(for: .milliseconds(10)) }
        try await c.start()
        for (x, y) in [(a, c), (b, c), (c, a), (c, b)] {
            x.setPeerEndpoint(y.endpoint.name, host: "127.0.0.1", port: y.replicationPort!, membershipPort: y.membershipPort)
        }
        while !(a.members().first { $0.name == "c" }?.state == "alive") { try await Task.sleep(for: .milliseconds(1)) }
        let start = ContinuousClock.now
        // Done when a has nothing pending and c holds what a says it moved.
        while true {
            let pending = a.status().stateTransferPending
            let moved = a.counters.replication.stateTransfers
            if pending == 0, moved > 0, c.counters.backups >= moved { break }
            if ContinuousClock.now - start > .seconds(120) { throw ValidationError("state transfer did not finish within 120 s") }
            try await Task.sleep(for: .milliseconds(1))
        }
        let elapsed = ContinuousClock.now - start
        return JoinRun(moved: c.counters.backups, seconds: Double(elapsed.nanosecondsClamped) / 1e9)
    }

    func measure(policy: ReplicationPolicy, rate: Double?) async throws -> Run {
        let (nodes, group) = try await Self.startNodes(["a", "b"], policy: policy)
        let (a, b) = (nodes[0], nodes[1])
        let origin = ContinuousClock.now
        // Samples are taken by the observer itself (on a network thread) between the end of
        // the warm-up and the deadline: a task resetting them could starve behind the writers.
        let window = NIOLockedValueBox<(start: Int64, end: Int64)>((.max, .max))
        let lags = NIOLockedValueBox<[Int64]>([])
        lags.withLockedValue { $0.reserveCapacity(1 << 20) }
        b.observeBackupApplies { state in
            guard let v = state.attributes["payload"], v.count >= 8 else { return }
            let sent = v.withUnsafeBytes { $0.loadUnaligned(as: Int64.self) }
            let now = (ContinuousClock.now - origin).nanosecondsClamped
            let (start, end) = window.withLockedValue { $0 }
            guard now >= start, now < end else { return }
            lags.withLockedValue { $0.append(now - sent) }
        }
        var ids: [SessionID] = []
        for _ in 0..<writers {
            if let id = try await a.createSession().state?.id { ids.append(id) }
        }
        for id in ids { _ = try await a.sync(id) }
        let warmDeadline = ContinuousClock.now + .milliseconds(300)
        let deadline = warmDeadline + .seconds(duration)
        window.withLockedValue { $0 = ((warmDeadline - origin).nanosecondsClamped, (deadline - origin).nanosecondsClamped) }
        let size = self.size
        let writerIDs = ids
        let monitor: Task<Void, Never>? = ProcessInfo.processInfo.environment["DRS_BENCH_TRACE"] == nil ? nil : Task.detached {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(250))
                let x = a.counters, y = b.counters
                printError("trace: a sent tcp \(x.streamFramesSent) udp \(x.datagramsSent) retries \(x.replication.retries) drops \(x.replication.drops) queue \(x.queueDepth) received \(x.framesReceived) | b received \(y.framesReceived) applied \(y.replication.applied) dup \(y.duplicateMessages) skipped \(y.skippedSequences) rejected \(y.rejectedTotal)")
            }
        }
        // A paced writer sleeps until its next write is due and then does the writes it
        // owes. (Waking every writer once a millisecond to check cost more CPU than the
        // replication measured: 64,000 timer wake-ups a second, most finding nothing owed,
        // and the lag's tail measured the two cores' run queue.)
        let perWriterRate: Double? = rate.flatMap { $0 > 0 ? $0 / Double(writerIDs.count) : nil }
        let counts = try await withThrowingTaskGroup(of: Int.self) { group in
            for (i, id) in writerIDs.enumerated() {
                group.addTask {
                    var n = 0, done = 0
                    var payload = [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: max(8, size))
                    let start = ContinuousClock.now + .microseconds(Int64(1000 * i / writerIDs.count))
                    while true {
                        var owed = 1
                        if let perWriterRate {
                            let elapsed = Double((ContinuousClock.now - start).nanosecondsClamped) / 1e9
                            owed = Int(elapsed * perWriterRate) - done
                            if owed <= 0 {
                                let due = start + .nanoseconds(Int64(Double(done + 1) / perWriterRate * 1e9))
                                try await Task.sleep(until: min(due, deadline), clock: .continuous)
                                if ContinuousClock.now >= deadline { return n }
                                continue
                            }
                        }
                        for _ in 0..<owed {
                            let t = ContinuousClock.now
                            if t >= deadline { return n }
                            let stamp = (t - origin).nanosecondsClamped
                            payload.withUnsafeMutableBytes { $0.storeBytes(of: stamp, as: Int64.self) }
                            let bytes = payload
                            // A write that failed (sync-timeout, overloaded) is not counted.
                            let written = (try? await a.write(id, set: ["payload": bytes])) != nil
                            if written, t >= warmDeadline { n += 1 }
                            done += 1
                        }
                    }
                }
            }
            return try await group.reduce(0, +)
        }
        try await Task.sleep(until: deadline + .milliseconds(200))
        monitor?.cancel()
        let appliedInWindow = lags.withLockedValue { $0.count }
        let c = a.counters
        let all = lags.withLockedValue { $0 }.sorted()
        await a.shutdown()
        await b.shutdown()
        try await group.shutdownGracefully()
        func pct(_ q: Double) -> Double {
            guard !all.isEmpty else { return .nan }
            return Double(all[min(all.count - 1, Int(Double(all.count) * q))]) / 1e6
        }
        return Run(rate: Double(counts) / duration, appliedRate: Double(appliedInWindow) / duration,
                   lag: Percentiles(samples: all.count, p50Ms: pct(0.5), p99Ms: pct(0.99), p999Ms: pct(0.999), maxMs: pct(1)),
                   drops: c.replication.drops + c.replication.overflowDrops, retries: c.replication.retries,
                   rejected: c.rejectedTotal + b.counters.rejectedTotal)
    }
}
