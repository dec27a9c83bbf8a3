// The simulator, the simulated processes and the scenarios live in one file on
// purpose: `make test` is a debug build, compiled file by file, and the generic
// simulator is only specialised for its processes when they share a file (about 10x
// faster than unspecialised code, which copies each process on every event).
import HeapModule
#if canImport(Glibc)
import Glibc
#endif
import SessionReplicationCore

// MARK: - Simulator
/// A process the simulator runs: a core state machine (or several) behind one name,
/// fed messages and timer ticks, returning what it wants to send.
public protocol SimulatedProcess {
    /// The messages processes exchange.
    associatedtype Message
    /// This process's node id (fresh per start).
    var id: NodeID { get }
    /// The earliest instant its `tick` has work.
    var nextDeadline: MonotonicInstant { get }
    /// Runs due timers.
    mutating func tick(now: MonotonicInstant, wall: WallTime)
    /// Handles one message from `from` (process `id`); `reliable` says it came on a stream.
    mutating func receive(_ message: Message, from: String, id: NodeID, reliable: Bool, now: MonotonicInstant, wall: WallTime)
    /// Messages to send, drained.
    mutating func takeOutgoing() -> [SimulatedSend<Message>]
}

/// One message a simulated process sends.
public struct SimulatedSend<Message> {
    /// Receiver name.
    public var to: String
    /// The message.
    public var message: Message
    /// Stream (TCP: never randomly lost, in order per pair) rather than datagram.
    public var reliable: Bool
    /// Creates a send.
    public init(to: String, message: Message, reliable: Bool) {
        self.to = to
        self.message = message
        self.reliable = reliable
    }
}

/// How the simulated network misbehaves. Partitions are set on the simulator.
public struct NetworkModel: Hashable, Sendable {
    /// Probability a datagram is lost. Default 0.
    public var dropRate = 0.0
    /// Probability a datagram arrives twice. Default 0.
    public var duplicateRate = 0.0
    /// Shortest one-way delay. Default 100 us.
    public var minDelay: Duration = .microseconds(100)
    /// Longest one-way delay; datagrams reorder within the spread. Default 2 ms.
    public var maxDelay: Duration = .milliseconds(2)
    /// The defaults: a clean LAN.
    public init() {}
}

/// A deterministic discrete-event simulator: processes under a virtual monotonic clock
/// (wall clocks skewed per process), a seeded network that drops, delays, duplicates,
/// reorders and partitions (asymmetric too), and crashes, pauses and restarts. A paused
/// process's clock keeps running; messages queue and are delivered before its due
/// timers when it resumes. Every choice comes from the seed and no decision iterates
/// an unordered collection, so a seed replays exactly.
public final class Simulator<Process: SimulatedProcess> {
    struct Delivery {
        var to: String
        var from: String
        var fromID: NodeID
        var message: Process.Message
        var reliable: Bool
    }

    enum Kind {
        case deliver(Delivery)
        case timer(Int)
    }

    struct Event: Comparable {
        var time: MonotonicInstant
        var order: UInt64
        var kind: Kind
        static func < (a: Event, b: Event) -> Bool { (a.time, a.order) < (b.time, b.order) }
        static func == (a: Event, b: Event) -> Bool { a.time == b.time && a.order == b.order }
    }

    /// A reference, so that a process is mutated in place and never copied (the
    /// simulator is generic and often runs unspecialised).
    final class Slot {
        let name: String
        var process: Process?
        var paused = false
        var queued: [Delivery] = []
        var scheduled: MonotonicInstant?
        let skew: Duration
        init(name: String, skew: Duration) {
            self.name = name
            self.skew = skew
        }
    }

    struct Pair: Hashable { var from: String; var to: String }

    /// The virtual monotonic clock.
    public private(set) var now: MonotonicInstant = .zero
    /// The network's behaviour; may change between runs.
    public var network: NetworkModel
    /// The random source of every simulator choice.
    public var random: SeededGenerator
    /// Datagrams and stream messages delivered, dropped (loss, partition, dead receiver).
    public private(set) var delivered = 0, dropped = 0
    /// Called after every event with the simulator (to check invariants at every instant).
    public var observer: ((Simulator) -> Void)?
    /// The process the last event ran on (`nil` for a message to a crashed or paused one).
    public private(set) var lastTouched: String?

    let base = WallTime(milliseconds: 1_700_000_000_000)
    let make: (String, NodeID, MonotonicInstant, WallTime, inout SeededGenerator) -> Process
    var slots: [Slot] = []
    var index: [String: Int] = [:]
    var heap = Heap<Event>()
    var order: UInt64 = 0
    var blocked: Set<Pair> = []
    var lastStreamArrival: [Pair: MonotonicInstant] = [:]
    var starts: UInt64 = 0

    /// A simulator for processes named `names`, all started at time zero by `make`
    /// (name, fresh id, now, wall, random). Wall clocks are skewed by up to `maxSkew`.
    public init(seed: UInt64, names: [String], network: NetworkModel = .init(), maxSkew: Duration = .milliseconds(50),
                make: @escaping (String, NodeID, MonotonicInstant, WallTime, inout SeededGenerator) -> Process) {
        self.random = SeededGenerator(seed: seed)
        self.network = network
        self.make = make
        let skewSpan = UInt64(max(1, maxSkew.nanosecondsClamped))
        for name in names.sorted() {
            let skew = Duration.nanoseconds(Int64(random.next() % (2 * skewSpan)) - Int64(skewSpan))
            index[name] = slots.count
            slots.append(Slot(name: name, skew: skew))
        }
        for name in names.sorted() { start(name) }
    }

    /// Every process name, sorted.
    public var names: [String] { slots.map(\.name) }

    /// The wall clock of `name` now.
    public func wall(_ name: String) -> WallTime { base + (now - .zero) + (index[name].map { slots[$0].skew } ?? .zero) }

    /// The running (or paused) process named `name`; `nil` while crashed. A copy: use
    /// `inspect` in hot loops.
    public func process(_ name: String) -> Process? { index[name].flatMap { slots[$0].process } }

    /// Reads the process `name` without copying it; `nil` while crashed.
    public func inspect<T>(_ name: String, _ body: (borrowing Process) -> T) -> T? {
        guard let i = index[name], slots[i].process != nil else { return nil }
        return body(slots[i].process!)
    }

    /// Whether `name` is running and not paused.
    public func isRunning(_ name: String) -> Bool { index[name].map { slots[$0].process != nil && !slots[$0].paused } ?? false }

    /// Whether `name` is paused.
    public func isPaused(_ name: String) -> Bool { index[name].map { slots[$0].paused } ?? false }

    /// Acts on the process `name` (a client request, say), then sends what it produced.
    /// Returns `nil` when it is crashed or paused.
    @discardableResult
    public func with<T>(_ name: String, _ body: (inout Process, MonotonicInstant, WallTime) -> T) -> T? {
        guard let i = index[name], slots[i].process != nil, !slots[i].paused else { return nil }
        let (n, w) = (now, wall(name))
        let slot = slots[i]
        let out = body(&slot.process!, n, w)
        afterTouch(i)
        return out
    }

    // MARK: - Faults

    /// Starts `name` as a new process with a fresh, larger node id.
    public func start(_ name: String) {
        starts += 1
        let i = index[name]!
        let id = NodeID.fresh(start: wall(name) + .milliseconds(Int64(starts)), random: random.next())
        slots[i].process = make(name, id, now, wall(name), &random)
        slots[i].paused = false
        slots[i].queued = []
        slots[i].scheduled = nil
        afterTouch(i)
    }

