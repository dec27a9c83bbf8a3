import SessionReplicationCore

/// Simulated runs of whole clusters of `NodeCore`s: a seed draws the knobs
/// (`ScenarioKnobs`: nodes, replication mode and replicas, majority, clock drift, network
/// loss and the faults), clients write (each write adds a new attribute, so a lost write
/// cannot hide behind a later one), read, delete, let sessions expire and ask other nodes
/// for sessions (takeover), the faults come and heal by 20 s, and the run ends with 8 s of
/// quiet and a takeover of every session from a node that does not own it.
///
/// Checked (`failures`: safety): no two nodes pass the serving check for one session at
/// one instant (always under `majority`; under `any` outside cuts); no two distinct states
/// share a stamp; at the moment a write is answered `replicated`, `minSyncReplicas` of the
/// backups it names hold it; no read misses a `replicated` write acknowledged before it
/// began (unless every holder of that write crashed); nothing is served after an
/// acknowledged delete or expiry; no session expires early; no `session-not-found` for a
/// live session; after healing, every session has one owner holding every replicated write,
/// with a full replica set. `stuck` (liveness): a session with no owner after healing, not
/// taken over 3 s after a request, or a live node that does not serve again.
package enum ClusterScenario {
    /// What one seed did and what went wrong.
    package struct Outcome: Sendable {
        /// The knobs the seed drew.
        package var knobs: ScenarioKnobs
        /// What went wrong (empty when every invariant held).
        package var failures: [String] = []
        /// Liveness problems after healing (empty when all is well).
        package var stuck: [String] = []
        /// Writes issued and acknowledged, and acknowledged `replicated`.
        package var writes = 0, acked = 0, replicated = 0
        /// Sessions promoted, and taken over on request, by nodes running at the end.
        package var promotions = 0, takeovers = 0
        /// How requests ended, by kind and outcome.
        package var outcomes: [String: Int] = [:]
        /// Rejoins after being declared dead.
        package var rejoins = 0
        /// The run's trace digest (the same for every run of the seed).
        package var digest: UInt64 = 0
    }

    /// The command that replays `seed` exactly.
    package static func replayCommand(_ seed: UInt64) -> String {
        "drs simulate-cluster --seed \(seed)"
    }

    /// Runs `seed` with its knobs (or `knobs` when given); `observe` checks the serving
    /// rule after every event (slower).
    package static func run(seed: UInt64, knobs given: ScenarioKnobs? = nil, observe: Bool = true) -> Outcome {
        let knobs = given ?? ScenarioKnobs.draw(seed: seed)
        var run = ScenarioRun(seed: seed, knobs: knobs, observe: observe)
        return run.run()
    }
}

/// One run of a scenario (`ClusterScenario.run`).
struct ScenarioRun {
    let seed: UInt64
    let knobs: ScenarioKnobs
    let observe: Bool
    let log = ClusterLog()
    let sim: Simulator<SimulatedNode>
    var random: SeededGenerator
    var out: ClusterScenario.Outcome
    var sessions: [SessionID] = []
    var writeCount: [SessionID: UInt64] = [:]
    /// Windows (global) in which some cut lasted, with a grace after it healed.
    var cutWindows: [(MonotonicInstant, MonotonicInstant)] = []
    var names: [String] { knobs.names }

    init(seed: UInt64, knobs: ScenarioKnobs, observe: Bool) {
        self.seed = seed
        self.knobs = knobs
        self.observe = observe
        self.random = SeededGenerator(seed: seed ^ 0x5CE7_A210)
        self.out = ClusterScenario.Outcome(knobs: knobs)
        let names = knobs.names
        let log = self.log
        var settingsTemplate = NodeSettings(name: "", members: names, backupCandidates: [], policy: knobs.policy,
                                            sessions: SessionPolicy(), membership: MembershipTuning())
        settingsTemplate.sessions.maxInactiveInterval = .seconds(3600)
        settingsTemplate.lease = .milliseconds(500)
        settingsTemplate.majority = knobs.majority
        settingsTemplate.lanes = knobs.lanes
        let template = settingsTemplate
        sim = Simulator<SimulatedNode>(seed: seed, names: names, network: knobs.network, maxDrift: knobs.drift) { name, id, now, _, random in
            var s = template
            s.name = name
            s.backupCandidates = names.filter { $0 != name }
            return SimulatedNode(settings: s, id: id, randomSeed: random.next(), now: now, log: log)
        }
        log.minSyncReplicas = knobs.policy.mode == .synchronous ? (knobs.policy.minSyncReplicas ?? 1) : 0
        for w in knobs.faults where w.fault.cuts {
            let start = MonotonicInstant.zero + w.at
            cutWindows.append((start, start + w.lasting + (knobs.majority ? .seconds(3) : .seconds(6))))
        }
    }

