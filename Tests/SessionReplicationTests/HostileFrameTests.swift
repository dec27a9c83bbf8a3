import NIOCore
import NIOPosix
@testable import SessionReplication
@testable import SessionReplicationCore
import SessionReplicationCore
import Testing

@Suite("Hostile frames over real sockets are dropped and counted", .timeLimit(.minutes(10)))
struct HostileFrameTests {
    /// A frame as peer `n2` would seal it, with the given key and cluster.
    static func frame(key: [UInt8]?, cluster: String, datagram: Bool, sender: NodeID = NodeID(42), name: String = "n2") -> ByteBuffer {
        let keys = key.map { ClusterKeys(current: $0) } ?? .insecure
        let codec = FrameCodec(sealer: FrameSealer(keys: keys, clusterID: cluster, selfID: sender), selfName: name, limits: WireLimits())
        let receipt = MessageCodec.encode(.receipt(Receipt(lane: 0, through: 0)))
        var buffer = ByteBuffer()
        codec.encode(lane: 0, firstSequence: 0, lowWatermark: 0, body: FrameBody.encode(data: [], control: [receipt]), datagram: datagram, into: &buffer)
        return buffer
    }

    /// Sends `datagrams` one at a time, each once `counted` (what the node has counted
    /// so far) has moved past the one before: a starved run lost some of a burst, and a
    /// datagram that never arrived was never counted, so it is sent again (up to 5 times,
    /// 10 s apart).
    static func sendDatagrams(_ datagrams: [ByteBuffer], to port: Int, counted: () -> Int) async throws {
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        for d in datagrams {
            let before = counted()
            for _ in 0..<5 {
                try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: address, data: d))
                if await eventually(timeout: .seconds(10), { counted() > before }) { break }
            }
        }
        try await channel.close()
    }

    /// Sends `bytes` on a fresh connection. The node admits few connections per peer
    /// address: on a starved run it may not have seen the previous test connection close
    /// yet and closes this one unread (refused, nothing decoded); then it tries again.
    static func sendStream(_ bytes: ByteBuffer, to port: Int) async throws {
        var attempt = 0
        while true {
            attempt += 1
            do {
                let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
                try await channel.writeAndFlush(bytes)
                try? await Task.sleep(for: .milliseconds(50))
                try? await channel.close()
                return
            } catch where attempt < 50 {
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    @Test("garbage, another cluster, a wrong key, an unsealed frame, an unknown sender and a replay are each counted")
    func datagramRejections() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2"])
        try await TestCluster.with(config, only: ["n1"]) { cluster in
            let n1 = cluster["n1"]
            let port = n1.replicationPort!
            let good = Self.frame(key: TestCluster.key, cluster: config.clusterID, datagram: true)
            var garbage = ByteBuffer(); garbage.writeBytes([0x44, 0x52, 1, 0, 9, 9, 9])
            try await Self.sendDatagrams([
                garbage,
                Self.frame(key: TestCluster.key, cluster: "other", datagram: true),
                Self.frame(key: Array(repeating: 9, count: 32), cluster: config.clusterID, datagram: true),
                Self.frame(key: nil, cluster: config.clusterID, datagram: true),
                Self.frame(key: TestCluster.key, cluster: config.clusterID, datagram: true, sender: NodeID(77), name: "zz"),
                good, good,
            ], to: port) { n1.counters.rejectedTotal + n1.counters.framesReceived }
            #expect(await eventually { n1.counters.rejectedTotal >= 6 && n1.counters.framesReceived >= 1 })
            let r = n1.counters.rejected
            #expect(r[.malformed] == 1)
            #expect(r[.wrongCluster] == 1)
            #expect(r[.badSeal] == 1)
            #expect(r[.sealMismatch] == 1)
            #expect(r[.replayed] == 1)
            #expect(r[.unknownSender] == 1)
            #expect(n1.counters.framesReceived == 1)
            // The node still serves.
            _ = try await n1.createSession(attributes: ["ok": [1]])
        }
    }

    @Test("a TCP length prefix beyond the frame limit closes the connection and is counted")
    func oversizedStreamFrame() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2"])
        try await TestCluster.with(config, only: ["n1"]) { cluster in
            let n1 = cluster["n1"]
            var huge = ByteBuffer()
            huge.writeInteger(UInt32.max, endianness: .little)
            huge.writeBytes([1, 2, 3])
            try await Self.sendStream(huge, to: n1.replicationPort!)
            var truncated = Self.frame(key: TestCluster.key, cluster: config.clusterID, datagram: false)
            truncated.moveWriterIndex(to: truncated.writerIndex - 5)
            try await Self.sendStream(truncated, to: n1.replicationPort!)
            let stream = Self.frame(key: TestCluster.key, cluster: config.clusterID, datagram: false)
            try await Self.sendStream(stream, to: n1.replicationPort!)
            #expect(await eventually { n1.counters.rejected[.oversized] == 1 && n1.counters.framesReceived == 1 })
            // A datagram-flagged frame on TCP is malformed.
            var wrongTransport = Self.frame(key: TestCluster.key, cluster: config.clusterID, datagram: true, sender: NodeID(43))
            var prefixed = ByteBuffer()
            prefixed.writeInteger(UInt32(wrongTransport.readableBytes), endianness: .little)
            prefixed.writeBuffer(&wrongTransport)
            try await Self.sendStream(prefixed, to: n1.replicationPort!)
            #expect(await eventually { n1.counters.rejected[.malformed] == 1 })
        }
    }
}

