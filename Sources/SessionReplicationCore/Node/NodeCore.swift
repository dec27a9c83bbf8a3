import DequeModule

/// What a node is, as the core needs it: its name, the cluster's members and the knobs.
package struct NodeSettings: Hashable, Sendable {
    /// This node's configured name.
    package var name: String
    /// Every configured member's name, this node's included: the voters of
    /// `promotion: majority` and the seeds of membership.
    package var members: [String]
    /// Other members that may hold backups (their role stores backups).
    package var backupCandidates: [String]
    /// Replication knobs, with this node's role resolved.
    package var policy: ReplicationPolicy
    /// Session lifetime and size limits.
    package var sessions: SessionPolicy
    /// Membership (SWIM) timing.
    package var membership: MembershipTuning
    /// The lease length `L`. Default 500 ms.
    package var lease: Duration = .milliseconds(500)
    /// `promotion: majority`: serve only with a quorum lease, promote only seeing a
    /// majority of the members alive. Default false (`any`).
    package var majority = false
    /// Shards (stream lanes) of this node, at least 1. Default 1.
    package var lanes = 1
    /// Whether replication data goes over UDP (best-effort with `transport: udp`).
    package var datagram: Bool { policy.effectiveTransport == .udp }

    /// Creates settings.
    package init(name: String, members: [String], backupCandidates: [String], policy: ReplicationPolicy,
                sessions: SessionPolicy, membership: MembershipTuning) {
        self.name = name
        self.members = members
        self.backupCandidates = backupCandidates
        self.policy = policy
        self.sessions = sessions
        self.membership = membership
    }
}

