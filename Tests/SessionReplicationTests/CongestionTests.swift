import SessionReplication
import SessionReplicationCore
import Testing

@Suite("Best-effort UDP under a flooding sender", .timeLimit(.minutes(10)))
struct CongestionTests {
    @Test("congestion shows up as counted backlog waits, retries or drops, and repair brings every backup level with its owner")
    func floodThenRepair() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2"]) {
            $0.mode = .bestEffort
            $0.transport = .udp
            $0.udpWindow = 32
            $0.udpRate = 20_000
            $0.maxQueueBytes = 256 << 10
            $0.retryInterval = .milliseconds(50)
            $0.repairInterval = .milliseconds(500)
        }
        try await TestCluster.with(config) { cluster in
            let n1 = cluster["n1"], n2 = cluster["n2"]
            var ids: [SessionID] = []
            for _ in 0..<32 { ids.append(try #require(try await n1.createSession().state?.id)) }
            let all = ids
            // 32 x 100 writes of 1 KiB against a paced window and a 256 KiB queue: writers
            // wait for the backlog to drain (up to syncTimeout), are retried, or overrun the
            // queue and are dropped, by how starved the run is.
            await withTaskGroup(of: Void.self) { group in
                for id in all {
                    group.addTask {
                        for i in 0..<100 { _ = try? await n1.withSession(id) { $0.set("v", [UInt8](repeating: UInt8(i), count: 1024)) } }
                    }
                }
            }
            let c = n1.counters.replication
            #expect(c.overflowDrops + c.drops + c.backlogWaits + c.retries > 0, "the flood was expected to show as drops, retries or backlog waits: \(c)")
            let level = await eventually(timeout: .seconds(60)) {
                all.allSatisfy { id in n2.copy(of: id)?.backupState?.stamp == n1.copy(of: id)?.ownerState?.stamp }
            }
            #expect(level, "backups did not converge after repair")
            if c.overflowDrops + c.drops > 0 {
                // What was dropped came back by repair.
                #expect(n1.counters.replication.repairsSent > 0, "\(n1.counters.replication)")
            }
            for id in all {
                #expect(n2.copy(of: id)?.backupState?.attributes == n1.copy(of: id)?.ownerState?.attributes)
            }
        }
    }
}
