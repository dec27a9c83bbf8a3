/// Failover: what a shard does when membership declares a member dead (or it leaves).
extension ReplicaShard {
    /// What `memberDeparted` did.
    package struct FailoverOutcome: Sendable {
        /// Backup copies this node promoted to owned sessions (new epoch, new backups).
        package var promoted: [SessionID] = []
        /// Owned sessions that got a new backup in place of the departed one.
        package var rereplicated: [SessionID] = []
        /// Waits that can no longer complete (their only remaining target departed).
        package var completed: [(WaiterID, WaitResult)] = []
        /// Prepare requests to send, by holder: sessions this node takes over that other
        /// live holders also back; it promotes each once they all answered (or died).
        package var prepares: [String: [PrepareRequest.Entry]] = [:]
        /// Sessions to nominate to the first live holder of their replica set when that
        /// is another node (it may never have heard that the dead node owned them: its
        /// own copy can be older and name an earlier owner, or it may hold none), with
        /// this node's stamps. The nominee asks for the copies with a prepare.
        package var nominations: [String: [PrepareRequest.Entry]] = [:]
    }

    struct Takeover: Sendable {
        var owner: String
        /// The departed owner's process, when known.
        var ownerID: NodeID?
        /// The members the prepares went to, and those of them yet to answer.
        let asked: Set<String>
        var waiting: Set<String>
        var after: MonotonicInstant
        /// When the prepares were last sent (they are sent again to members still silent:
        /// a reset connection loses them).
        var sentAt: MonotonicInstant

        init(owner: String, ownerID: NodeID?, waiting: Set<String>, after: MonotonicInstant, sentAt: MonotonicInstant) {
            self.owner = owner
            self.ownerID = ownerID
            self.asked = waiting
            self.waiting = waiting
            self.after = after
            self.sentAt = sentAt
        }
    }

    /// Backup candidates not departed nor leaving, in configuration order.
    var liveCandidates: [String] { settings.backupCandidates.filter { !departed.contains($0) && !leaving.contains($0) } }

    /// Marks `member` draining (`true`: placement names it no more) or back (`false`: a
    /// new process under its name). Copies it holds stay until it leaves.
    package mutating func setLeaving(_ member: String, _ isLeaving: Bool) {
        if isLeaving { leaving.insert(member) } else { leaving.remove(member) }
    }

    /// The replica set for `id`: the live members of `keeping` first, then the first
    /// eligible members in rendezvous order, up to `replicas`: members membership holds
    /// alive before members never heard of (a configured node that is not running yet
    /// is chosen only when no running one is left). Never this node, nor `excluding`.
    func placement(for id: SessionID, keeping: [String], excluding: String? = nil, avoiding: Set<String> = []) -> [String] {
        let live = liveCandidates.filter { $0 != excluding && !avoiding.contains($0) }
        let wanted = settings.policy.replicas.resolve(eligible: live.count)
        var set = keeping.filter { $0 != settings.selfName && !departed.contains($0) && live.contains($0) }
        if set.count > wanted { set = Array(set.prefix(wanted)) }
        guard set.count < wanted else { return set }
        let known = live.filter { !set.contains($0) && heardAlive.contains($0) }
        set += Placement.choose(id, count: wanted - set.count, among: known)
        guard set.count < wanted else { return set }
        let unknown = live.filter { !set.contains($0) && !heardAlive.contains($0) }
        set += Placement.choose(id, count: wanted - set.count, among: unknown)
        return set
    }

