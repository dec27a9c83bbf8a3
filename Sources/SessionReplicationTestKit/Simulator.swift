import HeapModule
import SessionReplicationCore

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
        case timer(String)
    }

    struct Event: Comparable {
        var time: MonotonicInstant
        var order: UInt64
        var kind: Kind
        static func < (a: Event, b: Event) -> Bool { (a.time, a.order) < (b.time, b.order) }
        static func == (a: Event, b: Event) -> Bool { a.time == b.time && a.order == b.order }
    }

    struct Slot {
        var process: Process?
        var paused = false
        var queued: [Delivery] = []
        var scheduled: MonotonicInstant?
        var skew: Duration
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

    let base = WallTime(milliseconds: 1_700_000_000_000)
    let make: (String, NodeID, MonotonicInstant, WallTime, inout SeededGenerator) -> Process
    var slots: [String: Slot] = [:]
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
            slots[name] = Slot(process: nil, skew: skew)
        }
        for name in names.sorted() { start(name) }
    }

    /// Every process name, sorted.
    public var names: [String] { slots.keys.sorted() }

    /// The wall clock of `name` now.
    public func wall(_ name: String) -> WallTime { base + (now - .zero) + (slots[name]?.skew ?? .zero) }

    /// The running (or paused) process named `name`; `nil` while crashed.
    public func process(_ name: String) -> Process? { slots[name]?.process }

    /// Whether `name` is running and not paused.
    public func isRunning(_ name: String) -> Bool { slots[name]?.process != nil && slots[name]?.paused == false }

    /// Whether `name` is paused.
    public func isPaused(_ name: String) -> Bool { slots[name]?.paused == true }

    /// Acts on the process `name` (a client request, say), then sends what it produced.
    /// Returns `nil` when it is crashed or paused.
    @discardableResult
    public func with<T>(_ name: String, _ body: (inout Process, MonotonicInstant, WallTime) -> T) -> T? {
        guard var p = slots[name]?.process, slots[name]?.paused == false else { return nil }
        slots[name]!.process = nil
        let out = body(&p, now, wall(name))
        slots[name]!.process = p
        afterTouch(name)
        return out
    }

    // MARK: - Faults

    /// Starts `name` as a new process with a fresh, larger node id.
    public func start(_ name: String) {
        starts += 1
        let id = NodeID.fresh(start: wall(name) + .milliseconds(Int64(starts)), random: random.next())
        slots[name]!.process = make(name, id, now, wall(name), &random)
        slots[name]!.paused = false
        slots[name]!.queued = []
        slots[name]!.scheduled = nil
        afterTouch(name)
    }

    /// Crashes `name`: its state is gone; messages to it are lost from now on.
    public func crash(_ name: String) {
        slots[name]!.process = nil
        slots[name]!.paused = false
        slots[name]!.queued = []
        slots[name]!.scheduled = nil
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
        guard slots[name]?.process != nil else { return }
        slots[name]!.paused = true
    }

    /// Resumes `name` (SIGCONT): queued messages are delivered first, then due timers run.
    public func resume(_ name: String) {
        guard slots[name]?.paused == true, var p = slots[name]?.process else { return }
        slots[name]!.paused = false
        let queued = slots[name]!.queued
        slots[name]!.queued = []
        slots[name]!.process = nil
        for d in queued {
            p.receive(d.message, from: d.from, id: d.fromID, reliable: d.reliable, now: now, wall: wall(name))
        }
        if p.nextDeadline <= now { p.tick(now: now, wall: wall(name)) }
        slots[name]!.process = p
        slots[name]!.scheduled = nil
        afterTouch(name)
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
            switch event.kind {
            case .deliver(let d):
                deliver(d)
            case .timer(let name):
                guard slots[name]?.scheduled == event.time, slots[name]?.paused == false,
                      var p = slots[name]?.process else { continue }
                slots[name]!.scheduled = nil
                slots[name]!.process = nil
                p.tick(now: now, wall: wall(name))
                slots[name]!.process = p
                afterTouch(name)
            }
            observer?(self)
        }
        now = max(now, deadline)
    }

    /// Runs for `duration` of virtual time.
    public func run(for duration: Duration) { run(until: now + duration) }

    func deliver(_ d: Delivery) {
        guard slots[d.to]?.process != nil else { dropped += 1; return }
        if slots[d.to]!.paused {
            slots[d.to]!.queued.append(d)
            return
        }
        delivered += 1
        var p = slots[d.to]!.process!
        slots[d.to]!.process = nil
        p.receive(d.message, from: d.from, id: d.fromID, reliable: d.reliable, now: now, wall: wall(d.to))
        slots[d.to]!.process = p
        afterTouch(d.to)
    }

    /// Sends what `name` produced and schedules its next timer.
    func afterTouch(_ name: String) {
        guard var p = slots[name]?.process else { return }
        let out = p.takeOutgoing()
        let id = p.id
        let deadline = max(p.nextDeadline, now + .microseconds(1))
        slots[name]!.process = p
        for send in out { transmit(send, from: name, id: id) }
        if slots[name]!.scheduled != deadline {
            slots[name]!.scheduled = deadline
            push(deadline, .timer(name))
        }
    }

    func transmit(_ send: SimulatedSend<Process.Message>, from: String, id: NodeID) {
        let pair = Pair(from: from, to: send.to)
        guard slots[send.to] != nil, !blocked.contains(pair) else { dropped += 1; return }
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
