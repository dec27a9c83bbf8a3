import SessionReplicationCore

// MARK: - MembershipProcess
/// A record of membership events seen by every simulated process, shared across
/// restarts (a crash loses the process, not the log).
package final class MembershipLog {
    /// One event as one process saw it.
    package struct Entry: Hashable, Sendable {
        /// When.
        package var at: MonotonicInstant
        /// Who saw it.
        package var observer: String
        /// What.
        package var event: MembershipEvent
    }
    /// Every event in order.
    package private(set) var entries: [Entry] = []
    /// Creates an empty log.
    package init() {}
    /// Appends an event.
    package func record(_ event: MembershipEvent, by observer: String, at: MonotonicInstant) {
        entries.append(Entry(at: at, observer: observer, event: event))
    }
}

/// One simulated node running only the membership protocol.
package struct MembershipProcess: SimulatedProcess {
    /// The state machine.
    package private(set) var membership: Membership
    /// Times this process rejoined under a new id after being declared dead.
    package private(set) var rejoins = 0
    let log: MembershipLog
    var random: SplitMix64

    /// A process named `name` with id `id`, seeding from `seeds`.
    package init(name: String, id: NodeID, seeds: [String], tuning: MembershipTuning, randomSeed: UInt64,
                now: MonotonicInstant, log: MembershipLog) {
        membership = Membership(selfName: name, selfID: id, seeds: seeds, tuning: tuning, randomSeed: randomSeed, now: now)
        self.log = log
        self.random = SplitMix64(seed: randomSeed ^ 0x5eed)
    }

    /// This process's node id.
    package var id: NodeID { membership.selfID }
    /// The earliest instant its timers have work.
    package var nextDeadline: MonotonicInstant { membership.nextDeadline }

    /// Runs due timers.
    package mutating func tick(now: MonotonicInstant, wall: WallTime) {
        membership.tick(now: now)
        flushEvents(now, wall: wall)
    }

    /// Handles one message from `from`.
    package mutating func receive(_ message: MembershipMessage, from: String, id: NodeID, reliable: Bool,
                                 now: MonotonicInstant, wall: WallTime) {
        membership.receive(message, from: from, id: id, reliable: reliable, now: now)
        flushEvents(now, wall: wall)
    }

    /// Leaves gracefully.
    package mutating func leave(now: MonotonicInstant) {
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
            let id = NodeID.rejoining(after: old.selfID, above: nil, fresh: NodeID.fresh(start: wall, random: random.next()))
            membership = Membership(selfName: old.selfName, selfID: id, seeds: old.seeds, tuning: old.tuning,
                                    randomSeed: random.next(), now: now)
        }
    }

    /// Messages to send, drained.
    package mutating func takeOutgoing() -> [SimulatedSend<MembershipMessage>] {
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
package enum MembershipExperiment {
    /// What one run measured.
    package struct Result: Sendable {
        /// Members in the cluster.
        package var members: Int
        /// Crash-to-dead times, one per (trial, surviving observer), in milliseconds.
        package var detectionsMs: [Double] = []
        /// Per trial: when the first and the last survivor declared the crashed member dead.
        package var firstMs: [Double] = [], lastMs: [Double] = []
        /// Messages sent per member per second in a quiet period.
        package var messagesPerMemberPerSecond = 0.0
        /// Live members declared dead (none crashed) during the quiet period.
        package var falseDeaths = 0
        /// Virtual seconds until every member listed every other as alive.
        package var joinSeconds: Double?
    }

    /// Runs `trials` crashes of a random member in a cluster of `members`, each after a
    /// quiet period, with datagram `loss`.
    package static func run(members: Int, trials: Int, seed: UInt64, loss: Double = 0, tuning: MembershipTuning = .init()) -> Result {
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
