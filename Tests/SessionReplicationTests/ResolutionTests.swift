import Logging
import NIOCore
import NIOPosix
import SessionReplicationCore
import Testing
@testable import SessionReplication

/// Peers configured by host name: the resolver, the link that follows a name to a new IP,
/// and the listener that admits a named peer only from where its name resolved.
@Suite("Peers by host name")
struct ResolutionTests {
    @Test("a literal is returned as it is; localhost resolves through the system resolver; an unknown name fails naming it")
    func resolver() async throws {
        #expect(try await HostResolver.resolve("10.0.0.7") == ["10.0.0.7"])
        #expect(try await HostResolver.resolve("0:0:0:0:0:0:0:1") == ["::1"])
        let local = try await HostResolver.resolve("localhost")
        #expect(!local.isEmpty && local.allSatisfy { $0 == "127.0.0.1" || $0 == "::1" }, "\(local)")
        let error = await #expect(throws: HostResolver.ResolutionError.self) { try await HostResolver.resolve("no-such-host.invalid") }
        #expect(error?.description.contains("\"no-such-host.invalid\"") == true, "\(error?.description ?? "")")
    }

    @Test("a link to a named peer has no datagram address until resolved, follows a new IP, and stays on an IP still listed")
    func linkFollowsName() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let link = PeerLink(name: "n2", host: "n2.drs.test", port: 7100, membershipPort: 7200, eventLoop: group.next())
        #expect(link.isNamed && link.datagramAddress == nil && link.membershipAddress == nil && link.currentIP == nil)
        #expect(link.resolved(["10.0.0.2"]))
        #expect(link.datagramAddress?.ipAddress == "10.0.0.2" && link.datagramAddress?.port == 7100)
        #expect(link.membershipAddress?.ipAddress == "10.0.0.2" && link.membershipAddress?.port == 7200)
        // Still among the answers: no move (a name with several addresses does not flap).
        #expect(!link.resolved(["10.0.0.9", "10.0.0.2"]))
        #expect(link.currentIP == "10.0.0.2")
        #expect(link.resolved(["10.0.0.21"]))
        #expect(link.datagramAddress?.ipAddress == "10.0.0.21" && link.currentIP == "10.0.0.21")
        #expect(!link.resolved([]))
        // A literal needs no resolution.
        let literal = PeerLink(name: "n3", host: "10.0.0.3", port: 7100, membershipPort: 7200, eventLoop: group.next())
        #expect(!literal.isNamed && literal.currentIP == "10.0.0.3" && literal.datagramAddress?.port == 7100)
    }

    @Test("the listener admits a named peer only from the IP its name last resolved to")
    func listenerFollowsName() {
        let config = ClusterConfiguration(clusterID: "g", keys: .insecure, nodes: [
            NodeEndpoint(name: "n1", address: "n1.drs.test"), NodeEndpoint(name: "n2", address: "n2.drs.test"),
            NodeEndpoint(name: "n3", address: "10.0.0.3"),
        ])
        let policy = InboundPolicy(configuration: config, selfName: "n1")
        let at = { (ip: String) in try! SocketAddress(ipAddress: ip, port: 40000) }
        #expect(policy.maxTotal == 2 * 4 + 4)
        #expect(policy.admit(at("10.0.0.2")) == .unknownAddress)
        #expect(policy.admit(at("10.0.0.3")) == nil)
        policy.locate("n2", at: ["10.0.0.2"])
        #expect(policy.admit(at("10.0.0.2")) == nil)
        policy.locate("n2", at: ["10.0.0.22", "fd00::22"])
        #expect(policy.admit(at("10.0.0.2")) == .unknownAddress)
        #expect(policy.admit(at("::ffff:10.0.0.22")) == nil)
        // Every address a dual-stack name resolves to is admitted.
        #expect(policy.admit(at("fd00::22")) == nil)
    }
}

/// The source address of outgoing replication connections, which the peer's listener
/// checks against its admission list.
@Suite("Outgoing source addresses")
struct SourceAddressTests {
    static func node(address: String, bind: String?) throws -> ReplicationNode {
        var config = ClusterConfiguration(clusterID: "s", keys: ClusterKeys(current: ClusterKeys.generateKey()), nodes: [
            NodeEndpoint(name: "n1", address: address, bind: bind, httpPort: 0, replicationPort: 0, membershipPort: 0),
            NodeEndpoint(name: "n2", address: "127.0.0.72", httpPort: 0, replicationPort: 0, membershipPort: 0),
        ])
        config.http.token = "t"
        return try ReplicationNode(configuration: config, name: "n1", logger: Logger(label: "test"))
    }

    @Test("a wildcard bind connects from the node's address (of the peer's family), a specific bind from itself, a name lets the kernel choose")
    func sourceAddress() async throws {
        // Before: bind 0.0.0.0 bound the source to 0.0.0.0, the kernel picked 127.0.0.1,
        // and the peer refused every connection as from an unknown address.
        let wide = try Self.node(address: "127.0.0.71", bind: "0.0.0.0")
        #expect(wide.sourceAddress(towards: "127.0.0.72")?.ipAddress == "127.0.0.71")
        #expect(wide.sourceAddress(towards: "::1") == nil, "no IPv4 source for an IPv6 peer")
        let six = try Self.node(address: "127.0.0.71", bind: "::")
        #expect(six.sourceAddress(towards: "127.0.0.72")?.ipAddress == "127.0.0.71")
        let specific = try Self.node(address: "127.0.0.71", bind: "127.0.0.81")
        #expect(specific.sourceAddress(towards: "127.0.0.72")?.ipAddress == "127.0.0.81")
        let named = try Self.node(address: "n1.drs.test", bind: "0.0.0.0")
        #expect(named.sourceAddress(towards: "10.0.0.2") == nil)
        #expect(named.sourceAddress(towards: "n2.drs.test") == nil, "an unresolved target")
        for n in [wide, six, specific, named] { await n.shutdown() }
    }
}
