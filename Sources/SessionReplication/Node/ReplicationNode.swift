import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SessionReplicationCore
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// One node of a session replication cluster: holds sessions in memory, replicates every
/// change to their backups over TCP or UDP, and applies what its peers replicate to it.
///
/// Create it from a validated `ClusterConfiguration` and the node's name, then either
/// `run()` it as a swift-service-lifecycle `Service` (SIGTERM stops it) or call `start()`
/// and `shutdown()` yourself. Members are the configured nodes; which of them are alive,
/// and under which process id, is tracked by SWIM membership on `membershipPort`.
public final class ReplicationNode: Service, FrameReceiver, @unchecked Sendable {
    /// The configuration the node runs with.
    public let configuration: ClusterConfiguration
    /// This node's endpoint.
    public let endpoint: NodeEndpoint
    /// This process's node id: fresh at every start of a process, and again when the
    /// node rejoins after the cluster declared it dead.
    public var nodeID: NodeID { frameCodec.sealer.selfID }
    let logger: Logger
    let group: any EventLoopGroup
    let ownsGroup: Bool
    let shards: [ShardBox]
    let links: [String: PeerLink]
    let frameCodec: FrameCodec
    let origin = ContinuousClock.now
    let state = NIOLockedValueBox(RuntimeState())
    private let inbound = NIOLockedValueBox(InboundState())
    let transport = NIOLockedValueBox(TransportCounters())
    /// The membership protocol's state; driven on `membershipLoop` only.
    let membership: NIOLockedValueBox<Membership>
    let membershipGroup: MultiThreadedEventLoopGroup
    /// Leases asked of and granted to peers; driven on `membershipLoop`.
    let leases: NIOLockedValueBox<LeaseTable>
    /// Members membership holds alive or suspect (a copy kept for the serving check).
    let livePeers = NIOLockedValueBox<Set<String>>([])
    /// Handover requests this node is waiting on.
    let handoverWaits = NIOLockedValueBox(HandoverWaits())
    /// Owners that answered `kept` for sessions this node holds nothing of (`affinity:
    /// none`), remembered for a second so that forwarding skips the round of asking.
    let ownerHints = NIOLockedValueBox(OwnerHints())
    /// Lookups of ids this node holds nothing of in flight (bounded: `takeOver`).
    let searchSlots = NIOLockedValueBox(SearchSlots())
    /// Faults injected into outbound replication traffic (none by default; `setFaults`).
    let faultPlan = NIOLockedValueBox(FaultPlan(settings: FaultSettings(), random: SystemRandomNumberGenerator()))
    var membershipLoop: any EventLoop { membershipGroup.next() }
    // A plain stored closure: reading one through a generic box re-wraps it in a
    // reabstraction thunk on every call, which profiling showed stacking up.
    private let observerLock = NIOLock()
    private var applyObserver: (@Sendable (SessionState) -> Void)?

    struct RuntimeState {
        var started = false
        var stopped = false
        /// Declared dead by the cluster: serves nothing until it has rejoined.
        var declaredDead = false
        /// Times this node rejoined under a new id.
        var rejoins = 0
        /// Handing its sessions over before leaving (SIGTERM): serves nothing new.
        var draining = false
        /// Under `promotion: majority`: members declared gone while this node saw no
        /// majority, whose sessions it has not promoted yet (by process id).
        var deferredFailovers: [String: NodeID] = [:]
        /// The process id membership last reported alive for each member.
        var memberIDs: [String: NodeID] = [:]
        var server: (any Channel)?
        var datagram: (any Channel)?
        var tick: RepeatedTask?
        var membershipChannel: (any Channel)?
        var membershipTick: RepeatedTask?
        /// Accepted connections, closed at shutdown (closing a listener leaves them open).
        var children: [ObjectIdentifier: any Channel] = [:]
    }

    struct InboundState {
        var windows: [NodeID: ReplayWindow] = [:]
        /// Datagram counters seen on the membership socket (apart from replication
        /// datagrams, so a flood of those never pushes a probe out of the window).
        var membershipWindows: [NodeID: ReplayWindow] = [:]
        var currentID: [String: NodeID] = [:]
        /// Node ids replaced by a restart: their frames are refused for good.
        var retired: Set<NodeID> = []
        var streams: [StreamKey: InboundBox] = [:]
    }

    struct StreamKey: Hashable { var sender: NodeID; var lane: UInt16 }

    struct TransportCounters {
        var streamFramesSent = 0
        var datagramsSent = 0
        var framesReceived = 0
        var socketRebinds = 0
        var rejected: [FrameRejection: Int] = [:]
        var duplicates = 0
        var skipped = 0
    }