    /// `member` was declared dead or left. Its streams and waits end; owned sessions it
    /// backed get a new backup (sent the whole session); backup copies it owned are
    /// promoted here when this node is the first live member of their replica set (a
    /// new epoch `(counter + 1, this node)`, a new replica set, replicated whole at once).
    /// Copies whose first live member is another node wait for that node's full state.
    ///
    /// `promoteAfter` is when every lease this node granted `member` has run out
    /// (`LeaseTable.grantsExpire`): promotions wait until then (in `tick`), so the old
    /// owner can no longer pass its serving check when the new owner starts serving.
    ///
    /// With `mayPromote` false (under `promotion: majority` on a side that sees no
    /// majority) copies it owned stay backups of `member`; calling again with true
    /// promotes them.
    ///
    /// With `process` only copies answering to that process of `member` fail over (when
    /// known); with `replaced` a later process of the name is alive already (a restart
    /// faster than detection): the name stays a live member (it is asked, and may own
    /// sessions by now), only what the old process held and owed ends.
    package mutating func memberDeparted(_ member: String, process: NodeID? = nil, replaced: Bool = false, now: MonotonicInstant,
                                        promoteAfter: MonotonicInstant = .zero, mayPromote: Bool = true) -> FailoverOutcome {
        var out = FailoverOutcome()
        guard member != settings.selfName else { return out }
        if !replaced {
            departed.insert(member)
            heardAlive.remove(member)
        }
        // Takeovers waiting for this member's promise need it no more.
        for id in takeovers.keys.sorted() where takeovers[id]!.waiting.contains(member) {
            takeovers[id]!.waiting.remove(member)
            if takeovers[id]!.waiting.isEmpty {
                let t = takeovers.removeValue(forKey: id)!
                pendingPromotions.append(id, owner: t.owner, after: t.after)
            }
        }
        if let old = streams.removeValue(forKey: member) { sequenceFloor[member] = old.nextSequence }
        moves[member] = nil
        resyncFulls[member] = nil
        peersWithUnsent.remove(member)
        waitersByPeer[member] = nil
        for key in waiters.keys.sorted() {
            guard var w = waiters[key], w.targets[member] != nil else { continue }
            w.targets[member] = nil
            if w.acked.count >= w.needed {
                waiters[key] = nil
                out.completed.append((WaiterID(rawValue: key), .replicated(w.acked.sorted())))
            } else if w.targets.count + w.acked.count < w.needed || w.targets.isEmpty {
                waiters[key] = nil
                counters.syncTimeouts += 1
                out.completed.append((WaiterID(rawValue: key), .timedOut(w.acked.sorted())))
            } else {
                waiters[key] = w
            }
        }
        // The sessions concerned are picked in one walk, then sorted (sorting every id of
        // a million-session table first cost most of the event).
        var backed: [SessionID] = []
        for (id, o) in owned where o.state.replicaSet.contains(member) { backed.append(id) }
        for id in backed.sorted() {
            let set = placement(for: id, keeping: owned[id]!.state.replicaSet)
            owned[id]!.state.replicaSet = set
            owned[id]!.needsFull = true
            _ = send(id, now: now)
            counters.rereplications += 1
            out.rereplicated.append(id)
        }
        var orphans: [SessionID] = []
        if mayPromote {
            for (id, b) in backups where b.owner == member {
                if let process, let ownerID = b.ownerID, ownerID != process { continue }
                orphans.append(id)
            }
        }
        // Room for them all at once (growing a table of a million entries step by step
        // copied it again at each step).
        owned.reserveCapacity(owned.count + orphans.count)
        for id in orphans.sorted() {
            failOver(id, owner: member, ownerID: process, now: now, promoteAfter: promoteAfter, out: &out)
        }
        if mayPromote { actOnNominations(of: member, process: process, now: now, promoteAfter: promoteAfter, out: &out) }
        // Hand-overs to that process will never be confirmed: forget them (its copies
        // fail over instead).
        if let process { unconfirmedHandoffs = unconfirmedHandoffs.filter { $0.value.taker != process } }
        // Confirmations that waited on this member need it no more.
        for id in owned.awaitingConfirmation.sorted() where owned[id]!.confirming.contains(member) && !replaced {
            owned[id]!.confirming.remove(member)
        }
        return out
    }

