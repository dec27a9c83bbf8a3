import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import SessionReplicationCore
import Testing
@testable import SessionReplication

/// The replication listener's first handler, on an embedded channel playing the peer.
@Suite("The replication listener refuses strangers, floods and stalls")
struct InboundGuardTests {
    static let config = ClusterConfiguration(clusterID: "g", keys: .insecure, nodes: [
        NodeEndpoint(name: "n1", address: "127.0.0.1"), NodeEndpoint(name: "n2", address: "10.0.0.2"), NodeEndpoint(name: "n3", address: "10.0.0.3"),
    ])

    final class Probe: Sendable {
        let rejected = NIOLockedValueBox<[FrameRejection]>([])
        let delivered = NIOLockedValueBox<[Int]>([])
        let good: Bool
        init(authenticates good: Bool = true) { self.good = good }
    }

    static func channel(_ policy: InboundPolicy, _ probe: Probe, from address: String) async throws -> EmbeddedChannel {
        let handler = InboundFrameGuard(
            policy: policy, maxFrameBytes: 16 << 20,
            authenticate: { frame in probe.good && frame.readableBytes < 100 ? nil : .badSeal },
            reject: { reason in probe.rejected.withLockedValue { $0.append(reason) } },
            deliver: { frame in probe.delivered.withLockedValue { $0.append(frame.readableBytes) } })
        let channel = EmbeddedChannel(handler: handler)
        try await channel.connect(to: SocketAddress(ipAddress: address, port: 40000)).get()
        return channel
    }

    static func frame(_ size: Int) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeInteger(UInt32(size), endianness: .little)
        b.writeRepeatingByte(7, count: size)
        return b
    }

    @Test("a connection from an address no member has is closed at once and counted")
    func strangersAreRefused() async throws {
        // Before: every address was accepted, and 2,000 idle connections stayed open.
        let probe = Probe()
        let channel = try await Self.channel(InboundPolicy(configuration: Self.config, selfName: "n1"), probe, from: "10.0.0.99")
        #expect(!channel.isActive)
        #expect(probe.rejected.withLockedValue { $0 } == [.unknownAddress])
    }

    @Test("at most 4 connections per peer address; one more is refused until one closes")
    func perPeerCap() async throws {
        let policy = InboundPolicy(configuration: Self.config, selfName: "n1")
        let probe = Probe()
        var open: [EmbeddedChannel] = []
        for _ in 0..<4 { open.append(try await Self.channel(policy, probe, from: "10.0.0.2")) }
        #expect(open.allSatisfy(\.isActive) && policy.openCount == 4)
        let fifth = try await Self.channel(policy, probe, from: "10.0.0.2")
        #expect(!fifth.isActive)
        #expect(probe.rejected.withLockedValue { $0 } == [.tooManyConnections])
        // Another peer keeps its own allowance.
        #expect(try await Self.channel(policy, probe, from: "10.0.0.3").isActive)
        _ = try await open[0].close()
        #expect(try await Self.channel(policy, probe, from: "10.0.0.2").isActive)
        #expect(policy.maxTotal == 2 * 4 + 4)
    }

    @Test("before a frame authenticates at most 64 KiB is buffered; afterwards frames up to the maximum pass")
    func preAuthenticationBuffer() async throws {
        let policy = InboundPolicy(configuration: Self.config, selfName: "n1")
        // Before: a stranger's length prefix made the node buffer up to 16 MiB per connection.
        let probe = Probe()
        let stranger = try await Self.channel(policy, probe, from: "10.0.0.2")
        var big = ByteBuffer()
        big.writeInteger(UInt32(1 << 20), endianness: .little)
        big.writeRepeatingByte(1, count: 1000)
        try await stranger.writeInbound(big)
        #expect(!stranger.isActive)
        #expect(probe.rejected.withLockedValue { $0 } == [.oversized])

        let member = try await Self.channel(policy, probe, from: "10.0.0.3")
        var both = Self.frame(10)               // the small first frame authenticates
        var large = Self.frame(1 << 20)         // then a 1 MiB frame is read whole
        both.writeBuffer(&large)
        try await member.writeInbound(both)
        #expect(member.isActive)
        #expect(probe.delivered.withLockedValue { $0 } == [10, 1 << 20])
    }

    @Test("a first frame that does not authenticate closes the connection, counted by its reason")
    func unauthenticatedFirstFrame() async throws {
        let probe = Probe(authenticates: false)
        let channel = try await Self.channel(InboundPolicy(configuration: Self.config, selfName: "n1"), probe, from: "10.0.0.2")
        try await channel.writeInbound(Self.frame(10))
        #expect(!channel.isActive)
        #expect(probe.rejected.withLockedValue { $0 } == [.badSeal])
        #expect(probe.delivered.withLockedValue { $0 }.isEmpty)
    }

    @Test("a connection that sends nothing authenticated in time, or stalls inside a frame, is closed")
    func stallsAreClosed() async throws {
        let policy = InboundPolicy(configuration: Self.config, selfName: "n1")
        let probe = Probe()
        let silent = try await Self.channel(policy, probe, from: "10.0.0.2")
        (silent.eventLoop as! EmbeddedEventLoop).advanceTime(by: .seconds(6))
        #expect(!silent.isActive)
        #expect(policy.openCount == 0)

        let slow = try await Self.channel(policy, probe, from: "10.0.0.2")
        try await slow.writeInbound(Self.frame(10))
        (slow.eventLoop as! EmbeddedEventLoop).advanceTime(by: .seconds(600))
        #expect(slow.isActive, "an authenticated peer may stay quiet")
        var partial = ByteBuffer()
        partial.writeInteger(UInt32(1000), endianness: .little)
        partial.writeRepeatingByte(1, count: 10)
        try await slow.writeInbound(partial)
        (slow.eventLoop as! EmbeddedEventLoop).advanceTime(by: .seconds(31))
        #expect(!slow.isActive)
        #expect(probe.rejected.withLockedValue { $0 } == [.timedOut, .timedOut])
    }
}
