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
        let (nodes, group) = try await Self.startNodes(["a", "b", "c"], policy: Self.repairPolicy(repairInterval), room: count + writers)
        let (a, b, c) = (nodes[0], nodes[1], nodes[2])
        let hot = try await Self.hotSessions(b, writers: writers, size: size)
        let quiet = try await Self.writeLatency(b, hot, seconds: duration, size: size)
        let created = NIOLockedValueBox(0), refused = NIOLockedValueBox(0)
        let held: @Sendable () -> Int = { b.counters.backups + c.counters.backups }
        // Progress on stderr every 5 s while a is filled.
        let progress = Self.reportProgress {
            let members = a.members().map { "\($0.name) \($0.state)" }.joined(separator: ", ")
            let status = a.status()
            return "created \(created.withLockedValue { $0 }) (refused \(refused.withLockedValue { $0 })), b and c hold \(held()), a sees: \(members), under-replicated \(status.underReplicated), queues \(status.queues)"
        }
        defer { progress.cancel() }
        try await Self.fill(a, count: count, size: size, created: created, refused: refused)
        progress.cancel()
        let waitStart = ContinuousClock.now
        // Every one of a's sessions has its backup (hot sessions are b's, backed by a or c).
        var told = waitStart
        while held() < count || a.status().underReplicated > 0 {
            let now = ContinuousClock.now
            let owned = [a, b, c].map(\.counters.primaries)
            if owned[0] < count {
                // A node declared dead drops what it holds and rejoins: under heavy CPU
                // starvation the detector can declare a (and b or c) dead in turn, and the
                // sessions a made are no longer where this measurement needs them.
                throw ValidationError("a owns \(owned[0]) of the \(count) sessions it created: a member was declared dead during the fill (CPU starvation?) and dropped what it held; the cluster owns \(owned.reduce(0, +)) (a, b, c: \(owned)); rerun on a quieter machine")
            }
            if now - waitStart > .seconds(600) { throw ValidationError("the backups did not hold every session within 600 s") }
            if now - told > .seconds(5) {
                told = now
                let r = a.counters.replication, status = a.status()
                printError("  ... waiting for the backups: b and c hold \(held()) of \(count); owned by a, b, c: \(owned); a under-replicated \(status.underReplicated), queues \(status.queues), refused for good \(r.refusedForGood), repairs \(r.repairsSent), retries \(r.retries)")
            }
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
            if now - shown > .seconds(1) {
                shown = now
                let seen = [b, c].map { n in n.members().first { $0.name == "a" }?.state ?? "-" }
                printError("  ... \(Double((now - killed).nanosecondsClamped) / 1e9) s: a is \(seen) to b and c; \(Self.failoverProgress(b, c))")
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

    /// One line of what the survivors `b` and `c` are doing: sessions owned and held,
    /// takeovers awaiting promises, promotions waiting, messages queued and unreceipted,
    /// control messages not yet handed to the transport, prepare and promise entries
    /// received, stream connections up and down, and frames refused.
    static func failoverProgress(_ b: ReplicationNode, _ c: ReplicationNode) -> String {
        let (sb, sc) = (b.coreStatus(), c.coreStatus())
        let (nb, nc) = (b.counters, c.counters)
        let (kb, kc) = (b.coreCounters(), c.coreCounters())
        return "owned by b \(sb.primaries), c \(sc.primaries); backups b \(sb.backups), c \(sc.backups); "
            + "awaiting promises b \(sb.takeoversPending), c \(sc.takeoversPending); awaiting promotion b \(sb.promotionsPending), c \(sc.promotionsPending); "
            + "queues b \(sb.queues), c \(sc.queues); control queued b \(sb.controlQueued), c \(sc.controlQueued); "
            + "prepare entries in b \(kb.prepareEntriesIn) (ignored \(kb.prepareEntriesIgnored)), c \(kc.prepareEntriesIn) (ignored \(kc.prepareEntriesIgnored)); "
            + "promise entries in b \(kb.promiseEntriesIn), c \(kc.promiseEntriesIn) (unasked b \(nb.replication.unaskedPromiseEntries), c \(nc.replication.unaskedPromiseEntries)); "
            + "connections up/down b \(kb.connectionsUp)/\(kb.connectionsDown), c \(kc.connectionsUp)/\(kc.connectionsDown); "
            + "flushes without a connection b \(kb.flushesWithoutConnection), c \(kc.flushesWithoutConnection); "
            + "frames received b \(nb.framesReceived), c \(nc.framesReceived), refused by b \(nb.rejected), c \(nc.rejected)"
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