    /// The copy of `id` lost its owner `member`: the first live member of its replica
    /// set takes it over (after a prepare round when others hold it too); any other
    /// holder nominates that member and awaits its prepare, then its full state.
    mutating func failOver(_ id: SessionID, owner member: String, ownerID: NodeID? = nil, asTaker: Bool = false, now: MonotonicInstant,
                           promoteAfter: MonotonicInstant, out: inout FailoverOutcome) {
        // Only nodes that may own take over (a `server` node keeps its copy, which is
        // evicted after maxInactiveInterval + backupGrace if nobody claims it).
        let holders = backups[id]!.state.replicaSet.filter { !departed.contains($0) }
        guard settings.policy.role.owns, asTaker || holders.first == settings.selfName || holders.isEmpty else {
            if let next = holders.first, next != settings.selfName {
                backups[id]!.owner = next
                backups[id]!.ownerID = nil
                backups[id]!.promised = true
                out.nominations[next, default: []].append(.init(id: id, stamp: backups[id]!.state.stamp))
            }
            return
        }
        // Every other live member is asked, not only the holders this copy names: the copy
        // may be stale (a replica set changed since, or the session moved on to another
        // owner that this copy never heard of), and any member may own or back it now.
        let others = settings.members.filter { $0 != settings.selfName && !departed.contains($0) }
        copylessTakeovers.remove(id)
        if !others.isEmpty {
            takeovers[id] = Takeover(owner: member, ownerID: ownerID, waiting: Set(others), after: promoteAfter, sentAt: now)
            for o in others { out.prepares[o, default: []].append(.init(id: id, stamp: backups[id]!.state.stamp)) }
        } else if now >= promoteAfter {
            if promote(id, now: now) { out.promoted.append(id) }
        } else {
            pendingPromotions.append(id, owner: member, after: promoteAfter)
        }
    }

    /// A taker's prepare: for each session, this node's copy when it is fresher than the
    /// taker's. This node stops treating the old owner as the copy's source (the taker
    /// will send the whole session under its new epoch) and never promotes it itself.
    package mutating func onPrepare(from taker: String, process: NodeID? = nil, _ request: PrepareRequest) -> [PromiseReply.Entry] {
        request.entries.map { e in
            if let o = owned[e.id] {
                // Taken over here meanwhile (on request): the taker must not promote.
                return .init(id: e.id, fresher: replicable(o.state), ownedByHolder: true)
            }
            guard let b = backups[e.id] else {
                // A takeover without a copy (see `onNomination`) yields to any taker with one,
                // and to a taker without one whose name is smaller.
                if !(e.stamp == Self.noCopy && settings.selfName < taker) {
                    takeovers[e.id] = nil
                    copylessTakeovers.remove(e.id)
                }
                return .init(id: e.id, fresher: nil, ended: tombstones[e.id]?.stamp)
            }
            let ofDeparted = b.owner == request.oldOwner && (b.ownerID == nil || request.oldOwnerID == NodeID(0) || b.ownerID == request.oldOwnerID)
            let takingOver = takeovers[e.id] != nil || pendingPromotions.contains(e.id)
            // Two takers at once (two holders each took itself for the first live holder, or
            // a nominee met one): a taker that started without a copy loses to one that
            // started with a copy; between two alike, the smaller name goes on. Each side
            // ranks both by what the prepares carried, so both reach the same verdict even
            // when a promise brought the copyless one a copy meanwhile (before, it then ranked
            // itself by name alone: each answered the other "owned", and both yielded).
            let mineCopyless = copylessTakeovers.contains(e.id)
            let theirsCopyless = e.stamp == Self.noCopy
            if takingOver, mineCopyless == theirsCopyless ? settings.selfName < taker : theirsCopyless {
                // The winner answers as if this node owned it; the loser's answer to this
                // node's prepare carries its copy when fresher, so no write is lost to the
                // choice.
                return .init(id: e.id, fresher: replicable(b.state), ownedByHolder: true)
            }
            pendingPromotions.remove(e.id)
            // The owner is named only when the copy came from it: a taker it was promised to
            // has not owned the session (and may yield to this very asker).
            let answer = PromiseReply.Entry(id: e.id, fresher: b.state.stamp > e.stamp ? replicable(b.state) : nil,
                                            owner: b.promised ? nil : b.owner)
            // A copy of the departed owner now answers to the taker, which will send the
            // whole session under its new epoch; a copy of another (live) owner stays its.
            // A taker that lost to this one gives its takeover up too. A confirmation (no
            // process named) whose adopted epoch is not later than this copy's is a stale
            // handover: the giver owned the session again since, and the copy stays the
            // giver's (re-pointed, it refused the giver's changes, and nobody took the
            // session over when the giver died; simulator seed 7118682).
            let staleAdoption = request.oldOwnerID == NodeID(0) && e.stamp != Self.noCopy && b.state.stamp.epoch.counter >= e.stamp.epoch.counter
            if (ofDeparted && !staleAdoption) || b.owner == taker || takingOver {
                backups[e.id]!.owner = taker
                backups[e.id]!.ownerID = process
                backups[e.id]!.promised = true
                takeovers[e.id] = nil
                copylessTakeovers.remove(e.id)
            }
            return answer
        }
    }