    /// Crashes `name`: its state is gone; messages to it are lost from now on.
    public func crash(_ name: String) {
        let i = index[name]!
        slots[i].process = nil
        slots[i].paused = false
        slots[i].queued = []
        slots[i].scheduled = nil
        for key in lastStreamArrival.keys.sorted(by: { ($0.from, $0.to) < ($1.from, $1.to) }) where key.to == name || key.from == name {
            lastStreamArrival[key] = nil
        }
    }

    /// Crashes `name` and starts it again at once under a new id.
    public func restart(_ name: String) {
        crash(name)
        start(name)
    }

    /// Pauses `name` (SIGSTOP): its timers stop, messages to it queue.
    public func pause(_ name: String) {
        guard let i = index[name], slots[i].process != nil else { return }
        slots[i].paused = true
    }

    /// Resumes `name` (SIGCONT): queued messages are delivered first, then due timers run.
    public func resume(_ name: String) {
        guard let i = index[name], slots[i].paused, slots[i].process != nil else { return }
        slots[i].paused = false
        let queued = slots[i].queued
        slots[i].queued = []
        let w = wall(name)
        for d in queued {
            slots[i].process!.receive(d.message, from: d.from, id: d.fromID, reliable: d.reliable, now: now, wall: w)
        }
        if slots[i].process!.nextDeadline <= now { slots[i].process!.tick(now: now, wall: w) }
        slots[i].scheduled = nil
        afterTouch(i)
    }

    /// Cuts traffic from `from` to `to` (one direction).
    public func block(from: String, to: String) { blocked.insert(Pair(from: from, to: to)) }

    /// Cuts all traffic between the two groups, both directions.
    public func partition(_ a: [String], _ b: [String]) {
        for x in a { for y in b { block(from: x, to: y); block(from: y, to: x) } }
    }

    /// Removes every cut.
    public func heal() { blocked = [] }

    // MARK: - Running

    /// Runs events until the clock reaches `deadline`.
    public func run(until deadline: MonotonicInstant) {
        while let first = heap.min, first.time <= deadline {
            let event = heap.removeMin()
            now = max(now, event.time)
            lastTouched = nil
            switch event.kind {
            case .deliver(let d):
                deliver(d)
            case .timer(let i):
                let slot = slots[i]
                guard slot.scheduled == event.time, !slot.paused, slot.process != nil else { continue }
                slot.scheduled = nil
                slot.process!.tick(now: now, wall: base + (now - .zero) + slot.skew)
                lastTouched = slot.name
                afterTouch(i)
            }
            observer?(self)
        }
        now = max(now, deadline)
    }

    /// Runs for `duration` of virtual time.
    public func run(for duration: Duration) { run(until: now + duration) }

    func deliver(_ d: Delivery) {
        guard let i = index[d.to], slots[i].process != nil else { dropped += 1; return }
        if slots[i].paused {
            slots[i].queued.append(d)
            return
        }
        delivered += 1
        let w = wall(d.to)
        let slot = slots[i]
        slot.process!.receive(d.message, from: d.from, id: d.fromID, reliable: d.reliable, now: now, wall: w)
        lastTouched = slot.name
        afterTouch(i)
    }

    /// Sends what slot `i` produced and schedules its next timer.
    func afterTouch(_ i: Int) {
        let slot = slots[i]
        guard slot.process != nil else { return }
        let out = slot.process!.takeOutgoing()
        let id = slot.process!.id
        let deadline = max(slot.process!.nextDeadline, now + .microseconds(1))
        for send in out { transmit(send, from: slot.name, id: id) }
        if slot.scheduled != deadline {
            slot.scheduled = deadline
            push(deadline, .timer(i))
        }
    }

    func transmit(_ send: SimulatedSend<Process.Message>, from: String, id: NodeID) {
        let pair = Pair(from: from, to: send.to)
        guard index[send.to] != nil, !blocked.contains(pair) else { dropped += 1; return }
        let d = Delivery(to: send.to, from: from, fromID: id, message: send.message, reliable: send.reliable)
        if send.reliable {
            let at = max(now + delay(), lastStreamArrival[pair] ?? .zero)
            lastStreamArrival[pair] = at
            push(at, .deliver(d))
            return
        }
        if chance(network.dropRate) { dropped += 1; return }
        push(now + delay(), .deliver(d))
        if chance(network.duplicateRate) { push(now + delay(), .deliver(d)) }
    }

    func delay() -> Duration {
        let lo = network.minDelay.nanosecondsClamped, hi = max(lo, network.maxDelay.nanosecondsClamped)
        return .nanoseconds(lo + Int64(random.next() % UInt64(hi - lo + 1)))
    }

    func chance(_ p: Double) -> Bool {
        p > 0 && Double(random.next() >> 11) / Double(1 << 53) < p
    }

    func push(_ time: MonotonicInstant, _ kind: Kind) {
        order += 1
        heap.insert(Event(time: time, order: order, kind: kind))
    }
}

// MARK: - SimulatedNode
/// What simulated nodes exchange: membership messages, and replication frames carrying
/// encoded messages exactly as the wire does.
public enum SimulatedMessage {
    /// A membership (or lease) message.
    case membership(MembershipMessage)
    /// A replication frame: sequenced data messages (encoded) and control messages.
    case replication(firstSequence: UInt64, lowWatermark: UInt64, data: [[UInt8]], control: [ReplicationMessage])
}

/// Everything the simulated cluster did that the invariants look at, shared across
/// crashes and restarts.
public final class ClusterLog {
    /// A client write the cluster answered.
    public struct Ack: Sendable {
        /// The session.
        public var session: SessionID
        /// The value written or read.
        public var value: UInt64
        /// Its stamp.
        public var stamp: Stamp
        /// Whether replication was confirmed (synchronous, at least one backup).
        public var replicated: Bool
        /// When the cluster answered.
        public var at: MonotonicInstant
        /// The node that answered.
        public var node: String
    }
    /// A client read the cluster answered.
    public struct Read: Sendable {
        /// The session.
        public var session: SessionID
        /// The value written or read.
        public var value: UInt64
        /// Its stamp.
        public var stamp: Stamp
        /// When the read began.
        public var began: MonotonicInstant
        /// The node that answered.
        public var node: String
    }
    /// Acknowledged writes in order.
    public var acks: [Ack] = []
    /// Answered reads in order.
    public var reads: [Read] = []
    /// Every state seen by `(session, epoch, version)`: the value it held.
    public var states: [SessionID: [Stamp: UInt64]] = [:]
    /// Violations found while running (a state stamp reused for another value).
    public var violations: [String] = []
    /// A fault the scenario injects into every node: the probability that the answer to
    /// a handover request is lost on its way, as when the TCP connection between two live
    /// processes resets. Default 0.
    public var handoverReplyLoss = 0.0
    /// Handover answers lost to `handoverReplyLoss`.
    public var handoverRepliesLost = 0
    /// How takeover searches ended, by outcome (`done` or an error code).
    public var searchOutcomes: [String: Int] = [:]
    /// Searches that answered `session-not-found`: the session, the node, when.
    public var notFound: [(session: SessionID, node: String, at: MonotonicInstant)] = []
    /// Creates an empty log.
    public init() {}

    func saw(_ state: SessionState, at node: String) {
        let value = SimulatedNode.value(of: state)
        if let old = states[state.id]?[state.stamp], old != value {
            violations.append("\(node): \(state.id) at \(state.stamp.etag) holds \(value), elsewhere \(old)")
        }
        states[state.id, default: [:]][state.stamp] = value
    }
}

