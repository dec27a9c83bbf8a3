import Hummingbird
import Logging
import NIOPosix
import SessionReplication
import SessionReplicationCore
import SessionReplicationHummingbird
import Synchronization
import Testing

/// Two real nodes on 127.0.0.1, ports picked by the kernel.
private func withTwoNodes(_ configure: (inout ClusterConfiguration) -> Void = { _ in }, _ body: (ReplicationNode, ReplicationNode) async throws -> Void) async throws {
    var config = ClusterConfiguration(
        clusterID: "persist", keys: ClusterKeys(current: Array(repeating: 7, count: 32)),
        nodes: ["n1", "n2"].map { NodeEndpoint(name: $0, address: "127.0.0.1", httpPort: 0, replicationPort: 0, membershipPort: 0) })
    // Many clusters share two cores during the test run: a slower detector (1 s
    // suspicion) keeps starvation from being read as a death.
    config.membership.probeInterval = .milliseconds(250)
    // ... nor half a second of starvation as the end of a lease (`fenced`).
    config.membership.lease = .seconds(2)
    // ... and answers to a takeover request can take longer than the default second.
    config.replication.handoverTimeout = .seconds(5)
    configure(&config)
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    var logger = Logger(label: "persist")
    logger.logLevel = .warning
    let n1 = try ReplicationNode(configuration: config, name: "n1", logger: logger, eventLoopGroup: group)
    let n2 = try ReplicationNode(configuration: config, name: "n2", logger: logger, eventLoopGroup: group)
    try await n1.start()
    try await n2.start()
    n1.setPeerEndpoint("n2", host: "127.0.0.1", port: n2.replicationPort!, membershipPort: n2.membershipPort)
    n2.setPeerEndpoint("n1", host: "127.0.0.1", port: n1.replicationPort!, membershipPort: n1.membershipPort)
    // Start joined, with leases granted both ways, however loaded the machine is.
    let deadline = ContinuousClock.now + .seconds(30)
    while ContinuousClock.now < deadline {
        let ready = [n1, n2].allSatisfy { n in
            n.members().allSatisfy { $0.state == "alive" } && n.status().leaseRemainingMs > 0
        }
        if ready { break }
        try await Task.sleep(for: .milliseconds(10))
    }
    do {
        try await body(n1, n2)
    } catch {
        await n1.shutdown(); await n2.shutdown(); try? await group.shutdownGracefully()
        throw error
    }
    await n1.shutdown(); await n2.shutdown(); try? await group.shutdownGracefully()
}

private struct Cart: Codable, Sendable, Equatable {
    var items: [String]
}

@Suite("The PersistDriver over the replicated store", .timeLimit(.minutes(10)))
struct PersistDriverTests {
    @Test("on a cluster of one node, the first set of a key creates its session at once (no search waiting for peers there are none of)")
    func oneNodeCluster() async throws {
        let config = ClusterConfiguration(clusterID: "one", keys: .insecure,
                                          nodes: [NodeEndpoint(name: "n1", address: "127.0.0.1", httpPort: 0, replicationPort: 0, membershipPort: 0)])
        var logger = Logger(label: "one")
        logger.logLevel = .critical
        let node = try ReplicationNode(configuration: config, name: "n1", logger: logger)
        try await node.start()
        do {
            let driver = DRSPersistDriver(node: node)
            // Before: `session-unavailable` after handoverTimeout, and nothing written.
            try await driver.set(key: "k", value: Cart(items: ["a"]), expires: nil)
            #expect(try await driver.get(key: "k", as: Cart.self) == Cart(items: ["a"]))
            #expect(try await driver.get(key: "absent", as: Cart.self) == nil)
        } catch {
            await node.shutdown()
            throw error
        }
        await node.shutdown()
    }