    /// Whether some cut lasts (or just healed) at `t`.
    func duringCut(_ t: MonotonicInstant) -> Bool { cutWindows.contains { t >= $0.0 && t <= $0.1 } }

    mutating func run() -> ClusterScenario.Outcome {
        let sim = self.sim
        log.globalNow = { [unowned sim] in sim.now }
        log.copies = { [unowned sim] node, id in sim.inspect(node) { $0.core.copy(of: id) } ?? nil }
        log.maxSkew = .milliseconds(50)
        // A node's owner or backup copy of a session (nil for a tombstone or nothing).
        let held: (String, SessionID) -> SessionState? = { [unowned sim] n, id in
            switch sim.inspect(n, { $0.core.copy(of: id) }) ?? nil {
            case .owner(let s)?, .backup(let s)?: return s
            default: return nil
            }
        }
        log.holders = { [unowned sim] id, attr in sim.names.filter { held($0, id)?.attributes[attr] != nil } }
        log.sessionHolders = { [unowned sim] id in sim.names.filter { held($0, id) != nil } }
        installObserver()
        // A configured node that is not running yet: nobody hears of it until it starts.
        var lateStart = knobs.lateStarter.map { (MonotonicInstant.zero + knobs.lateStartAt, $0) }
        if let (_, n) = lateStart { sim.crash(n) }
        sim.run(for: .seconds(1))
        createSessions(count: max(9, names.count * 2))
        var pendingFaults = knobs.faults
        var heals: [(MonotonicInstant, ScheduledFault)] = []
        var restarts: [(MonotonicInstant, String, Duration)] = []
        var resetting: [(String, MonotonicInstant)] = []
        while sim.now < .zero + .seconds(30) {
            sim.run(for: .milliseconds(Int64(5 + random.next() % 20)))
            while let f = pendingFaults.first, sim.now >= .zero + f.at {
                pendingFaults.removeFirst()
                inject(f, heals: &heals, restarts: &restarts, resetting: &resetting)
            }
            for (i, h) in heals.enumerated().reversed() where sim.now >= h.0 {
                heals.remove(at: i)
                heal(h.1)
            }
            if let (at, n) = lateStart, sim.now >= at {
                lateStart = nil
                trace("\(n) starts")
                sim.start(n)
            }
            for (i, r) in restarts.enumerated().reversed() where sim.now >= r.0 {
                restarts.remove(at: i)
                if !sim.isUp(r.1) { sim.start(r.1, wallStep: r.2) }
            }
            for (name, until) in resetting where sim.now < until && random.next() % 8 == 0 {
                let peers = names.filter { $0 != name }
                let peer = peers[Int(random.next() % UInt64(peers.count))]
                if random.next() % 2 == 0 { sim.reset(from: name, to: peer) } else { sim.reset(from: peer, to: name) }
            }
            if sim.now >= .zero + .seconds(20) { sim.network = NetworkModel() }
            guard sim.now < .zero + .seconds(22), !sessions.isEmpty else { continue }
            clientStep()
        }
        // Everything healed: whatever is still paused resumes, crashed nodes stay down.
        for n in names where sim.isPaused(n) { sim.resume(n) }
        judge()
        return out
    }

    // MARK: - Faults

    mutating func inject(_ f: ScheduledFault, heals: inout [(MonotonicInstant, ScheduledFault)],
                         restarts: inout [(MonotonicInstant, String, Duration)], resetting: inout [(String, MonotonicInstant)]) {
        trace("fault \(f)")
        let until = sim.now + f.lasting
        switch f.fault {
        case .crash(let n, let after, let step):
            guard sim.isUp(n) else { return }
            lose(n)
            sim.crash(n)
            if let after { restarts.append((sim.now + after, n, step)) }
        case .pause(let n, let stop):
            sim.pause(n, stopClock: stop)
            heals.append((until, f))
        case .loopPause(let n, let loop):
            sim.hold(n, loop)
            heals.append((until, f))
        case .partition(let n):
            sim.partition([n], names.filter { $0 != n })
            heals.append((until, f))
        case .linkCut(let a, let b):
            sim.block(from: a, to: b)
            sim.block(from: b, to: a)
            heals.append((until, f))
        case .oneWay(let a, let b):
            sim.block(from: a, to: b)
            heals.append((until, f))
        case .resets(let n):
            resetting.append((n, until))
        case .drain(let n, let after):
            guard sim.isRunning(n) else { return }
            sim.with(n) { p, now, wall in _ = p.request(.drain, now: now, wall: wall, at: sim.now) }
            // The drain's answer comes within drainTimeout; the node leaves and stops after
            // a short while, as `drs node` does on SIGTERM.
            sim.run(for: .milliseconds(300))
            sim.with(n) { p, now, wall in p.leave(now: now, wall: wall) }
            sim.run(for: .milliseconds(200))
            lose(n)
            sim.crash(n)
            restarts.append((sim.now + after, n, .zero))
        }
    }