/// Every protocol decision one node makes, as a value type: membership and leases,
/// failover and its majority deferral, Prepare and promise, handover, the takeover
/// search, anti-entropy digests, inbound streams with apply and receipts, peer restarts
/// and rejoin, and the requests callers make (reads, change scopes, syncs, takeovers,
/// drains). It performs no I/O, reads no clock and takes no lock: each event is one
/// `mutating func` that takes the time and returns the actions to perform
/// (`NodeAction`: send, flush, complete a request, log, ...). `ReplicationNode` performs
/// them on sockets and timers; the simulator performs them on a virtual network.
package struct NodeCore: Sendable {
    /// The settings.
    package let settings: NodeSettings
    /// This process's node id (a new one after each rejoin).
    package internal(set) var id: NodeID
    /// The membership protocol's state.
    package internal(set) var membership: Membership
    /// Leases asked of and granted to peers.
    package internal(set) var leases: LeaseTable
    /// The replica shards, one per lane (a session's lane is its id's stable hash modulo
    /// the lane count).
    package internal(set) var lanes: [ReplicaShard]
    /// Whether the node is draining (handing its sessions over before it leaves).
    package internal(set) var draining = false
    /// Whether the node stopped.
    package internal(set) var stopped = false
    /// Times this node rejoined under a new id after being declared dead.
    package internal(set) var rejoins = 0
    /// When set, every change applied to a backup copy is reported (`backupApplied`).
    /// Default false.
    package var reportsBackupApplies = false
    /// When set, session events are reported (`event`). Default false.
    package var reportsEvents = false {
        didSet { for l in lanes.indices { lanes[l].reportsEvents = reportsEvents } }
    }
    /// When set, protocol decisions are logged at debug level (prepares, promises,
    /// promotions, handovers); off by default, since building the lines costs.
    package var verbose = false
    /// Counters the core keeps beyond the shards'.
    package internal(set) var nodeCounters = NodeCoreCounters()

    var random: SplitMix64
    /// Inbound streams by (sender process, lane).
    var inbound: [StreamKey: InboundLane] = [:]
    /// Per peer: the process its frames come from, processes it replaced, what waits to
    /// be sent to it.
    var peers: [String: PeerState] = [:]
    /// Members membership holds alive or suspect.
    var livePeers: Set<String> = []
    /// Peers with a live outgoing stream connection.
    var connected: Set<String> = []
    /// The process id membership last reported alive for each member.
    var memberIDs: [String: NodeID] = [:]
    /// Members draining (each handed a session over unasked), by the process that did:
    /// no placement names them until a new process under the name is alive.
    var leavingPeers: [String: NodeID] = [:]
    /// Under `promotion: majority`: members declared gone while this node saw no
    /// majority, whose sessions it has not promoted yet (by process id).
    var deferredFailovers: [String: NodeID] = [:]
    /// Members this process's membership has reported anything about (alive, suspect,
    /// dead or left), and since when it listens.
    var heardOf: Set<String> = []
    var listeningSince: MonotonicInstant = .zero
    /// Configured members never heard of within `absenceGrace` of `listeningSince`: held
    /// departed (no prepare round waits for them) until membership reports them.
    var absent: Set<String> = []
    var absenceChecked = false
    /// Requests in progress.
    var requests: [RequestID: PendingRequest] = [:]
    /// Scopes by session: the head holds the session, the rest wait in order.
    var scopes: [SessionID: Deque<RequestID>] = [:]
    /// Replication waits (per lane) and the requests they answer.
    var waiters: [LaneWaiter: RequestID] = [:]
    /// Handover rounds of takeover searches, by handover request id.
    var handoverRounds: [UInt64: RequestID] = [:]
    var nextHandoverRequest: UInt64 = 1
    /// The first handover request id of this process (random, so that an answer meant for
    /// an earlier process of this name is never taken for one of this process's).
    var firstHandoverRequest: UInt64 = 1
    var nextInternalRequest = RequestID.internalBase
    /// Owners learned from `kept` answers (`affinity: none`).
    var ownerHints = OwnerHints()
    /// Lookups of ids this node holds nothing of in flight.
    var searchSlots = SearchSlots()
    var nextShardTick: MonotonicInstant = .zero
    /// Requests waiting (serving check, quorum, full queue), each with the end of its wait
    /// (`park`), so `nextDeadline` looks up no request.
    var parked: [RequestID: MonotonicInstant] = [:]
    /// Requests that started a takeover search: the timer walks these, not every request
    /// (an id stays until a timer run finds its request gone or without a search).
    var searching: Set<RequestID> = []
    /// Drain requests in progress (`draining` says whether this node leaves), kept the
    /// same way for the timer.
    var drainRequests: Set<RequestID> = []
    /// Until when a draining node hands over what it owns: `drainTimeout` from the start
    /// of its latest drain. Sessions it comes to own again inside that window (its copy
    /// promoted when the member it handed them to was declared dead) are handed over by
    /// the timer after the drain itself completed, not refused until the node leaves.
    var drainWindowEnd: MonotonicInstant?
    /// What the node owned after the timer's last such pass (the count of owned sessions,
    /// promotions and takeovers), and whether that pass left a session it could not hand
    /// over yet (`drainAgain`).
    var drainAgainMark: [Int] = []
    var drainAgainRetry = false
    var out: [NodeAction] = []
    var flushes: Set<String> = []
    /// Since when each live peer has granted this node no current lease.
    var leaseLostAt: [String: MonotonicInstant] = [:]
    /// Live peers without a lease for `4 x lease` (a cut link), last acted on.
    var cutOff: Set<String> = []
    /// The time of the event being handled (monotonic and wall).
    var now: MonotonicInstant = .zero
    var wall = WallTime(milliseconds: 0)
    /// The clock readings of the last event, as the shell sampled them (`now` above never
    /// goes back; a sample may).
    var clockSample: (now: MonotonicInstant, wall: WallTime)?

    /// How often the shards' timers run. Default 5 ms.
    package static let shardTick: Duration = .milliseconds(5)

    /// A node with process id `id` starting at `now`; `randomSeed` drives its random
    /// choices (membership's probes, the random part of a rejoin's id).
    package init(settings: NodeSettings, id: NodeID, randomSeed: UInt64, now: MonotonicInstant) {
        self.settings = settings
        self.id = id
        self.random = SplitMix64(seed: randomSeed)
        self.membership = Membership(selfName: settings.name, selfID: id, seeds: settings.members,
                                     tuning: Self.membershipTuning(settings), randomSeed: random.next(), now: now)
        self.leases = LeaseTable(lease: settings.lease, voters: settings.members, selfName: settings.name)
        self.lanes = Self.makeLanes(settings, id: id)
        for peer in settings.members where peer != settings.name { peers[peer] = PeerState() }
        firstHandoverRequest = (random.next() >> 2) | 1
        nextHandoverRequest = firstHandoverRequest
        nextShardTick = now
        listeningSince = now
        self.now = now
    }

    /// Membership's tuning: under `promotion: majority` a death needs a majority of the
    /// configured members alive in this node's view.
    static func membershipTuning(_ settings: NodeSettings) -> MembershipTuning {
        var t = settings.membership
        if settings.majority { t.deathQuorum = settings.members.count / 2 + 1 }
        return t
    }

    static func makeLanes(_ settings: NodeSettings, id: NodeID) -> [ReplicaShard] {
        let count = max(1, settings.lanes)
        return (0..<count).map { lane in
            var s = ShardSettings(selfName: settings.name, selfID: id, lane: UInt16(lane), policy: settings.policy,
                                  sessions: settings.sessions, backupCandidates: settings.backupCandidates)
            s.lanes = count
            s.members = settings.members.filter { $0 != settings.name }
            return ReplicaShard(settings: s)
        }
    }

    // MARK: - Views

    /// The lane of session `id`.
    package func lane(of id: SessionID) -> Int { Int(id.stableHash % UInt64(lanes.count)) }

    /// This node's copy of `id` (owner, backup or tombstone), without touching it.
    package func copy(of id: SessionID) -> HeldCopy? { lanes.inPlace(lane(of: id)) { $0.copy(of: id) } }

    /// The node a backup copy of `id` came from; `nil` when none is held.
    package func backupOwner(of id: SessionID) -> String? { lanes.inPlace(lane(of: id)) { $0.backupOwner(of: id) } }

    /// Sessions owned and backup copies held, over every lane.
    package var sessionCount: Int { lanes.indices.reduce(0) { n, l in n + lanes.inPlace(l) { $0.ownedCount + $0.backupCount } } }

    /// Whether the cluster declared this process dead and it has not rejoined yet (it
    /// never stays so past the event that told it: it rejoins at once).
    package var declaredDead: Bool { membership.status == .dead }

    /// Members membership holds alive or suspect (never this node).
    package var liveMembers: Set<String> { livePeers }

    /// Each peer's membership status (never this node).
    package func peerStatuses() -> [String: MemberStatus] {
        var out: [String: MemberStatus] = [:]
        for n in settings.members where n != settings.name {
            if let s = membership.member(n)?.status { out[n] = s }
        }
        return out
    }

    /// Whether membership holds `name` alive or suspect under process `process`.
    package func isAlive(_ name: String, process: NodeID) -> Bool {
        membership.member(name).map { $0.status.isLive && $0.id == process } ?? false
    }

    /// Whether this node holds a quorum lease (`promotion: majority`): grants from a
    /// majority of the configured members, itself included.
    package func hasQuorum(now: MonotonicInstant) -> Bool {
        leases.hasQuorum(now: now)
    }

    /// Whether this node sees a majority of the configured members alive (itself
    /// included): under `promotion: majority` only such a node promotes.
    package var seesMajority: Bool {
        let alive = settings.members.filter { $0 == settings.name || membership.member($0)?.status == .alive }.count
        return alive > settings.members.count / 2
    }

    /// Whether this node may serve a session with `replicaSet` now (the serving rule): a
    /// current lease from every member of the set membership holds alive or suspect, and
    /// under `promotion: majority` a quorum lease as well.
    package func mayServe(replicaSet: [String], now: MonotonicInstant) -> Bool {
        guard !settings.majority || hasQuorum(now: now) else { return false }
        guard !replicaSet.isEmpty else { return true }
        return leases.mayServe(replicaSet: replicaSet, live: livePeers, now: now)
    }

    /// Whether this node owns `id` and passes the serving rule for it now.
    package func serves(_ id: SessionID, now: MonotonicInstant) -> Bool {
        guard !stopped, !declaredDead else { return false }
        return servable(id, now: now) == true
    }

    /// The ids among `ids` that `serves` holds true for now, in their order, with the
    /// leases looked at once rather than once per id (the simulator asks this after every
    /// event). Empty when stopped, declared dead or, under `majority`, without a quorum.
    package func served(among ids: [SessionID], now: MonotonicInstant) -> [SessionID] {
        guard !stopped, !declaredDead, !settings.majority || hasQuorum(now: now) else { return [] }
        // First the ids this node owns with its ownership confirmed. (Plain loops: a
        // closure reading `self` copied the whole core per call.)
        var owned = 0
        for l in lanes.indices { owned += lanes.inPlace(l) { $0.ownedCount } }
        var candidates: [SessionID] = []
        if ids.count <= 64, owned <= 4 * ids.count {
            // Few owned sessions: walk them instead of hashing every id.
            var mask: UInt64 = 0
            for l in lanes.indices {
                let table = lanes.inPlace(l) { $0.owned.entries }
                mask |= ReplicaShard.confirmedMask(in: table, among: ids)
            }
            for i in ids.indices where mask & (1 << UInt64(i)) != 0 { candidates.append(ids[i]) }
        } else {
            for id in ids where lanes.inPlace(lane(of: id), { $0.ownership(of: id)?.confirmed }) == true { candidates.append(id) }
        }
        guard !candidates.isEmpty else { return [] }
        // The live peers without a current grant: a replica set naming none of them passes.
        // (The grants are walked rather than looked up by name: a handful of peers.)
        var lapsed: [String] = []
        for peer in livePeers {
            var granted = false
            for (p, until) in leases.grantedUntil where p == peer { granted = now < until }
            if !granted { lapsed.append(peer) }
        }
        guard !lapsed.isEmpty else { return candidates }
        var served: [SessionID] = []
        for id in candidates {
            guard let set = lanes.inPlace(lane(of: id), { $0.ownership(of: id)?.replicaSet }) else { continue }
            if !set.contains(where: lapsed.contains) { served.append(id) }
        }
        return served
    }

    /// `nil` when this node does not own `id`; otherwise whether it may serve it now: its
    /// ownership is confirmed and it passes the serving rule.
    func servable(_ id: SessionID, now: MonotonicInstant) -> Bool? {
        guard let o = lanes.inPlace(lane(of: id), { $0.ownership(of: id) }) else { return nil }
        return o.confirmed && mayServe(replicaSet: o.replicaSet, now: now)
    }

    /// Whether this node is ready to serve (`/readyz`): running, joined, and neither
    /// fenced (a lease from every live peer, a quorum under `promotion: majority`) nor
    /// leaving.
    package func isReady(now: MonotonicInstant) -> Bool {
        !stopped && !draining && !declaredDead && membership.joined && status(now: now).state == "serving"
    }

    /// The error a fenced node answers with.
    func fencedError(now: MonotonicInstant) -> SessionError {
        if settings.majority, !hasQuorum(now: now) {
            return SessionError(.noQuorum, "no current lease from a majority of the voters (promotion: majority); this side of a partition serves nothing")
        }
        return SessionError(.fenced, "no current lease from every live backup of the session; another node may own it now")
    }

    /// Why a request cannot run at all, or `nil`.
    var unavailableError: SessionError? {
        if stopped { return SessionError(.shuttingDown, "the node is stopped") }
        if draining { return SessionError(.shuttingDown, "the node is leaving: it hands its sessions to their backups; retry") }
        if declaredDead { return SessionError(.fenced, "the cluster declared this node dead; it serves nothing until it rejoined") }
        return nil
    }

    // MARK: - Output

    /// Queues an action.
    mutating func emit(_ action: NodeAction) { out.append(action) }

    /// Asks the shell to flush `peer` (once per event).
    mutating func requestFlush(_ peer: String) {
        if flushes.insert(peer).inserted { out.append(.flush(peer: peer, delay: nil)) }
    }

    /// Queues a control message for `peer` and asks for a flush.
    mutating func sendControl(_ message: ReplicationMessage, to peer: String) {
        guard peers[peer] != nil else { return }
        // In parts a receiver accepts (a prepare about every session of a big owner).
        peers[peer]!.control.append(contentsOf: message.parts())
        requestFlush(peer)
    }

    /// Takes the actions queued by the event that just ran.
    mutating func takeActions() -> [NodeAction] {
        flushes.removeAll(keepingCapacity: true)
        if reportsEvents {
            for l in lanes.indices where !lanes.inPlace(l, { $0.events.isEmpty }) {
                for var e in lanes[l].takeEvents() {
                    e.at = wall
                    out.append(.event(e))
                }
            }
        }
        defer { out = [] }
        return out
    }

    /// Logs a protocol decision when `verbose`.
    mutating func debug(_ message: @autoclosure () -> String) {
        if verbose { out.append(.log(NodeLog(.debug, message()))) }
    }

    mutating func log(_ level: NodeLog.Level, _ message: String, _ metadata: [String: String] = [:]) {
        out.append(.log(NodeLog(level, message, metadata)))
    }

    /// Schedules a flush of every peer with never-sent data in lane `l`.
    mutating func flushPending(lane l: Int) {
        for peer in lanes[l].peersWithUnsent.sorted() { requestFlush(peer) }
    }
}

