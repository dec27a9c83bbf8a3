import Testing
@testable import SessionReplicationCore
import SessionReplicationTestKit

/// One seed of the cluster simulation in the test build (the matrix runs in the release
/// binary: `SimulationMatrixTests`, `drs simulate-cluster`).
@Suite(.offThePool)
struct ClusterSimulationTests {
    @Test func aSeedOfTheStandardFamilyKeepsEveryInvariantAndReplaysExactly() async {
        // Seed 7 is a standard-family seed (7 families; 7 % 7 == 0).
        let (a, b) = await onOwnThread { (ClusterScenario.run(seed: 7), ClusterScenario.run(seed: 7)) }
        #expect(a.knobs.family == .standard)
        #expect(a.failures.isEmpty && a.stuck.isEmpty, "seed 7: \((a.failures + a.stuck).prefix(5))")
        #expect(a.digest == b.digest && a.writes == b.writes)
        #expect(a.writes > 0 && a.replicated > 0)
    }
}