    mutating func heal(_ f: ScheduledFault) {
        trace("heal \(f)")
        switch f.fault {
        case .pause(let n, _): sim.resume(n)
        case .loopPause(let n, _): sim.release(n)
        case .partition(let n): sim.unpartition([n], names.filter { $0 != n })
        case .linkCut(let a, let b): sim.unblock(from: a, to: b); sim.unblock(from: b, to: a)
        case .oneWay(let a, let b): sim.unblock(from: a, to: b)
        default: break
        }
    }

    /// `node` loses every copy it holds: replicated writes it alone held may be lost.
    func lose(_ node: String) {
        log.losing(node, holders: log.holders)
    }

    func trace(_ text: String) {
        if log.tracing { print("\(sim.now) scenario: \(text)") }
    }

    // MARK: - Clients

    mutating func createSessions(count: Int) {
        for i in 0..<count {
            let id = SessionID(high: seed, low: UInt64(i))
            if let idle = knobs.shortIdle, i % 3 == 0 { log.idleLimits[id] = idle }
            let node = names[i % names.count]
            sim.with(node) { p, now, wall in _ = p.request(.create(id), now: now, wall: wall, at: sim.now) }
            sessions.append(id)
        }
        sim.run(for: .milliseconds(500))
        sessions = sessions.filter { log.created[$0] != nil }
    }

    mutating func clientStep() {
        let live = sessions.filter { log.deletes[$0] == nil && log.expiries[$0] == nil }
        guard !live.isEmpty else { return }
        var s = live[Int(random.next() % UInt64(live.count))]
        // Short-lived sessions are left alone after a while, so they expire.
        if log.idleLimits[s] != nil, sim.now > .zero + .seconds(6) {
            let others = live.filter { log.idleLimits[$0] == nil }
            guard !others.isEmpty else { return }
            s = others[Int(random.next() % UInt64(others.count))]
        }
        let roll = random.next() % 100
        if roll < 15 {
            // A request lands on another node, which takes the session over.
            let asked = names[Int(random.next() % UInt64(names.count))]
            sim.with(asked) { p, now, wall in _ = p.request(.takeOver(s), now: now, wall: wall, at: sim.now) }
            return
        }
        // Otherwise the request goes where the session is served (a sticky balancer).
        guard let node = names.first(where: { n in sim.isRunning(n) && sim.inspect(n, { $0.serves(s, now: sim.clock(n)) }) == true }) else { return }
        if Double(random.next() % 10_000) / 10_000 < knobs.deleteShare {
            sim.with(node) { p, now, wall in _ = p.request(.delete(s), now: now, wall: wall, at: sim.now) }
        } else if roll < 40 {
            sim.with(node) { p, now, wall in _ = p.request(.read(s), now: now, wall: wall, at: sim.now) }
        } else {
            let n = (writeCount[s] ?? 0) + 1
            writeCount[s] = n
            out.writes += 1
            sim.with(node) { p, now, wall in _ = p.request(.write(s, name: "w\(n)", value: n), now: now, wall: wall, at: sim.now) }
        }
    }

    // MARK: - Invariants