    /// A holder's promise: adopts its copy when fresher, and promotes each session once
    /// every holder answered, no earlier than `lease (1 + 10^-3) + 10 ms` after the
    /// holder's last grant to the old owner. Entries no takeover here asked that holder
    /// about (a late answer, or a forged one) change nothing and are counted in
    /// `counters.unaskedPromiseEntries`.
    package mutating func onPromise(from holder: String, process: NodeID? = nil, _ reply: PromiseReply, now: MonotonicInstant, lease: Duration) {
        let since = Duration.milliseconds(Int64(reply.sinceGrantMs))
        let wait = LeaseTable.safeWait(lease) - since
        for e in reply.entries {
            if owned[e.id]?.confirming.contains(holder) == true {
                confirmed(e, from: holder, process: process, now: now)
                continue
            }
            guard var t = takeovers[e.id], t.waiting.contains(holder) else { counters.unaskedPromiseEntries += 1; continue }
            if e.ownedByHolder, let s = e.fresher {
                // The holder owns it now: keep a backup of its copy, promote nothing.
                takeovers[e.id] = nil
                if let b = backups[e.id], s.stamp > b.state.stamp { backups[e.id]!.state = s }
                backups[e.id]?.owner = holder
                backups[e.id]?.ownerID = process
                continue
            }
            if let s = e.fresher, let owner = e.owner, owner != reply.oldOwner, owner != settings.selfName,
               owner != holder, !departed.contains(owner), !t.asked.contains(owner),
               s.stamp.epoch > (backups[e.id]?.state.stamp.epoch ?? Self.noCopy.epoch) {
                // The session moved on to another owner, alive as far as this node knows and
                // not asked in this round: this copy is a stray of an earlier epoch. Keep the
                // newer copy as its backup (a takeover without a copy just ends). An owner
                // asked in this round answers for itself ("owned here" when it still owns
                // the session): the holder's copy may name an owner that has since handed the
                // session on, so the round goes on and takes the copy as data only.
                takeovers[e.id] = nil
                guard backups[e.id] != nil else { continue }
                backups[e.id]!.state = s
                backups[e.id]!.owner = owner
                backups[e.id]!.ownerID = nil
                continue
            }
            if let ended = e.ended, let b = backups[e.id], ended >= b.state.stamp {
                // Ended at least as recently as this copy: never promoted over its tombstone.
                takeovers[e.id] = nil
                backups[e.id] = nil
                addTombstone(e.id, ended, now: now, idle: b.state.maxInactiveInterval)
                continue
            }
            if let ended = e.ended, backups[e.id] == nil {
                // A takeover without a copy learns the session ended: it ends too.
                takeovers[e.id] = nil
                if tombstones[e.id].map({ $0.stamp < ended }) ?? true { addTombstone(e.id, ended, now: now) }
                continue
            }
            if let s = e.fresher, let b = backups[e.id], s.stamp > b.state.stamp {
                backups[e.id]!.state = s
            } else if let s = e.fresher, backups[e.id] == nil, tombstones[e.id].map({ $0.stamp < s.stamp }) ?? true {
                // The first copy a takeover without one receives.
                storeBackup(s, from: t.owner, ownerID: t.ownerID, now: now)
            }
            t.waiting.remove(holder)
            if wait > .zero { t.after = max(t.after, now + wait) }
            if t.waiting.isEmpty {
                takeovers[e.id] = nil
                pendingPromotions.append(e.id, owner: t.owner, after: t.after)
            } else {
                takeovers[e.id] = t
            }
        }
    }