/// Counters the core keeps beyond the shards' own.
package struct NodeCoreCounters: Hashable, Sendable {
    /// Data messages ignored as duplicates by the stream receivers.
    package var duplicateMessages = 0
    /// Stream sequences skipped as gaps.
    package var skippedSequences = 0
    /// Frames accepted.
    package var framesReceived = 0
    /// Data messages refused one by one because they did not decode.
    package var messagesRefused = 0
    /// Receipts ignored because they were about another process's stream.
    package var foreignReceipts = 0
    /// Times the wall clock ran ahead of the monotonic clock between two events (leases
    /// dropped).
    package var clockJumps = 0
    /// Prepare entries received from takers, promise entries received from holders, and
    /// prepare entries dropped unanswered (their taker not held alive).
    package var prepareEntriesIn = 0, promiseEntriesIn = 0, prepareEntriesIgnored = 0
    /// Stream connections that came up, that went down or failed to connect (each failed
    /// attempt counts), and flushes that left control messages queued because no stream
    /// connection was up.
    package var connectionsUp = 0, connectionsDown = 0, flushesWithoutConnection = 0
    /// All zero.
    package init() {}
}

/// One inbound stream (a sender process's lane) and when it was last heard.
struct InboundLane: Sendable {
    var stream = InboundStream()
    var senderName: String
    var lastHeard: MonotonicInstant
    /// Sequences refused (fenced) that the sender may not know of yet: every receipt lists
    /// them until the sender's low watermark passes them, so a receipt lost with its
    /// connection never turns a refusal into an acknowledgement.
    var refused: [UInt64] = []
}

struct StreamKey: Hashable, Sendable {
    var sender: NodeID
    var lane: UInt16
}

/// A shard's replication wait.
struct LaneWaiter: Hashable, Sendable {
    var lane: Int
    var waiter: WaiterID
}

/// What the core knows of one peer's transport side.
struct PeerState: Sendable {
    /// The process id its frames come from.
    var current: NodeID?
    /// Processes of that name replaced by a later one: their frames are refused.
    var retired: Set<NodeID> = []
    /// Processes of that name this process's membership declared dead or saw leave: their
    /// frames are refused too, until this node itself rejoins under a new id (the verdict
    /// was the dead process's; the new one judges afresh).
    var heldDead: Set<NodeID> = []
    /// Whether frames of process `id` are refused.
    func refuses(_ id: NodeID) -> Bool { retired.contains(id) || heldDead.contains(id) }
    /// Control messages waiting for the next flush.
    var control: [ReplicationMessage] = []
    /// The newest receipt per lane (only the newest matters), with its resyncs.
    var receipts: [UInt16: Receipt] = [:]
    var resyncs: [UInt16: [ResyncRequest.Entry]] = [:]

    var hasControl: Bool { !control.isEmpty || !receipts.isEmpty }
}
