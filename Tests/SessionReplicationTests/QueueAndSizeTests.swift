import SessionReplication
import SessionReplicationCore
import Testing

@Suite("Queue bounds and datagram size limits", .timeLimit(.minutes(10)))
struct QueueAndSizeTests {
    @Test("best-effort over UDP sends frames larger than udpMaxPayload over TCP", arguments: [600, 4000])
    func largeDeltasGoOverTCP(maxPayload: Int) async throws {
        let config = TestCluster.configuration(names: ["n1", "n2"]) {
            $0.mode = .bestEffort
            $0.transport = .udp
            $0.udpMaxPayload = maxPayload
        }
        try await TestCluster.with(config) { cluster in
            let n1 = cluster["n1"], n2 = cluster["n2"]
            let id = try #require(try await n1.createSession().state?.id)
            #expect(await eventually { n2.copy(of: id)?.backupState != nil })
            let before = n1.counters
            let r = try await n1.withSession(id) { $0.set("big", [UInt8](repeating: 5, count: 2000)) }
            #expect(await eventually { n2.copy(of: id)?.backupState?.stamp == r.result.state?.stamp })
            let after = n1.counters
            if maxPayload < 2000 {
                #expect(after.streamFramesSent > before.streamFramesSent)
                // Datagrams in the window are retries of the create's frame (a loaded run
                // receipted it late), never the large delta.
                #expect(after.datagramsSent - before.datagramsSent <= after.replication.retries - before.replication.retries)
            } else {
                // The stream still carries control messages (an anti-entropy digest, a
                // membership ping falling back to TCP on a loaded host): only the data's
                // way is checked.
                #expect(after.datagramsSent > before.datagramsSent)
            }
        }
    }

    @Test("acknowledged mode refuses writes with overloaded when a peer's queue is full, applying nothing")
    func fullQueueRefusesWrites() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2"]) {
            $0.maxQueueBytes = 16 << 10
            $0.syncTimeout = .milliseconds(100)
        }
        let sink = try await BlackHole.start()
        try await TestCluster.with(config, only: ["n1"]) { cluster in
            let n1 = cluster["n1"]
            n1.setPeerEndpoint("n2", host: "127.0.0.1", port: sink.port)
            let id = try #require(try await n1.createSession().state?.id)
            var overloaded = 0
            var lastGood: Stamp?
            for i in 0..<40 {
                do {
                    lastGood = try await n1.withSession(id) { $0.set("v", [UInt8](repeating: UInt8(i), count: 1024)) }.result.state?.stamp
                } catch let e as SessionError where e.code == .overloaded {
                    overloaded += 1
                }
            }
            #expect(overloaded > 0)
            #expect(n1.copy(of: id)?.ownerState?.stamp == lastGood)
            #expect(n1.copy(of: id)?.ownerState?.stamp.version == UInt64(1 + 40 - overloaded))
        }
        try await sink.close()
    }

    @Test("best-effort writers wait for a backup that falls behind (bounded by syncTimeout), then go ahead: every write succeeds, none is shed for a full queue")
    func bestEffortBackpressure() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2"]) {
            $0.mode = .bestEffort
            $0.udpWindow = 1                 // the backlog is its floor: 256 KiB per lane
            $0.syncTimeout = .milliseconds(200)
        }
        let sink = try await BlackHole.start()
        try await TestCluster.with(config, only: ["n1"]) { cluster in
            let n1 = cluster["n1"]
            n1.setPeerEndpoint("n2", host: "127.0.0.1", port: sink.port)
            let id = try #require(try await n1.createSession().state?.id)
            // 24 writes of 16 KiB to a peer that never answers: past 256 KiB queued each
            // write waits 200 ms, then is committed anyway.
            for i in 0..<24 { _ = try await n1.withSession(id) { $0.set("v", [UInt8](repeating: UInt8(i), count: 16 << 10)) } }
            #expect(n1.copy(of: id)?.ownerState?.stamp.version == 25)
            let c = n1.counters.replication
            // Each waiting write counts once (at most the 8 writes past the backlog), not
            // once per retry of its parked commit.
            #expect((1...8).contains(c.backlogWaits), "\(c)")
        }
        try await sink.close()
    }

    @Test("best-effort sheds the oldest queued message when the queue is full and counts it")
    func bestEffortShedsOldest() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2"]) {
            $0.mode = .bestEffort
            $0.maxQueueBytes = 8 << 10
        }
        let sink = try await BlackHole.start()
        try await TestCluster.with(config, only: ["n1"]) { cluster in
            let n1 = cluster["n1"]
            n1.setPeerEndpoint("n2", host: "127.0.0.1", port: sink.port)
            let id = try #require(try await n1.createSession().state?.id)
            for i in 0..<30 { _ = try await n1.withSession(id) { $0.set("v", [UInt8](repeating: UInt8(i), count: 1024)) } }
            #expect(n1.counters.replication.overflowDrops > 0)
            #expect(n1.counters.queueDepth["n2"]! <= 8)
            #expect(n1.copy(of: id)?.ownerState?.stamp.version == 31)
        }
        try await sink.close()
    }
}