    /// Takeovers waiting for promises.
    package var takeoversPending: Int { takeovers.count }

    /// Promotions still waiting for the departed owner's leases to run out.
    package var promotionsPending: Int { pendingPromotions.count }

    /// Promotes the copies whose wait is over; returns their ids.
    /// At most `promotionSlice` per tick: a failover of a big owner promotes its sessions
    /// a slice at a time, and the node answers requests between slices. Their whole
    /// states go to their new backups after, from `sendPromoted`: a promotion only makes
    /// the session owned here (and servable), so that the failover of an owner of many
    /// sessions serves them all before it spends time copying them.
    mutating func runPendingPromotions(now: MonotonicInstant) -> [SessionID] {
        var done: [SessionID] = []
        for p in pendingPromotions.takeDue(now: now, limit: Self.promotionSlice) {
            // Still a backup of that owner (nothing newer arrived meanwhile).
            guard backups[p.id]?.owner == p.owner else { continue }
            if promote(p.id, now: now, sendNow: false) { done.append(p.id) }
        }
        unsentPromotions += done
        return done
    }

    /// Promotions per tick and lane. Default 2,000.
    static var promotionSlice: Int { 2_000 }

    /// Sends promoted sessions whole to their new backups: `promotionSlice` per tick once
    /// no promotion is waiting in this lane, an eighth of it while some are (a write to
    /// one of them sends it at once, with the write). Sessions sent since (by a write, a
    /// repair), handed on or ended are skipped.
    mutating func sendPromoted(now: MonotonicInstant) {
        guard unsentIndex < unsentPromotions.count else { return }
        let busy = !pendingPromotions.isEmpty || !takeovers.isEmpty
        var budget = busy ? Self.promotionSlice / 8 : Self.promotionSlice
        while unsentIndex < unsentPromotions.count, budget > 0 {
            let id = unsentPromotions[unsentIndex]
            unsentIndex += 1
            guard owned.withEntry(id, { $0.needsFull }) ?? false else { continue }
            _ = send(id, now: now)
            budget -= 1
        }
        if unsentIndex == unsentPromotions.count {
            unsentPromotions = []
            unsentIndex = 0
        }
    }

    /// `member` is alive (joined, or a new process under its name): placement may name
    /// it again. Owned sessions short of backups, and those whose rendezvous placement
    /// now names it, are queued to be sent to it whole, a slice per tick
    /// (`stateTransferPending` shows progress). A full replica set moves make-before-break:
    /// the member is added, and the backup it displaces leaves only once the member
    /// receipted the whole session.
    package mutating func memberReturned(_ member: String) {
        departed.remove(member)
        heardAlive.insert(member)
        guard settings.backupCandidates.contains(member), settings.policy.role.owns else { return }
        let live = liveCandidates
        let wanted = settings.policy.replicas.resolve(eligible: live.count)
        guard wanted > 0 else { return }
        // Whether a fresh placement names `member`: ranked among the live members heard
        // alive (as `placement` ranks them), one hash per member and session and no
        // allocation (building each session's placement cost a million-session owner
        // about a second here, under the node's lock).
        let others = live.filter { $0 != member && heardAlive.contains($0) }.map { (hash: NodeName.stableHash($0), name: $0) }
        let memberHash = NodeName.stableHash(member)
        var queued: [SessionID] = []
        for (id, o) in owned {
            let set = o.state.replicaSet
            guard !set.contains(member) else { continue }
            if set.count < wanted || Placement.picks(member, memberHash: memberHash, for: id, count: wanted, among: others) { queued.append(id) }
        }
        guard !queued.isEmpty else { return }
        refill = Array(refill[refillIndex...]) + queued.sorted()
        refillIndex = 0
    }

    /// Owned sessions still queued for a joining member, plus moves awaiting its receipt.
    package var stateTransferPending: Int { refill.count - refillIndex + moves.values.reduce(0) { $0 + $1.count } }

    /// Sessions sent per tick when filling backups for a joined member. Default 1,000.
    static var refillSlice: Int { 1_000 }

