import Logging
import NIOCore
import NIOPosix
import SessionReplication
import SessionReplicationCore
import Testing

/// Several `ReplicationNode`s in one process on 127.0.0.1, ports chosen by the kernel.
final class TestCluster: Sendable {
    let nodes: [ReplicationNode]
    let group: MultiThreadedEventLoopGroup

    static let key: [UInt8] = (0..<32).map { UInt8($0 &* 7 &+ 3) }

    static func configuration(names: [String], _ configure: (inout ReplicationPolicy) -> Void = { _ in }) -> ClusterConfiguration {
        var policy = ReplicationPolicy()
        // Dozens of clusters share two cores during the test run: answers to a takeover
        // request can take longer than the default second.
        policy.handoverTimeout = .seconds(5)
        configure(&policy)
        // A cluster id of its own: dozens of clusters with the same key run at once, and a
        // port a stopped node freed can be bound by a node of another test; with one id
        // for all, that node could answer the first cluster's lease requests (the likely
        // cause of a lone node under `promotion: majority` regaining a quorum once).
        var config = ClusterConfiguration(
            clusterID: "test-\(UInt64.random(in: 0...UInt64.max))",
            keys: ClusterKeys(current: key),
            nodes: names.map { NodeEndpoint(name: $0, address: "127.0.0.1", httpPort: 0, replicationPort: 0, membershipPort: 0) },
            replication: policy)
        config.membership = testMembership
        return config
    }

    /// Starts `names` (all of the configuration's nodes unless `only` says otherwise).
    init(_ configuration: ClusterConfiguration, only: [String]? = nil) async throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let names = only ?? configuration.nodes.map(\.name)
        var nodes: [ReplicationNode] = []
        for name in names {
            let node = try ReplicationNode(configuration: configuration, name: name, logger: logger, eventLoopGroup: group)
            try await node.start()
            nodes.append(node)
        }
        self.nodes = nodes
        for a in nodes {
            for b in nodes where a !== b {
                a.setPeerEndpoint(b.endpoint.name, host: "127.0.0.1", port: b.replicationPort!, membershipPort: b.membershipPort)
            }
        }
        // A whole cluster starts joined (every node lists every other alive), so tests
        // begin from the same state however loaded the machine is.
        // And ready (every lease current): a starved start must not answer the test's
        // first request `fenced`.
        if only == nil {
            _ = await joined(timeout: .seconds(60))
            _ = await eventually(timeout: .seconds(60)) { nodes.allSatisfy(\.isReady) }
        }
    }

    /// Waits until every node lists every other as alive (membership joined, links up).
    func joined(timeout: Duration = .seconds(60)) async -> Bool {
        await eventually(timeout: timeout) {
            nodes.allSatisfy { n in n.members().filter { m in nodes.contains { $0.endpoint.name == m.name } }.allSatisfy { $0.state == "alive" } }
        }
    }

    subscript(name: String) -> ReplicationNode { nodes.first { $0.endpoint.name == name }! }

    func shutdown() async {
        for n in nodes { await n.shutdown() }
        try? await group.shutdownGracefully()
    }

    /// Runs `body` with a started cluster and shuts it down whatever happens.
    static func with<T>(_ configuration: ClusterConfiguration, only: [String]? = nil, _ body: (TestCluster) async throws -> T) async throws -> T {
        let cluster = try await TestCluster(configuration, only: only)
        do {
            let result = try await body(cluster)
            await cluster.shutdown()
            return result
        } catch {
            await cluster.shutdown()
            throw error
        }
    }
}

/// The test suite runs dozens of clusters at once on two cores, in a debug build: a
/// member's threads can be starved for longer than the default suspicion timeout
/// (400 ms). Tests use a slower detector (1 s suspicion) so that only the faults they
/// cause are detected; `drs bench` and the soak measure the defaults.
let testMembership: MembershipSettings = {
    var m = MembershipSettings()
    m.probeInterval = .milliseconds(250)
    // Dozens of clusters, the simulator and real drs processes share two cores during
    // the test run: a node starved for half a second must not lose its leases (and
    // answer `fenced`) in tests that are not about leases.
    m.lease = .seconds(2)
    return m
}()

/// Runs one write through `node`, again while it answers `fenced`: a node starved by
/// the test run can let its leases lapse, and a fenced write commits nothing, so the
/// retry cannot apply a change twice. Any other error is thrown; gives up after 60 s.
func writeUnlessFenced(_ node: ReplicationNode, _ id: SessionID, _ body: (inout SessionScope) throws -> Void) async throws {
    try await unlessFenced(node) { _ = try await node.withSession(id, body) }
}

/// Runs `operation` on `node`, again while it throws `fenced` (nothing applied: see
/// `writeUnlessFenced`), waiting until the node is ready between tries; any other error
/// is thrown, and after 60 s the `fenced` one.
func unlessFenced<T>(_ node: ReplicationNode, _ operation: () async throws -> T) async throws -> T {
    let deadline = ContinuousClock.now + .seconds(60)
    while true {
        do {
            return try await operation()
        } catch let e as SessionError where e.code == .fenced && ContinuousClock.now < deadline {
            _ = await eventually { node.isReady }
        }
    }
}

/// Polls `condition` every 5 ms until it holds or `timeout` passes; returns whether it held.
/// Used to wait for asynchronous replication; never to assert on timing.
func eventually(timeout: Duration = .seconds(60), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}

extension HeldCopy {
    var backupState: SessionState? { if case .backup(let s) = self { return s } else { return nil } }
    var ownerState: SessionState? { if case .owner(let s) = self { return s } else { return nil } }
}
