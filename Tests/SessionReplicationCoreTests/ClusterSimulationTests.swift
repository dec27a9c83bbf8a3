import Testing
@testable import SessionReplicationCore
import SessionReplicationTestKit

/// Whole clusters of the core state machines (membership, leases, replica shard,
/// failover, rejoin, takeover on request, anti-entropy, moves onto a rejoined node) under
/// the simulator, with client writes, reads and requests landing on other nodes. The
/// standard scenario: 3 nodes, synchronous replication to 1 backup, 30 virtual seconds,
/// one crash (with or without restart), pause or partition, datagram loss, duplication
/// and reordering; then healing and quiet. A failing seed names itself and replays with
/// `DRS_SIM_SEED=<n> swift test --filter ClusterSimulationTests`.
struct ClusterSimulationTests {
    static var seedCount: Int { Int(Environment.value("DRS_SIM_CLUSTER_SEEDS") ?? "") ?? 2_000 }

    @Test func scenarioExercisesFailover() async {
        let outcomes = await onOwnThread { (UInt64(1)...12).map { ($0, ClusterScenario.run(seed: $0)) } }
        var promotions = 0, writes = 0, acked = 0, takeovers = 0
        var searches: [String: Int] = [:]
        var repliesLost = 0
        for (seed, o) in outcomes {
            repliesLost += o.handoverRepliesLost
            searches.merge(o.searchOutcomes, uniquingKeysWith: +)
            #expect(o.failures.isEmpty && o.stuck.isEmpty, "seed \(seed): \((o.failures + o.stuck).prefix(5))")
            promotions += o.promotions
            writes += o.writes
            acked += o.acked
            takeovers += o.takeovers
        }
        print("cluster scenario seeds 1-12: \(writes) writes, \(acked) acknowledged, \(promotions) promotions, \(takeovers) takeovers on request; searches ended \(searches.sorted { $0.key < $1.key }); \(repliesLost) handover answers lost")
        #expect(promotions > 0)
        #expect(takeovers > 0, "requests on other nodes take sessions over")
        // The searches run through the core's TakeoverSearch: most end with the session
        // taken over, some refused within the cooldown; none says a session is gone.
        #expect((searches["done"] ?? 0) > 0)
        #expect(searches["session-not-found"] == nil)
        #expect(acked > writes / 2)
    }

    /// Runs `count` seeds drawn from `base` on a thread of its own; returns the failed
    /// seeds (at most `maxFailures`) with their first failures, and the writes acknowledged.
    static func sweep(count: Int, base: UInt64, replicas: Int = 1, maxFailures: Int = 5) async -> (failed: [(UInt64, [String])], acked: Int) {
        let observe = Environment.value("DRS_SIM_NO_OBSERVER") == nil
        return await onOwnThread {
            var random = SeededGenerator(seed: base)
            var failed: [(UInt64, [String])] = []
            var acked = 0
            for _ in 0..<count {
                let seed = random.next() % 1_000_000_000
                let o = ClusterScenario.run(seed: seed, observe: observe, replicas: replicas)
                acked += o.acked
                if !o.failures.isEmpty || !o.stuck.isEmpty {
                    failed.append((seed, Array((o.failures + o.stuck).prefix(5))))
                    if failed.count >= maxFailures { break }
                }
            }
            return (failed, acked)
        }
    }

    /// Two backups, one needed for an acknowledgement: the taker must adopt the other
    /// holder's fresher copy (prepare round), or acknowledged writes are lost.
    @Test func seedsWithTwoBackups() async {
        let count = Int(Environment.value("DRS_SIM_TWO_BACKUP_SEEDS") ?? "") ?? 200
        let r = await Self.sweep(count: count, base: 99, replicas: 2, maxFailures: 3)
        for (seed, failures) in r.failed { Issue.record("seed \(seed) (replicas 2) failed: \(failures)") }
        #expect(r.acked > 0)
    }

    /// The seeds run in four chunks, in parallel (2,000 by default; `DRS_SIM_CLUSTER_SEEDS`
    /// and `DRS_SIM_BASE` change the count and the seed sequence).
    @Test(arguments: 0..<4) func randomSeedsOfTheStandardScenario(chunk: Int) async {
        if let s = Environment.value("DRS_SIM_SEED"), let seed = UInt64(s) {
            guard chunk == 0 else { return }
            let replicas = Int(Environment.value("DRS_SIM_REPLICAS") ?? "") ?? 1
            let loss = Double(Environment.value("DRS_SIM_HANDOVER_LOSS") ?? "") ?? 0
            let o = await onOwnThread {
                ClusterScenario.run(seed: seed, observe: Environment.value("DRS_SIM_NO_OBSERVER") == nil, replicas: replicas, handoverReplyLoss: loss)
            }
            #expect(o.failures.isEmpty && o.stuck.isEmpty, "seed \(seed): \((o.failures + o.stuck).prefix(8))")
            return
        }
        let base = (UInt64(Environment.value("DRS_SIM_BASE") ?? "") ?? 7) &+ UInt64(chunk) &* 0x9E37_79B9
        let r = await Self.sweep(count: (Self.seedCount + 3) / 4, base: base)
        for (seed, failures) in r.failed {
            Issue.record("seed \(seed) failed (replay: DRS_SIM_SEED=\(seed) swift test --filter ClusterSimulationTests): \(failures)")
        }
        #expect(r.acked > 0)
    }

    /// 5 % of handover answers lost until 20 s (a connection reset between live nodes):
    /// safety holds in every seed (no two owners, no stale read, no lost replicated write),
    /// and the giver answering the same taker again keeps all but a few sessions owned.
    /// Before it did, a lost answer left its session without an owner while both nodes
    /// lived: 193 of these 200 seeds left one stuck; 2 do now (a copy from a process
    /// declared dead, stored after its failover ran).
    @Test func seedsLosingHandoverAnswers() async {
        let count = Int(Environment.value("DRS_SIM_LOSS_SEEDS") ?? "") ?? 200
        let (failed, stuckSeeds, lost) = await onOwnThread { () -> ([(UInt64, [String])], Int, Int) in
            var random = SeededGenerator(seed: 4242)
            var failed: [(UInt64, [String])] = [], stuck = 0, lost = 0
            for _ in 0..<count {
                let seed = random.next() % 1_000_000_000
                let o = ClusterScenario.run(seed: seed, observe: true, handoverReplyLoss: 0.05)
                lost += o.handoverRepliesLost
                if !o.failures.isEmpty { failed.append((seed, Array(o.failures.prefix(3)))) }
                if !o.stuck.isEmpty { stuck += 1 }
            }
            return (failed, stuck, lost)
        }
        print("handover answers lost: \(lost) in \(count) seeds; seeds leaving a session stuck: \(stuckSeeds)")
        for (seed, failures) in failed.prefix(5) {
            Issue.record("seed \(seed) broke safety with lost handover answers (replay: DRS_SIM_SEED=\(seed) DRS_SIM_HANDOVER_LOSS=0.05): \(failures)")
        }
        #expect(lost > count, "the fault was injected")
        #expect(stuckSeeds * 50 <= count, "at most 2 % of seeds leave a session stuck; \(stuckSeeds) of \(count) did")
    }
}