    /// Gives up to `budget` queued sessions their missing backups, or starts moving them
    /// to the member their placement now names.
    mutating func runRefill(now: MonotonicInstant, budget: Int) {
        guard refillIndex < refill.count else { return }  // the common case: nothing queued
        var done = 0
        let wanted = settings.policy.replicas.resolve(eligible: liveCandidates.count)
        while refillIndex < refill.count, done < budget {
            let id = refill[refillIndex]
            refillIndex += 1
            guard let entry = owned[id] else { continue }
            let current = entry.state.replicaSet
            if current.count < wanted {
                let set = placement(for: id, keeping: current)
                guard set != current else { continue }
                owned[id]!.state.replicaSet = set
                owned[id]!.needsFull = true
                _ = send(id, now: now)
            } else {
                let fresh = placement(for: id, keeping: [])
                guard let joiner = fresh.first(where: { !current.contains($0) && heardAlive.contains($0) }),
                      let displaced = current.last(where: { !fresh.contains($0) }),
                      !(moves[joiner]?.contains { $0.id == id } ?? false) else { continue }
                var state = entry.state
                state.replicaSet = current + [joiner]
                owned[id]!.state.replicaSet = state.replicaSet
                let seq = enqueue(MessageCodec.encode(.full(replicable(state))), to: joiner, session: id, mustDeliver: false)
                counters.fullStatesSent += 1
                moves[joiner, default: []].append((seq, id, displaced))
            }
            counters.stateTransfers += 1
            done += 1
        }
        if refillIndex == refill.count, !refill.isEmpty {
            refill = []
            refillIndex = 0
        }
    }

    /// The joiner receipted the whole sessions up to `through`: each move completes. The
    /// displaced backup leaves the replica set, and every old and new holder is sent the
    /// session with its new replica set (the displaced one drops its copy on seeing it).
    mutating func finishMoves(peer: String, through: UInt64, now: MonotonicInstant) {
        guard moves[peer] != nil else { return }
        while let first = moves[peer]!.first, first.sequence <= through {
            moves[peer]!.removeFirst()
            guard let entry = owned[first.id], entry.state.replicaSet.contains(peer),
                  entry.state.replicaSet.contains(first.displaced) else { continue }
            owned[first.id]!.state.replicaSet.removeAll { $0 == first.displaced }
            let state = owned[first.id]!.state
            guard entry.sentVersion == state.stamp.version, entry.pending.isEmpty else {
                // Unflushed changes go whole with the next flush; the displaced copy is
                // released by anti-entropy.
                owned[first.id]!.needsFull = true
                continue
            }
            let bytes = MessageCodec.encode(.full(replicable(state)))
            for p in state.replicaSet + [first.displaced] { _ = enqueue(bytes, to: p, session: first.id, mustDeliver: false) }
        }
        if moves[peer]!.isEmpty { moves[peer] = nil }
    }

    /// Makes the backup copy of `id` an owned session under a new epoch and replicates it
    /// (with `sendNow` false, it is marked to go whole with its next send instead).
    /// Refused (false, the copy kept as it is, `counters.overflowRefused` counted) when
    /// its epoch counter has no successor below `Epoch.maxCounter`.
    @discardableResult
    mutating func promote(_ id: SessionID, now: MonotonicInstant, sendNow: Bool = true) -> Bool {
        copylessTakeovers.remove(id)
        guard let b = backups[id] else { return false }
        guard let epoch = b.state.stamp.epoch.next(owner: settings.selfID) else {
            counters.overflowRefused += 1
            return false
        }
        backups[id] = nil
        var state = b.state
        state.stamp = Stamp(epoch: epoch, version: state.stamp.version)
        state.replicaSet = placement(for: id, keeping: state.replicaSet)
        var o = Owned(state: state, sentVersion: 0, accessSent: state.lastAccessedAt)
        o.expiryGrace = settings.sessions.effectiveAccessInterval
        owned[id] = o
        ownerExpiry.schedule(id, at: state.expiresAt.milliseconds / 1000 + 1)
        counters.promotions += 1
        note(.activated, id, state.stamp)
        if sendNow {
            _ = send(id, now: now)
        } else {
            owned[id]!.needsFull = true
        }
        return true
    }
}