/// One whole node of the core state machines, as `ReplicationNode` composes them:
/// membership with leases, one replica shard, inbound streams, the serving rule,
/// failover on death and rejoin under a new id. Client writes and reads come from the
/// scenario through `write` and `read`.
public struct SimulatedNode: SimulatedProcess {
    /// The current process id (a new one after each rejoin).
    public private(set) var id: NodeID
    /// This node's name.
    public let name: String
    /// Its membership state machine.
    public private(set) var membership: Membership
    /// Leases it asked for and granted.
    public private(set) var leases: LeaseTable
    /// Its one replica shard (owned sessions, backups, streams).
    public private(set) var shard: ReplicaShard
    /// Times this node rejoined after being declared dead.
    public private(set) var rejoins = 0
    /// Sessions this node took over on request.
    public private(set) var takeovers = 0
    var nextRequest: UInt64 = 0
    /// Takeover searches in progress (the core's `TakeoverSearch`, as `ReplicationNode`
    /// runs them): the round's request, who was asked and what they answered, and when
    /// the round ends or the next one starts.
    struct Search {
        var search: TakeoverSearch
        var request: UInt64 = 0
        var expected: Set<String> = []
        var answers: [String: HandoverReply.Answer] = [:]
        var roundEnds: MonotonicInstant?
        var resumeAt: MonotonicInstant?
        var next: MonotonicInstant? { roundEnds ?? resumeAt }
    }
    var searches: [SessionID: Search] = [:]
    let log: ClusterLog
    let settingsTemplate: ShardSettings
    /// The other members' names, sorted.
    public let peers: [String]
    var random: SplitMix64
    var inbound: [NodeID: InboundStream] = [:]
    var senderIDs: [String: NodeID] = [:]
    var waits: [WaiterID: (session: SessionID, value: UInt64, stamp: Stamp)] = [:]
    var pending: [SimulatedSend<SimulatedMessage>] = []
    var nextShardTick: MonotonicInstant
    static let shardTick: Duration = .milliseconds(20)

    /// A node named `name` among `names` with process id `id`.
    /// Under `promotion: majority`: serve only with a quorum lease, promote only seeing a
    /// majority alive (as `ReplicationNode` does).
    public let majority: Bool
    /// Members whose failover waits for a majority (majority mode).
    var deferred: Set<String> = []
    /// The process id last reported alive for each peer.
    var knownIDs: [String: NodeID] = [:]

    /// Creates a node; `majority` (default false) models `promotion: majority`.
    public init(name: String, id: NodeID, names: [String], policy: ReplicationPolicy, tuning: MembershipTuning,
                lease: Duration, randomSeed: UInt64, now: MonotonicInstant, log: ClusterLog, majority: Bool = false) {
        self.majority = majority
        self.name = name
        self.id = id
        self.peers = names.filter { $0 != name }.sorted()
        self.log = log
        self.random = SplitMix64(seed: randomSeed)
        var sessions = SessionPolicy()
        sessions.maxInactiveInterval = .seconds(3600)
        settingsTemplate = ShardSettings(selfName: name, selfID: id, policy: policy, sessions: sessions, backupCandidates: peers)
        membership = Membership(selfName: name, selfID: id, seeds: names, tuning: tuning, randomSeed: random.next(), now: now)
        leases = LeaseTable(lease: lease)
        shard = ReplicaShard(settings: settingsTemplate)
        nextShardTick = now + Self.shardTick
    }

