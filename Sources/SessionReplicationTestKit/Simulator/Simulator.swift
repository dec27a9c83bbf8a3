import HeapModule
import SessionReplicationCore

/// A process the simulator runs: a core state machine (or several) behind one name,
/// fed messages, connection changes and timer ticks, returning what it wants to send.
/// Every instant it is given is its own clock's (which may drift, or stop while it is
/// paused); wall clocks are skewed per process.
package protocol SimulatedProcess {
    /// The messages processes exchange.
    associatedtype Message
    /// This process's node id (fresh per start).
    var id: NodeID { get }
    /// The earliest instant (own clock) its `tick` has work.
    var nextDeadline: MonotonicInstant { get }
    /// Runs due timers.
    mutating func tick(now: MonotonicInstant, wall: WallTime)
    /// Handles one message from `from` (process `id`); `reliable` says it came on a stream.
    mutating func receive(_ message: Message, from: String, id: NodeID, reliable: Bool, now: MonotonicInstant, wall: WallTime)
    /// Its outgoing stream connection to `peer` came up or went down.
    mutating func connection(to peer: String, up: Bool, now: MonotonicInstant, wall: WallTime)
    /// Messages to send, drained.
    mutating func takeOutgoing() -> [SimulatedSend<Message>]
}

extension SimulatedProcess {
    /// Connections do not matter to this process.
    package mutating func connection(to peer: String, up: Bool, now: MonotonicInstant, wall: WallTime) {}
}

/// One message a simulated process sends.
package struct SimulatedSend<Message> {
    /// Receiver name.
    package var to: String
    /// The message.
    package var message: Message
    /// Over the sender's stream connection (TCP: in order, lost only with the connection)
    /// rather than as a datagram.
    package var reliable: Bool
    /// Creates a send.
    package init(to: String, message: Message, reliable: Bool) {
        self.to = to
        self.message = message
        self.reliable = reliable
    }
}

/// How the simulated network misbehaves. Partitions and resets are set on the simulator.
package struct NetworkModel: Hashable, Sendable {
    /// Probability a datagram is lost. Default 0.
    package var dropRate = 0.0
    /// Probability a datagram arrives twice. Default 0.
    package var duplicateRate = 0.0
    /// Shortest one-way delay. Default 100 us.
    package var minDelay: Duration = .microseconds(100)
    /// Longest one-way delay; datagrams reorder within the spread. Default 2 ms.
    package var maxDelay: Duration = .milliseconds(2)
    /// The defaults: a clean LAN.
    package init() {}
}

/// Which inbound traffic a one-loop pause holds back.
package enum SimulatedLoop: Hashable, Sendable {
    /// Membership datagrams (the node's membership loop stalls).
    case membership
    /// Everything over the replication sockets: frames and stream messages.
    case replication
}

