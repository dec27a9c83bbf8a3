import Testing
@testable import SessionReplicationCore
import SessionReplicationTestKit

/// Whole clusters of `Membership` machines under the simulator (`MembershipScenario`):
/// random seeds of crashes, pauses, partitions, loss, duplication and reordering. A few
/// here in the debug build; `make test` runs 1,000 seeds of three members and 60 of five
/// optimised (`drs-simulate simulate-membership`, `SimulationMatrixTests`). A failing seed
/// names itself; `DRS_SIM_SEED=<n> swift test --filter MembershipSimulationTests` or
/// `drs simulate-membership --seed <n>` replays it.
@Suite(.offThePool)
struct MembershipSimulationTests {
    static var seedCount: Int {
        if let s = Environment.value("DRS_SIM_SEEDS"), let n = Int(s) { return n }
        return 100  // and 1,000 more in the release simulator; the cluster matrix runs membership too
    }

    @Test func randomSeedsOfTheThreeNodeScenario() async {
        if let s = Environment.value("DRS_SIM_SEED"), let seed = UInt64(s) {
            let o = await onOwnThread { MembershipScenario.run(seed: seed) }
            #expect(o.failures.isEmpty, "seed \(seed): \(o.failures)")
            return
        }
        let baseSeed = UInt64(Environment.value("DRS_SIM_BASE") ?? "") ?? 2026
        let count = Self.seedCount
        let (failed, detections) = await onOwnThread { () -> ([(UInt64, [String])], Int) in
            var failed: [(UInt64, [String])] = []
            var detections = 0
            for seed in MembershipScenario.seeds(base: baseSeed, count: count) {
                let o = MembershipScenario.run(seed: seed)
                detections += o.detections.count
                if !o.failures.isEmpty {
                    failed.append((seed, Array(o.failures.prefix(5))))
                    if failed.count >= 5 { break }
                }
            }
            return (failed, detections)
        }
        for (seed, failures) in failed {
            Issue.record("seed \(seed) failed (replay: DRS_SIM_SEED=\(seed) swift test --filter MembershipSimulationTests): \(failures)")
        }
        #expect(detections > 0)
    }

    @Test func aSeedReplaysExactly() async {
        let (a, b) = await onOwnThread { (MembershipScenario.run(seed: 12345), MembershipScenario.run(seed: 12345)) }
        #expect(a.failures == b.failures)
        #expect(a.detections == b.detections)
    }

    @Test func fiveNodeSeedsConvergeToo() async {
        let outcomes = await onOwnThread { (1...UInt64(8)).map { ($0, MembershipScenario.run(seed: $0, members: 5)) } }
        for (seed, o) in outcomes {
            #expect(o.failures.isEmpty, "seed \(seed) (5 members): \(o.failures.prefix(5))")
        }
    }
}

/// Reads the process environment without Foundation.
enum Environment {
    static func value(_ name: String) -> String? {
        guard let raw = getenv(name) else { return nil }
        return String(cString: raw)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
