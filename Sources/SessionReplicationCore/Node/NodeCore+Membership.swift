/// Membership events, leases, failover and its majority deferral, and rejoin.
extension NodeCore {
    /// A membership message from `peer` (process `sender`), by datagram or, when
    /// `reliable`, over a stream connection. Lease requests are granted unless this node
    /// holds the asker dead or revoked it; grants extend this node's leases.
    package mutating func receiveMembership(_ message: MembershipMessage, from peer: String, id sender: NodeID, reliable: Bool,
                                           now: MonotonicInstant, wall: WallTime) -> [NodeAction] {
        begin(now, wall)
        handleMembership(message, from: peer, id: sender, reliable: reliable)
        return takeActions()
    }

    mutating func handleMembership(_ message: MembershipMessage, from peer: String, id sender: NodeID, reliable: Bool) {
        guard !stopped, peers[peer] != nil else { return }
        membership.receive(message, from: peer, id: sender, reliable: reliable, now: now)
        let known = membership.member(peer)
        let heldDead = known.map { $0.id > sender || ($0.id == sender && !$0.status.isLive) } ?? false
        let dying = membership.status != .alive
        performMembershipOutput()
        switch message {
        case .leaseRequest(let seq):
            if leases.onRequest(from: peer, process: sender, heldDead: heldDead || dying, now: now) {
                emit(.sendMembership(MembershipOutgoing(to: peer, message: .leaseGrant(sequence: seq), reliable: reliable), speaker: id))
            }
        case .leaseGrant(let seq):
            leases.onGrant(from: peer, sequence: seq)
            recheckParked()
        default:
            break
        }
    }

    /// Sends membership's outbox and handles its events.
    mutating func performMembershipOutput() {
        let (outgoing, events) = membership.takeOutput()
        // A process declared dead says nothing more: its last messages would leave under
        // the new id it rejoins with, and speak the dead process's view for the new one.
        let dying = events.contains { if case .selfDeclaredDead = $0 { true } else if case .selfSuperseded = $0 { true } else { false } }
        if !dying { for o in outgoing { emit(.sendMembership(o, speaker: id)) } }
        for e in events {
            handle(e)
            if case .selfDeclaredDead = e { return }
            if case .selfSuperseded = e { return }
        }
    }

    mutating func handle(_ event: MembershipEvent) {
        switch event {
        case .alive(let name, _), .suspect(let name, _), .dead(let name, _), .left(let name, _):
            heardOf.insert(name)
            absent.remove(name)
        case .selfDeclaredDead, .selfSuperseded:
            break
        }
        switch event {
        case .alive(let name, let pid):
            log(.info, "member alive", ["drs.peer": name, "drs.peer.id": "\(pid)"])
            // A new process under a name whose old process was never declared gone: the
            // old one departed (its sessions are failed over), then the new one joins.
            let previous = memberIDs[name]
            memberIDs[name] = pid
            if let previous, previous != pid {
                peers[name]?.retired.insert(previous)
                log(.notice, "member restarted under a new process id: failing over its old process", ["drs.peer": name])
                memberGone(name, id: previous, replaced: true)
            }
            if livePeers.insert(name).inserted { leases.restore(name) }
            if let draining = leavingPeers[name], draining != pid {
                leavingPeers[name] = nil
                for l in lanes.indices { lanes[l].setLeaving(name, false) }
            }
            for l in lanes.indices { lanes[l].memberReturned(name) }
            refreshReachability(name)
            resumeDeferredFailovers(returning: name, id: pid)
        case .suspect(let name, let pid):
            log(.info, "member suspected", ["drs.peer": name, "drs.peer.id": "\(pid)"])
            livePeers.insert(name)
        case .dead(let name, let pid), .left(let name, let pid):
            let left = if case .left = event { true } else { false }
            log(.notice, left ? "member left" : "member declared dead", ["drs.peer": name, "drs.peer.id": "\(pid)"])
            livePeers.remove(name)
            if memberIDs[name] == pid { memberIDs[name] = nil }
            // What that process still sends speaks for a process whose sessions fail over:
            // refused from now on, even once a later process of the name is known.
            peers[name]?.heldDead.insert(pid)
            refreshReachability(name)
            memberGone(name, id: pid)
        case .selfDeclaredDead:
            rejoin()
        case .selfSuperseded(let later):
            log(.warning, "a later process of this node's name is known (this one started with a smaller id: was the wall clock stepped back?); joining again under a larger id",
                ["drs.id": "\(id)", "drs.id.later": "\(later)"])
            rejoin(above: later)
        }
    }

