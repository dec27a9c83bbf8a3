/// SWIM membership with Lifeguard, as a value type driven by events (`tick`, `receive`,
/// `leave`) with `now` passed in. It performs no I/O: messages to send collect in
/// `outbox` and state changes in `events`; the node drains both after every call.
///
/// - Probing: one member per protocol period, in a shuffled round-robin order. No ack
///   within `probeTimeout`: `indirectChecks` other members are asked to probe it (and a
///   ping goes over the reliable stream when `tcpFallback`). No ack by the end of the
///   period: the member is suspected.
/// - Lifeguard: a local health score (0...`maxLocalHealth`) stretches this node's probe
///   period and timeout when it misses nacks or has to refute suspicion of itself, so a
///   slow node stops accusing healthy ones; suspicion timeouts start long and shrink
///   with each independent confirmation (`log(c + 1) / log(k + 1)`); a suspected member
///   is told of the suspicion first when probed.
/// - Incarnations refute suspicion, never death: a process declared dead must rejoin
///   under a new node id (`MembershipEvent.selfDeclaredDead`). A larger node id under a
///   known name is a later start of that member and replaces it.
/// - Gossip is piggybacked on every message, fewest-sent first, packed to
///   `gossipBudget` bytes; each update goes out `retransmitMultiplier * ceil(log10(n+1))`
///   times. Push-pull exchanges whole member lists with one random member every
///   `pushPullInterval`, and with every seed while no peer is known.
///
/// Decisions never iterate an unordered collection: keys are sorted first, and all
/// randomness comes from the injected seed.
package struct Membership: Sendable {
    /// This node's name.
    package let selfName: String
    /// This process's id.
    package let selfID: NodeID
    /// This node's incarnation (raised to refute suspicion).
    package private(set) var incarnation: UInt64 = 0
    /// This node's own state: `alive`, `left` after `leave`, `dead` once another member
    /// declared it dead.
    package private(set) var status: MemberStatus = .alive
    /// The tunables.
    package let tuning: MembershipTuning
    /// Members contacted to join.
    package let seeds: [String]
    /// Other members by name (dead and left ones until `tombstoneTTL` passes).
    package private(set) var members: [String: Member] = [:]
    /// Lifeguard local health score: 0 is healthy.
    package private(set) var localHealth = 0
    /// Counters since start.
    package private(set) var counters = MembershipCounters()
    /// Whether this node has heard from any peer (or has no seeds).
    package private(set) var joined: Bool
    /// Messages to send; drained by the node.
    package var outbox: [MembershipOutgoing] = []
    /// State changes; drained by the node.
    package var events: [MembershipEvent] = []

    struct Probe: Sendable {
        var target: String
        var id: NodeID
        var sequence: UInt64
        var timeoutAt: MonotonicInstant
        var endAt: MonotonicInstant
        var indirect = false
        var expectedNacks = 0
        var nacks = 0
    }

    struct Relay: Sendable {
        var requester: String
        var requesterSequence: UInt64
        var nackAt: MonotonicInstant
        var expiresAt: MonotonicInstant
        var nacked = false
    }

    struct Suspicion: Sendable {
        var start: MonotonicInstant
        var confirmers: Set<String>
        var k: Int
        var min: Duration
        var max: Duration

        /// The timeout given the confirmations so far (Lifeguard's dynamic suspicion).
        var deadline: MonotonicInstant {
            let c = confirmers.count - 1
            guard k > 0, c < k else { return start + min }
            let fraction = MathSupport.ln(Double(c + 1)) / MathSupport.ln(Double(k + 1))
            let span = Double((max - min).nanosecondsClamped)
            let timeout = Swift.max(min, max - .nanoseconds(Int64(span * fraction)))
            return start + timeout
        }
    }

    struct Queued: Sendable {
        var update: MemberUpdate
        var transmits: Int
        var order: UInt64
    }

    var rng: SplitMix64
    var sequence: UInt64 = 0
    var probe: Probe?
    var nextProbeAt: MonotonicInstant
    var probeOrder: [String] = []
    var probeIndex = 0
    var relays: [UInt64: Relay] = [:]
    var suspicions: [String: Suspicion] = [:]
    var gossip: [String: Queued] = [:]
    var gossipOrder: UInt64 = 0
    var nextPushPull: MonotonicInstant
    var nextReconnect: MonotonicInstant
    var nextSweep: MonotonicInstant
    var deathNoticeSent: [String: MonotonicInstant] = [:]
    /// Whether `selfSuperseded` was reported (once per process).
    var superseded = false
    /// While applying a push-pull list: its sender and how many live members it lists.
    var syncContext: (sender: String, live: Int)?
    /// The largest process id of each name that a member other than this node (and not
    /// held dead here) declared dead: a death this node did not decide alone.
    var deathsDeclaredByOthers: [String: NodeID] = [:]

    /// Starts as the only member, alive at incarnation 0; the first `tick` contacts the
    /// seeds (other members' names). `randomSeed` drives every random choice.
    package init(selfName: String, selfID: NodeID, seeds: [String], tuning: MembershipTuning = .init(),
                randomSeed: UInt64, now: MonotonicInstant) {
        self.selfName = selfName
        self.selfID = selfID
        self.seeds = seeds.filter { $0 != selfName }.sorted()
        self.tuning = tuning
        self.rng = SplitMix64(seed: randomSeed)
        self.joined = self.seeds.isEmpty
        let jitter = Int64(rng.next() % UInt64(max(1, tuning.probeInterval.nanosecondsClamped)))
        self.nextProbeAt = now + .nanoseconds(jitter)
        self.nextPushPull = now
        self.nextReconnect = now + tuning.joinRetryInterval
        self.nextSweep = now + .seconds(1)
        enqueueGossip(selfUpdate)
    }

    // MARK: - Views

    /// This node as an update (alive, or left after `leave`).
    package var selfUpdate: MemberUpdate {
        MemberUpdate(status: status == .left ? .left : .alive, name: selfName, id: selfID, incarnation: incarnation, from: selfName)
    }

    /// Every member including this node, sorted by name.
    package var list: [Member] {
        var all = Array(members.values)
        all.append(Member(name: selfName, id: selfID, incarnation: incarnation, status: status, since: .zero))
        return all.sorted { $0.name < $1.name }
    }

    /// Names of other members that are alive or suspect, sorted.
    package var liveNames: [String] { members.values.filter { $0.status.isLive }.map(\.name).sorted() }

    /// Whether `name` is held alive or suspect under process `id`.
    package func isLive(_ name: String, id: NodeID) -> Bool {
        guard let m = members[name] else { return false }
        return m.id == id && m.status.isLive
    }

    /// Live members including this node: the `n` of the protocol's formulas.
    /// Who declared this process dead (for the log); `nil` while alive.
    package private(set) var deathVerdict: DeathVerdict?

    var liveCount: Int { 1 + members.values.reduce(0) { $0 + ($1.status.isLive ? 1 : 0) } }

    /// The member named `name` (not this node).
    package func member(_ name: String) -> Member? { members[name] }

    /// The earliest instant at which `tick` has something to do.
    package var nextDeadline: MonotonicInstant {
        var d = Swift.min(nextPushPull, nextSweep, nextReconnect)
        if status == .alive { d = Swift.min(d, probe.map { $0.indirect ? $0.endAt : $0.timeoutAt } ?? nextProbeAt) }
        for s in suspicions.values { d = Swift.min(d, s.deadline) }
        for r in relays.values { d = Swift.min(d, r.nacked ? r.expiresAt : r.nackAt) }
        return d
    }

    /// Takes the outbox and the events.
    package mutating func takeOutput() -> (outgoing: [MembershipOutgoing], events: [MembershipEvent]) {
        defer { outbox = []; events = [] }
        return (outbox, events)
    }

    // MARK: - Events

    /// Another member declared process `id` of `name` dead and takes its sessions over
    /// (it asked this node to promise): this node holds it dead too and says so, so that
    /// the process, should it be alive after all (a one-way cut), learns it and rejoins
    /// instead of staying alive and fenced for good. A later process of the name is left
    /// alone.
    package mutating func acceptDeath(of name: String, id: NodeID, declaredBy declarer: String, now: MonotonicInstant) {
        guard let m = members[name], m.id == id, m.status.isLive else { return }
        apply(MemberUpdate(status: .dead, name: name, id: id, incarnation: m.incarnation, from: declarer), now: now)
    }

    /// Leaves gracefully: tells every live member directly and by gossip; from now on
    /// this node answers probes but starts none.
    package mutating func leave(now: MonotonicInstant) {
        guard status == .alive else { return }
        status = .left
        probe = nil
        let update = selfUpdate
        enqueueGossip(update)
        for name in liveNames {
            send(.ack(sequence: 0, updates: [update]), to: name, reliable: false)
            send(.sync(members: [update], reply: false), to: name, reliable: true)
        }
    }

    /// A message from the member `name` whose process id is `id` (both authenticated by
    /// the frame's seal). `reliable` says it came over the stream, and answers go back
    /// the same way.
    package mutating func receive(_ message: MembershipMessage, from name: String, id: NodeID, reliable: Bool = false, now: MonotonicInstant) {
        guard name != selfName else { return }
        // A message from an earlier process of that name (still in flight when it
        // restarted) speaks for nobody: its claims would be taken for the new process's.
        if let m = members[name], id < m.id { return }
        counters.messagesReceived += 1
        noteSender(name, id: id, now: now)
        if case .sync(let list, _) = message {
            syncContext = (name, list.reduce(0) { $0 + ($1.status.isLive ? 1 : 0) })
        }
        // A process this node holds dead is heard only about this node itself (so both
        // sides of a healed partition settle who rejoins), never about third parties: its
        // view is the other side's, and its verdicts would kill members alive here.
        let senderDead = members[name].map { $0.id == id && !$0.status.isLive } ?? false
        for u in message.updates where !senderDead || u.name == selfName { apply(u, now: now) }
        syncContext = nil
        guard status != .dead else { return }
        switch message {
        case .ping(let seq, let target, _):
            let extra = target == selfID ? [] : [selfUpdate]
            send(.ack(sequence: seq, updates: extra + piggyback(budgetUsed: extra)), to: name, reliable: reliable)
        case .ack(let seq, _):
            guard seq != 0 else { return }
            if let p = probe, p.sequence == seq {
                probe = nil
                localHealth = max(0, localHealth - 1)
            } else if let r = relays.removeValue(forKey: seq) {
                send(.ack(sequence: r.requesterSequence, updates: piggyback()), to: r.requester, reliable: false)
            }
        case .nack(let seq, _):
            if probe?.sequence == seq { probe!.nacks += 1 }
        case .pingRequest(let seq, let target, let targetID, _):
            guard target != selfName else {
                send(.ack(sequence: seq, updates: piggyback()), to: name, reliable: reliable)
                return
            }
            let mine = nextSequence()
            let scale = Int64(localHealth + 1)
            relays[mine] = Relay(requester: name, requesterSequence: seq,
                                 nackAt: now + tuning.probeTimeout * 8 / 10 * scale,
                                 expiresAt: now + tuning.probeInterval * scale)
            send(.ping(sequence: mine, target: targetID, updates: piggyback()), to: target, reliable: false)
        case .sync(_, let reply):
            if reply { send(.sync(members: fullList, reply: false), to: name, reliable: true) }
        case .leaseRequest, .leaseGrant:
            break  // the node's `LeaseTable` handles these; the sender is alive all the same
        }
    }

    /// Runs due timers: suspicion timeouts, relay nacks, the probe cycle, push-pull and
    /// the sweep of old dead members.
    package mutating func tick(now: MonotonicInstant) {
        guard status != .dead else { return }
        // A timer that fires late means this process is starved (a loaded host, a
        // pause): a local-health signal like a missed nack.
        if now - nextDeadline > tuning.probeTimeout { bumpHealth(1) }
        for name in suspicions.keys.sorted() {
            guard let s = suspicions[name], now >= s.deadline, let m = members[name], m.status == .suspect else { continue }
            if let quorum = tuning.deathQuorum, 1 + members.values.count(where: { $0.status == .alive }) < quorum { continue }
            counters.deathsDeclared += 1
            apply(MemberUpdate(status: .dead, name: name, id: m.id, incarnation: m.incarnation, from: selfName), now: now)
        }
        for seq in relays.keys.sorted() {
            guard var r = relays[seq] else { continue }
            if now >= r.expiresAt { relays[seq] = nil; continue }
            if !r.nacked, now >= r.nackAt {
                r.nacked = true
                relays[seq] = r
                send(.nack(sequence: r.requesterSequence, updates: piggyback()), to: r.requester, reliable: false)
            }
        }
        if status == .alive { runProbe(now: now) }
        if now >= nextPushPull { pushPull(now: now) }
        if now >= nextReconnect {
            // Seeds held dead (or never heard from) are tried one at a time, so both sides
            // of a healed partition find each other; whoever is held dead learns it and
            // rejoins.
            nextReconnect = now + tuning.joinRetryInterval
            var lost = seeds.filter { members[$0]?.status.isLive != true }
            if joined, !lost.isEmpty {
                lost.shuffle(using: &rng)
                send(.sync(members: fullList, reply: true), to: lost[0], reliable: true)
            }
        }
        if now >= nextSweep {
            nextSweep = now + .seconds(1)
            for name in members.keys.sorted() {
                guard let m = members[name], !m.status.isLive, now - m.since >= tuning.tombstoneTTL else { continue }
                members[name] = nil
                deathsDeclaredByOthers[name] = nil
                gossip[name] = nil
                deathNoticeSent[name] = nil
            }
        }
    }

    // MARK: - Probing

    mutating func runProbe(now: MonotonicInstant) {
        if var p = probe {
            if !p.indirect, now >= p.timeoutAt {
                p.indirect = true
                let helpers = pickMembers(count: tuning.indirectChecks, excluding: p.target, aliveOnly: true)
                for h in helpers {
                    send(.pingRequest(sequence: p.sequence, target: p.target, targetID: p.id, updates: piggyback()), to: h, reliable: false)
                }
                counters.indirectProbes += helpers.count
                p.expectedNacks = helpers.count
                if tuning.tcpFallback {
                    send(.ping(sequence: p.sequence, target: p.id, updates: []), to: p.target, reliable: true)
                }
                probe = p
            }
            guard now >= p.endAt else { return }
            probe = nil
            counters.probesFailed += 1
            // Without relays no nack can vouch for this node's health: count the failure.
            bumpHealth(p.expectedNacks == 0 ? 1 : max(0, p.expectedNacks - p.nacks))
            if let m = members[p.target], m.id == p.id, m.status == .alive {
                counters.suspicionsRaised += 1
                apply(MemberUpdate(status: .suspect, name: m.name, id: m.id, incarnation: m.incarnation, from: selfName), now: now)
            }
        }
        guard now >= nextProbeAt else { return }
        let scale = Int64(localHealth + 1)
        nextProbeAt = now + tuning.probeInterval * scale
        guard let target = nextProbeTarget(), let m = members[target] else { return }
        let seq = nextSequence()
        probe = Probe(target: target, id: m.id, sequence: seq, timeoutAt: now + tuning.probeTimeout * scale,
                      endAt: now + tuning.probeInterval * scale)
        counters.probes += 1
        // Lifeguard's buddy system: a suspected member hears of it first.
        let buddy = m.status == .suspect
            ? [MemberUpdate(status: .suspect, name: m.name, id: m.id, incarnation: m.incarnation, from: selfName)] : []
        send(.ping(sequence: seq, target: m.id, updates: buddy + piggyback(budgetUsed: buddy)), to: target, reliable: false)
    }

    mutating func nextProbeTarget() -> String? {
        for _ in 0..<2 {
            while probeIndex < probeOrder.count {
                let name = probeOrder[probeIndex]
                probeIndex += 1
                if members[name]?.status.isLive == true { return name }
            }
            probeOrder = liveNames
            probeOrder.shuffle(using: &rng)
            probeIndex = 0
        }
        return nil
    }

    /// Up to `count` random live members other than `excluding`.
    mutating func pickMembers(count: Int, excluding: String, aliveOnly: Bool) -> [String] {
        var pool = members.values.filter { $0.name != excluding && ($0.status == .alive || (!aliveOnly && $0.status.isLive)) }
            .map(\.name).sorted()
        pool.shuffle(using: &rng)
        return Array(pool.prefix(count))
    }

    mutating func pushPull(now: MonotonicInstant) {
        if !joined {
            for seed in seeds { send(.sync(members: fullList, reply: true), to: seed, reliable: true) }
            nextPushPull = now + tuning.joinRetryInterval
        } else {
            if let partner = pickMembers(count: 1, excluding: selfName, aliveOnly: true).first {
                send(.sync(members: fullList, reply: true), to: partner, reliable: true)
            }
            nextPushPull = now + tuning.pushPullInterval
        }
    }

    mutating func bumpHealth(_ delta: Int) {
        localHealth = min(tuning.maxLocalHealth, max(0, localHealth + delta))
    }

    mutating func nextSequence() -> UInt64 {
        sequence += 1
        return sequence
    }

    // MARK: - State

    /// The frame header proves `name` runs as process `id`.
    mutating func noteSender(_ name: String, id: NodeID, now: MonotonicInstant) {
        joined = true
        guard let m = members[name] else {
            apply(MemberUpdate(status: .alive, name: name, id: id, incarnation: 0, from: name), now: now)
            return
        }
        if id > m.id {
            apply(MemberUpdate(status: .alive, name: name, id: id, incarnation: 0, from: name), now: now)
        } else if id < m.id, deathNoticeSent[name].map({ now - $0 >= tuning.probeInterval }) ?? true {
            // A process with a smaller id than the one this node knows under that name (its
            // wall clock stepped back at start): tell it what this node knows, so that it
            // takes a larger id; until then every member ignores it.
            deathNoticeSent[name] = now
            send(.sync(members: fullList, reply: false), to: name, reliable: true)
        } else if id == m.id, m.status == .dead, deathNoticeSent[name].map({ now - $0 >= tuning.probeInterval }) ?? true {
            // A process we hold dead is still talking: tell it, with the whole list, so it
            // rejoins (or, if this side is the smaller one, tells this node to).
            deathNoticeSent[name] = now
            send(.sync(members: fullList, reply: false), to: name, reliable: true)
        }
    }

    /// Applies one statement; returns whether it changed this node's view.
    @discardableResult
    mutating func apply(_ u: MemberUpdate, now: MonotonicInstant) -> Bool {
        if u.name == selfName {
            if u.id > selfID, status == .alive, !superseded {
                superseded = true
                events.append(.selfSuperseded(by: u.id))
                return false
            }
            guard u.id == selfID else { return false }
            switch u.status {
            case .suspect where status == .alive && u.incarnation >= incarnation:
                incarnation = u.incarnation + 1
                counters.refutations += 1
                bumpHealth(1)
                enqueueGossip(selfUpdate)
            case .dead where u.from != selfName && status != .dead && acceptsOwnDeath(declaredBy: u.from):
                status = .dead
                probe = nil
                deathVerdict = DeathVerdict(declarer: u.from, declarerStatus: members[u.from]?.status, listSender: syncContext?.sender,
                                            listLive: syncContext?.live, liveHere: liveCount)
                events.append(.selfDeclaredDead)
            default:
                break
            }
            return false
        }
        if u.status == .dead, u.from != selfName, members[u.from]?.status.isLive != false {
            deathsDeclaredByOthers[u.name] = Swift.max(deathsDeclaredByOthers[u.name] ?? NodeID(0), u.id)
        }
        guard let m = members[u.name], u.id >= m.id else {
            if members[u.name] != nil { return false }  // about an earlier process of that name
            members[u.name] = Member(name: u.name, id: u.id, incarnation: u.incarnation, status: u.status, since: now)
            announce(u.status, name: u.name, id: u.id)
            if u.status == .suspect { startSuspicion(u.name, from: u.from, now: now) }
            enqueueGossip(u)
            return true
        }
        if u.id > m.id {
            // A later start of this member: the old process is gone.
            if m.status.isLive { events.append(.dead(name: m.name, id: m.id)) }
            suspicions[u.name] = nil
            members[u.name] = Member(name: u.name, id: u.id, incarnation: u.incarnation, status: u.status, since: now)
            announce(u.status, name: u.name, id: u.id)
            if u.status == .suspect { startSuspicion(u.name, from: u.from, now: now) }
            enqueueGossip(u)
            return true
        }
        guard m.status.isLive else { return false }  // death and leaving are final
        if u.status == .dead, u.from != selfName, members[u.from]?.status.isLive == false { return false }
        var changed = m
        switch u.status {
        case .alive:
            guard u.incarnation > m.incarnation else { return false }
            changed.incarnation = u.incarnation
            changed.status = .alive
            suspicions[u.name] = nil
        case .suspect:
            if m.status == .alive {
                guard u.incarnation >= m.incarnation else { return false }
                changed.incarnation = u.incarnation
                changed.status = .suspect
                startSuspicion(u.name, from: u.from, now: now)
            } else {
                guard u.incarnation >= m.incarnation else { return false }
                if u.incarnation > m.incarnation {
                    changed.incarnation = u.incarnation
                    startSuspicion(u.name, from: u.from, now: now)
                } else {
                    guard suspicions[u.name]?.confirmers.insert(u.from).inserted == true else { return false }
                }
            }
        case .dead, .left:
            guard u.incarnation >= m.incarnation else { return false }
            changed.incarnation = u.incarnation
            changed.status = u.status
            suspicions[u.name] = nil
        }
        if changed.status != m.status {
            changed.since = now
            announce(changed.status, name: u.name, id: u.id)
        }
        members[u.name] = changed
        enqueueGossip(u)
        return true
    }

    /// Whether a death of this process declared by `declarer` counts. After a partition
    /// heals, each side may hold the other dead; only one side must rejoin. A declarer
    /// this node holds dead counts only when it sent its whole list (push-pull), never
    /// while this node sees a strict majority of the configured members alive and either
    /// that list does not or another member declared the declarer dead too; otherwise
    /// when the list has more live members than this node sees (on a tie, the larger
    /// name yields).
    func acceptsOwnDeath(declaredBy declarer: String) -> Bool {
        guard members[declarer]?.status.isLive == false else { return true }
        guard let context = syncContext, context.sender == declarer else { return false }
        // A node that sees a strict majority of the configured members alive (itself
        // included) is on the side whose verdicts stand; it never yields to a member on the
        // other side. (Found by `drs drill partition`: with only the count comparison, a
        // healed minority node's list, not yet aware of its own death, could tie and make
        // the majority drop everything.) Two nodes cut from each other alone, whom the
        // others still reach, each declared the other dead by itself: each sees a
        // majority, and with that rule alone neither yielded and each held the other dead
        // for good (simulator seed 7117182). They compare as any two sides do.
        let majority = seeds.count + 1
        if liveCount * 2 > majority {
            let declaredByOthers = deathsDeclaredByOthers[declarer].map { $0 >= members[declarer]!.id } ?? false
            if context.live * 2 <= majority || declaredByOthers { return false }
        }
        return liveCount < context.live || (liveCount == context.live && selfName > declarer)
    }

    mutating func announce(_ status: MemberStatus, name: String, id: NodeID) {
        switch status {
        case .alive: events.append(.alive(name: name, id: id))
        case .suspect: events.append(.suspect(name: name, id: id))
        case .dead: events.append(.dead(name: name, id: id))
        case .left: events.append(.left(name: name, id: id))
        }
    }

    mutating func startSuspicion(_ name: String, from: String, now: MonotonicInstant) {
        let n = liveCount
        let scale = Swift.max(1.0, MathSupport.ln(Double(n)) / MathSupport.ln(10))
        let min = Duration.nanoseconds(Int64(Double(tuning.probeInterval.nanosecondsClamped) * Double(tuning.suspicionMultiplier) * scale))
        var k = tuning.suspicionMultiplier - 2
        if n - 2 < k { k = 0 }
        // A node in poor health gives suspects longer to refute (Lifeguard scales probes;
        // this scales the verdict the same way).
        let health = localHealth + 1
        suspicions[name] = Suspicion(start: now, confirmers: [from], k: Swift.max(0, k), min: min * health,
                                     max: min * tuning.suspicionMaxMultiplier * health)
    }

    // MARK: - Gossip

    /// Every member as an update, this node first.
    var fullList: [MemberUpdate] {
        var out = [selfUpdate]
        for name in members.keys.sorted() {
            let m = members[name]!
            out.append(MemberUpdate(status: m.status, name: name, id: m.id, incarnation: m.incarnation,
                                    from: m.status.isLive ? name : selfName))
        }
        return out
    }

    mutating func enqueueGossip(_ u: MemberUpdate) {
        gossipOrder += 1
        gossip[u.name] = Queued(update: u, transmits: 0, order: gossipOrder)
    }

    /// Updates to piggyback, fewest-sent first, within the byte budget left after `budgetUsed`.
    mutating func piggyback(budgetUsed: [MemberUpdate] = []) -> [MemberUpdate] {
        guard !gossip.isEmpty else { return [] }
        var budget = tuning.gossipBudget - budgetUsed.reduce(0) { $0 + $1.encodedSize }
        let limit = tuning.retransmitMultiplier * MathSupport.ceilLog10(liveCount + 1)
        let order = gossip.values.sorted { ($0.transmits, $0.order) < ($1.transmits, $1.order) }
        var out: [MemberUpdate] = []
        for q in order {
            let size = q.update.encodedSize
            guard size <= budget else { continue }
            budget -= size
            out.append(q.update)
            if q.transmits + 1 >= limit {
                gossip[q.update.name] = nil
            } else {
                gossip[q.update.name]!.transmits += 1
            }
        }
        counters.updatesSent += out.count
        return out
    }

    mutating func send(_ message: MembershipMessage, to name: String, reliable: Bool) {
        counters.messagesSent += 1
        outbox.append(MembershipOutgoing(to: name, message: message, reliable: reliable))
    }
}