    /// At no instant do two running nodes pass the serving check for one session (under
    /// `any`, outside cuts). A node starts serving only on an event of its own (leases only
    /// lapse with time), so after each event the node it ran on is checked against the
    /// others.
    mutating func installObserver() {
        let log = self.log
        let sessionsRef = SessionsBox()
        let names = self.names
        let majority = knobs.majority
        let windows = cutWindows
        let observe = self.observe
        sim.observer = { sim in
            log.runDeferred()
            guard observe, let touched = sim.lastTouchedSlot, sim.isRunning(slot: touched) else { return }
            if sessionsRef.ids.isEmpty {
                sessionsRef.ids = (0..<max(9, names.count * 2)).map { SessionID(high: log.seedHigh, low: UInt64($0)) }
            }
            if !majority, windows.contains(where: { sim.now >= $0.0 && sim.now <= $0.1 }) { return }
            // One look at each node per event, by slot (a lookup by name hashed the name,
            // three times per node and event).
            let at = sim.clock(slot: touched)
            let ids = sessionsRef.ids
            let served: [SessionID] = sim.inspect(slot: touched) { p -> [SessionID] in
                let served = p.core.served(among: ids, now: at)
                // (Debug builds check the shortcut against the serving rule, id by id.)
                assert(served == ids.filter { p.serves($0, now: at) }, "served(among:) disagrees with serves")
                return served
            } ?? []
            guard !served.isEmpty else { return }
            for n in sim.slots.indices where n != touched && sim.isRunning(slot: n) {
                let clock = sim.clock(slot: n)
                let both: [SessionID] = sim.inspect(slot: n) { p in p.core.served(among: served, now: clock) } ?? []
                for s in both { log.violation("[\(sim.slots[touched].name), \(sim.slots[n].name)] both serve \(s)") }
            }
        }
        log.seedHigh = seed
    }

