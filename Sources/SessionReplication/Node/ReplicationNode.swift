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
///
/// Every protocol decision is `NodeCore`'s (a value type in `SessionReplicationCore`);
/// this class owns the sockets, timers, sealing, locking and metrics, feeds the core every
/// event and performs the actions it returns.
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
    let links: [String: PeerLink]
    /// Who may connect to the replication port (configured peers, by address or by the
    /// address their name resolved to).
    let inboundPolicy: InboundPolicy
    let frameCodec: FrameCodec
    let origin = ContinuousClock.now
    let state = NIOLockedValueBox(RuntimeState())
    private let windows = NIOLockedValueBox(ReplayWindows())
    let transport = NIOLockedValueBox(TransportCounters())
    /// Every protocol decision: membership, leases, failover, streams, requests.
    let core: CoreBox
    /// Membership datagrams and the node's timer run here, apart from the replication
    /// sockets' loops.
    let membershipGroup: MultiThreadedEventLoopGroup
    /// Faults injected into outbound replication traffic (none by default; `setFaults`).
    let faultPlan = NIOLockedValueBox(FaultPlan(settings: FaultSettings(), random: SystemRandomNumberGenerator()))
    var membershipLoop: any EventLoop { membershipGroup.next() }
    // A plain stored closure: reading one through a generic box re-wraps it in a
    // reabstraction thunk on every call, which profiling showed stacking up.
    let eventHub = SessionEventHub()
    private let observerLock = NIOLock()
    private var applyObserver: (@Sendable (SessionState) -> Void)?

    struct RuntimeState {
        var started = false
        var stopped = false
        var server: (any Channel)?
        var datagram: (any Channel)?
        var tick: RepeatedTask?
        var membershipChannel: (any Channel)?
        /// Accepted connections, closed at shutdown (closing a listener leaves them open).
        var children: [ObjectIdentifier: any Channel] = [:]
        /// Resolve the peers configured by DNS name, one task per peer
        /// (`ReplicationNode+Resolution`).
        var resolvers: [Task<Void, Never>] = []
    }

    /// Replay windows of the sealed frames' counters, per sender process.
    struct ReplayWindows {
        var replication: [NodeID: ReplayWindow] = [:]
        /// Datagram counters seen on the membership socket (apart from replication
        /// datagrams, so a flood of those never pushes a probe out of the window).
        var membership: [NodeID: ReplayWindow] = [:]
    }

    struct TransportCounters {
        var streamFramesSent = 0
        var datagramsSent = 0
        var framesReceived = 0
        var socketRebinds = 0
        var rejected: [FrameRejection: Int] = [:]
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
        let id = NodeID.fresh(start: Self.wallClock(), random: rng.next())
        self.membershipGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
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
        var links: [String: PeerLink] = [:]
        for peer in configuration.nodes where peer.name != name {
            links[peer.name] = PeerLink(name: peer.name, host: peer.address, port: peer.replicationPort,
                                        membershipPort: peer.membershipPort, eventLoop: group.next())
        }
        self.links = links
        self.inboundPolicy = InboundPolicy(configuration: configuration, selfName: name)
        let codec = FrameCodec(sealer: FrameSealer(keys: configuration.keys, clusterID: configuration.clusterID, selfID: id),
                               selfName: name, limits: WireLimits())
        self.frameCodec = codec
        var settings = NodeSettings(name: name, members: configuration.nodes.map(\.name),
                                    backupCandidates: configuration.nodes.filter { $0.name != name && configuration.role(of: $0.name).storesBackups }.map(\.name),
                                    policy: configuration.replication, sessions: configuration.sessions,
                                    membership: configuration.membership.tuning)
        settings.policy.role = configuration.role(of: name)
        settings.lease = configuration.membership.lease
        settings.majority = configuration.membership.promotion == .majority
        settings.lanes = max(1, min(16, System.coreCount))
        var core = NodeCore(settings: settings, id: id, randomSeed: rng.next(), now: .zero)
        // Protocol decisions (prepares, promises, promotions, handovers) are logged at
        // debug level, and built only when that level is on.
        core.verbose = logger.logLevel <= .debug
        self.core = CoreBox(core: core, identityChanged: { codec.sealer.setSelfID($0) })
    }

    // MARK: - Lifecycle

    /// Binds the replication sockets (TCP and UDP on `replicationPort`) and the
    /// membership socket, and starts the timer. Throws if a socket cannot be bound.
    public func start() async throws {
        guard state.withLockedValue({ s in defer { s.started = true }; return !s.started }) else { return }
        let server: any Channel, datagram: any Channel
        do {
            (server, datagram) = try await bindReplication()
        } catch {
            state.withLockedValue { $0.started = false }
            throw error
        }
        do {
            let membership = try await bindMembership(port: endpoint.membershipPort)
            state.withLockedValue { $0.membershipChannel = membership }
        } catch {
            // Leave nothing bound behind a failed start: not started first, so the UDP
            // socket closed here is not bound again (see `rebindOnClose`).
            state.withLockedValue { $0.started = false }
            try? await server.close()
            try? await datagram.close()
            throw error
        }
        event { core, now, wall in core.listening(now: now, wall: wall) }
        let tick = membershipLoop.scheduleRepeatedTask(initialDelay: .milliseconds(1), delay: .milliseconds(2)) { [weak self] _ in
            self?.tick()
        }
        let resolver = startResolver()
        state.withLockedValue {
            $0.server = server
            $0.datagram = datagram
            $0.tick = tick
            $0.resolvers = resolver
        }
        logger.info("replication node started", metadata: [
            "drs.address": "\(endpoint.address)", "drs.bind": "\(endpoint.listenAddress)", "drs.port": "\(replicationPort ?? -1)", "drs.id": "\(nodeID)",
        ])
    }

    /// Stops the timer, closes every socket (listeners, accepted and outgoing
    /// connections) and, if the node created it, shuts down the event loop group. Calls
    /// waiting on replication end with `not-ready` (their change is applied here,
    /// durability unknown); later calls fail with `not-ready`.
    public func shutdown() async {
        let (server, datagram, membership, tick, children, wasStopped) = state.withLockedValue {
            s -> ((any Channel)?, (any Channel)?, (any Channel)?, RepeatedTask?, [any Channel], Bool) in
            guard !s.stopped else { return (nil, nil, nil, nil, [], true) }
            s.stopped = true
            defer { s.datagram = nil; s.membershipChannel = nil; s.children = [:] }
            return (s.server, s.datagram, s.membershipChannel, s.tick, Array(s.children.values), false)
        }
        guard !wasStopped else { return }
        state.withLockedValue { s in s.resolvers.forEach { $0.cancel() } }
        if let tick {
            let done = membershipLoop.makePromise(of: Void.self)
            tick.cancel(promise: done)
            try? await done.futureResult.get()
        }
        perform(core.run { $0.stop() })
        eventHub.finish()
        try? await membership?.close()
        try? await server?.close()
        try? await datagram?.close()
        for child in children { try? await child.close() }
        for link in links.values { await link.close() }
        if ownsGroup { try? await group.shutdownGracefully() }
        try? await membershipGroup.shutdownGracefully()
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

    /// Binds the replication listener (TCP) and the UDP socket on the same port. With
    /// `replicationPort` 0 the kernel picks the TCP port, which another UDP socket may
    /// hold already (seen as a rare `EADDRINUSE` when many test clusters start at
    /// once): both are then bound again on a new port, up to 20 times. A configured
    /// port is tried once. Throws the bind error.
    func bindReplication() async throws -> (server: any Channel, datagram: any Channel) {
        var attempt = 1
        while true {
            let server = try await bindListener()
            do {
                return (server, try await bindDatagram(port: server.localAddress?.port ?? endpoint.replicationPort))
            } catch let error as IOError where error.errnoCode == EADDRINUSE && endpoint.replicationPort == 0 && attempt < 20 {
                try? await server.close()
                attempt += 1
            } catch {
                try? await server.close()
                throw error
            }
        }
    }

    /// Binds the replication TCP listener on `replicationPort` (0: a port the kernel picks).
    func bindListener() async throws -> any Channel {
        try await ServerBootstrap(group: group)
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
            .bind(host: endpoint.listenAddress, port: endpoint.replicationPort).get()
    }

    var isStopped: Bool { state.withLockedValue { $0.stopped } }
    var isStarted: Bool { state.withLockedValue { $0.started && $0.server != nil } }

    // MARK: - Clocks

    var now: MonotonicInstant {
        let d = ContinuousClock.now - origin
        return MonotonicInstant(nanoseconds: UInt64(max(0, d.nanosecondsClamped)))
    }

    var wall: WallTime { Self.wallClock() }

    static func wallClock() -> WallTime {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return WallTime(milliseconds: Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000)
    }

    // MARK: - Performing the core's actions

    /// Runs one event on the core and performs its actions.
    /// The clocks are read under the core's lock, so the core sees its samples in order.
    func event(_ body: (inout NodeCore, MonotonicInstant, WallTime) -> [NodeAction]) {
        perform(core.run { let (t, w) = clocks; return body(&$0, t, w) })
    }

    /// Both clocks as one pair: the wall clock is read on both sides of the monotonic
    /// one, again when they are more than a millisecond apart. A thread descheduled
    /// between the two reads (tens of milliseconds on a loaded host) would hand the core
    /// a pair in which the wall clock ran ahead, which it takes for a paused VM.
    var clocks: (MonotonicInstant, WallTime) {
        var tries = 1
        while true {
            let before = wall, t = now, after = wall
            if after.milliseconds - before.milliseconds <= 1 || tries == 4 { return (t, before) }
            tries += 1
        }
    }

    func perform(_ actions: [NodeAction]) {
        for action in actions {
            switch action {
            case .send(let peer, let t):
                guard let link = links[peer] else { continue }
                if link.eventLoop.inEventLoop { transmit(t, to: link) } else { link.eventLoop.execute { [self] in transmit(t, to: link) } }
            case .flush(let peer, let delay):
                if let delay { scheduleReceiptFlush(peer, after: delay) } else { scheduleFlush(peer) }
            case .sendMembership(let o, let speaker):
                sendMembership(o, speaker: speaker)
            case .complete(let r, let result):
                core.deliver(r, .result(result))
            case .scopeReady(let r, let s):
                core.deliver(r, .ready(s))
            case .identityChanged:
                break  // the sealer learned it under the core's lock
            case .refused(let reason):
                switch reason {
                case .retiredProcess, .deadProcess: countRejection(.replayed)
                case .unknownSender: countRejection(.unknownSender)
                case .malformed: countRejection(.malformed)
                }
            case .event(let e):
                eventHub.publish(e)
            case .backupApplied(let s):
                if let observer = observerLock.withLock({ applyObserver }) { observer(s) }
            case .log(let line):
                var metadata: Logger.Metadata = [:]
                for (k, v) in line.metadata { metadata[k] = "\(v)" }
                switch line.level {
                case .debug: logger.debug("\(line.message)", metadata: metadata)
                case .info: logger.info("\(line.message)", metadata: metadata)
                case .notice: logger.notice("\(line.message)", metadata: metadata)
                case .warning: logger.warning("\(line.message)", metadata: metadata)
                }
            }
        }
    }

    /// Calls `observer` with the new state each time this node applies a replicated
    /// change (a delta, whole session or last-access update) to a backup copy, on a
    /// network thread: keep it short. Replaces any earlier observer; `nil` removes it.
    /// Used by `drs bench` to measure replication lag.
    public func observeBackupApplies(_ observer: (@Sendable (SessionState) -> Void)?) {
        observerLock.withLock { applyObserver = observer }
        core.modify { $0.reportsBackupApplies = observer != nil }
    }

    /// What happens to sessions on this node, in order per session, as an `AsyncSequence`:
    /// `created`, `changed` (the attribute names), `expired`, `invalidated`, `rotated`,
    /// `activated` (this node became the owner by takeover, failover or handover) and
    /// `passivated` (it stopped being the owner), each with the session id and stamp.
    /// Every subscription gets every event once, through its own buffer of `bufferSize`
    /// events (default 10,000): when a subscriber falls that far behind, its oldest
    /// events are dropped and counted (`droppedSessionEvents`); the replication path never
    /// waits for a subscriber. The sequence ends when the node stops. Events are produced
    /// only while someone subscribes.
    public func sessionEvents(bufferSize: Int = 10_000) -> AsyncStream<SessionEvent> {
        let stream = eventHub.subscribe(buffer: bufferSize) { [weak self] in
            guard let self, !self.eventHub.hasSubscribers else { return }
            self.core.modify { $0.reportsEvents = false }
        }
        core.modify { $0.reportsEvents = true }
        return stream
    }

    /// Session events dropped because a subscriber's buffer was full.
    public var droppedSessionEvents: Int { eventHub.droppedCount }

    // MARK: - Sending

    var datagramTransport: Bool { configuration.replication.effectiveTransport == .udp }

    func scheduleFlush(_ peer: String) {
        guard !isStopped, let link = links[peer], link.claimFlush() else { return }
        link.eventLoop.execute { [self] in flush(link) }
    }

    func scheduleReceiptFlush(_ peer: String, after delay: Duration) {
        guard !isStopped, let link = links[peer], link.claimReceiptFlush() else { return }
        link.eventLoop.scheduleTask(in: .nanoseconds(delay.nanosecondsClamped)) { [self] in flush(link) }
    }

    /// Sends every never-sent batch of every lane and the queued control messages to
    /// `link`'s peer, in one write per transport (on the link's loop).
    func flush(_ link: PeerLink) {
        link.beginFlush()
        let connected = link.isConnected
        event { core, t, w in core.flush(link.name, now: t, wall: w, streamConnected: connected) }
    }

    /// Frames and sends `t` (on the link's loop, so a connection's frames leave in the
    /// order of their counters): data batches that fit a datagram go over UDP when the
    /// transport is UDP, everything else over the TCP connection.
    func transmit(_ t: Transmission, to link: PeerLink) {
        guard !t.isEmpty, !isStopped, t.speaker == frameCodec.sealer.selfID else { return }
        var stream = ByteBuffer()
        var datagrams: [ByteBuffer] = []
        var streamFrames = 0
        for f in t.frames(datagram: datagramTransport, maxDatagram: configuration.replication.udpMaxPayload) {
            if f.datagram {
                var d = ByteBuffer()
                frameCodec.encode(lane: f.lane, firstSequence: f.firstSequence, lowWatermark: f.lowWatermark, body: f.body, datagram: true, into: &d)
                datagrams.append(d)
            } else {
                frameCodec.encode(lane: f.lane, firstSequence: f.firstSequence, lowWatermark: f.lowWatermark, body: f.body, datagram: false, into: &stream)
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

    /// The source address of a connection to `host`, so that the peer's `InboundPolicy`
    /// recognises it: the listen address when it is a specific IP literal, else (a
    /// wildcard `bind`) the node's `address` when that is an IP literal; only of the
    /// target's address family. `nil` (the kernel chooses) for a name, a family mismatch
    /// or a target not yet resolved.
    func sourceAddress(towards host: String) -> SocketAddress? {
        guard let target = try? SocketAddress(ipAddress: host, port: 0) else { return nil }
        for candidate in [endpoint.listenAddress, endpoint.address] {
            guard let source = try? SocketAddress(ipAddress: candidate, port: 0) else { continue }
            let ip = source.ipAddress ?? ""
            if ip == "0.0.0.0" || ip == "::" { continue }
            return source.protocol == target.protocol ? source : nil
        }
        return nil
    }

    func connect(_ link: PeerLink, host: String, port: Int) {
        guard !isStopped else { return }
        let bootstrap = ClientBootstrap(group: link.eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.milliseconds(500))
        let bound = sourceAddress(towards: host).map { bootstrap.bind(to: $0) } ?? bootstrap
        bound.connect(host: host, port: port).whenComplete { [self] result in
            switch result {
            case .success(let channel):
                // A small first frame, before anything else can use the connection: the
                // listener buffers little until a frame authenticates (InboundPolicy).
                channel.writeAndFlush(helloFrame(), promise: nil)
                guard link.connected(channel), !isStopped else { return }
                channel.closeFuture.whenComplete { [self] _ in
                    link.disconnected(channel)
                    event { core, t, w in core.connectionChanged(link.name, connected: false, now: t, wall: w) }
                }
                event { core, t, w in core.connectionChanged(link.name, connected: true, now: t, wall: w) }
            case .failure(let error):
                link.connected(nil)
                event { core, t, w in core.connectionChanged(link.name, connected: false, now: t, wall: w) }
                logger.debug("replication connect failed", metadata: ["drs.peer": "\(link.name)", "error": "\(error)"])
            }
        }
    }

    // MARK: - Time

    func tick() {
        guard !isStopped else { return }
        event { core, t, w in core.tick(now: t, wall: w) }
        for link in links.values {
            _ = link.connectedChannel(connect: { host, port in connect(link, host: host, port: port) })
        }
    }

    // MARK: - Receiving

    func countRejection(_ reason: FrameRejection) {
        transport.withLockedValue { $0.rejected[reason, default: 0] += 1 }
    }

    /// A frame from the replication sockets: opened and decoded here, checked against its
    /// sender's replay window, then handed to the core.
    func receive(_ buffer: ByteBuffer, datagram: Bool) {
        guard !isStopped else { return }
        let frame: InboundFrame
        let counter: UInt64
        switch frameCodec.decode(buffer, datagram: datagram) {
        case .failure(let reason):
            countRejection(reason)
            return
        case .success(.replication(let h, let b)):
            // A message that did not decode is refused alone (the core receipts a data
            // message as refused), never the frame around it.
            for r in b.refused { countRejection(r.error.isTooLarge ? .oversized : .malformed) }
            frame = InboundFrame(senderName: h.senderName, sender: h.sender, lane: h.lane, firstSequence: h.firstSequence,
                                 lowWatermark: h.lowWatermark, decoded: b)
            counter = h.counter
        case .success(.membership(let h, let m)):
            // Membership datagrams belong on the membership socket.
            guard !datagram else { countRejection(.malformed); return }
            frame = InboundFrame(senderName: h.senderName, sender: h.sender, membership: m)
            counter = h.counter
        }
        guard links[frame.senderName] != nil else { countRejection(.unknownSender); return }
        let accepted = windows.withLockedValue { w in
            var window = w.replication[frame.sender] ?? ReplayWindow()
            guard datagram ? window.acceptDatagram(counter) : window.acceptStream(counter) else { return false }
            w.replication[frame.sender] = window
            return true
        }
        guard accepted else { countRejection(.replayed); return }
        transport.withLockedValue { $0.framesReceived += 1 }
        event { core, t, w in core.receiveFrame(frame, now: t, wall: w) }
    }

    /// Whether a membership datagram's counter is new for its sender.
    func acceptMembershipCounter(_ header: FrameHeader) -> Bool {
        windows.withLockedValue { w in
            var window = w.membership[header.sender] ?? ReplayWindow()
            guard window.acceptDatagram(header.counter) else { return false }
            w.membership[header.sender] = window
            return true
        }
    }

    static let datagramVector = 32
    static func datagramSlot(_ maxPayload: Int) -> Int { max(2048, (maxPayload + 1023) / 1024 * 1024 + 1024) }
}
