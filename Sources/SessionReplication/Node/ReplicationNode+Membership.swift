import Logging
import NIOCore
import SessionReplicationCore

/// The transport side of membership: its own UDP socket (`membershipPort`); reliable
/// membership messages (the TCP fallback ping, push-pull) ride the replication TCP
/// connection to the peer, sealed like every frame. What they mean is `NodeCore`'s.
extension ReplicationNode {
    /// Where `node` serves the HTTP API: its configured `address` and `httpPort`; `nil`
    /// for a name not in the configuration, for this node itself, or a port of 0 (not
    /// known ahead: tests binding port 0).
    public func httpEndpoint(of node: String) -> (host: String, port: Int)? {
        guard node != endpoint.name, let peer = configuration.node(named: node), peer.httpPort != 0 else { return nil }
        return (peer.address, peer.httpPort)
    }

    /// Every member this node knows of, itself included, as the membership protocol sees
    /// them; configured nodes never heard from are listed as `dead` without an id.
    public func members() -> [MemberInfo] {
        let view = core.read { $0.membership.list }
        var byName: [String: Member] = [:]
        for m in view { byName[m.name] = m }
        return configuration.nodes.sorted { $0.name < $1.name }.map { node in
            let isSelf = node.name == endpoint.name
            let port = isSelf ? (replicationPort ?? node.replicationPort) : node.replicationPort
            let m = byName[node.name]
            return MemberInfo(name: node.name, id: m?.id.description, address: node.authority(port: port),
                              state: m?.status.description ?? "dead", incarnation: m?.incarnation ?? 0, isSelf: isSelf)
        }
    }

    /// The membership state of `peer` (`nil` when never heard of).
    public func memberStatus(_ peer: String) -> MemberStatus? {
        core.read { $0.membership.member(peer)?.status }
    }

    /// Counters of the membership protocol.
    public var membershipCounters: MembershipCounters { core.read { $0.membership.counters } }

    /// Whether the cluster declared this process dead (it rejoins at once, so this is
    /// true only within the event that told it).
    public var isDeclaredDead: Bool { core.read { $0.declaredDead } }

    /// Times this node rejoined under a new id after being declared dead.
    public var rejoins: Int { core.read { $0.rejoins } }

    /// Whether the node is draining before it leaves (see `drain()`).
    public var isDraining: Bool { core.read { $0.draining } }

    /// Leaves the cluster gracefully: every live member is told at once.
    public func leaveCluster() {
        event { core, t, w in core.leave(now: t, wall: w) }
    }

    /// Sends a membership message as process `speaker`: a message decided before this
    /// process rejoined under a new id must not leave under the new id (it speaks the dead
    /// process's view: "n2 is dead" credited to the live new process made a healed
    /// partition's majority drop every session).
    func sendMembership(_ o: MembershipOutgoing, speaker: NodeID) {
        guard !isStopped, let link = links[o.to] else { return }
        let body = MembershipCodec.encode(o.message)
        if o.reliable {
            // Encoded on the link's loop, like every frame of that connection, so counters
            // reach the peer in increasing order.
            link.eventLoop.execute { [self] in
                guard frameCodec.sealer.selfID == speaker,
                      let channel = link.connectedChannel(connect: { host, port in connect(link, host: host, port: port) }) else { return }
                var buffer = ByteBuffer()
                frameCodec.encode(namespace: FrameHeader.membershipNamespace, lane: 0, firstSequence: 0, lowWatermark: 0,
                                  body: body, datagram: false, sender: speaker, into: &buffer)
                channel.writeAndFlush(buffer, promise: nil)
            }
            return
        }
        guard frameCodec.sealer.selfID == speaker, let address = link.membershipAddress, let channel = membershipChannel else { return }
        var buffer = ByteBuffer()
        frameCodec.encode(namespace: FrameHeader.membershipNamespace, lane: 0, firstSequence: 0, lowWatermark: 0,
                          body: body, datagram: true, into: &buffer)
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: address, data: buffer), promise: nil)
    }

    /// Checks and routes a datagram that arrived on the membership socket.
    func receiveMembershipDatagram(_ buffer: ByteBuffer) {
        guard !isStopped else { return }
        let header: FrameHeader, message: MembershipMessage
        switch frameCodec.decode(buffer, datagram: true) {
        case .failure(let reason): countRejection(reason); return
        case .success(.replication): countRejection(.malformed); return
        case .success(.membership(let h, let m)): (header, message) = (h, m)
        }
        guard links[header.senderName] != nil else { countRejection(.unknownSender); return }
        guard acceptMembershipCounter(header) else { countRejection(.replayed); return }
        transport.withLockedValue { $0.framesReceived += 1 }
        event { core, t, w in core.receiveMembership(message, from: header.senderName, id: header.sender, reliable: false, now: t, wall: w) }
    }
}

/// Receives datagrams on the membership socket.
final class MembershipReceiver: FrameReceiver {
    weak let node: ReplicationNode?
    init(node: ReplicationNode) { self.node = node }
    func receive(_ buffer: ByteBuffer, datagram: Bool) { node?.receiveMembershipDatagram(buffer) }
}