    /// The value a state holds (attribute `v`, 8 bytes little-endian; 0 when absent).
    public static func value(of state: SessionState) -> UInt64 {
        guard let raw = state.attributes["v"], raw.count == 8 else { return 0 }
        return raw.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    static func bytes(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) } }

    /// The earliest instant its timers have work.
    public var nextDeadline: MonotonicInstant {
        let search = searches.values.compactMap(\.next).min() ?? nextShardTick
        return min(membership.nextDeadline, leases.nextDeadline, nextShardTick, search)
    }

    /// Whether this node owns `session` and passes the serving check now.
    public func serves(_ session: SessionID, now: MonotonicInstant) -> Bool {
        guard membership.status == .alive, let set = shard.ownedReplicaSet(of: session) else { return false }
        if majority, !leases.hasQuorum(voters: [name] + peers, selfName: name, now: now) { return false }
        return leases.mayServe(replicaSet: set, now: now) { membership.member($0)?.status.isLive == true }
    }

    // MARK: - Clients

    /// Creates `session` here with value 0. Returns whether it was created.
    public mutating func create(_ session: SessionID, now: MonotonicInstant, wall: WallTime) -> Bool {
        guard membership.status == .alive, !majority || leases.hasQuorum(voters: [name] + peers, selfName: name, now: now),
              let out = try? shard.create(id: session, attributes: ["v": Self.bytes(0)], maxInactiveInterval: nil, now: now,
                                          wall: wall, sessionCount: shard.ownedCount) else { return false }
        if let s = out.state { log.saw(s, at: name) }
        flush(now: now)
        return true
    }

    /// Writes `value` to `session` if this node serves it; the ack is logged when the
    /// cluster answers (at once when local, after replication when synchronous).
    @discardableResult
    public mutating func write(_ session: SessionID, value: UInt64, now: MonotonicInstant, wall: WallTime) -> Bool {
        guard serves(session, now: now) else { return false }
        var changes = ChangeSet()
        changes.updated["v"] = Self.bytes(value)
        guard let out = try? shard.commit(session, changes: changes, maxInactiveInterval: nil, now: now, wall: wall),
              let state = out.state else { return false }
        log.saw(state, at: name)
        if let w = out.waiter {
            if let done = shard.settledWait(w) { finish(w, done, session: session, value: value, stamp: state.stamp, now: now) } else {
                waits[w] = (session, value, state.stamp)
            }
        } else {
            log.acks.append(.init(session: session, value: value, stamp: state.stamp, replicated: false, at: now, node: name))
        }
        flush(now: now)
        return true
    }

    /// Starts a takeover search for `session` (takeover on request) when this node does
    /// not own it and none is in progress: the core's `TakeoverSearch` decides whom to
    /// ask (the owner its backup copy names, referrals, every live member), when to wait
    /// and what is final; a handed-over session is adopted when it arrives. How each
    /// search ends is counted in the log. Returns whether a search started.
    @discardableResult
    public mutating func requestTakeover(_ session: SessionID, now: MonotonicInstant) -> Bool {
        guard membership.status == .alive, searches[session] == nil else { return false }
        if case .owner? = shard.copy(of: session) { return false }
        let policy = shard.settings.policy
        searches[session] = Search(search: TakeoverSearch(id: session, selfName: name, settings: .init(policy: policy),
                                                          handoverTimeout: policy.handoverTimeout, now: now))
        advanceSearch(session, now: now)
        flush(now: now)
        return true
    }

    /// Starts the next round of the search for `session`.
    mutating func advanceSearch(_ session: SessionID, now: MonotonicInstant) {
        guard var s = searches[session] else { return }
        let held = shard.searchHeld(session)
        let cooled = shard.handedAwayRecently(session, now: now, cooldown: shard.settings.policy.takeoverCooldown)
        var statuses: [String: MemberStatus] = [:]
        for peer in peers { if let status = membership.member(peer)?.status { statuses[peer] = status } }
        let step = s.search.next(held: held, handedAwayRecently: cooled, statuses: statuses, hint: nil, now: now)
        perform(step, session, &s, now: now)
    }

    /// Ends the round of asking of the search for `session` (every answer in, or its
    /// time up).
    mutating func endSearchRound(_ session: SessionID, now: MonotonicInstant) {
        guard var s = searches[session] else { return }
        s.roundEnds = nil
        let owns = if case .owner? = shard.copy(of: session) { true } else { false }
        if let step = s.search.answered(s.answers, ownsNow: owns, configuredPeers: peers, now: now) {
            perform(step, session, &s, now: now)
        } else {
            searches[session] = s
            advanceSearch(session, now: now)
        }
    }

    mutating func perform(_ step: TakeoverSearch.Step, _ session: SessionID, _ s: inout Search, now: MonotonicInstant) {
        switch step {
        case .done:
            searches[session] = nil
            log.searchOutcomes["done", default: 0] += 1
        case .fail(let error):
            searches[session] = nil
            log.searchOutcomes[error.code.description, default: 0] += 1
            if error.code == .sessionNotFound { log.notFound.append((session, name, now)) }
            trace(now, "search for \(session) ends: \(error)")
        case .wait(let pause):
            s.resumeAt = now + pause
            s.roundEnds = nil
            searches[session] = s
        case .ask(let targets, let timeout):
            nextRequest += 1
            s.request = nextRequest
            s.expected = Set(targets)
            s.answers = [:]
            s.roundEnds = now + timeout
            s.resumeAt = nil
            searches[session] = s
            let request = ReplicationMessage.handover(HandoverRequest(requestID: nextRequest, id: session))
            for t in targets {
                pending.append(SimulatedSend(to: t, message: .replication(firstSequence: 0, lowWatermark: 0, data: [], control: [request]), reliable: true))
            }
        }
    }

    /// Runs the searches whose round ended or whose pause is over.
    mutating func tickSearches(now: MonotonicInstant) {
        for (session, s) in searches.sorted(by: { $0.key < $1.key }) {
            if let end = s.roundEnds, now >= end {
                endSearchRound(session, now: now)
            } else if let resume = s.resumeAt, now >= resume {
                advanceSearch(session, now: now)
            }
        }
    }

    /// Reads `session` if this node serves it, logging the answer.
    @discardableResult
    public mutating func read(_ session: SessionID, now: MonotonicInstant, wall: WallTime) -> UInt64? {
        guard serves(session, now: now), let s = shard.access(session, wall: wall) else { return nil }
        let v = Self.value(of: s)
        log.reads.append(.init(session: session, value: v, stamp: s.stamp, began: now, node: name))
        return v
    }

    mutating func finish(_ w: WaiterID, _ result: WaitResult, session: SessionID, value: UInt64, stamp: Stamp, now: MonotonicInstant) {
        if case .replicated(let names) = result {
            log.acks.append(.init(session: session, value: value, stamp: stamp, replicated: !names.isEmpty, at: now, node: name))
        }
    }

    mutating func complete(_ results: [(WaiterID, WaitResult)], now: MonotonicInstant) {
        for (w, r) in results {
            guard let op = waits.removeValue(forKey: w) else { continue }
            finish(w, r, session: op.session, value: op.value, stamp: op.stamp, now: now)
        }
    }

    // MARK: - Process

    /// Runs due timers.
    public mutating func tick(now: MonotonicInstant, wall: WallTime) {
        membership.tick(now: now)
        handleMembershipOutput(now: now)
        for r in leases.requests(to: membership.liveNames, now: now) {
            pending.append(SimulatedSend(to: r.peer, message: .membership(.leaseRequest(sequence: r.sequence)), reliable: false))
        }
        if now >= nextShardTick {
            nextShardTick = now + Self.shardTick
            let out = shard.tick(now: now, wall: wall, datagram: false)
            for sid in out.promoted {
                if case .owner(let s)? = shard.copy(of: sid) { log.saw(s, at: name); trace(now, "promotes \(sid) as \(s.stamp.etag) R \(s.replicaSet)") }
            }
            for (peer, batches) in out.resend { send(batches, to: peer) }
            for (peer, request) in out.digests {
                pending.append(SimulatedSend(to: peer, message: .replication(firstSequence: 0, lowWatermark: 0, data: [], control: [.digest(request)]), reliable: true))
            }
            complete(out.completed, now: now)
            for (sender, _) in inbound.sorted(by: { $0.key < $1.key }) {
                let d = inbound[sender]!.tick(now: now, reorderDelay: shard.settings.policy.reorderDelay)
                if d.reportGap, let peer = senderIDs.first(where: { $0.value == sender })?.key { deliver(d, from: peer, sender: sender, now: now) }
            }
        }
        if membership.status == .alive { tickSearches(now: now) }
        flush(now: now)
    }

    /// Handles one message from `from`.
    public mutating func receive(_ message: SimulatedMessage, from peer: String, id sender: NodeID, reliable: Bool,
                                 now: MonotonicInstant, wall: WallTime) {
        switch message {
        case .membership(let m):
            guard membership.status != .dead else { return }
            membership.receive(m, from: peer, id: sender, reliable: reliable, now: now)
            let known = membership.member(peer)
            let heldDead = known.map { $0.id > sender || ($0.id == sender && !$0.status.isLive) } ?? false
            handleMembershipOutput(now: now)
            switch m {
            case .leaseRequest(let seq):
                if leases.onRequest(from: peer, heldDead: heldDead || membership.status != .alive, now: now) {
                    pending.append(SimulatedSend(to: peer, message: .membership(.leaseGrant(sequence: seq)), reliable: false))
                }
            case .leaseGrant(let seq):
                leases.onGrant(from: peer, sequence: seq)
            default:
                break
            }
        case .replication(let first, let low, let data, let control):
            guard membership.status == .alive else { return }
            if let previous = senderIDs[peer], previous != sender {
                guard sender > previous else { return }  // a retired process
                inbound[previous] = nil
                shard.peerRestarted(peer)
            }
            senderIDs[peer] = sender
            for c in control {
                switch c {
                case .receipt(let r):
                    let out = shard.onReceipt(from: peer, r, now: now, datagram: false)
                    complete(out.completed, now: now)
                    send(out.resend, to: peer)
                case .resync(let r):
                    shard.onResync(from: peer, entries: r.entries, now: now)
                case .prepare(let p):
                    // Only a taker held alive: a dead process's takeover is void (its
                    // sessions fail over here like the rest of what it held).
                    guard membership.member(peer).map({ $0.status.isLive && $0.id == sender }) == true else { break }
                    let entries = shard.onPrepare(from: peer, p)
                    trace(now, "prepare from \(peer) for \(p.entries.map(\.id)): \(entries.map { "\($0.id) fresher \($0.fresher?.stamp.etag ?? "-") owned \($0.ownedByHolder)" })")
                    leases.revoke(p.oldOwner)
                    let since = leases.lastGranted[p.oldOwner].map { UInt32(clamping: (now - $0).millisecondsClamped) } ?? .max
                    let reply = PromiseReply(oldOwner: p.oldOwner, sinceGrantMs: since, entries: entries)
                    pending.append(SimulatedSend(to: peer, message: .replication(firstSequence: 0, lowWatermark: 0, data: [], control: [.promise(reply)]), reliable: true))
                case .promise(let p):
                    trace(now, "promise from \(peer): \(p.entries.map { "\($0.id) fresher \($0.fresher?.stamp.etag ?? "-")" }) pending \(shard.takeoversPending)")
                    let unasked = shard.onPromise(from: peer, p, now: now, lease: leases.lease)
                    if !unasked.isEmpty {
                        let out = shard.onTakeoverHint(oldOwner: p.oldOwner, entries: unasked, now: now,
                                                       promoteAfter: leases.grantsExpire(for: p.oldOwner))
                        sendFailover(out, oldOwner: p.oldOwner, now: now)
                    }
                case .handover(let h):
                    // Commits are atomic here, so no change is in flight; the serving
                    // check is the shell's.
                    // Never to a process this node does not hold alive: one held dead
                    // rejoins and drops what it holds, and its sessions failed over.
                    let requesterAlive = membership.member(peer).map { $0.status.isLive && $0.id == sender } ?? false
                    // An owner must pass the serving check; a copy handed to this very
                    // asker before (its answer lost) may be handed again.
                    let owns = shard.ownedReplicaSet(of: h.id) != nil
                    let may = requesterAlive && membership.status == .alive && (!owns || serves(h.id, now: now))
                    let answer = shard.answerHandover(h.id, to: peer, requesterID: sender, now: now, mayHandOver: may)
                    if case .transferred(let st) = answer { trace(now, "hands \(h.id) to \(peer) at \(st.stamp.etag) (may \(may))") }
                    let reply = ReplicationMessage.handoverReply(HandoverReply(requestID: h.requestID, id: h.id, answer: answer))
                    if log.handoverReplyLoss > 0, Double(random.next() % 1_000_000) / 1_000_000 < log.handoverReplyLoss {
                        log.handoverRepliesLost += 1
                        trace(now, "loses its answer to \(peer) for \(h.id)")
                    } else {
                        pending.append(SimulatedSend(to: peer, message: .replication(firstSequence: 0, lowWatermark: 0, data: [], control: [reply]), reliable: true))
                    }
                case .handoverReply(let h):
                    if case .transferred(let state) = h.answer, state.id == h.id,
                       membership.member(peer).map({ $0.status.isLive && $0.id == sender }) == true,
                       shard.adoptHandover(state, from: peer, giverStays: h.requestID != 0, now: now),
                       case .owner(let s)? = shard.copy(of: h.id) {
                        log.saw(s, at: name)
                        takeovers += 1
                        trace(now, "adopts \(h.id) from \(peer) as \(s.stamp.etag) R \(s.replicaSet)")
                    }
                    if var search = searches[h.id], search.roundEnds != nil, search.request == h.requestID, search.expected.contains(peer) {
                        search.answers[peer] = h.answer
                        searches[h.id] = search
                        if search.answers.count == search.expected.count { endSearchRound(h.id, now: now) }
                    }
                case .digest(let d):
                    var mine = [UInt64](repeating: 0, count: DigestRequest.bucketCount)
                    shard.addDigests(owner: peer, lanes: Int(d.lanes), lane: Int(d.lane), into: &mine)
                    let differing = (0..<DigestRequest.bucketCount).filter { mine[$0] != d.buckets[$0] }
                    if !differing.isEmpty {
                        let held = shard.heldEntries(owner: peer, lanes: Int(d.lanes), lane: Int(d.lane), buckets: Set(differing))
                        let reply = ReplicationMessage.digestReply(DigestReply(round: d.round, lane: d.lane, buckets: differing.map { UInt16($0) }, held: held))
                        pending.append(SimulatedSend(to: peer, message: .replication(firstSequence: 0, lowWatermark: 0, data: [], control: [reply]), reliable: true))
                    }
                case .digestReply(let d):
                    let release = shard.onDigestReply(from: peer, d, now: now)
                    if !release.isEmpty {
                        let message = ReplicationMessage.release(ReleaseRequest(entries: release))
                        pending.append(SimulatedSend(to: peer, message: .replication(firstSequence: 0, lowWatermark: 0, data: [], control: [message]), reliable: true))
                    }
                case .release(let r):
                    shard.release(r.entries, from: peer)
                default:
                    break
                }
            }
            guard !data.isEmpty || low > 1 else { break }
            let messages = data.compactMap { try? MessageCodec.decode($0) }
            guard messages.count == data.count else { log.violations.append("\(name): undecodable replication message"); return }
            var stream = inbound.removeValue(forKey: sender) ?? InboundStream()
            let d = stream.accept(firstSequence: first, lowWatermark: low, messages: messages, now: now,
                                  reorderFrames: shard.settings.policy.reorderFrames, reorderDelay: shard.settings.policy.reorderDelay)
            inbound[sender] = stream
            deliver(d, from: peer, sender: sender, now: now)
        }
        flush(now: now)
    }

    mutating func deliver(_ d: InboundStream.Delivery, from peer: String, sender: NodeID, now: MonotonicInstant) {
        guard var stream = inbound.removeValue(forKey: sender) else { return }
        var refused: [UInt64] = []
        for (seq, message) in d.messages {
            guard let sid = message.sessionID else { continue }
            let outcome = shard.apply(message, from: peer, now: now)
            if outcome == .fenced { refused.append(seq) }
            switch (outcome, message) {
            case (.needsResync, _): stream.needsResync(sid, sequence: seq, now: now)
            case (_, .full), (_, .invalidate): stream.resolved(sid)
            default: break
            }
            if outcome == .applied, case .backup(let s)? = shard.copy(of: sid) { log.saw(s, at: name) }
        }
        let resync = stream.pendingResyncs(now: now)
        var control: [ReplicationMessage] = []
        if !resync.isEmpty { control.append(.resync(ResyncRequest(lane: 0, entries: resync))) }
        control.append(.receipt(Receipt(lane: 0, through: stream.deliveredThrough, received: stream.buffered > 0 ? stream.heldRanges() : [],
                                        refused: refused)))
        inbound[sender] = stream
        pending.append(SimulatedSend(to: peer, message: .replication(firstSequence: 0, lowWatermark: 0, data: [], control: control), reliable: true))
    }

    mutating func handleMembershipOutput(now: MonotonicInstant) {
        let (out, events) = membership.takeOutput()
        for o in out { pending.append(SimulatedSend(to: o.to, message: .membership(o.message), reliable: o.reliable)) }
        for e in events {
            switch e {
            case .alive(let peer, let pid):
                // A restart the others never declared: the old process departed.
                if let old = knownIDs[peer], old != pid { departed(peer, mayPromote: !majority || seesMajority, now: now) }
                knownIDs[peer] = pid
                leases.restore(peer)
                shard.memberReturned(peer)
                deferred.remove(peer)
                if majority, seesMajority {
                    for d in deferred.sorted() where membership.member(d)?.status.isLive != true {
                        deferred.remove(d)
                        departed(d, mayPromote: true, now: now)
                    }
                }
            case .dead(let peer, let pid), .left(let peer, let pid):
                if knownIDs[peer] == pid { knownIDs[peer] = nil }
                let may = !majority || seesMajority
                if !may { deferred.insert(peer) }
                departed(peer, mayPromote: may, now: now)
            case .suspect:
                break
            case .selfDeclaredDead:
                rejoin(now: now)
                return
            }
        }
    }

    static let tracing = getenv("DRS_SIM_TRACE") != nil
    func trace(_ now: MonotonicInstant, _ message: @autoclosure () -> String) {
        if Self.tracing { print("\(now) \(name): \(message())") }
    }

    /// Whether this node sees a majority of the members (itself included) alive.
    var seesMajority: Bool {
        (1 + peers.count { membership.member($0)?.status == .alive }) * 2 > peers.count + 1
    }

    mutating func departed(_ peer: String, mayPromote: Bool, now: MonotonicInstant) {
        trace(now, "\(peer) departed (may promote \(mayPromote))")
        let out = shard.memberDeparted(peer, now: now, promoteAfter: leases.grantsExpire(for: peer), mayPromote: mayPromote)
        complete(out.completed, now: now)
        sendFailover(out, oldOwner: peer, now: now)
    }

    mutating func sendFailover(_ out: ReplicaShard.FailoverOutcome, oldOwner: String, now: MonotonicInstant) {
        for (holder, entries) in out.prepares.sorted(by: { $0.key < $1.key }) {
            let prepare = ReplicationMessage.prepare(PrepareRequest(oldOwner: oldOwner, entries: entries))
            pending.append(SimulatedSend(to: holder, message: .replication(firstSequence: 0, lowWatermark: 0, data: [], control: [prepare]), reliable: true))
        }
        for (holder, entries) in out.hints.sorted(by: { $0.key < $1.key }) {
            let hint = ReplicationMessage.promise(PromiseReply(oldOwner: oldOwner, sinceGrantMs: .max, entries: entries))
            pending.append(SimulatedSend(to: holder, message: .replication(firstSequence: 0, lowWatermark: 0, data: [], control: [hint]), reliable: true))
        }
        for sid in out.promoted {
            if case .owner(let s)? = shard.copy(of: sid) { log.saw(s, at: name); trace(now, "promotes \(sid) as \(s.stamp.etag) R \(s.replicaSet)") }
        }
    }

    /// Declared dead: drop everything and join again under a new, larger id.
    mutating func rejoin(now: MonotonicInstant) {
        trace(now, "declared dead: rejoins")
        rejoins += 1
        id = NodeID(id.rawValue + 1 + random.next() % 1_000)
        var settings = settingsTemplate
        settings.selfID = id
        shard = ReplicaShard(settings: settings)
        membership = Membership(selfName: name, selfID: id, seeds: membership.seeds, tuning: membership.tuning,
                                randomSeed: random.next(), now: now)
        leases = LeaseTable(lease: leases.lease)
        // The dead process's unsent words die with it (they would leave under the new id).
        pending = []
        deferred = []
        knownIDs = [:]
        inbound = [:]
        senderIDs = [:]
        waits = [:]
        // Requests waiting across a rejoin are told to retry (`session-unavailable`).
        for _ in searches { log.searchOutcomes[SessionError.Code.sessionUnavailable.description, default: 0] += 1 }
        searches = [:]
    }

    /// Sends whatever the shard has queued.
    mutating func flush(now: MonotonicInstant) {
        for peer in shard.peersWithUnsent.sorted() {
            send(shard.takeBatches(for: peer, now: now, datagram: false), to: peer)
        }
    }

    mutating func send(_ batches: [OutboundBatch], to peer: String) {
        for b in batches {
            pending.append(SimulatedSend(to: peer, message: .replication(firstSequence: b.firstSequence, lowWatermark: b.lowWatermark,
                                                                         data: b.messages, control: []), reliable: true))
        }
    }

    /// Messages to send, drained.
    public mutating func takeOutgoing() -> [SimulatedSend<SimulatedMessage>] {
        defer { pending = [] }
        return pending
    }
}