/// NIO closes a datagram socket when a send fails with an unrecoverable error (the EPERM
/// a firewall's drop rule returns, or EACCES for a broadcast without SO_BROADCAST). Found
/// by `drs drill partition`: every node's membership socket closed during the partition,
/// no lease was granted after the heal, and the whole cluster stayed fenced.
@Suite("A UDP socket closed by a send error is bound again", .timeLimit(.minutes(10)))
struct SocketRebindTests {
    @Test("membership and replication sockets closed by a failed send are bound again and keep working")
    func rebindAfterSendError() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2"]) { $0.mode = .bestEffort; $0.transport = .udp }
        try await TestCluster.with(config) { cluster in
            let n1 = cluster["n1"], n2 = cluster["n2"]
            let broadcast = try SocketAddress(ipAddress: "255.255.255.255", port: 9)
            let membership = try #require(n1.membershipChannel)
            let datagram = try #require(n1.state.withLockedValue { $0.datagram })
            // A send the kernel refuses (EACCES: broadcast without SO_BROADCAST).
            for channel in [membership, datagram] {
                var b = channel.allocator.buffer(capacity: 1)
                b.writeInteger(UInt8(1))
                try? await channel.writeAndFlush(AddressedEnvelope(remoteAddress: broadcast, data: b))
            }
            #expect(await eventually { n1.counters.socketRebinds == 2 }, "rebinds: \(n1.counters.socketRebinds)")
            #expect(n1.membershipChannel !== membership)
            #expect(n1.state.withLockedValue { $0.datagram } !== datagram)
            // Membership still runs: past a whole lease (2 s in tests) every grant held
            // now came over the new socket. Best-effort replication still arrives over UDP.
            try await Task.sleep(for: testMembership.lease + .seconds(1))
            #expect(n1.status().state == "serving", "\(n1.status())")
            #expect(n1.status().leaseRemainingMs > 0)
            let sent = n1.counters.datagramsSent
            let id = try #require(try await n1.createSession(attributes: ["a": [1]]).state?.id)
            #expect(await eventually { n2.copy(of: id)?.backupState != nil })
            #expect(n1.counters.datagramsSent > sent)
        }
    }
}

/// A request that waited across a rejoin (the node dropped everything it held) must not
/// answer "not found" from the emptied store. Found by `drs drill partition` under
/// `promotion: majority`: reads that waited for a quorum on the cut-off node answered
/// 404 for live sessions when it rejoined.
@Suite("A request across a rejoin answers session-unavailable", .timeLimit(.minutes(10)))
struct RejoinDuringRequestTests {
    @Test("after a rejoin, what the node held is gone and a waiting request is told to retry, not that the session does not exist")
    func rejoinMidRequest() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2"])
        try await TestCluster.with(config) { cluster in
            let n1 = cluster["n1"]
            let id = try #require(try await n1.createSession(attributes: ["a": [1]]).state?.id)
            let (t, w) = (n1.now, n1.wall)
            // A scope on the session is in progress (its body runs); a read waits behind it.
            let actions: [NodeAction] = n1.withCore { core in
                var a = core.beginScope(RequestID(1 << 40), id, ifMatch: nil, now: t, wall: w)
                a += core.read(RequestID((1 << 40) + 1), id, now: t, wall: w)
                core.rejoin()
                return a + core.takeActions()
            }
            #expect(n1.copy(of: id) == nil, "a rejoin drops every session held")
            let failed = actions.compactMap { a -> SessionError? in
                if case .complete(let r, .failed(let e)) = a, r.rawValue >= 1 << 40 { return e }
                return nil
            }
            #expect(failed.count == 2 && failed.allSatisfy { $0.code == .sessionUnavailable }, "\(actions)")
            // The body's commit after the rejoin applies nothing and says to retry.
            let late = n1.withCore { $0.commitScope(RequestID(1 << 40), .changes(ChangeSet(), maxInactiveInterval: nil), now: t, wall: w) }
            #expect(late == [.complete(RequestID(1 << 40), .failed(SessionError(.sessionUnavailable, "this node rejoined the cluster while the request waited; nothing was applied; retry")))])
        }
    }
}