    /// A peer counts as reachable while its connection is up and membership does not
    /// hold it dead or left.
    mutating func refreshReachability(_ peer: String) {
        let live = membership.member(peer)?.status.isLive ?? true
        let reachable = live && connected.contains(peer)
        for l in lanes.indices { lanes[l].setReachable(peer, reachable) }
    }

    /// A member was declared dead or left: its streams end, sessions it backed get new
    /// backups, and sessions it owned whose first live backup is this node are promoted
    /// (once every lease this node granted it has run out). Under `promotion: majority`
    /// a node that sees no majority defers the promotions.
    mutating func memberGone(_ name: String, id pid: NodeID, replaced: Bool = false) {
        let after = leases.grantsExpire(for: name)
        let mayPromote = !settings.majority || seesMajority
        if !mayPromote {
            deferredFailovers[name] = pid
            log(.warning, "no majority of voters alive: not promoting the sessions of a departed member (promotion: majority)", ["drs.peer": name])
        }
        var promoted = 0, rereplicated = 0
        var outcomes: [ReplicaShard.FailoverOutcome] = []
        for l in lanes.indices {
            let o = lanes[l].memberDeparted(name, process: pid, replaced: replaced, now: now, promoteAfter: after, mayPromote: mayPromote)
            completeWaits(lane: l, o.completed)
            flushPending(lane: l)
            outcomes.append(o)
            debug("\(name)/\(pid) departed: promoted \(o.promoted), rereplicated \(o.rereplicated), prepares \(o.prepares.mapValues { $0.map(\.id) }), nominations \(o.nominations.mapValues { $0.map(\.id) })")
            promoted += o.promoted.count
            rereplicated += o.rereplicated.count
        }
        sendFailover(outcomes, oldOwner: name, oldOwnerID: pid)
        log(.notice, "failover", ["drs.peer": name, "drs.promoted": "\(promoted)", "drs.rereplicated": "\(rereplicated)"])
    }

    /// How long a configured member may go unheard of (no message from it, no gossip
    /// about it) before this process stops waiting for it: twice the longest suspicion
    /// timeout plus two join retries per member, at least four leases and at least 20 s.
    /// A running member answers the join sync this node sends to unheard seeds every
    /// `joinRetryInterval`, and any member that hears it gossips about it; one nobody
    /// hears is not running. The 20 s floor covers a starved start (a node whose own
    /// process or peers are slow to come up): until then a node that is merely late keeps
    /// its place in replica sets, and a failover waits for its answer.
    static func absenceGrace(_ settings: NodeSettings) -> Duration {
        let t = settings.membership
        let suspicion = t.probeInterval * (t.suspicionMultiplier * t.suspicionMaxMultiplier * 2)
        let joins = t.joinRetryInterval * (2 * max(1, settings.members.count))
        return max(suspicion + joins, settings.lease * 4, .seconds(20))
    }

    /// The shell bound its sockets at `now`: the absence grace counts from here, not from
    /// the core's creation (a node built long before it is started, as an application
    /// may do, would otherwise hold every configured peer absent at its first tick).
    /// Never fails; returns no action unless a request is already waiting.
    package mutating func listening(now: MonotonicInstant, wall: WallTime) -> [NodeAction] {
        begin(now, wall)
        listeningSince = now
        return takeActions()
    }