/// A deterministic discrete-event simulator: processes under a virtual clock (each with
/// its own rate and, optionally, a clock that stops while paused), a seeded network that
/// drops, delays, duplicates, reorders and partitions (one-way too) datagrams, stream
/// connections per ordered pair that hold traffic across a partition and lose it when
/// reset, crashes, pauses (whole or of one loop) and restarts. A paused process's
/// messages queue and are delivered before its due timers when it resumes. Every choice
/// comes from the seed and no decision iterates an unordered collection, so a seed
/// replays exactly; `traceDigest` fingerprints what happened.
package final class Simulator<Process: SimulatedProcess> {
    struct Delivery {
        var to: String
        /// The slot of `to` (looked up once when sent, not again when delivered).
        var toSlot: Int
        var from: String
        var fromID: NodeID
        var message: Process.Message
        var reliable: Bool
        /// The connection generation a stream message was sent on.
        var generation: UInt64
    }

    enum Kind {
        case deliver(Delivery)
        case timer(Int)
        case connect(Pair)
    }

    struct Event: Comparable {
        var time: MonotonicInstant
        var order: UInt64
        var kind: Kind
        static func < (a: Event, b: Event) -> Bool { (a.time, a.order) < (b.time, b.order) }
        static func == (a: Event, b: Event) -> Bool { a.time == b.time && a.order == b.order }
    }

    /// A reference, so that a process is mutated in place and never copied.
    final class Slot {
        let name: String
        var process: Process?
        var paused = false
        var queued: [Delivery] = []
        var scheduled: MonotonicInstant?
        let skew: Duration
        /// Added to the wall clock from the current start on (a clock stepped back).
        var wallStep: Duration = .zero
        /// Own clock: `offset + rate x global`, in nanoseconds.
        var rate = 1.0
        var offset: Double = 0
        /// Whether the own clock stops while paused (a VM's monotonic clock), and when the
        /// pause began.
        var stopsWhilePaused = false
        var pausedAt: MonotonicInstant?
        /// Loops whose inbound traffic is held, and what they hold.
        var held: Set<SimulatedLoop> = []
        var heldQueue: [Delivery] = []
        init(name: String, skew: Duration) {
            self.name = name
            self.skew = skew
        }
    }

    struct Pair: Hashable, Comparable {
        var from: String
        var to: String
        static func < (a: Pair, b: Pair) -> Bool { (a.from, a.to) < (b.from, b.to) }
    }

    /// A stream connection from one process to another.
    struct Connection {
        var up = false
        var connecting = false
        var generation: UInt64 = 0
        /// Messages sent while the path was cut: the kernel retransmits them once it heals.
        var held: [Delivery] = []
        var lastArrival: MonotonicInstant = .zero
    }

    /// The virtual (global) clock.
    package private(set) var now: MonotonicInstant = .zero
    /// The network's behaviour; may change between runs.
    package var network: NetworkModel
    /// The random source of every simulator choice.
    package var random: SeededGenerator
    /// Messages delivered, and lost (loss, cut, dead receiver, reset connection).
    package private(set) var delivered = 0, dropped = 0
    /// Called after every event with the simulator (to check invariants at every instant).
    package var observer: ((Simulator) -> Void)?
    /// The process the last event ran on (`nil` for a message to a crashed or paused one).
    package var lastTouched: String? { lastTouchedSlot.map { slots[$0].name } }
    /// The slot of `lastTouched`.
    var lastTouchedSlot: Int?
    /// A fingerprint of every event run (time, kind, process): two runs of one seed give
    /// the same digest.
    package private(set) var traceDigest: UInt64 = 0xcbf2_9ce4_8422_2325

    let base = WallTime(milliseconds: 1_700_000_000_000)
    let make: (String, NodeID, MonotonicInstant, WallTime, inout SeededGenerator) -> Process
    var slots: [Slot] = []
    var index: [String: Int] = [:]
    var heap = Heap<Event>()
    var order: UInt64 = 0
    var blocked: Set<Pair> = []
    var cuts: [Pair: Int] = [:]
    var connections: [Pair: Connection] = [:]
    var starts: UInt64 = 0

    /// A simulator for processes named `names`, all started at time zero by `make`
    /// (name, fresh id, own now, wall, random). Wall clocks are skewed by up to `maxSkew`;
    /// each process's clock runs at a rate within `1 ± maxDrift`.
    package init(seed: UInt64, names: [String], network: NetworkModel = .init(), maxSkew: Duration = .milliseconds(50),
                maxDrift: Double = 0, startAll: Bool = true,
                make: @escaping (String, NodeID, MonotonicInstant, WallTime, inout SeededGenerator) -> Process) {
        self.random = SeededGenerator(seed: seed)
        self.network = network
        self.make = make
        let skewSpan = UInt64(max(1, maxSkew.nanosecondsClamped))
        for name in names.sorted() {
            let skew = Duration.nanoseconds(Int64(random.next() % (2 * skewSpan)) - Int64(skewSpan))
            index[name] = slots.count
            let slot = Slot(name: name, skew: skew)
            if maxDrift > 0 { slot.rate = 1 + (Double(random.next() % 2_000_001) / 1_000_000 - 1) * maxDrift }
            slots.append(slot)
        }
        if startAll { for name in names.sorted() { start(name) } }
    }

    /// Every process name, sorted.
    package var names: [String] { slots.map(\.name) }

    /// The wall clock of `name` now.
    package func wall(_ name: String) -> WallTime {
        guard let i = index[name] else { return base + (now - .zero) }
        return wall(slot: i)
    }

    /// The wall clock of slot `i` now (by slot: the lookup by name hashed the name on every
    /// event).
    func wall(slot i: Int) -> WallTime {
        let s = slots[i]
        return base + (now - .zero) + s.skew + s.wallStep
    }

    /// The own clock of slot `i` at global instant `t`.
    func local(_ i: Int, _ t: MonotonicInstant) -> MonotonicInstant {
        let s = slots[i]
        if s.stopsWhilePaused, let p = s.pausedAt, t > p { return local(i, p) }
        let v = s.offset + s.rate * Double(t.nanoseconds)
        return MonotonicInstant(nanoseconds: UInt64(max(0, v)))
    }

    /// The global instant at which slot `i`'s own clock reads `l` (never earlier).
    func global(_ i: Int, _ l: MonotonicInstant) -> MonotonicInstant {
        let s = slots[i]
        let g = (Double(l.nanoseconds) - s.offset) / s.rate
        return MonotonicInstant(nanoseconds: UInt64(max(0, g.rounded(.up))) + 1)
    }

    /// The own clock of `name` now.
    package func clock(_ name: String) -> MonotonicInstant { index[name].map { local($0, now) } ?? now }

    /// The running (or paused) process named `name`; `nil` while crashed. A copy: use
    /// `inspect` in hot loops.
    package func process(_ name: String) -> Process? { index[name].flatMap { slots[$0].process } }

    /// Whether slot `i` runs (not crashed, not paused).
    func isRunning(slot i: Int) -> Bool { hasProcess(i) && !slots[i].paused }

    /// The own clock of slot `i` now.
    func clock(slot i: Int) -> MonotonicInstant { local(i, now) }

    /// Reads the process in slot `i` without copying it; `nil` while crashed.
    func inspect<T>(slot i: Int, _ body: (borrowing Process) -> T) -> T? {
        guard hasProcess(i) else { return nil }
        return Self.lend(&slots[i].process!, body)
    }

    /// Reads the process `name` without copying it; `nil` while crashed.
    package func inspect<T>(_ name: String, _ body: (borrowing Process) -> T) -> T? {
        guard let i = index[name], hasProcess(i) else { return nil }
        // Lent in place: reading `process!` would copy the whole process (profiled: half
        // the simulation's time went to those copies).
        return Self.lend(&slots[i].process!, body)
    }

    static func lend<T>(_ process: inout Process, _ body: (borrowing Process) -> T) -> T { body(process) }

    /// Whether slot `i` holds a process, without copying it (`process != nil` on the
    /// slot copies the whole process to compare it, on every event).
    func hasProcess(_ i: Int) -> Bool { Self.present(&slots[i].process) }

    static func present(_ process: inout Process?) -> Bool { if case .some = process { true } else { false } }

    /// Whether `name` is running and not paused.
    package func isRunning(_ name: String) -> Bool { index[name].map { hasProcess($0) && !slots[$0].paused } ?? false }

    /// Whether `name` is paused.
    package func isPaused(_ name: String) -> Bool { index[name].map { slots[$0].paused } ?? false }

    /// Whether `name` exists (running or paused).
    package func isUp(_ name: String) -> Bool { index[name].map { hasProcess($0) } ?? false }

    /// Acts on the process `name` (a client request, say) with its own clock, then sends
    /// what it produced. Returns `nil` when it is crashed or paused.
    @discardableResult
    package func with<T>(_ name: String, _ body: (inout Process, MonotonicInstant, WallTime) -> T) -> T? {
        guard let i = index[name], hasProcess(i), !slots[i].paused else { return nil }
        let (n, w) = (local(i, now), wall(slot: i))
        let slot = slots[i]
        let out = body(&slot.process!, n, w)
        afterTouch(i)
        return out
    }

    // MARK: - Faults

    /// Starts `name` as a new process; its wall clock is stepped by `wallStep` (negative:
    /// stepped back, so its fresh node id is smaller than its predecessor's).
    package func start(_ name: String, wallStep: Duration = .zero) {
        starts += 1
        let i = index[name]!
        slots[i].wallStep = wallStep
        slots[i].pausedAt = nil
        slots[i].held = []
        slots[i].heldQueue = []
        let id = NodeID.fresh(start: wall(name) + .milliseconds(Int64(starts)), random: random.next())
        slots[i].process = make(name, id, local(i, now), wall(name), &random)
        slots[i].paused = false
        slots[i].queued = []
        slots[i].scheduled = nil
        mix(0x51, name)
        afterTouch(i)
        // Its links connect out, and its peers' links reconnect to it.
        for peer in names where peer != name && isUp(peer) {
            scheduleConnect(Pair(from: name, to: peer), after: delay())
            scheduleConnect(Pair(from: peer, to: name), after: delay() + .milliseconds(Int64(random.next() % 50)))
        }
    }

    /// Crashes `name`: its state is gone; messages to it are lost from now on, and every
    /// connection to it breaks (its peers hear it at once, as from a reset).
    package func crash(_ name: String) {
        let i = index[name]!
        slots[i].process = nil
        slots[i].paused = false
        slots[i].queued = []
        slots[i].scheduled = nil
        slots[i].held = []
        slots[i].heldQueue = []
        mix(0x52, name)
        for key in connections.keys.sorted() where key.to == name || key.from == name {
            let wasUp = connections[key]!.up
            connections[key] = Connection(generation: connections[key]!.generation + 1)
            if key.to == name, wasUp { notify(key, up: false) }
        }
    }

    /// Crashes `name` and starts it again at once under a new id.
    package func restart(_ name: String, wallStep: Duration = .zero) {
        crash(name)
        start(name, wallStep: wallStep)
    }

    /// Pauses `name` (SIGSTOP): its timers stop, messages to it queue. With
    /// `stopClock` its own clock stops too until it resumes (a paused VM).
    package func pause(_ name: String, stopClock: Bool = false) {
        guard let i = index[name], hasProcess(i) else { return }
        slots[i].paused = true
        slots[i].stopsWhilePaused = stopClock
        slots[i].pausedAt = now
        mix(0x53, name)
    }

    /// Resumes `name` (SIGCONT): queued messages are delivered first, then due timers run.
    package func resume(_ name: String) {
        guard let i = index[name], slots[i].paused, hasProcess(i) else { return }
        if slots[i].stopsWhilePaused, let p = slots[i].pausedAt {
            // The own clock reads on from where it stopped.
            slots[i].offset -= slots[i].rate * Double(now.nanoseconds - p.nanoseconds)
        }
        slots[i].paused = false
        slots[i].pausedAt = nil
        slots[i].stopsWhilePaused = false
        mix(0x54, name)
        let queued = slots[i].queued
        slots[i].queued = []
        for d in queued { deliverNow(d, i) }
        let l = local(i, now)
        if hasProcess(i), Self.lend(&slots[i].process!, { $0.nextDeadline }) <= l { slots[i].process!.tick(now: l, wall: wall(slot: i)) }
        slots[i].scheduled = nil
        afterTouch(i)
    }

    /// Holds `name`'s inbound traffic of `loop` (one event loop stalls) until `release`.
    package func hold(_ name: String, _ loop: SimulatedLoop) {
        guard let i = index[name] else { return }
        slots[i].held.insert(loop)
        mix(0x55, name)
    }

    /// Releases every held loop of `name`: what they held is delivered now, in order.
    package func release(_ name: String) {
        guard let i = index[name] else { return }
        slots[i].held = []
        let q = slots[i].heldQueue
        slots[i].heldQueue = []
        mix(0x56, name)
        for d in q { deliver(d) }
    }

    /// Cuts traffic from `from` to `to` (one direction, datagrams and streams alike;
    /// stream messages wait for the cut to heal). Cuts of one pair add up: each `block`
    /// needs its `unblock`.
    package func block(from: String, to: String) {
        let pair = Pair(from: from, to: to)
        blocked.insert(pair)
        cuts[pair, default: 0] += 1
        mix(0x57, from, to)
    }

    /// Lifts one cut from `from` to `to`; when none is left, what the stream held flows.
    package func unblock(from: String, to: String) {
        let pair = Pair(from: from, to: to)
        guard let n = cuts[pair] else { return }
        if n > 1 { cuts[pair] = n - 1; return }
        cuts[pair] = nil
        blocked.remove(pair)
        mix(0x5A, from, to)
        if let held = connections[pair]?.held, !held.isEmpty {
            connections[pair]!.held = []
            for d in held { schedule(d, pair: pair) }
        }
        for key in [pair, Pair(from: to, to: from)] where connections[key]?.up == false { scheduleConnect(key, after: delay()) }
    }

    /// Lifts the cuts `partition` made between the two groups.
    package func unpartition(_ a: [String], _ b: [String]) {
        for x in a { for y in b { unblock(from: x, to: y); unblock(from: y, to: x) } }
    }

    /// Cuts all traffic between the two groups, both directions.
    package func partition(_ a: [String], _ b: [String]) {
        for x in a { for y in b { block(from: x, to: y); block(from: y, to: x) } }
    }

    /// Removes every cut: stream messages held across it are delivered, in order.
    package func heal() {
        blocked = []
        cuts = [:]
        mix(0x58, "heal")
        for key in connections.keys.sorted() where !connections[key]!.held.isEmpty {
            let held = connections[key]!.held
            connections[key]!.held = []
            for d in held { schedule(d, pair: key) }
        }
        for key in connections.keys.sorted() where !connections[key]!.up { scheduleConnect(key, after: delay()) }
    }

    /// Resets the stream connection from `from` to `to` (a TCP reset): what it carried and
    /// had not delivered is lost; `from` hears the connection went down, and reconnects.
    package func reset(from: String, to: String) {
        let key = Pair(from: from, to: to)
        guard var c = connections[key], c.up else { return }
        dropped += c.held.count
        c = Connection(generation: c.generation + 1)
        connections[key] = c
        mix(0x59, from, to)
        notify(key, up: false)
        scheduleConnect(key, after: .milliseconds(Int64(20 + random.next() % 200)))
    }

    // MARK: - Running

    /// Runs events until the clock reaches `deadline`.
    package func run(until deadline: MonotonicInstant) {
        while let first = heap.min, first.time <= deadline {
            let event = heap.removeMin()
            now = max(now, event.time)
            lastTouchedSlot = nil
            switch event.kind {
            case .deliver(let d):
                deliver(d)
            case .timer(let i):
                let slot = slots[i]
                guard slot.scheduled == event.time, !slot.paused, hasProcess(i) else { continue }
                slot.scheduled = nil
                mix(0x61, slot.name)
                slot.process!.tick(now: local(i, now), wall: wall(slot: i))
                lastTouchedSlot = i
                afterTouch(i)
            case .connect(let pair):
                attemptConnect(pair)
            }
            observer?(self)
        }
        now = max(now, deadline)
    }

    /// Runs for `duration` of virtual time.
    package func run(for duration: Duration) { run(until: now + duration) }

    func deliver(_ d: Delivery) {
        let i = d.toSlot
        guard hasProcess(i) else { dropped += 1; return }
        if d.reliable {
            // A message of a connection reset since it was sent is gone.
            guard connections[Pair(from: d.from, to: d.to)]?.generation == d.generation else { dropped += 1; return }
        }
        if slots[i].paused {
            slots[i].queued.append(d)
            return
        }
        deliverNow(d, i)
    }

    func deliverNow(_ d: Delivery, _ i: Int) {
        let loop: SimulatedLoop = d.reliable ? .replication : loopOf(d)
        if slots[i].held.contains(loop) {
            slots[i].heldQueue.append(d)
            return
        }
        delivered += 1
        let slot = slots[i]
        mix(0x62, d.from, d.to)
        slot.process!.receive(d.message, from: d.from, id: d.fromID, reliable: d.reliable, now: local(i, now), wall: wall(slot: i))
        lastTouchedSlot = i
        afterTouch(i)
    }

    /// Which loop receives a datagram: the simulator cannot look inside a message, so a
    /// process type says (see `SimulatedLoopClassifying`).
    func loopOf(_ d: Delivery) -> SimulatedLoop {
        (d.message as? any SimulatedLoopClassifying)?.loop ?? .membership
    }

    /// Sends what slot `i` produced and schedules its next timer.
    func afterTouch(_ i: Int) {
        let slot = slots[i]
        guard hasProcess(i) else { return }
        let out = slot.process!.takeOutgoing()
        let id = Self.lend(&slot.process!) { $0.id }
        for send in out { transmit(send, from: slot.name, id: id) }
        guard hasProcess(i), !slot.paused else { return }
        let deadline = max(global(i, Self.lend(&slot.process!) { $0.nextDeadline }), now + .microseconds(1))
        if slot.scheduled != deadline {
            slot.scheduled = deadline
            push(deadline, .timer(i))
        }
    }

    func transmit(_ send: SimulatedSend<Process.Message>, from: String, id: NodeID) {
        let pair = Pair(from: from, to: send.to)
        guard let toSlot = index[send.to] else { dropped += 1; return }
        if send.reliable {
            guard let c = connections[pair], c.up else {
                // No connection: the message is lost (the shell's frame finds no channel) and a
                // connection is attempted.
                dropped += 1
                scheduleConnect(pair, after: delay())
                return
            }
            let d = Delivery(to: send.to, toSlot: toSlot, from: from, fromID: id, message: send.message, reliable: true, generation: c.generation)
            if blocked.contains(pair) {
                connections[pair]!.held.append(d)
            } else {
                schedule(d, pair: pair)
            }
            return
        }
        guard !blocked.contains(pair) else { dropped += 1; return }
        let d = Delivery(to: send.to, toSlot: toSlot, from: from, fromID: id, message: send.message, reliable: false, generation: 0)
        if chance(network.dropRate) { dropped += 1; return }
        push(now + delay(), .deliver(d))
        if chance(network.duplicateRate) { push(now + delay(), .deliver(d)) }
    }

    /// Schedules a stream message in order behind the connection's earlier ones.
    func schedule(_ d: Delivery, pair: Pair) {
        let at = max(now + delay(), connections[pair]?.lastArrival ?? .zero)
        connections[pair]?.lastArrival = at
        push(at, .deliver(d))
    }

    func scheduleConnect(_ pair: Pair, after: Duration) {
        guard connections[pair]?.connecting != true, connections[pair]?.up != true else { return }
        connections[pair, default: Connection()].connecting = true
        push(now + after, .connect(pair))
    }

    func attemptConnect(_ pair: Pair) {
        connections[pair, default: Connection()].connecting = false
        guard isUp(pair.from), connections[pair]!.up == false else { return }
        // A connection needs both directions of the path and a process to accept it (a
        // paused one's kernel accepts).
        guard isUp(pair.to), !blocked.contains(pair), !blocked.contains(Pair(from: pair.to, to: pair.from)) else {
            scheduleConnect(pair, after: .milliseconds(Int64(50 + random.next() % 200)))
            return
        }
        connections[pair]!.up = true
        connections[pair]!.lastArrival = now
        notify(pair, up: true)
    }

    /// Tells the sending process its connection changed.
    func notify(_ pair: Pair, up: Bool) {
        guard let i = index[pair.from], hasProcess(i) else { return }
        mix(up ? 0x63 : 0x64, pair.from, pair.to)
        let slot = slots[i]
        slot.process!.connection(to: pair.to, up: up, now: local(i, now), wall: wall(slot: i))
        if !slot.paused { afterTouch(i) } else {
            // A paused process hears nothing until it resumes; what it produced waits.
            let out = slot.process!.takeOutgoing()
            let id = Self.lend(&slot.process!) { $0.id }
            for send in out { transmit(send, from: slot.name, id: id) }
        }
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

    /// Folds an event into `traceDigest` (FNV-1a over its time, kind and names; two names
    /// are folded as `from>to`, without building that string).
    func mix(_ kind: UInt8, _ what: String, _ to: String? = nil) {
        var h = traceDigest
        func add(_ b: UInt8) { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        add(kind)
        var t = now.nanoseconds
        for _ in 0..<8 { add(UInt8(truncatingIfNeeded: t)); t >>= 8 }
        for b in what.utf8 { add(b) }
        if let to {
            add(UInt8(ascii: ">"))
            for b in to.utf8 { add(b) }
        }
        traceDigest = h
    }
}

/// A message type that says which of a node's loops receives it as a datagram (for
/// one-loop pauses).
package protocol SimulatedLoopClassifying {
    /// The loop that reads it.
    var loop: SimulatedLoop { get }
}