    mutating func judge() {
        out.failures += log.violations
        let running = names.filter { sim.isRunning($0) }
        // The digests each shard keeps as sessions change equal a walk over its sessions.
        for n in running {
            let problems = sim.inspect(n) { p in p.core.lanes.flatMap { $0.keptDigestMismatches() } } ?? []
            out.failures += problems.map { "\(n): \($0)" }
        }
        // No search answers "not found" for a session that exists.
        // (Under `any` a cut-off side may hold sessions the other side cannot see, and the
        // side that rejoins at the heal drops them: from the first cut on, a session may be
        // gone, the documented cost of `any`.)
        let anyWithCuts = !knobs.majority && !cutWindows.isEmpty
        let firstCut = cutWindows.map(\.0).min() ?? .zero
        for miss in log.notFound where sessions.contains(miss.session) && !log.deleteAsked.contains(miss.session) && log.expiries[miss.session] == nil
            && !(anyWithCuts && miss.at >= firstCut) && !log.lostSessions.contains(miss.session) {
            out.failures.append("\(miss.node) answered session-not-found for live \(miss.session) at \(miss.at)")
        }
        // Reads: none misses a replicated write acknowledged before it began; none is
        // answered after an acknowledged delete or expiry began.
        var replicated: [SessionID: [ClusterLog.Ack]] = [:]
        for a in log.acks where a.replicatedTo != nil { replicated[a.session, default: []].append(a) }
        out.acked = log.acks.count
        out.replicated = log.acks.count { $0.replicatedTo != nil }
        let allowStale = !knobs.majority
        for r in log.reads {
            if let d = log.deletes[r.session], r.began > d.at { out.failures.append("read of \(r.session) on \(r.node) at \(r.began) after its delete at \(d.at)") }
            if let e = log.expiries[r.session], r.began > e.at + .milliseconds(1) { out.failures.append("read of \(r.session) on \(r.node) at \(r.began) after it expired at \(e.at)") }
            if allowStale && duringCut(r.began) { continue }
            for a in replicated[r.session] ?? [] where a.at < r.began && !r.attributes.contains(a.attribute) && !log.lostWithHolders.contains(log.key(a)) {
                out.failures.append("stale read of \(r.session) on \(r.node) at \(r.began): misses \(a.attribute) acknowledged replicated by \(a.node) at \(a.at)")
                break
            }
        }
        for a in log.acks {
            if let d = log.deletes[a.session], a.began > d.at { out.failures.append("write \(a.attribute) of \(a.session) acknowledged after its delete") }
        }
        // Under `majority`, crashes for good can leave fewer running nodes than a majority
        // of the configured members: then nothing may be served (checked below), and no
        // session can get an owner or a full replica set, by design.
        let quorumLost = knobs.majority && running.count * 2 <= names.count
        // After healing: one owner per live session holding every replicated write, and a
        // full replica set at its stamp; ended sessions owned by nobody.
        let replicas = knobs.policy.replicas
        for s in sessions {
            let ended = log.deletes[s] != nil || log.expiries[s] != nil
            let maybeEnded = log.deleteAsked.contains(s)
            let owners = running.filter { n in if case .owner? = sim.inspect(n, { $0.core.copy(of: s) }) ?? nil { return true } else { return false } }
            if ended {
                if !owners.isEmpty { out.failures.append("\(s) ended but is owned by \(owners) after healing") }
                continue
            }
            guard owners.count == 1, case .owner(let state)? = sim.inspect(owners[0], { $0.core.copy(of: s) }) ?? nil else {
                if log.tracing {
                    for n in names { print("  \(n): \(String(describing: sim.inspect(n) { $0.core.copy(of: s) } ?? nil).prefix(160)) owner \(sim.inspect(n) { $0.core.backupOwner(of: s) } ?? nil ?? "-")") }
                }
                if owners.isEmpty { if !maybeEnded && !anyWithCuts && !quorumLost && !log.lostSessions.contains(s) { out.stuck.append("\(s) has no owner after healing") } } else { out.failures.append("\(s) has owners \(owners) after healing") }
                continue
            }
            if !(allowStale && !cutWindows.isEmpty) {
                for a in replicated[s] ?? [] where state.attributes[a.attribute] == nil && !log.lostWithHolders.contains(log.key(a)) {
                    out.failures.append("\(s): write \(a.attribute) acknowledged replicated by \(a.node) at \(a.at) lost; owner \(owners[0]) holds \(state.stamp.etag)")
                    break
                }
            }
            let copies = running.filter { n in
                if case .backup(let b)? = sim.inspect(n, { $0.core.copy(of: s) }) ?? nil { return b.stamp == state.stamp } else { return false }
            }
            let wanted = replicas.resolve(eligible: running.count - 1)
            if !quorumLost && (copies.count != wanted || state.replicaSet.sorted() != copies.sorted()) {
                out.stuck.append("\(s): owner \(owners[0]) at \(state.stamp.etag) with replica set \(state.replicaSet), backups at that stamp \(copies)")
            }
        }
        out.promotions = running.reduce(0) { $0 + (sim.inspect($1) { $0.core.replicationCounters.promotions } ?? 0) }
        out.takeovers = running.reduce(0) { $0 + (sim.inspect($1) { $0.core.replicationCounters.takeovers } ?? 0) }
        out.rejoins = log.rejoins.values.reduce(0, +)
        // Every live process serves again: none is left fenced. Without a quorum of
        // running nodes, every one stays fenced.
        for n in running {
            let fenced = sim.inspect(n) { $0.core.status(now: sim.clock(n)).state } ?? "?"
            if quorumLost {
                if fenced == "serving" { out.failures.append("\(n) is serving after healing, with \(running.count) of \(names.count) members running under majority") }
            } else if fenced != "serving" { out.stuck.append("\(n) is \(fenced) after healing") }
        }
        // Once healed, a request on any running node gets any session: each is asked for
        // on a node that does not own it, which must own it 3 s later with every
        // replicated write.
        if out.failures.isEmpty, running.count > 1, !quorumLost, knobs.policy.affinity == .sticky {
            var asked: [(SessionID, String)] = []
            for s in sessions where !log.deleteAsked.contains(s) && log.expiries[s] == nil {
                guard let owner = running.first(where: { n in if case .owner? = sim.inspect(n, { $0.core.copy(of: s) }) ?? nil { true } else { false } }) else { continue }
                let others = running.filter { $0 != owner }
                let asker = others[Int(random.next() % UInt64(others.count))]
                sim.with(asker) { p, now, wall in _ = p.request(.takeOver(s), now: now, wall: wall, at: sim.now) }
                asked.append((s, asker))
            }
            sim.run(for: .seconds(3))
            for (s, asker) in asked {
                guard case .owner(let state)? = sim.inspect(asker, { $0.core.copy(of: s) }) ?? nil else {
                    out.stuck.append("after healing, \(asker) asked for \(s) and does not own it 3 s later")
                    continue
                }
                for a in replicated[s] ?? [] where state.attributes[a.attribute] == nil && !log.lostWithHolders.contains(log.key(a)) && !(allowStale && !cutWindows.isEmpty) {
                    out.failures.append("\(s) taken over by \(asker) without \(a.attribute)")
                    break
                }
            }
            out.failures += log.violations.filter { !out.failures.contains($0) }
        }
        out.outcomes = log.outcomes
        out.digest = sim.traceDigest
    }
}

/// The session ids the observer checks (filled on first use).
final class SessionsBox {
    var ids: [SessionID] = []
}