    /// Once `absenceGrace` has passed since this process started listening, configured
    /// members never heard of are held departed: failover prepare rounds stop waiting for
    /// them (a five-node configuration with four nodes started would otherwise never
    /// promote anything), and a lookup no longer needs their answer to say not-found.
    /// Membership reporting such a member later (it started) makes it a member again.
    mutating func checkAbsence() {
        // (The grace is at least 20 s: that cheap test spares its arithmetic at every tick.)
        guard !absenceChecked, now - listeningSince >= .seconds(20), now - listeningSince >= Self.absenceGrace(settings) else { return }
        absenceChecked = true
        let never = settings.members.filter { $0 != settings.name && !heardOf.contains($0) && membership.member($0) == nil }
        guard !never.isEmpty else { return }
        absent.formUnion(never)
        log(.warning, "configured members never heard of: not waiting for them until they start", ["drs.peers": never.joined(separator: ",")])
        for name in never {
            var outcomes: [ReplicaShard.FailoverOutcome] = []
            for l in lanes.indices {
                let o = lanes[l].memberDeparted(name, now: now, promoteAfter: now)
                completeWaits(lane: l, o.completed)
                flushPending(lane: l)
                outcomes.append(o)
            }
            sendFailover(outcomes, oldOwner: name, oldOwnerID: NodeID(0))
        }
    }

    /// A member is alive: if it is the same process whose failover was deferred, it kept
    /// its sessions and nothing is promoted; and once this node sees a majority again,
    /// deferred failovers of members still gone run.
    mutating func resumeDeferredFailovers(returning name: String, id pid: NodeID) {
        guard settings.majority else { return }
        if deferredFailovers[name] == pid { deferredFailovers[name] = nil }
        guard !deferredFailovers.isEmpty, seesMajority else { return }
        let statuses = peerStatuses()
        // A member alive under another process than the one that departed is gone too: its
        // new process may have come back while this node saw no majority (before, only the
        // member whose return this is was looked at, and the old process's sessions were
        // never failed over when another member's return brought the majority back).
        for (member, old) in deferredFailovers.sorted(by: { $0.key < $1.key }) where statuses[member] != .alive || memberIDs[member] != old {
            deferredFailovers[member] = nil
            memberGone(member, id: old)
            // A new process under the same name: it backs sessions again.
            if statuses[member] == .alive { for l in lanes.indices { lanes[l].memberReturned(member) } }
        }
    }

    /// Another member declared this process dead: it serves nothing more, drops
    /// everything it holds (owned sessions, backups, tombstones, streams), completes a
    /// drain in progress with the sessions it handed, fails every other request in
    /// progress (`session-unavailable`: retry), takes a new, larger node id
    /// and joins again; its peers see a new process and send it what it should back.
    mutating func rejoin(above floor: NodeID? = nil) {
        let old = id
        let verdict = membership.deathVerdict.map { "\($0)" } ?? "unknown"
        let fresh = NodeID.fresh(start: wall, random: random.next())
        id = NodeID.rejoining(after: old, above: floor, fresh: fresh)
        // A drain in progress is over: the new process owns nothing left to hand over. It
        // completes with the count it handed (failing it lost that count; the shell leaves
        // the cluster next either way).
        for r in drainRequests.sorted() { if let p = requests[r] { complete(r, .drained(p.handed)) } }
        failAll(SessionError(.sessionUnavailable, "this node rejoined the cluster while the request waited; retry"))
        // Answers to the old process's handover requests still arrive (sent before a cut
        // healed): none of them is this process's to adopt.
        handoverRounds = [:]
        firstHandoverRequest = nextHandoverRequest
        if reportsEvents {
            for lane in lanes {
                for (sid, o) in lane.owned.sorted(by: { $0.key < $1.key }) { emit(.event(SessionEvent(.passivated, sid, o.state.stamp, at: wall))) }
            }
        }
        lanes = Self.makeLanes(settings, id: id)
        // The new lanes know of no draining member: the next drain handover marks it again.
        leavingPeers = [:]
        for l in lanes.indices { lanes[l].reportsEvents = reportsEvents }
        inbound = [:]
        membership = Membership(selfName: settings.name, selfID: id, seeds: settings.members, tuning: Self.membershipTuning(settings),
                                randomSeed: random.next(), now: now)
        leases = LeaseTable(lease: settings.lease, voters: settings.members, selfName: settings.name)
        livePeers = []
        memberIDs = [:]
        deferredFailovers = [:]
        heardOf = []
        absent = []
        absenceChecked = false
        listeningSince = now
        for name in peers.keys.sorted() {
            // What the dead process queued speaks for it: dropped.
            peers[name]!.control = []
            peers[name]!.receipts = [:]
            peers[name]!.resyncs = [:]
            // Whom the dead process held dead is no verdict of this one: a healed
            // partition's other side is alive, and its frames are heard again.
            peers[name]!.heldDead = []
        }
        for peer in connected.sorted() { refreshReachability(peer) }
        rejoins += 1
        emit(.identityChanged(id))
        log(.warning, "declared dead by the cluster: dropped every session held and rejoined under a new node id",
            ["drs.id.old": "\(old)", "drs.id": "\(id)", "drs.verdict": verdict])
    }