// MARK: - ClusterScenario
/// The standard simulated scenario of whole clusters (docs/design.md (Testing)): 3 nodes,
/// synchronous replication to 1 backup, 30 virtual seconds, client writes and reads,
/// one crash (with or without restart) or one pause, datagram loss, duplication and
/// reordering in the first 20 s, then healing and quiet. Requests landing on other nodes
/// run the core's `TakeoverSearch`. Checked: the serving rule at every instant, no
/// `(epoch, version)` holding two states, no replicated write lost, no stale read, no
/// `session-not-found` for a live session (`failures`: safety); one owner per session and
/// a full replica set after healing, and then a takeover of every session from a node
/// that does not own it (`stuck`: liveness). `handoverReplyLoss` loses handover answers.
public enum ClusterScenario {
    /// What one seed did and what went wrong.
    public struct Outcome: Sendable {
        /// What went wrong (empty when every invariant held).
        public var failures: [String] = []
        /// Writes issued, writes acknowledged, sessions promoted.
        public var writes = 0, acked = 0, promotions = 0
        /// Takeover requests sent, and sessions taken over on request (by nodes still
        /// running at the end).
        public var takeoverRequests = 0, takeovers = 0
        /// How the takeover searches ended, by outcome (`done` or an error code).
        public var searchOutcomes: [String: Int] = [:]
        /// Handover answers the scenario made the network lose.
        public var handoverRepliesLost = 0
        /// Sessions stuck (liveness, not safety): left without an owner after healing, or
        /// not taken over by a node asking for them after healing. Empty when all is well.
        public var stuck: [String] = []
    }