    /// Creates a node named `name` of `configuration`. Throws `ConfigurationError` when
    /// the configuration is invalid or does not name this node. `eventLoopGroup`
    /// defaults to a new group with one thread per core, shut down with the node.
    public init(configuration: ClusterConfiguration, name: String, logger: Logger,
                eventLoopGroup: (any EventLoopGroup)? = nil) throws {
        try configuration.validate()
        guard let me = configuration.node(named: name) else {
            throw ConfigurationError(file: "<config>", field: "nodes", message: "no node named \(name)")
        }
        self.configuration = configuration
        self.endpoint = me
        var rng = SystemRandomNumberGenerator()
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let id = NodeID.fresh(start: WallTime(milliseconds: Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000), random: rng.next())
        self.membership = NIOLockedValueBox(Membership(
            selfName: name, selfID: id, seeds: configuration.nodes.map(\.name), tuning: configuration.membership.tuning,
            randomSeed: rng.next(), now: .zero))
        self.membershipGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.leases = NIOLockedValueBox(LeaseTable(lease: configuration.membership.lease))
        var logger = logger
        logger[metadataKey: "drs.node"] = "\(name)"
        self.logger = logger
        if let eventLoopGroup {
            self.group = eventLoopGroup
            self.ownsGroup = false
        } else {
            self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, System.coreCount))
            self.ownsGroup = true
        }
        let shardCount = max(1, min(16, System.coreCount))
        let candidates = configuration.nodes.filter { $0.name != name && configuration.role(of: $0.name).storesBackups }.map(\.name)
        var policy = configuration.replication
        policy.role = configuration.role(of: name)
        self.shards = (0..<shardCount).map { lane in
            var settings = ShardSettings(selfName: name, selfID: id, lane: UInt16(lane), policy: policy,
                                         sessions: configuration.sessions, backupCandidates: candidates)
            settings.lanes = shardCount
            return ShardBox(core: ReplicaShard(settings: settings))
        }
        var links: [String: PeerLink] = [:]
        for peer in configuration.nodes where peer.name != name {
            links[peer.name] = PeerLink(name: peer.name, host: peer.address, port: peer.replicationPort,
                                        membershipPort: peer.membershipPort, eventLoop: group.next())
        }
        self.links = links
        self.frameCodec = FrameCodec(sealer: FrameSealer(keys: configuration.keys, clusterID: configuration.clusterID, selfID: id),
                                     selfName: name, limits: WireLimits())
    }

    // MARK: - Lifecycle

    /// Binds the replication sockets (TCP and UDP on `replicationPort`) and starts the
    /// timer. Throws if a socket cannot be bound.
    public func start() async throws {
        guard state.withLockedValue({ s in defer { s.started = true }; return !s.started }) else { return }
        let inboundPolicy = InboundPolicy(configuration: configuration, selfName: endpoint.name)
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                let key = ObjectIdentifier(channel)
                let open = state.withLockedValue { s in
                    guard !s.stopped else { return false }
                    s.children[key] = channel
                    return true
                }
                guard open else { return channel.close() }
                channel.closeFuture.whenComplete { [self] _ in _ = state.withLockedValue { $0.children.removeValue(forKey: key) } }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(inboundGuard(inboundPolicy))
                }
            }
            .bind(host: endpoint.address, port: endpoint.replicationPort).get()
        let datagram: any Channel
        do {
            datagram = try await bindDatagram(port: server.localAddress?.port ?? endpoint.replicationPort)
            try await startMembership()
        } catch {
            // Leave nothing bound behind a failed start.
            try? await server.close()
            let (d, m, mt) = state.withLockedValue { s in
                defer { s.datagram = nil; s.membershipChannel = nil; s.membershipTick = nil }
                return (s.datagram, s.membershipChannel, s.membershipTick)
            }
            mt?.cancel()
            try? await d?.close()
            try? await m?.close()
            state.withLockedValue { $0.started = false }
            throw error
        }
        let tick = group.next().scheduleRepeatedTask(initialDelay: .milliseconds(5), delay: .milliseconds(5)) { [weak self] _ in
            self?.tick()
        }
        state.withLockedValue {
            $0.server = server
            $0.datagram = datagram
            $0.tick = tick
        }
        logger.info("replication node started", metadata: [
            "drs.address": "\(endpoint.address)", "drs.port": "\(replicationPort ?? -1)", "drs.id": "\(nodeID)",
        ])
    }

    /// Stops the timer, closes every socket (listeners, accepted and outgoing
    /// connections) and, if the node created it, shuts down the event loop group. Calls
    /// waiting on replication end with `not-ready` (their change is applied here,
    /// durability unknown); later calls fail with `not-ready`.
    public func shutdown() async {
        let (server, datagram, tick, children, wasStopped) = state.withLockedValue { s -> ((any Channel)?, (any Channel)?, RepeatedTask?, [any Channel], Bool) in
            guard !s.stopped else { return (nil, nil, nil, [], true) }
            s.stopped = true
            defer { s.datagram = nil; s.children = [:] }
            return (s.server, s.datagram, s.tick, Array(s.children.values), false)
        }
        guard !wasStopped else { return }
        let (membershipChannel, membershipTick) = state.withLockedValue { s in
            defer { s.membershipChannel = nil; s.membershipTick = nil }
            return (s.membershipChannel, s.membershipTick)
        }
        for task in [tick, membershipTick].compactMap({ $0 }) {
            let done = group.next().makePromise(of: Void.self)
            task.cancel(promise: done)
            try? await done.futureResult.get()
        }
        try? await membershipChannel?.close()
        for shard in shards { shard.close() }
        try? await server?.close()
        try? await datagram?.close()
        for child in children { try? await child.close() }
        for link in links.values { await link.close() }
        if ownsGroup { try? await group.shutdownGracefully() }
        try? await membershipGroup.shutdownGracefully()
    }

    /// Binds the replication UDP socket on `port` and re-binds it whenever it closes
    /// while the node runs (NIO closes a datagram socket on a send error such as the
    /// `EPERM` a firewall's drop rule returns; found by `drs drill partition`).
    func bindDatagram(port: Int) async throws -> any Channel {
        let channel = try await DatagramBootstrap(group: group)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(.socketOption(.so_rcvbuf), value: 4 << 20)
            .channelOption(.socketOption(.so_sndbuf), value: 4 << 20)
            // recvmmsg splits one buffer evenly between the messages of a vector read:
            // give every slot room for the largest datagram a peer may send.
            .channelOption(.datagramVectorReadMessageCount, value: Self.datagramVector)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(
                capacity: Self.datagramVector * Self.datagramSlot(configuration.replication.udpMaxPayload)))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DatagramFrameHandler(receiver: self))
                }
            }
            .bind(host: endpoint.address, port: port).get()
        rebindOnClose(channel, "replication UDP", port: port, bind: { try await $0.bindDatagram(port: port) },
                      install: { state, fresh in state.datagram = fresh })
        return channel
    }

    /// When `channel` closes while the node runs, binds a new socket with `bind` (every
    /// 100 ms until it binds or the node stops) and stores it with `install`, counting
    /// and logging each re-bind. A socket bound after the node stopped is closed.
    func rebindOnClose(_ channel: any Channel, _ what: String, port: Int,
                       bind: @escaping @Sendable (ReplicationNode) async throws -> any Channel,
                       install: @escaping @Sendable (inout RuntimeState, any Channel) -> Void) {
        channel.closeFuture.whenComplete { [weak self] _ in
            guard let self, !self.isStopped else { return }
            self.rebind(what, port: port) { node in
                let fresh = try await bind(node)
                node.state.withLockedValue { if !$0.stopped { install(&$0, fresh) } }
                if node.isStopped { try? await fresh.close() }
            }
        }
    }

    /// Re-binds a UDP socket that closed while the node runs: retries every 100 ms until
    /// it binds or the node stops, counting and logging each re-bind.
    func rebind(_ what: String, port: Int, _ bind: @escaping @Sendable (ReplicationNode) async throws -> Void) {
        Task { [weak self] in
            while let node = self, !node.isStopped {
                do {
                    try await bind(node)
                    let n = node.transport.withLockedValue { t in t.socketRebinds += 1; return t.socketRebinds }
                    // Every send to a dropped destination closes the socket again: log the
                    // 1st, 2nd, 4th, 8th, ... re-bind only.
                    if n & (n - 1) == 0 {
                        node.logger.warning("\(what) socket closed (a send failed, e.g. EPERM from a firewall drop rule); bound it again",
                                            metadata: ["drs.port": "\(port)", "drs.rebinds": "\(n)"])
                    }
                    return
                } catch {
                    node.logger.warning("\(what) socket could not be bound again: \(error); retrying in 100 ms")
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
        }
    }

    /// The membership socket, once bound.
    var membershipChannel: (any Channel)? { state.withLockedValue { $0.membershipChannel } }

    func setMembershipChannel(_ channel: any Channel, tick: RepeatedTask) {
        state.withLockedValue {
            $0.membershipChannel = channel
            $0.membershipTick = tick
        }
    }

    /// Whether a membership datagram's counter is new for its sender.
    func acceptMembershipCounter(_ header: FrameHeader) -> Bool {
        inbound.withLockedValue { s in
            guard !s.retired.contains(header.sender) else { return false }
            var window = s.membershipWindows[header.sender] ?? ReplayWindow()
            guard window.acceptDatagram(header.counter) else { return false }
            s.membershipWindows[header.sender] = window
            return true
        }
    }

    var isStopped: Bool { state.withLockedValue { $0.stopped } }
    /// Whether the node is draining before it leaves (see `drain()`).
    public var isDraining: Bool { state.withLockedValue { $0.draining } }
    func setDraining() { state.withLockedValue { $0.draining = true } }
    var isStarted: Bool { state.withLockedValue { $0.started && $0.server != nil } }

    /// The current node id of each peer heard from.
    func knownPeerIDs() -> [String: NodeID] { inbound.withLockedValue { $0.currentID } }


    func checkRunning() throws {
        if isStopped { throw SessionError(.shuttingDown, "the node is stopped") }
        if isDraining { throw SessionError(.shuttingDown, "the node is leaving: it hands its sessions to their backups; retry") }
        if isDeclaredDead { throw SessionError(.fenced, "the cluster declared this node dead; it serves nothing until restarted") }
    }

    /// Whether the cluster declared this process dead.
    public var isDeclaredDead: Bool { state.withLockedValue { $0.declaredDead } }

    /// Times this node rejoined under a new id after being declared dead.
    public var rejoins: Int { state.withLockedValue { $0.rejoins } }

    /// Another member declared this process dead, so its sessions may be owned elsewhere
    /// under a higher epoch. It serves nothing from now on, drops everything it holds
    /// (owned sessions, backups, tombstones, streams), takes a new node id and joins
    /// again: its peers see a new process and send it the sessions it should back.
    func rejoin() {
        state.withLockedValue { $0.declaredDead = true }
        let old = nodeID
        let verdict = membership.withLockedValue { $0.deathVerdict }.map { "\($0)" } ?? "unknown"
        var rng = SystemRandomNumberGenerator()
        let id = NodeID(max(old.rawValue + 1, NodeID.fresh(start: wall, random: rng.next()).rawValue))
        frameCodec.sealer.setSelfID(id)
        for shard in shards {
            shard.reset { old in
                var settings = old.settings
                settings.selfID = id
                return ReplicaShard(settings: settings)
            }
        }
        inbound.withLockedValue { $0.streams = [:] }
        let t = now
        membership.withLockedValue { m in
            m = Membership(selfName: m.selfName, selfID: id, seeds: m.seeds, tuning: m.tuning, randomSeed: rng.next(), now: t)
        }
        leases.withLockedValue { $0 = LeaseTable(lease: configuration.membership.lease) }
        livePeers.withLockedValue { $0 = [] }
        state.withLockedValue {
            $0.declaredDead = false
            $0.rejoins += 1
        }
        logger.warning("declared dead by the cluster: dropped every session held and rejoined under a new node id",
                       metadata: ["drs.id.old": "\(old)", "drs.id": "\(id)", "drs.verdict": "\(verdict)"])
    }

    /// Runs the node until graceful shutdown (SIGTERM/SIGINT in a `ServiceGroup`) or
    /// task cancellation. A graceful shutdown first drains (`drain()`: every owned
    /// session handed to the first live member of its replica set, within
    /// `drainTimeout`), then announces the leave to every live member and gives it two
    /// probe periods to spread before the sockets close, so the others list this node as
    /// `left` and take over at once whatever was not handed over.
    public func run() async throws {
        try await start()
        try? await gracefulShutdown()
        let handed = await drain()
        logger.notice("drained", metadata: ["drs.handedOver": "\(handed)"])
        leaveCluster()
        try? await Task.sleep(for: configuration.membership.probeInterval * 2)
        await shutdown()
    }

    static let datagramVector = 32
    static func datagramSlot(_ maxPayload: Int) -> Int { max(2048, (maxPayload + 1023) / 1024 * 1024 + 1024) }

    /// The port replication is bound to (useful when configured as 0).
    public var replicationPort: Int? { state.withLockedValue { $0.server?.localAddress?.port } }

    /// Points this node at a peer's replication endpoint, and its membership port when
    /// given (tests that bind port 0).
    public func setPeerEndpoint(_ name: String, host: String, port: Int, membershipPort: Int? = nil) {
        links[name]?.setEndpoint(host: host, port: port, membershipPort: membershipPort)
        setReachable(name, true)
    }

    // MARK: - Clocks

    var now: MonotonicInstant {
        let d = ContinuousClock.now - origin
        return MonotonicInstant(nanoseconds: UInt64(max(0, d.nanosecondsClamped)))
    }

    var wall: WallTime {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return WallTime(milliseconds: Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000)
    }

    func shard(for id: SessionID) -> ShardBox { shards[Int(id.stableHash % UInt64(shards.count))] }

    var sessionCount: Int { shards.reduce(0) { n, s in n + s.withCore { $0.ownedCount + $0.backupCount } } }

    // MARK: - Public session API

    /// Creates a session owned by this node and replicates it at once. In synchronous
    /// mode returns after `minSyncReplicas` backups applied it. Throws `SessionError`:
    /// `capacity`, `payload-too-large`, `invalid-attribute-name`, `bad-request` (idle
    /// limit), `misdirected` (a `server` node), `insufficient-replicas`, `overloaded`
    /// (a full queue), `not-ready` (stopped), `no-quorum` (`promotion: majority` and no
    /// quorum lease within `4 x lease`) with nothing created; or `sync-timeout`
    /// (created, durability unknown). A given `id` (derived ids, such as the
    /// `PersistDriver`'s) fails with `precondition-failed` when this node already holds
    /// anything under it; by default the id is drawn from the system CSPRNG.
    public func createSession(id given: SessionID? = nil, attributes: [String: [UInt8]] = [:], maxInactiveInterval: Duration? = nil) async throws -> WriteResult {
        try checkRunning()
        if requiresQuorum { try await awaitQuorum() }
        var rng = SystemRandomNumberGenerator()
        let id = given ?? SessionID.random(using: &rng)
        let box = shard(for: id)
        let count = sessionCount
        let outcome = try box.withCore { try $0.create(id: id, attributes: attributes, maxInactiveInterval: maxInactiveInterval, now: now, wall: wall, sessionCount: count) }
        flushPending(box)
        return try await finish(outcome, box: box)
    }

    /// Reads an owned session, counting as an access. Returns `nil` when this node does
    /// not own it; waits for a scope in progress on it (so no read sees an unreplicated
    /// synchronous write) and for this node to pass the serving check (leases from its
    /// live backups). Throws `fenced` when the check still fails after `4 x lease`,
    /// `session-unavailable` when this node rejoined the cluster meanwhile, and
    /// `not-ready` once stopped.
    public func session(_ id: SessionID) async throws -> SessionState? {
        try checkRunning()
        let generation = rejoins
        let box = shard(for: id)
        await box.acquireScope(id)
        defer { box.releaseScope(id) }
        try await awaitServing(id)
        try checkNotRejoined(since: generation, id)
        return box.withCore { $0.access(id, wall: wall) }
    }

    /// Throws `session-unavailable` when this node rejoined (dropping everything it held)
    /// since a request began: what it holds now says nothing about the session, so an
    /// answer of "not found" would be a lie (found by `drs drill partition`: reads that
    /// waited out a lost quorum across the rejoin answered 404 for live sessions).
    func checkNotRejoined(since generation: Int, _ id: SessionID) throws {
        // `declaredDead` is set before the store is emptied and cleared (with `rejoins`
        // raised) after: together they cover a request that looks in the middle.
        let (now, dying) = state.withLockedValue { ($0.rejoins, $0.declaredDead) }
        guard now != generation || dying else { return }
        throw SessionError(.sessionUnavailable, "this node rejoined the cluster while the request for \(id) waited; retry")
    }

    /// Why `id` cannot be changed here: only a backup is held (`misdirected`), or nothing.
    func notOwnedHere(_ id: SessionID) -> SessionError {
        if case .backup = copy(of: id) { return SessionError(.notOwner, "this node holds a backup of \(id); ask its owner") }
        return SessionError(.sessionNotFound, "no session \(id)")
    }

    /// This node's own copy of `id` (owner, backup or tombstone), without touching it.
    public func copy(of id: SessionID) -> HeldCopy? { shard(for: id).withCore { $0.copy(of: id) } }

    /// Runs `body` as a change scope on an owned session: scopes on one session run one at
    /// a time; at the end the exact changes are committed and replicated per
    /// `writeFrequency` and `mode`. `ifMatch` fails with `precondition-failed` when the
    /// session's stamp differs. Throws `session-not-found`, `misdirected` (only a backup
    /// here), `payload-too-large`, `insufficient-replicas`, `overloaded` (nothing applied
    /// in each), `sync-timeout` (applied, durability unknown), or what `body` throws
    /// (nothing applied).
    public func withSession<T: Sendable>(_ id: SessionID, ifMatch: Stamp? = nil,
                                         _ body: (inout SessionScope) throws -> T) async throws -> (value: T, result: WriteResult) {
        try checkRunning()
        let generation = rejoins
        let box = shard(for: id)
        await box.acquireScope(id)
        defer { box.releaseScope(id) }
        try checkRunning()
        try await awaitServing(id)
        try checkNotRejoined(since: generation, id)
        let wallNow = wall
        let current: SessionState? = box.withCore { $0.access(id, wall: wallNow) }
        guard let current else { throw notOwnedHere(id) }
        if let ifMatch, ifMatch != current.stamp { throw SessionError(.preconditionFailed, "session is at \(current.stamp.etag)") }
        var scope = SessionScope(state: current)
        let value = try body(&scope)
        let outcome: CommitOutcome
        if scope.invalidated {
            outcome = try box.withCore { try $0.invalidate(id, reason: .invalidated, now: now) }
        } else {
            let changes = scope.changes
            let mii = changes.maxInactiveIntervalChanged ? scope.maxInactiveInterval : nil
            outcome = try await commitWaitingForQueue(box) { [self] core in
                // Checked again at the commit itself, never trusted from earlier.
                if case .owner(let s)? = core.copy(of: id), !mayServe(s) { throw fencedError() }
                return try core.commit(id, changes: changes, maxInactiveInterval: mii, now: now, wall: wall)
            }
        }
        flushPending(box)
        return (value, try await finish(outcome, box: box, invalidation: scope.invalidated))
    }

    /// Sends what is pending for `id` (manual and time-based writes) and waits: for
    /// `minSyncReplicas` applies (synchronous), receipts from every reachable backup
    /// (acknowledged), or nothing (best-effort: the result names the replica set the
    /// change was sent to, not a confirmation). Throws `session-not-found`,
    /// `sync-timeout` or `not-ready` (stopped).
    public func sync(_ id: SessionID) async throws -> WriteResult {
        try checkRunning()
        let box = shard(for: id)
        await box.acquireScope(id)
        defer { box.releaseScope(id) }
        try checkRunning()
        try await awaitServing(id)
        let outcome = try box.withCore { try $0.sync(id, now: now) }
        flushPending(box)
        if outcome.waiter == nil, let state = outcome.state {
            return WriteResult(state: state, durability: configuration.replication.mode == .bestEffort && !state.replicaSet.isEmpty ? .replicated(state.replicaSet) : .local)
        }
        return try await finish(outcome, box: box, strict: true)
    }

    /// Invalidates an owned session; returns once every reachable backup holds the
    /// tombstone. Throws `session-not-found`, `misdirected`, or `sync-timeout`.
    public func invalidate(_ id: SessionID) async throws {
        _ = try await withSession(id) { $0.invalidate() }
    }

    /// Calls `observer` with the new state each time this node applies a replicated
    /// change (a delta, whole session or last-access update) to a backup copy, on a
    /// network thread: keep it short. Replaces any earlier
    /// observer; `nil` removes it. Used by `drs bench` to measure replication lag.
    public func observeBackupApplies(_ observer: (@Sendable (SessionState) -> Void)?) {
        observerLock.withLock { applyObserver = observer }
    }

    /// Counters of this node.
    public var counters: NodeCounters {
        var c = NodeCounters()
        for shard in shards {
            shard.withCore { core in
                c.replication.add(core.counters)
                c.primaries += core.ownedCount
                c.backups += core.backupCount
                for (peer, stream) in core.streams { c.queueDepth[peer, default: 0] += stream.entries.count }
            }
        }
        transport.withLockedValue { t in
            c.streamFramesSent = t.streamFramesSent
            c.datagramsSent = t.datagramsSent
            c.socketRebinds = t.socketRebinds
            c.framesReceived = t.framesReceived
            c.rejected = t.rejected
            c.duplicateMessages = t.duplicates
            c.skippedSequences = t.skipped
        }
        return c
    }

    // MARK: - Internals: writes

    /// Whether this node may serve `state` now: a lease from every member of its replica
    /// set that membership holds alive or suspect (docs/design.md (Membership and failover), serving rule).
    /// Under `promotion: majority` it also needs a quorum lease (grants from a majority
    /// of the configured voters, itself included), checked as well as (not instead of)
    /// the replica-set leases: a backup that holds the owner dead stops granting it at
    /// once, while a majority of voters can still grant an owner cut off from that backup.
    func mayServe(_ state: SessionState) -> Bool {
        guard !requiresQuorum || hasQuorum() else { return false }
        guard !state.replicaSet.isEmpty else { return true }
        let live = livePeers.withLockedValue { $0 }
        let t = now
        return leases.withLockedValue { $0.mayServe(replicaSet: state.replicaSet, live: live, now: t) }
    }

    /// Whether `promotion: majority` is configured.
    var requiresQuorum: Bool { configuration.membership.promotion == .majority }

    /// Whether this node holds a quorum lease (see `mayServe`).
    func hasQuorum() -> Bool {
        let voters = configuration.nodes.map(\.name)
        let t = now
        return leases.withLockedValue { $0.hasQuorum(voters: voters, selfName: endpoint.name, now: t) }
    }

    /// Whether this node sees a majority of the configured voters alive (itself
    /// included): under `promotion: majority` only such a node promotes.
    func seesMajority() -> Bool {
        let statuses = peerStatuses()
        let voters = configuration.nodes.map(\.name)
        let alive = voters.filter { $0 == endpoint.name || statuses[$0] == .alive }.count
        return alive > voters.count / 2
    }

    func fencedError() -> SessionError {
        if requiresQuorum, !hasQuorum() {
            return SessionError(.noQuorum, "no current lease from a majority of the voters (promotion: majority); this side of a partition serves nothing")
        }
        return SessionError(.fenced, "no current lease from every live backup of the session; another node may own it now")
    }

    /// Waits until this node passes the serving check for `id` when it owns it: a lease
    /// lapses while a backup is unreachable, until that backup answers again or is
    /// declared dead. Throws `fenced` after `4 x lease`.
    func awaitServing(_ id: SessionID) async throws {
        let deadline = ContinuousClock.now + configuration.membership.lease * 4
        while true {
            guard case .owner(let s)? = copy(of: id), !mayServe(s) else { return }
            try checkRunning()
            guard ContinuousClock.now < deadline else { throw fencedError() }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    /// Under `promotion: majority`, waits up to `4 x lease` for a quorum lease; throws
    /// `no-quorum` then.
    func awaitQuorum() async throws {
        let deadline = ContinuousClock.now + configuration.membership.lease * 4
        while !hasQuorum() {
            try checkRunning()
            guard ContinuousClock.now < deadline else { throw fencedError() }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    /// Retries a commit refused as `overloaded` until `syncTimeout`.
    private func commitWaitingForQueue(_ box: ShardBox, _ body: (inout ReplicaShard) throws -> CommitOutcome) async throws -> CommitOutcome {
        let deadline = ContinuousClock.now + configuration.replication.syncTimeout
        while true {
            do {
                return try box.withCore { core in try body(&core) }
            } catch let error as SessionError where error.code == .overloaded && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(2))
            }
        }
    }

    func finish(_ outcome: CommitOutcome, box: ShardBox, invalidation: Bool = false, strict: Bool = false) async throws -> WriteResult {
        guard let waiter = outcome.waiter else { return WriteResult(state: outcome.state, durability: .local) }
        switch await box.wait(waiter) {
        case .replicated(let names):
            return WriteResult(state: outcome.state, durability: names.isEmpty ? .local : .replicated(names))
        case .timedOut:
            if isStopped { throw SessionError(.shuttingDown, "the node stopped before replication completed; the change is applied here, its durability unknown") }
            if !strict, !invalidation, configuration.replication.onSyncTimeout == .degrade {
                box.withCore { $0.noteDegraded() }
                return WriteResult(state: outcome.state, durability: .local)
            }
            throw SessionError(.syncTimeout, "replication did not complete within syncTimeout; the change is applied here, its durability unknown")
        }
    }

    // MARK: - Internals: sending

    var datagramTransport: Bool { configuration.replication.effectiveTransport == .udp }

    /// Schedules a flush of every peer with never-sent messages in `box`.
    func flushPending(_ box: ShardBox) {
        let peers = box.withCore { $0.peersWithUnsent }
        for peer in peers { scheduleFlush(peer) }
    }

    func scheduleFlush(_ peer: String) {
        guard !isStopped, let link = links[peer], link.claimFlush() else { return }
        link.eventLoop.execute { [self] in flush(link) }
    }

    /// Sends every never-sent batch of every shard and the queued control messages to
    /// `link`'s peer, in one write per transport.
    func flush(_ link: PeerLink) {
        link.beginFlush()
        let t = now
        var batches: [(UInt16, OutboundBatch)] = []
        for (lane, shard) in shards.enumerated() {
            for b in shard.withCore({ $0.takeBatches(for: link.name, now: t, datagram: datagramTransport) }) {
                batches.append((UInt16(lane), b))
            }
        }
        // Control (receipts, resync requests) waits for a connection rather than being lost.
        let control = datagramTransport || link.isConnected ? link.takeControl() : []
        transmit(batches, control: control, to: link)
    }

    func transmit(_ batches: [(UInt16, OutboundBatch)], control: [[UInt8]], to link: PeerLink) {
        guard !batches.isEmpty || !control.isEmpty, !isStopped else { return }
        let udp = datagramTransport
        let maxDatagram = configuration.replication.udpMaxPayload
        var stream = ByteBuffer()
        var datagrams: [ByteBuffer] = []
        var streamFrames = 0
        for (lane, b) in batches {
            let body = FrameBody.encode(data: b.messages, control: [])
            if udp, body.count + FrameHeader.maxDatagramOverhead <= maxDatagram {
                var d = ByteBuffer()
                frameCodec.encode(lane: lane, firstSequence: b.firstSequence, lowWatermark: b.lowWatermark, body: body, datagram: true, into: &d)
                datagrams.append(d)
            } else {
                frameCodec.encode(lane: lane, firstSequence: b.firstSequence, lowWatermark: b.lowWatermark, body: body, datagram: false, into: &stream)
                streamFrames += 1
            }
        }
        if !control.isEmpty {
            let body = FrameBody.encode(data: [], control: control)
            if udp, body.count + FrameHeader.maxDatagramOverhead <= maxDatagram {
                var d = ByteBuffer()
                frameCodec.encode(lane: 0, firstSequence: 0, lowWatermark: 0, body: body, datagram: true, into: &d)
                datagrams.append(d)
            } else {
                frameCodec.encode(lane: 0, firstSequence: 0, lowWatermark: 0, body: body, datagram: false, into: &stream)
                streamFrames += 1
            }
        }
        if streamFrames > 0, let channel = link.connectedChannel(connect: { host, port in connect(link, host: host, port: port) }) {
            sendStream(stream, on: channel)
            transport.withLockedValue { $0.streamFramesSent += streamFrames }
        }
        if !datagrams.isEmpty, let address = link.datagramAddress, let channel = state.withLockedValue({ $0.datagram }) {
            sendDatagrams(datagrams, to: address, on: channel)
            transport.withLockedValue { $0.datagramsSent += datagrams.count }
        }
    }

    func connect(_ link: PeerLink, host: String, port: Int) {
        guard !state.withLockedValue({ $0.stopped }) else { return }
        let bootstrap = ClientBootstrap(group: link.eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.milliseconds(500))
        let bound = (try? SocketAddress(ipAddress: endpoint.address, port: 0)).map { bootstrap.bind(to: $0) } ?? bootstrap
        bound.connect(host: host, port: port).whenComplete { [self] result in
            switch result {
            case .success(let channel):
                // A small first frame, before anything else can use the connection: the
                // listener buffers little until a frame authenticates (InboundPolicy).
                channel.writeAndFlush(helloFrame(), promise: nil)
                guard link.connected(channel), !isStopped else { return }
                setReachable(link.name, true)
                channel.closeFuture.whenComplete { [self] _ in
                    link.disconnected(channel)
                    setReachable(link.name, false)
                }
                // Over TCP, what was in flight on a lost connection is resent at once. (Over
                // UDP the retransmission timer covers it: this connection carries no data.)
                let t = now
                var batches: [(UInt16, OutboundBatch)] = []
                for (lane, shard) in shards.enumerated() where !datagramTransport {
                    for b in shard.withCore({ $0.resendInFlight(to: link.name, now: t, datagram: false) }) { batches.append((UInt16(lane), b)) }
                }
                transmit(batches, control: [], to: link)
                scheduleFlush(link.name)
            case .failure(let error):
                link.connected(nil)
                setReachable(link.name, false)
                logger.debug("replication connect failed", metadata: ["drs.peer": "\(link.name)", "error": "\(error)"])
            }
        }
    }

    func setReachable(_ peer: String, _ reachable: Bool) {
        for shard in shards { shard.withCore { $0.setReachable(peer, reachable) } }
    }

    // MARK: - Internals: time

    func tick() {
        let t = now, w = wall
        let udp = datagramTransport
        // Peers with a live connection get no timed resends over TCP: it delivers in order,
        // and everything in flight is resent when a connection is re-established.
        let reliable: Set<String> = udp ? [] : Set(links.values.filter(\.isConnected).map(\.name))
        var resend: [String: [(UInt16, OutboundBatch)]] = [:]
        guard !isStopped else { return }
        for (lane, shard) in shards.enumerated() {
            let out = shard.withCore { $0.tick(now: t, wall: w, datagram: udp, reliable: reliable) }
            for (peer, batches) in out.resend { resend[peer, default: []] += batches.map { (UInt16(lane), $0) } }
            shard.complete(out.completed)
            flushPending(shard)
            for (peer, request) in out.digests {
                links[peer]?.addControl(.digest(request))
                scheduleFlush(peer)
            }
        }
        for (peer, batches) in resend {
            guard let link = links[peer] else { continue }
            link.eventLoop.execute { [self] in transmit(batches, control: [], to: link) }
        }
        // Streams of senders silent for a minute are forgotten (a peer that never came
        // back); should it return, its next frame's low watermark starts a new one.
        let idle = t + .seconds(-60)
        if idle > .zero {
            inbound.withLockedValue { s in
                s.streams = s.streams.filter { _, box in box.lock.withLock { box.lastHeard >= idle } }
            }
        }
        // Gaps that waited out the reorder delay.
        let boxes = inbound.withLockedValue { Array($0.streams.values) }
        for box in boxes {
            box.lock.withLock {
                let d = box.stream.tick(now: t, reorderDelay: configuration.replication.reorderDelay)
                if d.reportGap { deliver(d, box: box, t: t) }
            }
        }
        for link in links.values {
            _ = link.connectedChannel(connect: { host, port in connect(link, host: host, port: port) })
        }
    }

    // MARK: - Internals: receiving

    func countRejection(_ reason: FrameRejection) {
        transport.withLockedValue { $0.rejected[reason, default: 0] += 1 }
    }

    func receive(_ buffer: ByteBuffer, datagram: Bool) {
        guard !isStopped else { return }
        let header: FrameHeader, body: FrameBody
        var membershipMessage: MembershipMessage?
        switch frameCodec.decode(buffer, datagram: datagram) {
        case .failure(let reason):
            countRejection(reason)
            return
        case .success(.replication(let h, let b)):
            (header, body) = (h, b)
        case .success(.membership(let h, let m)):
            // Membership datagrams belong on the membership socket.
            guard !datagram else { countRejection(.malformed); return }
            (header, body) = (h, FrameBody())
            membershipMessage = m
        }
        guard links[header.senderName] != nil else { countRejection(.unknownSender); return }
        let (accepted, restarted): (Bool, Bool) = inbound.withLockedValue { s in
            guard !s.retired.contains(header.sender) else { return (false, false) }
            var window = s.windows[header.sender] ?? ReplayWindow()
            let ok = datagram ? window.acceptDatagram(header.counter) : window.acceptStream(header.counter)
            guard ok else { return (false, false) }
            s.windows[header.sender] = window
            var restarted = false
            if let previous = s.currentID[header.senderName], previous != header.sender {
                // The peer restarted: its old streams and windows are gone for good, and
                // frames of the old process are refused from now on.
                s.streams = s.streams.filter { $0.key.sender != previous }
                s.windows[previous] = nil
                s.retired.insert(previous)
                restarted = true
            }
            s.currentID[header.senderName] = header.sender
            return (true, restarted)
        }
        guard accepted else { countRejection(.replayed); return }
        if restarted {
            logger.info("peer restarted; re-sending the sessions it backs", metadata: ["drs.peer": "\(header.senderName)"])
            for shard in shards { shard.withCore { $0.peerRestarted(header.senderName) } }
        }
        transport.withLockedValue { $0.framesReceived += 1 }
        if let membershipMessage {
            receiveMembership(membershipMessage, header: header, reliable: true)
            return
        }
        let t = now
        for message in body.control {
            switch message {
            case .receipt(let r) where Int(r.lane) < shards.count:
                let shard = shards[Int(r.lane)]
                let out = shard.withCore { $0.onReceipt(from: header.senderName, r, now: t, datagram: datagramTransport) }
                shard.complete(out.completed)
                if !out.resend.isEmpty, let link = links[header.senderName] {
                    link.eventLoop.execute { [self] in transmit(out.resend.map { (r.lane, $0) }, control: [], to: link) }
                }
            case .resync(let r) where Int(r.lane) < shards.count:
                let shard = shards[Int(r.lane)]
                shard.withCore { $0.onResync(from: header.senderName, entries: r.entries, now: t) }
                flushPending(shard)
            case .prepare(let p):
                // Only a taker held alive: a dead process's takeover is void.
                if isAlive(header.senderName, process: header.sender) { onPrepare(p, from: header.senderName) }
            case .promise(let p):
                onPromise(p, from: header.senderName)
            case .handover(let h):
                onHandover(h, from: header.senderName, process: header.sender)
            case .handoverReply(let h):
                onHandoverReply(h, from: header.senderName, process: header.sender)
            case .digest(let d):
                onDigest(d, from: header.senderName)
            case .digestReply(let d) where Int(d.lane) < shards.count:
                let shard = shards[Int(d.lane)]
                let release = shard.withCore { $0.onDigestReply(from: header.senderName, d, now: t) }
                flushPending(shard)
                if !release.isEmpty {
                    links[header.senderName]?.addControl(.release(ReleaseRequest(entries: release)))
                    scheduleFlush(header.senderName)
                }
            case .release(let r):
                var byShard: [Int: [DigestReply.Entry]] = [:]
                for e in r.entries { byShard[Int(e.id.stableHash % UInt64(shards.count)), default: []].append(e) }
                for (i, part) in byShard { shards[i].withCore { $0.release(part, from: header.senderName) } }
            default:
                countRejection(.malformed)
            }
        }
        // A frame without data may still move the sender's low watermark (after drops).
        guard !body.data.isEmpty || header.lowWatermark > 1 else { return }
        let box = inbound.withLockedValue { s in
            let key = StreamKey(sender: header.sender, lane: header.lane)
            if let b = s.streams[key] { return b }
            let b = InboundBox(senderName: header.senderName, lane: header.lane)
            s.streams[key] = b
            return b
        }
        box.lock.withLock {
            box.lastHeard = t
            let d = box.stream.accept(firstSequence: header.firstSequence, lowWatermark: header.lowWatermark, messages: body.data,
                                      now: t, reorderFrames: configuration.replication.reorderFrames,
                                      reorderDelay: configuration.replication.reorderDelay)
            deliver(d, box: box, t: t)
        }
    }

    /// Applies delivered messages and queues the receipt (and resync requests) for the
    /// sender. Called with `box.lock` held, so one stream applies in order.
    private func deliver(_ d: InboundStream.Delivery, box: InboundBox, t: MonotonicInstant) {
        var newResyncs = 0
        var refused: [UInt64] = []
        let observer = observerLock.withLock { applyObserver }
        for (seq, message) in d.messages {
            guard let id = message.sessionID else { continue }
            let (outcome, state) = shard(for: id).withCore { core in
                let outcome = core.apply(message, from: box.senderName, now: t)
                return (outcome, observer != nil && outcome == .applied ? core.copy(of: id) : nil)
            }
            if outcome == .fenced { refused.append(seq) }
            switch (outcome, message) {
            case (.needsResync, _):
                box.stream.needsResync(id, sequence: seq, now: t)
                newResyncs += 1
            case (_, .full), (_, .invalidate):
                box.stream.resolved(id)
            default:
                break
            }
            if let observer, case .backup(let s) = state { observer(s) }
        }
        if newResyncs > 0 { shards[0].withCore { $0.noteResyncRequested(newResyncs) } }
        let resync = box.stream.pendingResyncs(now: t)
        transport.withLockedValue {
            $0.duplicates += d.duplicates
            $0.skipped += Int(d.skipped)
        }
        guard let link = links[box.senderName] else { return }
        let held = box.stream.buffered > 0 ? box.stream.heldRanges() : []
        link.addControl(lane: box.lane, through: box.stream.deliveredThrough, held: held, resync: resync, refused: refused)
        if datagramTransport && resync.isEmpty && !d.reportGap {
            // Over UDP a receipt waits up to 1 ms so that one covers many datagrams (half
            // the packets otherwise). Over TCP it goes at once: synchronous writes wait on it.
            if !isStopped, link.claimReceiptFlush() {
                link.eventLoop.scheduleTask(in: .milliseconds(1)) { [self] in flush(link) }
            }
        } else {
            scheduleFlush(box.senderName)
        }
    }
}
