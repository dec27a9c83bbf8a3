import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SessionReplicationCore

/// The NIO shell of `Membership`: its own UDP socket (`membershipPort`) and its own event
/// loop, so a flood of replication traffic never delays a probe or its ack. Reliable
/// membership messages (the TCP fallback ping, push-pull) ride the replication TCP
/// connection to the peer, sealed like every frame.
extension ReplicationNode {
    /// Binds the membership socket and starts the membership timer. Throws if the
    /// socket cannot be bound.
    func startMembership() async throws {
        let channel = try await bindMembership(port: endpoint.membershipPort)
        let tick = membershipLoop.scheduleRepeatedTask(initialDelay: .milliseconds(1), delay: .milliseconds(2)) { [weak self] _ in
            self?.membershipTick()
        }
        setMembershipChannel(channel, tick: tick)
    }

    /// Binds the membership socket on `port` and re-binds it whenever it closes while
    /// the node runs (see `bindDatagram`).
    func bindMembership(port: Int) async throws -> any Channel {
        let channel = try await DatagramBootstrap(group: membershipLoop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(.socketOption(.so_rcvbuf), value: 1 << 20)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DatagramFrameHandler(receiver: MembershipReceiver(node: self)))
                }
            }
            .bind(host: endpoint.address, port: port).get()
        let bound = channel.localAddress?.port ?? port
        rebindOnClose(channel, "membership UDP", port: bound, bind: { try await $0.bindMembership(port: bound) },
                      install: { state, fresh in state.membershipChannel = fresh })
        return channel
    }

    /// The port the membership socket is bound to (useful when configured as 0).
    public var membershipPort: Int? { membershipChannel?.localAddress?.port }

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
        let view = membership.withLockedValue { $0.list }
        var byName: [String: Member] = [:]
        for m in view { byName[m.name] = m }
        return configuration.nodes.sorted { $0.name < $1.name }.map { node in
            let isSelf = node.name == endpoint.name
            let port = isSelf ? (replicationPort ?? node.replicationPort) : node.replicationPort
            let m = byName[node.name]
            return MemberInfo(name: node.name, id: m?.id.description, address: "\(node.address):\(port)",
                              state: m?.status.description ?? "dead", incarnation: m?.incarnation ?? 0, isSelf: isSelf)
        }
    }

    /// The membership state of `peer` (`nil` when never heard of).
    public func memberStatus(_ peer: String) -> MemberStatus? {
        membership.withLockedValue { $0.member(peer)?.status }
    }

    /// Counters of the membership protocol.
    public var membershipCounters: MembershipCounters { membership.withLockedValue { $0.counters } }

    /// Leaves the cluster gracefully: every live member is told at once.
    public func leaveCluster() {
        membershipLoop.execute { [self] in
            let t = now
            let out = membership.withLockedValue { m in
                m.leave(now: t)
                return m.takeOutput()
            }
            perform(out)
        }
    }

    func membershipTick() {
        guard !isStopped else { return }
        let t = now
        let (out, live) = membership.withLockedValue { m -> ((outgoing: [MembershipOutgoing], events: [MembershipEvent]), [String]) in
            guard t >= m.nextDeadline else { return (([], []), m.liveNames) }
            m.tick(now: t)
            return (m.takeOutput(), m.liveNames)
        }
        perform(out)
        for r in leases.withLockedValue({ $0.requests(to: live, now: t) }) {
            sendMembership(MembershipOutgoing(to: r.peer, message: .leaseRequest(sequence: r.sequence), reliable: false))
        }
    }

    /// Hands a membership message to the machine (on the membership loop).
    func receiveMembership(_ message: MembershipMessage, header: FrameHeader, reliable: Bool) {
        let work = { [self] in
            let t = now
            let (out, heldDead) = membership.withLockedValue { m in
                m.receive(message, from: header.senderName, id: header.sender, reliable: reliable, now: t)
                let known = m.member(header.senderName)
                let dead = known.map { $0.id > header.sender || ($0.id == header.sender && !$0.status.isLive) } ?? false
                return (m.takeOutput(), dead || m.status != .alive)
            }
            perform(out)
            switch message {
            case .leaseRequest(let seq):
                if leases.withLockedValue({ $0.onRequest(from: header.senderName, heldDead: heldDead, now: t) }) {
                    sendMembership(MembershipOutgoing(to: header.senderName, message: .leaseGrant(sequence: seq), reliable: reliable))
                }
            case .leaseGrant(let seq):
                leases.withLockedValue { $0.onGrant(from: header.senderName, sequence: seq) }
            default:
                break
            }
        }
        if membershipLoop.inEventLoop { work() } else { membershipLoop.execute(work) }
    }

    func perform(_ out: (outgoing: [MembershipOutgoing], events: [MembershipEvent])) {
        // A process declared dead says nothing more: its last messages would leave under
        // the new id it rejoins with, and speak the dead process's view for the new one.
        let dying = out.events.contains { if case .selfDeclaredDead = $0 { return true } else { return false } }
        for o in out.outgoing where !dying { sendMembership(o) }
        for e in out.events { handle(e) }
    }

    func sendMembership(_ o: MembershipOutgoing) {
        guard !isStopped, let link = links[o.to] else { return }
        let body = MembershipCodec.encode(o.message)
        // The process that said it: a message still queued when this process is declared
        // dead and rejoins under a new id must not leave under the new id (it speaks the
        // dead process's view: "n2 is dead" credited to the live new process made a healed
        // partition's majority drop every session).
        let speaker = frameCodec.sealer.selfID
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
        guard let address = link.membershipAddress, let channel = membershipChannel else { return }
        var buffer = ByteBuffer()
        frameCodec.encode(namespace: FrameHeader.membershipNamespace, lane: 0, firstSequence: 0, lowWatermark: 0,
                          body: body, datagram: true, into: &buffer)
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: address, data: buffer), promise: nil)
    }

    func handle(_ event: MembershipEvent) {
        switch event {
        case .alive(let name, let id):
            logger.info("member alive", metadata: ["drs.peer": "\(name)", "drs.peer.id": "\(id)"])
            // A new process under a name whose old process was never declared gone: the
            // old one departed (its sessions are failed over), then the new one joins.
            let previous = state.withLockedValue { s -> NodeID? in
                defer { s.memberIDs[name] = id }
                return s.memberIDs[name]
            }
            if let previous, previous != id {
                logger.notice("member restarted under a new process id: failing over its old process", metadata: ["drs.peer": "\(name)"])
                memberGone(name, id: previous)
            }
            let isNew = livePeers.withLockedValue { $0.insert(name).inserted }
            if isNew { leases.withLockedValue { $0.restore(name) } }
            for shard in shards { shard.withCore { $0.memberReturned(name) } }
            refreshReachability(name)
            resumeDeferredFailovers(returning: name, id: id)
        case .suspect(let name, let id):
            logger.info("member suspected", metadata: ["drs.peer": "\(name)", "drs.peer.id": "\(id)"])
            _ = livePeers.withLockedValue { $0.insert(name) }
        case .dead(let name, let id), .left(let name, let id):
            logger.notice("member \(event.isLeft ? "left" : "declared dead")", metadata: ["drs.peer": "\(name)", "drs.peer.id": "\(id)"])
            _ = livePeers.withLockedValue { $0.remove(name) }
            state.withLockedValue { if $0.memberIDs[name] == id { $0.memberIDs[name] = nil } }
            refreshReachability(name)
            memberGone(name, id: id)
        case .selfDeclaredDead:
            selfDeclaredDead()
        }
    }

    /// A peer counts as reachable while its connection is up and membership does not
    /// hold it dead or left.
    func refreshReachability(_ peer: String) {
        let live = membership.withLockedValue { $0.member(peer)?.status.isLive ?? true }
        setReachable(peer, live && (links[peer]?.isConnected ?? false))
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
        receiveMembership(message, header: header, reliable: false)
    }
}