    /// The scenario's replication settings: synchronous to one backup.
    public static func policy(replicas: Int = 1) -> ReplicationPolicy {
        var p = ReplicationPolicy()
        p.mode = .synchronous
        p.replicas = .count(replicas)
        p.minSyncReplicas = 1
        p.syncTimeout = .milliseconds(500)
        p.retryInterval = .milliseconds(50)
        p.repairInterval = .seconds(2)
        p.takeoverCooldown = .seconds(1)
        return p
    }

    /// Runs seed `seed`; `observe` checks the serving rule after every event (slow).
    /// With `replicas: 2` (still `minSyncReplicas: 1`) a write may be acknowledged after
    /// one backup applied it: only the prepare round keeps it when the owner dies.
    /// With `handoverReplyLoss` (default 0) that share of handover answers is lost until
    /// 20 s, as when the connection between two live nodes resets.
    public static func run(seed: UInt64, observe: Bool = true, replicas: Int = 1, handoverReplyLoss: Double = 0) -> Outcome {
        var out = Outcome()
        var random = SeededGenerator(seed: seed &* 0xD1B5_4A32_D192_ED03 &+ 1)
        var network = NetworkModel()
        network.dropRate = Double(random.next() % 30) / 1000
        network.duplicateRate = Double(random.next() % 20) / 1000
        network.maxDelay = .microseconds(Int64(200 + random.next() % 2_800))
        let names = ["n1", "n2", "n3"]
        let log = ClusterLog()
        let policy = Self.policy(replicas: replicas)
        // 0 crash and restart, 1 crash for good, 2 pause, 3 partition. Under `promotion:
        // any` a node cut off from the others declares them dead and serves alone (the
        // documented cost of `any`); partitions therefore run under `majority`.
        let kind = random.next() % 4
        log.handoverReplyLoss = handoverReplyLoss
        let majority = kind == 3
        let sim = Simulator<SimulatedNode>(seed: seed, names: names, network: network) { name, id, now, _, random in
            SimulatedNode(name: name, id: id, names: names, policy: policy, tuning: MembershipTuning(), lease: .milliseconds(500),
                          randomSeed: random.next(), now: now, log: log, majority: majority)
        }
        // At no instant do two running nodes pass the serving check for one session.
        var sessions: [SessionID] = []
        // A node starts serving only on an event of its own (leases only lapse with
        // time), so after each event the node it ran on is checked against the others.
        if observe { sim.observer = { sim in
            guard log.violations.count < 5, let touched = sim.lastTouched, sim.isRunning(touched) else { return }
            for s in sessions where sim.inspect(touched, { $0.serves(s, now: sim.now) }) == true {
                let others = names.filter { n in n != touched && sim.isRunning(n) && sim.inspect(n, { $0.serves(s, now: sim.now) }) == true }
                if !others.isEmpty {
                    log.violations.append("at \(sim.now) \([touched] + others) all serve \(s)")
                    if getenv("DRS_SIM_TRACE") != nil {
                        for n in names {
                            let d = sim.inspect(n) { p in
                                "\(p.name) id \(p.id) status \(p.membership.status) copy \(String(describing: p.shard.copy(of: s))) owner-of-backup \(p.shard.backupOwner(of: s) ?? "-") view \(p.peers.map { "\($0)=\(p.membership.member($0).map { "\($0.status)/\($0.id)" } ?? "?")" }) grants \(p.leases.grantedUntil)"
                            }
                            print(d ?? "\(n): not running")
                        }
                    }
                }
            }
        } }
        sim.run(for: .seconds(1))
        for i in 0..<9 {
            let id = SessionID(high: seed, low: UInt64(i))
            if sim.with(names[i % 3], { p, now, wall in p.create(id, now: now, wall: wall) }) == true { sessions.append(id) }
        }
        var next: [SessionID: UInt64] = [:]
        let faultAt = MonotonicInstant.zero + .milliseconds(Int64(3_000 + random.next() % 10_000))
        let victim = names[Int(random.next() % 3)]
        var faulted = false, cutDone = false, healAt: MonotonicInstant?
        if getenv("DRS_SIM_TRACE") != nil { print("seed \(seed): fault kind \(kind) on \(victim) at \(faultAt)") }
        while sim.now < .zero + .seconds(30) {
            sim.run(for: .milliseconds(Int64(5 + random.next() % 20)))
            if !cutDone, kind < 2, sim.now >= faultAt + (.zero - .milliseconds(300)) {
                // Before a crash, one link from the victim may go quiet: the writes of
                // those last moments reach only some of their backups.
                cutDone = true
                if random.next() % 2 == 0 { sim.block(from: victim, to: names.filter { $0 != victim }[Int(random.next() % 2)]) }
            }
            if !faulted, sim.now >= faultAt {
                faulted = true
                sim.heal()
                switch kind {
                case 0:  // crash, restart later
                    sim.crash(victim)
                    healAt = sim.now + .milliseconds(Int64(1_000 + random.next() % 6_000))
                case 1:  // crash for good
                    sim.crash(victim)
                case 2:  // pause
                    sim.pause(victim)
                    healAt = sim.now + .milliseconds(Int64(100 + random.next() % 3_000))
                default:  // cut off from the others, then healed
                    sim.partition([victim], names.filter { $0 != victim })
                    healAt = sim.now + .milliseconds(Int64(200 + random.next() % 5_000))
                }
            }
            if let h = healAt, sim.now >= h {
                healAt = nil
                if kind == 3 { sim.heal() } else if sim.isPaused(victim) { sim.resume(victim) } else { sim.start(victim) }
            }
            if sim.now >= .zero + .seconds(20) {
                sim.network = NetworkModel()
                log.handoverReplyLoss = 0
            }
            guard sim.now < .zero + .seconds(22), !sessions.isEmpty else { continue }
            let s = sessions[Int(random.next() % UInt64(sessions.count))]
            if random.next() % 5 == 0 {
                // A request lands on another node, which takes the session over.
                let asked = names[Int(random.next() % 3)]
                if sim.isRunning(asked), sim.with(asked, { p, now, _ in p.requestTakeover(s, now: now) }) == true { out.takeoverRequests += 1 }
                continue
            }
            guard let node = names.first(where: { n in sim.isRunning(n) && sim.inspect(n, { $0.serves(s, now: sim.now) }) == true }) else { continue }
            if random.next() % 3 == 0 {
                sim.with(node) { p, now, wall in p.read(s, now: now, wall: wall) }
            } else {
                let v = (next[s] ?? 0) + 1
                if sim.with(node, { p, now, wall in p.write(s, value: v, now: now, wall: wall) }) == true {
                    next[s] = v
                    out.writes += 1
                }
            }
        }
        out.failures += log.violations
        // No search answers "not found" for a session that exists (every created session
        // survives the scenario's one fault; the end checks that it has one owner).
        for miss in log.notFound where sessions.contains(miss.session) {
            out.failures.append("\(miss.node) answered session-not-found for \(miss.session) at \(miss.at)")
        }
        // Replicated writes are never lost (at most one holder failed), reads are never
        // stale, and the cluster converges.
        var lastReplicated: [SessionID: UInt64] = [:]
        for a in log.acks where a.replicated { lastReplicated[a.session] = max(lastReplicated[a.session] ?? 0, a.value) }
        out.acked = log.acks.count
        var replicatedAcks: [SessionID: [ClusterLog.Ack]] = [:]
        for a in log.acks where a.replicated { replicatedAcks[a.session, default: []].append(a) }
        for r in log.reads {
            let before = (replicatedAcks[r.session] ?? []).filter { $0.at < r.began }.map(\.value).max() ?? 0
            if r.value < before {
                out.failures.append("stale read of \(r.session) on \(r.node): \(r.value) < acknowledged \(before)")
                if getenv("DRS_SIM_TRACE") != nil {
                    for a in replicatedAcks[r.session] ?? [] where a.value >= r.value - 1 { print("ack \(a.value) at \(a.stamp.etag) by \(a.node) at \(a.at)") }
                    print("read \(r.value) at \(r.stamp.etag) by \(r.node) at \(r.began)")
                }
            }
        }
        let running = names.filter { sim.isRunning($0) }
        for s in sessions {
            let owners = running.filter { if case .owner? = sim.process($0)!.shard.copy(of: s) { return true } else { return false } }
            guard owners.count == 1, case .owner(let state)? = sim.process(owners[0])!.shard.copy(of: s) else {
                if owners.isEmpty { out.stuck.append("\(s) has no owner after healing") } else { out.failures.append("\(s) has owners \(owners) after healing") }
                if getenv("DRS_SIM_TRACE") != nil {
                    for n in running {
                        let p = sim.process(n)!
                        print("\(n): \(String(describing: p.shard.copy(of: s))) owner \(p.shard.backupOwner(of: s) ?? "-")")
                    }
                }
                continue
            }
            let value = SimulatedNode.value(of: state)
            if value < (lastReplicated[s] ?? 0) { out.failures.append("\(s): replicated write \(lastReplicated[s]!) lost, owner holds \(value)") }
            let copies = running.filter { n in
                if case .backup(let b)? = sim.process(n)!.shard.copy(of: s) { return b.stamp == state.stamp } else { return false }
            }
            let wanted = min(replicas, running.count - 1)
            if copies.count != wanted || state.replicaSet.sorted() != copies.sorted() {
                out.failures.append("\(s): owner \(owners[0]) at \(state.stamp.etag) with replica set \(state.replicaSet), backups at that stamp \(copies)")
                if getenv("DRS_SIM_TRACE") != nil {
                    for n in running {
                        let p = sim.process(n)!
                        print("\(n): \(String(describing: p.shard.copy(of: s)).prefix(300)) owner \(p.shard.backupOwner(of: s) ?? "-") streams \(p.shard.streams.mapValues { "next \($0.nextSequence) receipted \($0.receiptedThrough) unsent \($0.unsent)" })")
                    }
                }
            }
        }
        out.promotions = running.reduce(0) { $0 + sim.process($1)!.shard.counters.promotions }
        out.takeovers = running.reduce(0) { $0 + sim.process($1)!.takeovers }
        // Once healed, a request on any running node gets any session: each is asked for
        // on a node that does not own it, which must own it 3 s later with its value.
        if out.failures.isEmpty, running.count > 1 {
            var asked: [(SessionID, String, UInt64)] = []
            for s in sessions {
                guard let owner = running.first(where: { if case .owner? = sim.process($0)!.shard.copy(of: s) { true } else { false } }),
                      case .owner(let state)? = sim.process(owner)!.shard.copy(of: s) else { continue }
                let others = running.filter { $0 != owner }
                let asker = others[Int(random.next() % UInt64(others.count))]
                sim.with(asker) { p, now, _ in p.requestTakeover(s, now: now) }
                asked.append((s, asker, SimulatedNode.value(of: state)))
            }
            sim.run(for: .seconds(3))
            for (s, asker, value) in asked {
                guard case .owner(let state)? = sim.process(asker)!.shard.copy(of: s) else {
                    out.stuck.append("after healing, \(asker) asked for \(s) and does not own it 3 s later: \(String(describing: sim.process(asker)!.shard.copy(of: s)).prefix(200))")
                    continue
                }
                if SimulatedNode.value(of: state) < value { out.failures.append("\(s) taken over by \(asker) with \(SimulatedNode.value(of: state)) < \(value)") }
            }
        }
        out.searchOutcomes = log.searchOutcomes
        out.handoverRepliesLost = log.handoverRepliesLost
        return out
    }

}

