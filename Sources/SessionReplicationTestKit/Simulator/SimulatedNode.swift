import SessionReplicationCore

/// What simulated nodes exchange: membership messages, and replication frames carrying
/// encoded data messages exactly as the wire does (decoded on arrival).
package enum SimulatedMessage: SimulatedLoopClassifying {
    /// A membership (or lease) message.
    case membership(MembershipMessage)
    /// A replication frame: its header fields and its encoded body (decoded on arrival,
    /// as the wire's are).
    case frame(lane: UInt16, firstSequence: UInt64, lowWatermark: UInt64, body: [UInt8])

    /// Membership datagrams go to the membership loop; frames to the replication loop.
    package var loop: SimulatedLoop {
        if case .membership = self { return .membership }
        return .replication
    }
}

/// A client's side of one request: what the scenario asked for, so that the answer can be
/// judged.
package enum ClientOp: Sendable {
    /// Write attribute `name` (a new one per write) with 8 bytes of `value`.
    case write(SessionID, name: String, value: UInt64)
    /// Read the session.
    case read(SessionID)
    /// End the session.
    case delete(SessionID)
    /// Create a session.
    case create(SessionID)
    /// Take the session over.
    case takeOver(SessionID)
    /// Drain (then leave).
    case drain
}

/// A simulated node: a `NodeCore` and the glue a shell has (frames encoded and decoded,
/// flushes, connections), nothing of the protocol re-implemented. Client requests come
/// from the scenario (`request`); what they answer goes to the `ClusterLog`.
package struct SimulatedNode: SimulatedProcess {
    /// The node's core.
    package private(set) var core: NodeCore
    /// This node's name.
    package var name: String { core.settings.name }
    /// The current process id (a new one after each rejoin).
    package var id: NodeID { core.id }
    let log: ClusterLog
    var pending: [SimulatedSend<SimulatedMessage>] = []
    var clients: [RequestID: ClientOp] = [:]
    var began: [RequestID: MonotonicInstant] = [:]
    var connected: Set<String> = []
    var nextRequest: UInt64 = 1
    let tickInterval: Duration
    let maxDatagram: Int

    /// A node with `settings` and process id `id` at its own instant `now`.
    package init(settings: NodeSettings, id: NodeID, randomSeed: UInt64, now: MonotonicInstant, log: ClusterLog,
                tickInterval: Duration = .milliseconds(10)) {
        core = NodeCore(settings: settings, id: id, randomSeed: randomSeed, now: now)
        core.reportsBackupApplies = true
        core.reportsEvents = true
        core.verbose = log.tracing
        self.log = log
        self.tickInterval = tickInterval
        self.maxDatagram = settings.policy.udpMaxPayload
    }

    /// The earliest instant its timers have work.
    package var nextDeadline: MonotonicInstant { core.nextDeadline }

    /// Whether this node owns `session` and passes the serving check now.
    package func serves(_ session: SessionID, now: MonotonicInstant) -> Bool { core.serves(session, now: now) }

    /// Runs due timers.
    package mutating func tick(now: MonotonicInstant, wall: WallTime) {
        perform(core.tick(now: now, wall: wall, tickInterval: tickInterval), now, wall)
    }

    /// Handles one message from `from`.
    package mutating func receive(_ message: SimulatedMessage, from peer: String, id sender: NodeID, reliable: Bool,
                                 now: MonotonicInstant, wall: WallTime) {
        switch message {
        case .membership(let m):
            if reliable {
                perform(core.receiveFrame(InboundFrame(senderName: peer, sender: sender, membership: m), now: now, wall: wall), now, wall)
            } else {
                perform(core.receiveMembership(m, from: peer, id: sender, reliable: false, now: now, wall: wall), now, wall)
            }
        case .frame(let lane, let first, let low, let bytes):
            let decoded = bytes.withUnsafeBytes { raw in Result { () throws(DecodeError) in try FrameBody.decodeEach(raw, limits: WireLimits()) } }
            guard case .success(let body) = decoded, body.refused.isEmpty else { log.violation("\(name): undecodable replication frame from \(peer)"); return }
            let frame = InboundFrame(senderName: peer, sender: sender, lane: lane, firstSequence: first, lowWatermark: low, decoded: body)
            perform(core.receiveFrame(frame, now: now, wall: wall), now, wall)
        }
    }

    /// Its stream connection to `peer` came up or went down.
    package mutating func connection(to peer: String, up: Bool, now: MonotonicInstant, wall: WallTime) {
        if up { connected.insert(peer) } else { connected.remove(peer) }
        perform(core.connectionChanged(peer, connected: up, now: now, wall: wall), now, wall)
    }

    /// Messages to send, drained.
    package mutating func takeOutgoing() -> [SimulatedSend<SimulatedMessage>] {
        defer { pending = [] }
        return pending
    }

    // MARK: - Clients

    /// Starts a client request; returns its id. What it answers is logged when it
    /// completes (at once or later).
    @discardableResult
    package mutating func request(_ op: ClientOp, now: MonotonicInstant, wall: WallTime, at global: MonotonicInstant) -> RequestID {
        let r = RequestID(nextRequest)
        nextRequest += 1
        clients[r] = op
        began[r] = global
        log.clock = global
        let actions: [NodeAction]
        switch op {
        case .write(let id, _, _):
            actions = core.beginScope(r, id, ifMatch: nil, now: now, wall: wall)
        case .delete(let id):
            log.deleteAsked.insert(id)
            actions = core.beginScope(r, id, ifMatch: nil, now: now, wall: wall)
        case .read(let id):
            actions = core.read(r, id, now: now, wall: wall)
        case .create(let id):
            actions = core.create(r, id: id, attributes: [:], maxInactiveInterval: log.idleLimit(id), now: now, wall: wall)
        case .takeOver(let id):
            actions = core.takeOver(r, id, ignoringCooldown: false, now: now, wall: wall)
        case .drain:
            actions = core.drain(r, now: now, wall: wall)
        }
        perform(actions, now, wall)
        return r
    }

    /// Leaves the cluster (after a drain).
    package mutating func leave(now: MonotonicInstant, wall: WallTime) {
        perform(core.leave(now: now, wall: wall), now, wall)
    }

    // MARK: - Performing the core's actions

    mutating func perform(_ actions: [NodeAction], _ now: MonotonicInstant, _ wall: WallTime) {
        var flushes: [String] = []
        for action in actions {
            switch action {
            case .send(let peer, let t):
                send(t, to: peer)
            case .flush(let peer, _):
                if !flushes.contains(peer) { flushes.append(peer) }
            case .sendMembership(let o, let speaker):
                guard speaker == core.id else { continue }
                pending.append(SimulatedSend(to: o.to, message: .membership(o.message), reliable: o.reliable))
            case .complete(let r, let result):
                guard let op = clients.removeValue(forKey: r) else { continue }
                log.completed(op, result, node: name, began: began.removeValue(forKey: r) ?? .zero)
            case .scopeReady(let r, let state):
                guard let op = clients[r] else { continue }
                let commit: ScopeCommit
                switch op {
                case .write(_, let attr, let value):
                    var changes = ChangeSet()
                    changes.updated[attr] = Self.bytes(value)
                    changes.updated["v"] = Self.bytes(value)
                    commit = .changes(changes, maxInactiveInterval: nil)
                case .delete:
                    commit = .invalidate(.invalidated)
                default:
                    commit = .abort(SessionError(.badRequest, "not a scope"))
                }
                log.scopeSaw(state, node: name)
                perform(core.commitScope(r, commit, now: now, wall: wall), now, wall)
            case .identityChanged:
                log.rejoined(name)
            case .refused:
                break
            case .backupApplied(let s):
                log.saw(s, at: name)
            case .event(let e):
                log.event(e, node: name)
            case .log(let line):
                log.trace(name, line)
            }
        }
        for peer in flushes {
            perform(core.flush(peer, now: now, wall: wall, streamConnected: connected.contains(peer)), now, wall)
        }
    }

    mutating func send(_ t: Transmission, to peer: String) {
        guard t.speaker == core.id else { return }
        for f in t.frames(datagram: core.settings.datagram, maxDatagram: maxDatagram) {
            pending.append(SimulatedSend(to: peer, message: .frame(lane: f.lane, firstSequence: f.firstSequence,
                                                                   lowWatermark: f.lowWatermark, body: f.body),
                                         reliable: !f.datagram))
        }
    }

    /// The value a state holds (attribute `v`, 8 bytes little-endian; 0 when absent).
    package static func value(of state: SessionState) -> UInt64 {
        guard let raw = state.attributes["v"], raw.count == 8 else { return 0 }
        return raw.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    static func bytes(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) } }
}
