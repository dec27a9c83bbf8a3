import SessionReplication
import SessionReplicationCore
import Testing

/// The node's own fault injection (drills use it: this machine has no netem).
@Suite("Fault injection in the node's transport", .timeLimit(.minutes(10)))
struct FaultInjectionTests {
    @Test("a fault spec parses every key, and a bad one is refused naming the part")
    func specs() throws {
        let f = try FaultSettings(spec: " drop=2%, delay=20ms,jitter=5ms,duplicate=5%,reorder=10%,hold=3ms\n")
        #expect(f.drop == 0.02 && f.delay == .milliseconds(20) && f.jitter == .milliseconds(5))
        #expect(f.duplicate == 0.05 && f.reorder == 0.1 && f.reorderHold == .milliseconds(3))
        #expect(try FaultSettings(spec: f.description) == f)
        #expect(try FaultSettings(spec: "") == FaultSettings() && FaultSettings(spec: "off") == FaultSettings())
        for (spec, named) in [("drop=2", "drop=2"), ("delay=20", "delay=20"), ("loss=5%", "unknown key \"loss\""), ("drop=120%", "drop=120%"),
                              ("delay=1s,delay=2s", "delay given twice"), ("reorder", "\"reorder\" is not key=value"), ("delay=11s", "at most 10s")] {
            #expect {
                try FaultSettings(spec: spec)
            } throws: { error in
                (error as? FaultSpecError)?.description.contains(named) == true
            }
        }
    }

    func udpPair() -> ClusterConfiguration {
        TestCluster.configuration(names: ["n1", "n2"]) {
            $0.mode = .bestEffort
            $0.transport = .udp
            $0.retryCount = 0
        }
    }

    @Test("a delay holds every datagram back; duplicates arrive and are refused as replays; a drop loses them; off sends at once")
    func delayDuplicateDrop() async throws {
        try await TestCluster.with(udpPair()) { cluster in
            let n1 = cluster["n1"], n2 = cluster["n2"]
            let id = try #require(try await n1.createSession().state?.id)
            #expect(await eventually { n2.copy(of: id)?.backupState != nil })

            var faults = FaultSettings()
            faults.delay = .milliseconds(400)
            n1.setFaults(faults)
            let delayed = try await n1.withSession(id) { $0.set("a", [1]) }.result.state!.stamp
            let sent = ContinuousClock.now
            #expect(await eventually { n2.copy(of: id)?.backupState?.stamp == delayed })
            #expect(ContinuousClock.now - sent >= .milliseconds(350), "arrived \(ContinuousClock.now - sent) after the send")

            faults = FaultSettings()
            faults.duplicate = 1
            n1.setFaults(faults)
            let replaysBefore = n2.counters.rejected[.replayed] ?? 0
            let twice = try await n1.withSession(id) { $0.set("b", [2]) }.result.state!.stamp
            #expect(await eventually { n2.copy(of: id)?.backupState?.stamp == twice })
            #expect(await eventually { (n2.counters.rejected[.replayed] ?? 0) > replaysBefore }, "the copy of a datagram is refused by the replay window")

            faults = FaultSettings()
            faults.drop = 1
            n1.setFaults(faults)
            let lost = try await n1.withSession(id) { $0.set("c", [3]) }.result.state!.stamp
            try await Task.sleep(for: .milliseconds(300))
            #expect(n2.copy(of: id)?.backupState?.stamp != lost)
            #expect(n1.faultCounts.dropped > 0 && n1.faultCounts.duplicated > 0 && n1.faultCounts.delayed > 0)

            n1.setFaults(FaultSettings())
            let after = try await n1.withSession(id) { $0.set("d", [4]) }.result.state!.stamp
            #expect(await eventually { n2.copy(of: id)?.backupState?.stamp == after }, "the next delta (or a resync) arrives once faults are off")
        }
    }
}