    // MARK: - Prepare and promise

    /// A taker's prepare: each lane answers for its sessions; this node stops granting
    /// the old owner leases and tells how long ago it last did.
    mutating func onPrepare(_ request: PrepareRequest, from taker: String, process: NodeID) {
        var entries: [PromiseReply.Entry] = []
        var byLane: [Int: [PrepareRequest.Entry]] = [:]
        for e in request.entries { byLane[lane(of: e.id), default: []].append(e) }
        for (l, part) in byLane.sorted(by: { $0.key < $1.key }) {
            entries += lanes[l].onPrepare(from: taker, process: process, PrepareRequest(oldOwner: request.oldOwner, oldOwnerID: request.oldOwnerID, entries: part))
        }
        debug("prepare from \(taker) for \(request.oldOwner)/\(request.oldOwnerID): answers \(entries.map { "\($0.id) fresher \($0.fresher?.stamp.etag ?? "-") owned \($0.ownedByHolder) owner \($0.owner ?? "-") ended \($0.ended?.etag ?? "-")" })")
        // A confirmation (no process named) revokes nobody. A takeover's old owner is held
        // dead here too, so that it learns it and rejoins if it is alive after all.
        if request.oldOwnerID != NodeID(0) {
            leases.revoke(request.oldOwner, process: request.oldOwnerID)
            membership.acceptDeath(of: request.oldOwner, id: request.oldOwnerID, declaredBy: taker, now: now)
            performMembershipOutput()
        }
        let since = leases.lastGranted[request.oldOwner].map { UInt32(clamping: (now - $0).millisecondsClamped) } ?? .max
        sendControl(.promise(PromiseReply(oldOwner: request.oldOwner, oldOwnerID: request.oldOwnerID, sinceGrantMs: since, entries: entries)), to: taker)
    }

    /// Sends what failover asks of other holders: prepares, and nominations of the first
    /// live holder of sessions this node is not first for.
    mutating func sendFailover(_ outcomes: [ReplicaShard.FailoverOutcome], oldOwner: String, oldOwnerID: NodeID) {
        var prepares: [String: [PrepareRequest.Entry]] = [:]
        var nominations: [String: [PrepareRequest.Entry]] = [:]
        for o in outcomes {
            for (holder, entries) in o.prepares { prepares[holder, default: []] += entries }
            for (holder, entries) in o.nominations { nominations[holder, default: []] += entries }
        }
        for (holder, entries) in prepares.sorted(by: { $0.key < $1.key }) {
            sendControl(.prepare(PrepareRequest(oldOwner: oldOwner, oldOwnerID: oldOwnerID, entries: entries)), to: holder)
        }
        for (holder, entries) in nominations.sorted(by: { $0.key < $1.key }) {
            sendControl(.nominate(PrepareRequest(oldOwner: oldOwner, oldOwnerID: oldOwnerID, entries: entries)), to: holder)
        }
    }