    @Test("a read on a node holding only a backup under affinity none never answers that backup's older value")
    func readsGoThroughTheOwner() async throws {
        try await withTwoNodes({ $0.replication.affinity = .none }) { n1, n2 in
            let owner = DRSPersistDriver(node: n1), other = DRSPersistDriver(node: n2)
            try await owner.set(key: "k", value: "v1", expires: nil)
            let id = DRSPersistDriver.sessionID(for: "k")
            #expect(await waitUntil { n2.copy(of: id) != nil })
            // n1's replication to n2 now arrives 3 s late: n2's backup keeps v1 meanwhile.
            n1.setFaults(try FaultSettings(spec: "delay=3s"))
            try await owner.set(key: "k", value: "v2", expires: nil)
            do {
                let read = try await other.get(key: "k", as: String.self)
                #expect(read == "v2", "n2 answered from its stale backup")
            } catch let error as SessionError {
                // Waiting for the owner may time out on a starved machine: never a stale value.
                #expect(error.code == .sessionUnavailable || error.code == .fenced, "\(error)")
            }
        }
    }

    @Test("a key's session id is the first 128 bits of SHA-256 of the key")
    func keyToID() {
        // SHA-256("") = e3b0c442 98fc1c14 9afbf4c8 996fb924 27ae41e4 ...
        #expect(DRSPersistDriver.sessionID(for: "").hex == "e3b0c44298fc1c149afbf4c8996fb924")
    }

    @Test("set, get and remove round-trip a Codable value, and the backup holds it as one attribute")
    func roundTrip() async throws {
        try await withTwoNodes { n1, n2 in
            let driver = DRSPersistDriver(node: n1)
            try await driver.set(key: "cart-1", value: Cart(items: ["apples"]), expires: nil)
            try await driver.set(key: "cart-1", value: Cart(items: ["apples", "pears"]), expires: nil)
            #expect(try await driver.get(key: "cart-1", as: Cart.self) == Cart(items: ["apples", "pears"]))
            let id = DRSPersistDriver.sessionID(for: "cart-1")
            _ = try await n1.sync(id)
            guard case .backup(let copy, let owner) = n2.lookup(id) else { Issue.record("no backup"); return }
            #expect(owner == "n1")
            #expect(copy.attributes.keys.sorted() == ["cart-1"])
            #expect(try await driver.getWithTTL(key: "cart-1", as: Cart.self)?.ttl == nil)
            try await driver.remove(key: "cart-1")
            #expect(try await driver.get(key: "cart-1", as: Cart.self) == nil)
            try await driver.remove(key: "cart-1")  // absent: a no-op
        }
    }

    @Test("a key written through one node is read, refused as a duplicate and removed through the other")
    func acrossNodes() async throws {
        try await withTwoNodes { n1, n2 in
            let one = DRSPersistDriver(node: n1), two = DRSPersistDriver(node: n2)
            try await one.set(key: "cart-9", value: Cart(items: ["figs"]), expires: nil)
            #expect(try await two.get(key: "cart-9", as: Cart.self) == Cart(items: ["figs"]))
            let id = DRSPersistDriver.sessionID(for: "cart-9")
            guard case .owned = n2.lookup(id) else { Issue.record("n2 did not take the key's session over"); return }
            // n1 handed the session to n2 just now (within takeoverCooldown, when the HTTP
            // API would answer 421): a write through n1 takes it back instead of failing.
            try await one.set(key: "cart-9", value: Cart(items: ["figs", "dates"]), expires: nil)
            guard case .owned = n1.lookup(id) else { Issue.record("n1 did not take the key's session back"); return }
            #expect(try await two.get(key: "cart-9", as: Cart.self) == Cart(items: ["figs", "dates"]))
            await #expect(throws: PersistError.self) { try await one.create(key: "cart-9", value: Cart(items: []), expires: nil) }
            try await two.remove(key: "cart-9")
            #expect(try await one.get(key: "cart-9", as: Cart.self) == nil)
        }
    }

    @Test("create refuses a live key and succeeds again after remove, in a new generation the backup accepts")
    func createDuplicateAndRecreate() async throws {
        try await withTwoNodes { n1, n2 in
            let driver = DRSPersistDriver(node: n1)
            try await driver.create(key: "k", value: 1, expires: nil)
            await #expect(throws: PersistError.self) { try await driver.create(key: "k", value: 2, expires: nil) }
            try await driver.remove(key: "k")
            try await driver.create(key: "k", value: 3, expires: nil)
            #expect(try await driver.get(key: "k", as: Int.self) == 3)
            let id = DRSPersistDriver.sessionID(for: "k")
            _ = try await n1.sync(id)
            guard case .backup(let copy, _) = n2.lookup(id) else { Issue.record("the backup kept its tombstone"); return }
            #expect(copy.stamp.epoch.counter == 2)
            #expect(copy.attributes["k"] == Array("3".utf8))
        }
    }

