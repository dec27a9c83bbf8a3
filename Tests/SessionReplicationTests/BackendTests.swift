import SessionReplication
import SessionReplicationCore
import MetricsTestKit
import Testing

@Suite("The node as the HTTP API's backend", .timeLimit(.minutes(10)))
struct BackendTests {
    @Test("rotate gives a new id with the same attributes and tombstones the old one everywhere")
    func rotate() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2"])
        try await TestCluster.with(config) { cluster in
            let n1 = cluster["n1"], n2 = cluster["n2"]
            // A starved run can let n1's leases lapse: `fenced` applies nothing, so try again.
            let old = try #require(try await unlessFenced(n1) { try await n1.createSession(attributes: ["cart": [1, 2]]) }.state)
            _ = try await n1.sync(old.id)
            let rotated = try #require(try await unlessFenced(n1) { try await n1.rotate(old.id) }.state)
            #expect(rotated.id != old.id)
            #expect(rotated.attributes == ["cart": [1, 2]])
            #expect(rotated.maxInactiveInterval == old.maxInactiveInterval)
            if case .ended = n1.lookup(old.id) {} else { Issue.record("old id not ended on the owner") }
            if case .ended = n2.lookup(old.id) {} else { Issue.record("old id not ended on the backup") }
            _ = try await n1.sync(rotated.id)
            guard case .backup(let copy, let owner) = n2.lookup(rotated.id) else { Issue.record("no backup of the new id"); return }
            #expect(owner == "n1")
            #expect(copy.attributes == rotated.attributes)
            let error = await #expect(throws: SessionError.self) { _ = try await n1.withSession(old.id) { $0.set("x", [1]) } }
            #expect(error?.code == .sessionNotFound)
        }
    }

    @Test("members lists every configured node, alive once connected, and status counts sessions")
    func membersAndStatus() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2", "n3"])
        try await TestCluster.with(config, only: ["n1", "n2"]) { cluster in
            let n1 = cluster["n1"]
            n1.setPeerEndpoint("n3", host: "127.0.0.1", port: try closedPort())
            #expect(await eventually { n1.members().first { $0.name == "n2" }?.state == "alive" })
            let members = n1.members()
            #expect(members.map(\.name) == ["n1", "n2", "n3"])
            #expect(members.map(\.isSelf) == [true, false, false])
            #expect(members[2].state == "dead")
            #expect(members[0].id == n1.nodeID.description)
            var ids: [SessionID] = []
            for _ in 0..<10 { ids.append(try #require(try await n1.createSession(attributes: ["a": [1]]).state?.id)) }
            for id in ids { _ = try? await n1.sync(id) }
            let status = n1.status()
            #expect(status.name == "n1" && status.state == "serving")
            #expect(status.primaries == 10)
            // Sessions backed by n3 (never started) are under-replicated once n1 gave up connecting.
            let onN3 = ids.filter { id in n1.copy(of: id)?.ownerState?.replicaSet == ["n3"] }.count
            #expect(await eventually { n1.status().underReplicated == onN3 })
            #expect(n1.isReady)
        }
    }
}

@Test("metrics go through swift-metrics, every name prefixed drs_, counters advancing by what happened between publishes", .timeLimit(.minutes(10)))
func metricsPublish() async throws {
    let config = TestCluster.configuration(names: ["n1", "n2"])
    try await TestCluster.with(config) { cluster in
        let n1 = cluster["n1"]
        let backend = TestMetrics()
        let metrics = NodeMetrics(node: n1, factory: backend)
        let id = try #require(try await n1.createSession(attributes: ["a": [1]]).state?.id)
        _ = try await n1.sync(id)
        metrics.publish()
        #expect(try backend.expectGauge("drs_sessions", [("role", "owner")]).lastValue == 1)
        #expect(backend.counterTotal(label: "drs_sessions_created_total") == 1)
        #expect(try backend.expectTimer(NodeMetrics.replicationLag, [("peer", "n2")]).values.count >= 1)
        for label in backend.counters.map(\.label) + backend.recorders.map(\.label) + backend.timers.map(\.label) {
            #expect(label.hasPrefix("drs_"), "\(label)")
        }
        for _ in 0..<3 { _ = try await n1.withSession(id) { $0.set("a", [UInt8.random(in: 2...255)]) } }
        metrics.publish()
        metrics.publish()
        #expect(backend.counterTotal(label: "drs_commits_total") == 3)
        #expect(backend.counterTotal(label: "drs_messages_sent_total",
                                     dimensions: [("kind", "delta"), ("mode", "acknowledged"), ("transport", "tcp")]) == 3)
    }
}

@Test("run() as a Service publishes on its own until cancelled", .timeLimit(.minutes(10)))
func metricsServicePublishes() async throws {
    let config = TestCluster.configuration(names: ["n1", "n2"])
    try await TestCluster.with(config) { cluster in
        let n1 = cluster["n1"]
        let backend = TestMetrics()
        let metrics = NodeMetrics(node: n1, factory: backend, interval: .milliseconds(20))
        let task = Task { try await metrics.run() }
        defer { task.cancel() }
        _ = try await n1.createSession(attributes: ["a": [1]])
        let deadline = ContinuousClock.now + .seconds(30)
        while backend.counterTotal(label: "drs_sessions_created_total") != 1, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(backend.counterTotal(label: "drs_sessions_created_total") == 1)
    }
}