extension ReplicationNode {
    /// A member was declared dead or left: its streams end, sessions it backed get new
    /// backups, and sessions it owned whose first live backup is this node are promoted.
    func memberGone(_ name: String, id: NodeID) {
        let t = now
        let after = leases.withLockedValue { $0.grantsExpire(for: name) }
        let mayPromote = !requiresQuorum || seesMajority()
        if !mayPromote {
            state.withLockedValue { $0.deferredFailovers[name] = id }
            logger.warning("no majority of voters alive: not promoting the sessions of a departed member (promotion: majority)",
                           metadata: ["drs.peer": "\(name)"])
        }
        var promoted = 0, rereplicated = 0
        var outcomes: [ReplicaShard.FailoverOutcome] = []
        for shard in shards {
            let out = shard.withCore { $0.memberDeparted(name, now: t, promoteAfter: after, mayPromote: mayPromote) }
            shard.complete(out.completed)
            flushPending(shard)
            outcomes.append(out)
            promoted += out.promoted.count
            rereplicated += out.rereplicated.count
        }
        sendFailover(outcomes, oldOwner: name)
        logger.notice("failover", metadata: ["drs.peer": "\(name)", "drs.promoted": "\(promoted)", "drs.rereplicated": "\(rereplicated)"])
    }

    /// A member is alive: if it is the same process whose failover was deferred, it kept
    /// its sessions and nothing is promoted; and once this node sees a majority again,
    /// deferred failovers of members still gone run.
    func resumeDeferredFailovers(returning name: String, id: NodeID) {
        guard requiresQuorum else { return }
        let due: [String: NodeID] = state.withLockedValue { s in
            if s.deferredFailovers[name] == id { s.deferredFailovers[name] = nil }
            return s.deferredFailovers
        }
        guard !due.isEmpty, seesMajority() else { return }
        let statuses = peerStatuses()
        for (member, old) in due.sorted(by: { $0.key < $1.key }) where statuses[member] != .alive || member == name {
            state.withLockedValue { $0.deferredFailovers[member] = nil }
            memberGone(member, id: old)
            // A new process under the same name: it backs sessions again.
            if member == name { for shard in shards { shard.withCore { $0.memberReturned(name) } } }
        }
    }