    @Test("expires is an absolute deadline: reads do not extend it and set without expires keeps it")
    func absoluteDeadline() async throws {
        try await withTwoNodes { n1, _ in
            let driver = DRSPersistDriver(node: n1)
            try await driver.set(key: "short", value: "v1", expires: .seconds(3))
            // The deadline was set before this instant (set first looks for the key on
            // every member), so it is at most 3 s from here.
            let start = ContinuousClock.now
            for _ in 0..<3 {
                guard ContinuousClock.now - start < .milliseconds(2_500) else { break }  // a starved run
                #expect(try await driver.get(key: "short", as: String.self) == "v1")
                try await Task.sleep(for: .milliseconds(100))
            }
            guard ContinuousClock.now - start < .milliseconds(2_500) else { return }  // too starved to check the deadline
            try await driver.set(key: "short", value: "v2", expires: nil)
            let elapsed = ContinuousClock.now - start
            guard elapsed < .milliseconds(2_900) else { return }
            if let ttl = try await driver.getWithTTL(key: "short", as: String.self)?.ttl {
                // Reads and a set without expires never move the deadline.
                #expect(ttl <= .seconds(3) - elapsed + .milliseconds(50), "the deadline moved: \(ttl) left after \(elapsed)")
            }
            while ContinuousClock.now - start < .milliseconds(3_300) { try await Task.sleep(for: .milliseconds(50)) }
            #expect(try await driver.get(key: "short", as: String.self) == nil)
        }
    }

    /// A value that counts how often it is decoded.
    struct Counted: Codable, Sendable, Equatable {
        static let decodes = Atomic<Int>(0)
        var n: Int
        init(n: Int) { self.n = n }
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            n = try c.decode(Int.self, forKey: .n)
            Self.decodes.add(1, ordering: .relaxed)
        }
    }

    @Test("an unchanged key is read without decoding it again; a change made elsewhere is decoded once; decodedCacheLimit 0 decodes every read")
    func decodedValuesAreKept() async throws {
        try await withTwoNodes { n1, _ in
            let driver = DRSPersistDriver(node: n1)
            let decodes = { Counted.decodes.load(ordering: .relaxed) }
            try await driver.set(key: "counted", value: Counted(n: 1), expires: nil)
            let before = decodes()
            #expect(try await driver.get(key: "counted", as: Counted.self) == Counted(n: 1))
            #expect(try await driver.getWithTTL(key: "counted", as: Counted.self)?.object == Counted(n: 1))
            #expect(decodes() == before, "the value just written is kept, not decoded")
            // Changed behind the driver's back (as the HTTP API would): a new stamp.
            _ = try await n1.withSession(DRSPersistDriver.sessionID(for: "counted")) { $0.set("counted", Array(#"{"n":2}"#.utf8)) }
            #expect(try await driver.get(key: "counted", as: Counted.self) == Counted(n: 2))
            #expect(try await driver.get(key: "counted", as: Counted.self) == Counted(n: 2))
            #expect(decodes() == before + 1, "decoded once after the change")
            // The knob: nothing kept, every read decodes.
            let plain = DRSPersistDriver(node: n1, decodedCacheLimit: 0)
            try await plain.set(key: "counted", value: Counted(n: 3), expires: nil)
            let start = decodes()
            for _ in 0..<3 { #expect(try await plain.get(key: "counted", as: Counted.self) == Counted(n: 3)) }
            #expect(decodes() == start + 3)
        }
    }

    @Test("keys that cannot be attribute names are refused")
    func invalidKeys() async throws {
        try await withTwoNodes { n1, _ in
            let driver = DRSPersistDriver(node: n1)
            for key in ["", String(repeating: "k", count: 257), "tab\there"] {
                await #expect(throws: SessionError.self) { try await driver.set(key: key, value: 1, expires: nil) }
            }
        }
    }
}

/// Polls `condition` every 10 ms for up to 10 s.
private func waitUntil(_ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + .seconds(10)
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}
