import SessionReplicationCore

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

    public var id: NodeID { membership.selfID }
    public var nextDeadline: MonotonicInstant { membership.nextDeadline }

    public mutating func tick(now: MonotonicInstant, wall: WallTime) {
        membership.tick(now: now)
        flushEvents(now, wall: wall)
    }

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

    public mutating func takeOutgoing() -> [SimulatedSend<MembershipMessage>] {
        let (out, events) = membership.takeOutput()
        pending.append(contentsOf: out)
        precondition(events.isEmpty, "events are flushed on every call")
        defer { pending = [] }
        return pending.map { SimulatedSend(to: $0.to, message: $0.message, reliable: $0.reliable) }
    }
}
