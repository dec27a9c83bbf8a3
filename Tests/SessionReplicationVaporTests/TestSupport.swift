import Foundation
import Logging
import NIOPosix
import SessionReplication
import SessionReplicationCore
import SessionReplicationVapor
import Testing
import Vapor
import VaporTesting

/// Real nodes on 127.0.0.1, ports picked by the kernel, each behind a Vapor application
/// tested in memory (`app.testing()`).
final class VaporCluster: Sendable {
    let nodes: [ReplicationNode]
    let group: MultiThreadedEventLoopGroup

    static func configuration(_ names: [String]) -> ClusterConfiguration {
        var config = ClusterConfiguration(
            clusterID: "vapor", keys: ClusterKeys(current: Array(repeating: 9, count: 32)),
            nodes: names.map { NodeEndpoint(name: $0, address: "127.0.0.1", httpPort: 0, replicationPort: 0, membershipPort: 0) })
        // Many clusters share two cores during the test run: a slower detector (1 s
        // suspicion) keeps starvation from being read as a death ...
        config.membership.probeInterval = .milliseconds(250)
        // ... nor half a second of starvation as the end of a lease (`fenced`).
        config.membership.lease = .seconds(2)
        // ... and answers to a takeover request can take longer than the default second.
        config.replication.handoverTimeout = .seconds(5)
        return config
    }

    /// Creates the nodes of `names`; starts those not in `unstarted` and connects them.
    init(_ names: [String], unstarted: Set<String> = []) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.group = group
        var logger = Logger(label: "vapor-test")
        logger.logLevel = .warning
        let config = Self.configuration(names)
        nodes = try names.map { try ReplicationNode(configuration: config, name: $0, logger: logger, eventLoopGroup: group) }
        for node in nodes where !unstarted.contains(node.nodeName) { try await node.start() }
        connect()
        if unstarted.isEmpty { #expect(await joined(), "the nodes did not join") }
    }

    subscript(name: String) -> ReplicationNode { nodes.first { $0.nodeName == name }! }

    /// Points every started node at every other started one.
    func connect() {
        let started = nodes.filter { $0.replicationPort != nil }
        for a in started {
            for b in started where a !== b {
                a.setPeerEndpoint(b.nodeName, host: "127.0.0.1", port: b.replicationPort!, membershipPort: b.membershipPort)
            }
        }
    }

    /// Waits until every node lists every other alive and holds leases.
    func joined(timeout: Duration = .seconds(60)) async -> Bool {
        await eventually(timeout: timeout) {
            nodes.allSatisfy { n in n.members().allSatisfy { $0.state == "alive" } && n.status().leaseRemainingMs > 0 }
        }
    }

    func shutdown() async {
        for node in nodes { await node.shutdown() }
        try? await group.shutdownGracefully()
    }

    /// Runs `body` with started, joined nodes and shuts them down whatever happens.
    static func with(_ names: [String] = ["n1", "n2"], unstarted: Set<String> = [],
                     _ body: (VaporCluster) async throws -> Void) async throws {
        let cluster = try await VaporCluster(names, unstarted: unstarted)
        do {
            try await body(cluster)
        } catch {
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
    }
}

/// A Vapor application whose sessions live in `node` (started elsewhere unless
/// `managesNode`), with the routes the tests use; booted; shut down after `body`.
func withDRSApp(on node: ReplicationNode, configuration: DRSSessionDriver.Configuration = .init(), managesNode: Bool = false,
                _ body: (Application) async throws -> Void) async throws {
    let app = try await Application.make(.testing)
    app.logger.logLevel = .error  // the answers tests provoke on purpose stay quiet
    do {
        app.sessions.use(.drs(node, configuration: configuration, managesNode: managesNode))
        app.middleware.use(app.sessions.middleware)
        TestRoutes.register(on: app, node: node)
        try await app.asyncBoot()
        try await body(app)
    } catch {
        try? await app.asyncShutdown()
        throw error
    }
    try await app.asyncShutdown()
}

/// Routes that read and write the session.
enum TestRoutes {
    static func register(on app: Application, node: ReplicationNode) {
        // The session's data as JSON.
        app.get("session") { request in
            request.session.data.snapshot
        }
        app.post("set", ":key", ":value") { request in
            request.session.data[try request.parameters.require("key")] = try request.parameters.require("value")
            return request.session.data.snapshot
        }
        app.post("remove", ":key") { request in
            request.session.data[try request.parameters.require("key")] = nil
            return request.session.data.snapshot
        }
        app.post("destroy") { request -> HTTPStatus in
            request.session.destroy()
            return .ok
        }
        // A key that cannot be an attribute name.
        app.post("bad-key") { request -> HTTPStatus in
            request.session.data["bad\u{7}key"] = "x"
            return .ok
        }
        // Sets `:key` while another writer changes `other` in the cluster after this
        // request read the session (as a concurrent request on the same session would).
        app.post("race", ":key", ":value") { request in
            guard let id = request.session.id.flatMap(DRSSessionDriver.clusterID(of:)) else { throw Abort(.badRequest) }
            _ = try await node.withSession(id) { $0.set("other", Array("theirs".utf8)) }
            request.session.data[try request.parameters.require("key")] = try request.parameters.require("value")
            return request.session.data.snapshot
        }
    }
}

extension TestingHTTPResponse {
    /// The raw `Set-Cookie` header.
    var setCookie: String? { headers.first(name: .setCookie) }

    /// The value of the `DRSSESSIONID` cookie set by this response.
    var sessionCookie: String? { headers.setCookie?["DRSSESSIONID"]?.string }

    /// The body as a `[String: String]`.
    var data: [String: String] { (try? JSONDecoder().decode([String: String].self, from: Data(body.readableBytesView))) ?? [:] }
}

/// The `Cookie` header for `value`.
func cookie(_ value: String?) -> HTTPHeaders {
    guard let value else { return [:] }
    return ["Cookie": "DRSSESSIONID=\(value)"]
}

/// The cluster id named by a cookie value.
func clusterID(_ cookie: String?) throws -> SessionReplicationCore.SessionID {
    try #require(cookie.flatMap { SessionReplicationCore.SessionID(cookieValue: $0) }, "no session cookie: \(cookie ?? "nil")")
}

/// Polls `condition` every 5 ms until it holds or `timeout` passes; returns whether it
/// held. Waits for replication; never asserts on timing.
func eventually(timeout: Duration = .seconds(60), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}

extension SessionLookup {
    var ownedAttributes: [String: [UInt8]]? { if case .owned(let s) = self { s.attributes } else { nil } }
    var backupAttributes: [String: [UInt8]]? { if case .backup(let s, _) = self { s.attributes } else { nil } }
    var isEnded: Bool { if case .ended = self { true } else { false } }
}
