import Testing
@testable import SessionReplicationCore
import SessionReplicationTestKit

/// Whole clusters of `NodeCore`s under the simulator (`ClusterScenario`): every seed
/// draws its scenario family and knobs (nodes, mode, replicas, majority, drift, loss,
/// faults). A failing seed prints the command that replays it exactly.
struct ClusterSimulationTests {
    /// Seeds `make test` runs over the matrix (`DRS_SIM_CLUSTER_SEEDS`; default 2,100).
    static var seedCount: Int { Int(Environment.value("DRS_SIM_CLUSTER_SEEDS") ?? "") ?? 2_100 }

    static func describe(_ seed: UInt64, _ o: ClusterScenario.Outcome) -> String {
        "seed \(seed) [\(o.knobs)] failed (replay: \(ClusterScenario.replayCommand(seed))): \((o.failures + o.stuck).prefix(6))"
    }

    @Test func scenariosExerciseFailoverAndTakeover() async {
        let outcomes = await onOwnThread { (UInt64(1)...21).map { ($0, ClusterScenario.run(seed: $0)) } }
        var promotions = 0, writes = 0, replicated = 0, takeovers = 0
        var outcomesByKind: [String: Int] = [:]
        for (seed, o) in outcomes {
            outcomesByKind.merge(o.outcomes, uniquingKeysWith: +)
            #expect(o.failures.isEmpty && o.stuck.isEmpty, "\(Self.describe(seed, o))")
            promotions += o.promotions
            writes += o.writes
            replicated += o.replicated
            takeovers += o.takeovers
        }
        print("cluster scenario seeds 1-21: \(writes) writes, \(replicated) acknowledged replicated, \(promotions) promotions, \(takeovers) takeovers; requests ended \(outcomesByKind.sorted { $0.key < $1.key })")
        #expect(promotions > 0)
        #expect(takeovers > 0, "requests on other nodes take sessions over")
        #expect(replicated > 0)
        #expect((outcomesByKind["takeOver:ok"] ?? 0) > 0)
    }

    @Test func aSeedReplaysExactly() async {
        let (a, b) = await onOwnThread { (ClusterScenario.run(seed: 4242), ClusterScenario.run(seed: 4242)) }
        #expect(a.digest == b.digest)
        #expect(a.writes == b.writes && a.acked == b.acked)
        let c = await onOwnThread { ClusterScenario.run(seed: 4243) }
        #expect(c.digest != a.digest)
    }

    /// Runs `count` seeds from `base` on a thread of its own; returns the failed seeds
    /// (at most `maxFailures`) and the seeds run per family.
    static func sweep(count: Int, base: UInt64, maxFailures: Int = 5) async -> (failed: [(UInt64, ClusterScenario.Outcome)], families: [String: Int], replicated: Int) {
        let observe = Environment.value("DRS_SIM_NO_OBSERVER") == nil
        return await onOwnThread {
            var failed: [(UInt64, ClusterScenario.Outcome)] = []
            var families: [String: Int] = [:]
            var replicated = 0
            for i in 0..<count {
                let seed = base &+ UInt64(i)
                let o = ClusterScenario.run(seed: seed, observe: observe)
                families[o.knobs.family.rawValue, default: 0] += 1
                replicated += o.replicated
                if !o.failures.isEmpty || !o.stuck.isEmpty {
                    failed.append((seed, o))
                    if failed.count >= maxFailures { break }
                }
            }
            return (failed, families, replicated)
        }
    }

    /// The seeds run in four chunks, in parallel. `DRS_SIM_SEED` replays one seed;
    /// `DRS_SIM_BASE` moves the seed sequence.
    @Test(arguments: 0..<4) func seedsOfTheMatrix(chunk: Int) async {
        if let s = Environment.value("DRS_SIM_SEED"), let seed = UInt64(s) {
            guard chunk == 0 else { return }
            let o = await onOwnThread { ClusterScenario.run(seed: seed, observe: Environment.value("DRS_SIM_NO_OBSERVER") == nil) }
            print("seed \(seed): \(o.knobs); digest \(o.digest); \(o.writes) writes, \(o.replicated) replicated; \(o.outcomes.sorted { $0.key < $1.key })")
            #expect(o.failures.isEmpty && o.stuck.isEmpty, "\(Self.describe(seed, o))")
            return
        }
        let per = (Self.seedCount + 3) / 4
        let base = (UInt64(Environment.value("DRS_SIM_BASE") ?? "") ?? 1_000) &+ UInt64(chunk * per)
        let r = await Self.sweep(count: per, base: base)
        print("matrix chunk \(chunk): seeds \(base)..<\(base + UInt64(per)) by family \(r.families.sorted { $0.key < $1.key }), \(r.replicated) replicated writes")
        for (seed, o) in r.failed { Issue.record("\(Self.describe(seed, o))") }
        #expect(r.replicated > 0)
    }
}