// MARK: - MembershipProcess
/// A record of membership events seen by every simulated process, shared across
/// restarts (a crash loses the process, not the log).
public final class MembershipLog {
    /// One event as one process saw it.
    public struct Entry: Hashable, Sendable {
        /// When.
        public var at: MonotonicInstant
        /// Who saw it.
        public var observer: String
        /// What.
        public var event: MembershipEvent
    }
    /// Every event in order.
    public private(set) var entries: [Entry] = []
    /// Creates an empty log.
    public init() {}
    /// Appends an event.
    public func record(_ event: MembershipEvent, by observer: String, at: MonotonicInstant) {
        entries.append(Entry(at: at, observer: observer, event: event))
    }
}

/// One simulated node running only the membership protocol.
public struct MembershipProcess: SimulatedProcess {
    /// The state machine.
    public private(set) var membership: Membership
    /// Times this process rejoined under a new id after being declared dead.
    public private(set) var rejoins = 0
    let log: MembershipLog
    var random: SplitMix64

    /// A process named `name` with id `id`, seeding from `seeds`.
    public init(name: String, id: NodeID, seeds: [String], tuning: MembershipTuning, randomSeed: UInt64,
                now: MonotonicInstant, log: MembershipLog) {
        membership = Membership(selfName: name, selfID: id, seeds: seeds, tuning: tuning, randomSeed: randomSeed, now: now)
        self.log = log
        self.random = SplitMix64(seed: randomSeed ^ 0x5eed)
    }

