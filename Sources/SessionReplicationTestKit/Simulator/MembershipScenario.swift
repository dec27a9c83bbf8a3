import SessionReplicationCore

/// The membership simulation scenario: whole clusters of `Membership` machines (no
/// replication) under the simulator, one seed at a time. `drs simulate-membership` runs
/// many seeds of it optimised; the tests replay single seeds.
package enum MembershipScenario {
    /// What one seed did and what went wrong.
    package struct Outcome: Sendable, Equatable {
        /// Each broken expectation, in words; empty when the seed passed.
        package var failures: [String] = []
        /// Crash-to-dead times, one per crashed process and observer that stayed up.
        package var detections: [Duration] = []
    }

    /// A simulator of `names`, each a `MembershipProcess` with the default tuning, that
    /// records into `log`.
    package static func makeSimulator(seed: UInt64, names: [String], network: NetworkModel, log: MembershipLog) -> Simulator<MembershipProcess> {
        Simulator(seed: seed, names: names, network: network) { name, id, now, _, random in
            MembershipProcess(name: name, id: id, seeds: names, tuning: MembershipTuning(), randomSeed: random.next(), now: now, log: log)
        }
    }

    /// The seeds a run of `count` from `base` covers: drawn from a generator seeded with
    /// `base`, below 10^9.
    package static func seeds(base: UInt64, count: Int) -> [UInt64] {
        var generator = SeededGenerator(seed: base)
        return (0..<count).map { _ in generator.next() % 1_000_000_000 }
    }

    /// One seed: `members` nodes (default 3) for 32 virtual seconds. Loss up to 5 % and
    /// duplication up to 2 % for the first 22 s, one fault beginning within the first 7 s
    /// (a crash and restart, a pause, or a partition or one-way cut of one node), then
    /// 10 s of healing on a clean network. Checks: every running process sees every other
    /// at its current id as alive; nobody untouched by a fault was declared dead; every
    /// crashed process was declared dead by every process that stayed up.
    package static func run(seed: UInt64, members: Int = 3) -> Outcome {
        var outcome = Outcome()
        var random = SeededGenerator(seed: seed &* 0x9E37_79B9_7F4A_7C15)
        var network = NetworkModel()
        network.dropRate = Double(random.next() % 50) / 1000
        network.duplicateRate = Double(random.next() % 20) / 1000
        network.maxDelay = .microseconds(Int64(200 + random.next() % 4_800))
        let names = (1...members).map { "n\($0)" }
        let log = MembershipLog()
        let sim = makeSimulator(seed: seed, names: names, network: network, log: log)
        sim.run(for: .seconds(2))
        for a in names {
            for b in names where a != b {
                if sim.process(a)?.membership.member(b)?.status != .alive { outcome.failures.append("\(a) does not see \(b) alive after joining") }
            }
        }
        var touched: Set<String> = []
        var crashed: [(name: String, id: NodeID, at: MonotonicInstant)] = []
        let victim = names[Int(random.next() % UInt64(members))]
        let faultAt = Duration.milliseconds(Int64(random.next() % 5_000))
        sim.run(for: faultAt)
        switch random.next() % 3 {
        case 0:
            touched.insert(victim)
            crashed.append((victim, sim.process(victim)!.id, sim.now))
            sim.crash(victim)
            sim.run(for: .milliseconds(Int64(1_000 + random.next() % 8_000)))
            sim.start(victim)
        case 1:
            touched.insert(victim)
            sim.pause(victim)
            sim.run(for: .milliseconds(Int64(50 + random.next() % 3_000)))
            sim.resume(victim)
        default:
            let cut = Array(names.filter { $0 != victim })
            touched.formUnion(names)
            if random.next() % 2 == 0 { sim.partition([victim], cut) } else { sim.block(from: victim, to: cut[0]) }
            sim.run(for: .milliseconds(Int64(100 + random.next() % 3_000)))
            sim.heal()
        }
        sim.run(until: .zero + .seconds(22))
        sim.network = NetworkModel()
        sim.run(until: .zero + .seconds(32))
        for a in names {
            guard let p = sim.process(a) else { continue }
            for b in names where a != b {
                guard let q = sim.process(b) else { continue }
                let m = p.membership.member(b)
                if m?.id != q.id || m?.status != .alive {
                    outcome.failures.append("\(a) sees \(b) as \(m.map { "\($0.status) id \($0.id)" } ?? "unknown"), current id \(q.id)")
                }
            }
        }
        for entry in log.entries {
            guard case .dead(let name, _) = entry.event else { continue }
            if !touched.contains(name) && !touched.contains(entry.observer) {
                outcome.failures.append("\(entry.observer) declared untouched \(name) dead at \(entry.at)")
            }
        }
        for c in crashed {
            for observer in names where observer != c.name {
                guard let at = log.entries.first(where: { $0.observer == observer && $0.event == .dead(name: c.name, id: c.id) })?.at else {
                    outcome.failures.append("\(observer) never declared crashed \(c.name) dead")
                    continue
                }
                outcome.detections.append(at - c.at)
            }
        }
        return outcome
    }
}