/// Logarithms without Foundation (the core imports nothing but the standard library).
enum MathSupport {
    /// Natural logarithm of a positive finite `x` (accurate to about 1e-12).
    static func ln(_ x: Double) -> Double {
        guard x > 0, x.isFinite else { return x == 0 ? -.infinity : .nan }
        let e = Double(x.exponent)
        let m = x.significand  // [1, 2)
        let t = (m - 1) / (m + 1)
        let t2 = t * t
        var term = t
        var sum = 0.0
        var k = 1.0
        for _ in 0..<20 {
            sum += term / k
            term *= t2
            k += 2
        }
        return e * 0.693_147_180_559_945_3 + 2 * sum
    }

    /// `ceil(log10(n))` for `n >= 1`.
    static func ceilLog10(_ n: Int) -> Int {
        var digits = 0
        var power = 1
        while power < n { power *= 10; digits += 1 }
        return Swift.max(1, digits)
    }
}

/// Who declared a process dead, for the log: the declarer, its status at this node, the
/// sender of the member list the verdict came in (push-pull) with that list's live count,
/// and this node's live count at the time.
package struct DeathVerdict: Sendable, CustomStringConvertible {
    /// The member that declared the death.
    package var declarer: String
    /// The declarer's status here; `nil` when unknown.
    package var declarerStatus: MemberStatus?
    /// Sender of the push-pull list carrying the verdict; `nil` for gossip.
    package var listSender: String?
    /// Live members in that list.
    package var listLive: Int?
    /// Live members here, this node included.
    package var liveHere: Int

    /// One line for the log.
    package var description: String {
        "declared by \(declarer) (held \(declarerStatus.map { "\($0)" } ?? "unknown") here)"
            + (listSender.map { " in the list of \($0)" } ?? " in gossip") + (listLive.map { " counting \($0) live" } ?? "")
            + "; \(liveHere) live here"
    }
}