    /// This process's node id.
    public var id: NodeID { membership.selfID }
    /// The earliest instant its timers have work.
    public var nextDeadline: MonotonicInstant { membership.nextDeadline }

    /// Runs due timers.
    public mutating func tick(now: MonotonicInstant, wall: WallTime) {
        membership.tick(now: now)
        flushEvents(now, wall: wall)
    }

    /// Handles one message from `from`.
    public mutating func receive(_ message: MembershipMessage, from: String, id: NodeID, reliable: Bool,
                                 now: MonotonicInstant, wall: WallTime) {
        membership.receive(message, from: from, id: id, reliable: reliable, now: now)
        flushEvents(now, wall: wall)
    }

    /// Leaves gracefully.
    public mutating func leave(now: MonotonicInstant) {
        membership.leave(now: now)
    }

    var pending: [MembershipOutgoing] = []

    mutating func flushEvents(_ now: MonotonicInstant, wall: WallTime) {
        let (out, events) = membership.takeOutput()
        pending.append(contentsOf: out)
        for e in events { log.record(e, by: membership.selfName, at: now) }
        if events.contains(.selfDeclaredDead) {
            // As the node does: drop everything and rejoin under a new, larger id.
            rejoins += 1
            let old = membership
            let id = NodeID(max(old.selfID.rawValue + 1, NodeID.fresh(start: wall, random: random.next()).rawValue))
            membership = Membership(selfName: old.selfName, selfID: id, seeds: old.seeds, tuning: old.tuning,
                                    randomSeed: random.next(), now: now)
        }
    }

    /// Messages to send, drained.
    public mutating func takeOutgoing() -> [SimulatedSend<MembershipMessage>] {
        let (out, events) = membership.takeOutput()
        pending.append(contentsOf: out)
        precondition(events.isEmpty, "events are flushed on every call")
        defer { pending = [] }
        return pending.map { SimulatedSend(to: $0.to, message: $0.message, reliable: $0.reliable) }
    }
}

// MARK: - MembershipExperiment

/// Failure-detection measurements on a simulated cluster of `Membership` machines (for
/// `drs simulate`): time from a crash to "dead" on every member, how far the news
/// spreads over time, and the message load per member.
public enum MembershipExperiment {
    /// What one run measured.
    public struct Result: Sendable {
        /// Members in the cluster.
        public var members: Int
        /// Crash-to-dead times, one per (trial, surviving observer), in milliseconds.
        public var detectionsMs: [Double] = []
        /// Per trial: when the first and the last survivor declared the crashed member dead.
        public var firstMs: [Double] = [], lastMs: [Double] = []
        /// Messages sent per member per second in a quiet period.
        public var messagesPerMemberPerSecond = 0.0
        /// Live members declared dead (none crashed) during the quiet period.
        public var falseDeaths = 0
        /// Virtual seconds until every member listed every other as alive.
        public var joinSeconds: Double?
    }

    /// Runs `trials` crashes of a random member in a cluster of `members`, each after a
    /// quiet period, with datagram `loss`.
    public static func run(members: Int, trials: Int, seed: UInt64, loss: Double = 0, tuning: MembershipTuning = .init()) -> Result {
        var result = Result(members: members)
        let names = (1...members).map { "m\($0)" }
        let seeds = Array(names.prefix(3))
        let log = MembershipLog()
        var network = NetworkModel()
        network.dropRate = loss
        var sent = 0
        let sim = Simulator<MembershipProcess>(seed: seed, names: names, network: network) { name, id, now, _, random in
            MembershipProcess(name: name, id: id, seeds: seeds, tuning: tuning, randomSeed: random.next(), now: now, log: log)
        }
        var random = SeededGenerator(seed: seed ^ 0xABCD)
        // Join: until everyone sees everyone (checked every 500 ms, at most 60 s).
        while sim.now < .zero + .seconds(60) {
            sim.run(for: .milliseconds(500))
            let done = names.allSatisfy { n in sim.inspect(n, { $0.membership.liveNames.count == members - 1 }) == true }
            if done { result.joinSeconds = Double((sim.now - .zero).nanosecondsClamped) / 1e9; break }
        }
        // Quiet: message load and false deaths.
        sim.run(for: .seconds(2))
        let before = names.reduce(0) { $0 + (sim.inspect($1, { $0.membership.counters.messagesSent }) ?? 0) }
        let deathsBefore = log.entries.count { if case .dead = $0.event { return true } else { return false } }
        sim.run(for: .seconds(5))
        let after = names.reduce(0) { $0 + (sim.inspect($1, { $0.membership.counters.messagesSent }) ?? 0) }
        sent = after - before
        result.messagesPerMemberPerSecond = Double(sent) / Double(members) / 5
        result.falseDeaths = log.entries.count { if case .dead = $0.event { return true } else { return false } } - deathsBefore
        var alive = names
        for _ in 0..<trials where alive.count > 2 {
            let victim = alive.remove(at: Int(random.next() % UInt64(alive.count)))
            guard let id = sim.inspect(victim, { $0.id }) else { continue }
            let start = sim.now
            let mark = log.entries.count
            sim.crash(victim)
            var declared: [Double] = []
            while sim.now < start + .seconds(20) {
                sim.run(for: .milliseconds(50))
                let seen = Set(log.entries[mark...].filter { $0.event == .dead(name: victim, id: id) }.map(\.observer))
                if seen.count >= alive.count { break }
            }
            for observer in alive {
                if let e = log.entries[mark...].first(where: { $0.observer == observer && $0.event == .dead(name: victim, id: id) }) {
                    declared.append(Double((e.at - start).nanosecondsClamped) / 1e6)
                }
            }
            result.detectionsMs += declared
            if let first = declared.min(), let last = declared.max() {
                result.firstMs.append(first)
                result.lastMs.append(last)
            }
            sim.run(for: .seconds(2))
        }
        _ = sent
        return result
    }
}