    /// A holder's promise: each lane adopts fresher copies for the takeovers it asked
    /// that holder about and schedules promotions; entries nothing here asked for are
    /// ignored (counted in `unaskedPromiseEntries`).
    mutating func onPromise(_ reply: PromiseReply, from holder: String, process: NodeID) {
        var byLane: [Int: [PromiseReply.Entry]] = [:]
        for e in reply.entries { byLane[lane(of: e.id), default: []].append(e) }
        debug("promise from \(holder) for \(reply.oldOwner): \(reply.entries.map { "\($0.id) fresher \($0.fresher?.stamp.etag ?? "-") owned \($0.ownedByHolder) owner \($0.owner ?? "-") ended \($0.ended?.etag ?? "-")" })")
        for (l, part) in byLane.sorted(by: { $0.key < $1.key }) {
            let r = PromiseReply(oldOwner: reply.oldOwner, oldOwnerID: reply.oldOwnerID, sinceGrantMs: reply.sinceGrantMs, entries: part)
            lanes[l].onPromise(from: holder, process: process, r, now: now, lease: settings.lease)
            takeOverStaleAdoptions(lane: l)
            flushPending(lane: l)
        }
    }

    /// Adoptions a confirmation found stale, with a later copy whose owner departed:
    /// taken over from that owner's process (a takeover round), or, while `promotion:
    /// majority` defers failovers here, deferred with that owner's.
    mutating func takeOverStaleAdoptions(lane l: Int) {
        let mayPromote = !settings.majority || seesMajority
        let owners = lanes[l].staleAdoptionOwners
        guard !owners.isEmpty else { return }
        var processes: [String: NodeID] = [:], after: [String: MonotonicInstant] = [:]
        for o in owners {
            processes[o] = membership.member(o)?.id ?? NodeID(0)
            after[o] = leases.grantsExpire(for: o)
        }
        let rounds = lanes[l].takeOverStaleAdoptions(mayPromote: mayPromote, now: now, processes: processes, promoteAfter: after)
        for r in rounds {
            if !mayPromote, deferredFailovers[r.owner] == nil { deferredFailovers[r.owner] = r.process }
            sendFailover([r.outcome], oldOwner: r.owner, oldOwnerID: r.process)
        }
    }

    /// A holder nominates this node to take over sessions of a departed owner: each lane
    /// starts those takeovers (a prepare round) once this node holds that owner's process
    /// gone and may promote, and keeps the nomination until then.
    mutating func onNominate(_ request: PrepareRequest, from holder: String) {
        var byLane: [Int: [PrepareRequest.Entry]] = [:]
        for e in request.entries { byLane[lane(of: e.id), default: []].append(e) }
        debug("nominated by \(holder) for \(request.oldOwner)/\(request.oldOwnerID): \(request.entries.map(\.id))")
        // The old owner's process is gone unless membership holds that very process live.
        let gone = request.oldOwnerID == NodeID(0) ? !livePeers.contains(request.oldOwner) : !isAlive(request.oldOwner, process: request.oldOwnerID)
        let mayPromote = !settings.majority || seesMajority
        let after = leases.grantsExpire(for: request.oldOwner)
        var outcomes: [ReplicaShard.FailoverOutcome] = []
        for (l, part) in byLane.sorted(by: { $0.key < $1.key }) {
            outcomes.append(lanes[l].onNomination(oldOwner: request.oldOwner, oldOwnerID: request.oldOwnerID, entries: part, oldOwnerGone: gone,
                                                  mayPromote: mayPromote, now: now, promoteAfter: after))
            flushPending(lane: l)
        }
        sendFailover(outcomes, oldOwner: request.oldOwner, oldOwnerID: request.oldOwnerID)
    }
}