    /// Another member declared this process dead: it drops what it holds and rejoins
    /// under a new node id (see `rejoin`).
    func selfDeclaredDead() {
        rejoin()
    }
}

extension ReplicationNode {
    /// A taker's prepare: each shard answers for its sessions; this node stops granting
    /// the old owner leases and tells how long ago it last did.
    func onPrepare(_ request: PrepareRequest, from taker: String) {
        var entries: [PromiseReply.Entry] = []
        var byShard: [Int: [PrepareRequest.Entry]] = [:]
        for e in request.entries { byShard[Int(e.id.stableHash % UInt64(shards.count)), default: []].append(e) }
        for (i, part) in byShard.sorted(by: { $0.key < $1.key }) {
            entries += shards[i].withCore { $0.onPrepare(from: taker, PrepareRequest(oldOwner: request.oldOwner, entries: part)) }
        }
        let t = now
        let since = leases.withLockedValue { l -> UInt32 in
            l.revoke(request.oldOwner)
            return l.lastGranted[request.oldOwner].map { UInt32(clamping: (t - $0).millisecondsClamped) } ?? .max
        }
        links[taker]?.addControl(.promise(PromiseReply(oldOwner: request.oldOwner, sinceGrantMs: since, entries: entries)))
        scheduleFlush(taker)
    }

    /// Sends what failover asks of other holders: prepares, and hints to the first live
    /// holder of sessions this node is not first for.
    func sendFailover(_ outcomes: [ReplicaShard.FailoverOutcome], oldOwner: String) {
        var prepares: [String: [PrepareRequest.Entry]] = [:]
        var hints: [String: [PromiseReply.Entry]] = [:]
        for out in outcomes {
            for (holder, entries) in out.prepares { prepares[holder, default: []] += entries }
            for (holder, entries) in out.hints { hints[holder, default: []] += entries }
        }
        for (holder, entries) in prepares.sorted(by: { $0.key < $1.key }) {
            links[holder]?.addControl(.prepare(PrepareRequest(oldOwner: oldOwner, entries: entries)))
            scheduleFlush(holder)
        }
        for (holder, entries) in hints.sorted(by: { $0.key < $1.key }) {
            links[holder]?.addControl(.promise(PromiseReply(oldOwner: oldOwner, sinceGrantMs: .max, entries: entries)))
            scheduleFlush(holder)
        }
    }

    /// A holder's promise: each shard adopts fresher copies and schedules promotions.
    /// Entries no takeover here asked for are hints (a holder whose copy names this
    /// node first): this node keeps the fresher copy and takes it over if it holds the
    /// old owner departed.
    func onPromise(_ reply: PromiseReply, from holder: String) {
        var byShard: [Int: [PromiseReply.Entry]] = [:]
        for e in reply.entries { byShard[Int(e.id.stableHash % UInt64(shards.count)), default: []].append(e) }
        let t = now
        let after = leases.withLockedValue { $0.grantsExpire(for: reply.oldOwner) }
        var outcomes: [ReplicaShard.FailoverOutcome] = []
        for (i, part) in byShard.sorted(by: { $0.key < $1.key }) {
            let r = PromiseReply(oldOwner: reply.oldOwner, sinceGrantMs: reply.sinceGrantMs, entries: part)
            let out = shards[i].withCore { core -> ReplicaShard.FailoverOutcome in
                let unasked = core.onPromise(from: holder, r, now: t, lease: configuration.membership.lease)
                return core.onTakeoverHint(oldOwner: reply.oldOwner, entries: unasked, now: t, promoteAfter: after)
            }
            flushPending(shards[i])
            outcomes.append(out)
        }
        sendFailover(outcomes, oldOwner: reply.oldOwner)
    }
}

extension MembershipEvent {
    var isLeft: Bool { if case .left = self { return true } else { return false } }
}

/// Receives datagrams on the membership socket.
final class MembershipReceiver: FrameReceiver {
    weak let node: ReplicationNode?
    init(node: ReplicationNode) { self.node = node }
    func receive(_ buffer: ByteBuffer, datagram: Bool) { node?.receiveMembershipDatagram(buffer) }
}
