import NIOConcurrencyHelpers
import SessionReplication
import SessionReplicationCore
import Testing

/// Collects a node's session events in the background.
final class EventLog: @unchecked Sendable {
    private let lock = NIOLock()
    private var events: [SessionEvent] = []
    private var task: Task<Void, Never>?

    init(_ node: ReplicationNode) {
        let stream = node.sessionEvents()
        task = Task { [weak self] in
            for await e in stream { self?.lock.withLock { self?.events.append(e) } }
        }
    }

    func of(_ id: SessionID) -> [SessionEvent.Kind] { lock.withLock { events.filter { $0.id == id }.map(\.kind) } }
    func all(_ id: SessionID) -> [SessionEvent] { lock.withLock { events.filter { $0.id == id } } }
    func stop() { task?.cancel() }
}

@Suite("Session events", .timeLimit(.minutes(10)))
struct SessionEventsTests {
    @Test("created, changed, activated on the taker and passivated on the giver, then activated on the new owner after a failover, in order")
    func lifecycle() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2", "n3"])
        try await TestCluster.with(config) { cluster in
            let logs = Dictionary(uniqueKeysWithValues: cluster.nodes.map { ($0.nodeName, EventLog($0)) })
            defer { for l in logs.values { l.stop() } }
            let n1 = cluster["n1"], n2 = cluster["n2"]
            let id = try #require(try await n1.createSession(attributes: ["a": [1]]).state?.id)
            _ = try await n1.withSession(id) { $0.set("b", [2]) }
            #expect(await eventually { logs["n1"]!.of(id) == [.created, .changed(["b"])] }, "\(logs["n1"]!.of(id))")
            // A request lands on n2: it takes the session over.
            try await n2.takeOver(id)
            #expect(await eventually { logs["n2"]!.of(id) == [.activated] && logs["n1"]!.of(id).last == .passivated }, "\(logs["n2"]!.of(id)) \(logs["n1"]!.of(id))")
            // n2 dies: a backup promotes the session, and says so.
            await n2.shutdown()
            let survivors = ["n1", "n3"]
            #expect(await eventually(timeout: .seconds(60)) { survivors.contains { logs[$0]!.of(id).last == .activated } },
                    "\(survivors.map { logs[$0]!.of(id) })")
            // Stamps only grow along one node's events.
            for name in ["n1", "n3"] {
                let stamps = logs[name]!.all(id).map(\.stamp)
                #expect(stamps == stamps.sorted(), "\(name): \(stamps)")
            }
            // Whichever survivor promoted owns it now (the other holds a backup).
            if let owner = survivors.first(where: { logs[$0]!.of(id).last == .activated }) {
                let before = logs[owner]!.of(id).count
                _ = try await cluster[owner].withSession(id) { _ in }
                try await Task.sleep(for: .milliseconds(200))
                #expect(logs[owner]!.of(id).count == before, "a scope that changed nothing raised an event")
            }
        }
    }

    @Test("an invalidation, an expiry and a rotation each say what ended the session")
    func endings() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2"])
        try await TestCluster.with(config) { cluster in
            let n1 = cluster["n1"]
            let log = EventLog(n1)
            defer { log.stop() }
            let a = try #require(try await n1.createSession().state?.id)
            try await n1.invalidate(a)
            let b = try #require(try await n1.createSession(maxInactiveInterval: .milliseconds(200)).state?.id)
            let c = try #require(try await n1.createSession().state?.id)
            let rotated = try await n1.rotate(c)
            #expect(await eventually { log.of(a) == [.created, .invalidated] })
            #expect(await eventually(timeout: .seconds(60)) { log.of(b) == [.created, .expired] }, "\(log.of(b))")
            #expect(await eventually { log.of(c) == [.created, .rotated] })
            #expect(await eventually { log.of(rotated.state!.id) == [.created] })
        }
    }
}
