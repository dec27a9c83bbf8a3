/// Takeover on request and handover from a live owner (docs/design.md (Membership and failover)): a node asked
/// for a session it does not own asks the owner, which hands over its whole current
/// state; the asker owns it from then on under a higher epoch.
extension ReplicaShard {
    /// Whether this node handed `id` away less than `cooldown` ago: it then refers
    /// requests to the owner its copy names instead of taking the session back, even
    /// when the session moved on meanwhile (the taker handed it on; the forwarder follows
    /// the hints from node to node), so a round-robin load balancer does not move the
    /// session at every request. `TakeoverSearch` takes it back all the same when the
    /// owner named is not alive (failover decides then).
    package func handedAwayRecently(_ id: SessionID, now: MonotonicInstant, cooldown: Duration) -> Bool {
        guard let h = handedAway[id] else { return false }
        return now < h.at + cooldown
    }

    /// Restarts the cooldown of `id` at `now` (a request was just referred to its owner
    /// because of it): while requests keep arriving here less than `takeoverCooldown`
    /// apart, this node keeps referring them and the session stays where it is. Nothing
    /// when `id` was not handed away from here.
    package mutating func renewCooldown(_ id: SessionID, now: MonotonicInstant) {
        handedAway[id]?.at = now
    }

    /// Answers another node's `HandoverRequest` for `id`. An owner hands the session
    /// over when `mayHandOver` (the shell checked the serving rule and holds the
    /// session's scope, so no change is in flight) and `affinity` is `sticky`; it keeps
    /// a backup copy whose owner is the asker, until the asker's own copy supersedes it.
    /// Otherwise: what this node holds (a backup and its owner, a tombstone, or nothing).
    /// A backup whose owner is the asker itself is sent back only to the very process
    /// (`requesterID`) this node handed it to, while this node's copy is still exactly
    /// what it handed over (no word from the taker since): that taker asks again because
    /// the first answer was lost (a connection reset), and without this the session
    /// would have no owner while both nodes live (found by the simulator once it lost
    /// handover answers). Any other asker under that name may be a new process whose
    /// predecessor's sessions failover promotes (a restart counts as the old process
    /// departing), possibly from a fresher copy: it is told about the copy instead.
    package mutating func answerHandover(_ id: SessionID, to requester: String, requesterID: NodeID? = nil, requestID: UInt64 = 0,
                                        now: MonotonicInstant, mayHandOver: Bool) -> HandoverReply.Answer {
        if let o = owned[id] {
            guard mayHandOver, settings.policy.affinity == .sticky else { return .kept(o.state.stamp) }
            return .transferred(handOff(id, to: requester, takerID: requesterID, requestID: requestID, now: now))
        }
        if let b = backups[id] {
            if mayHandOver, b.owner == requester, let requesterID, var u = unconfirmedHandoffs[id],
               u.to == requester, u.taker == requesterID, u.handed.stamp == b.state.stamp {
                // The state as first handed, with its replica set: the kept copy lists
                // this node first, and a taker adopting that list would drop the other
                // holders, leaving them stray copies that name this node (found by the
                // simulator: promoted when this node died, beside the taker).
                counters.handoversResent += 1
                u.sentAt = now
                unconfirmedHandoffs[id] = u
                return .transferred(u.handed)
            }
            return .backup(b.state.stamp, owner: b.owner)
        }
        if let t = tombstones[id] { return .ended(t.stamp) }
        return .none
    }

    /// Gives up ownership of `id` to `taker`, keeping the current state as a backup of
    /// `taker`'s; returns the state to send. Unflushed changes travel with it.
    /// Precondition: `id` is owned here.
    ///
    /// The kept copy lists this node first among its holders: should the taker die
    /// before its own copy reaches the holders (or before it adopted the session at all),
    /// this node is the first live holder and takes the session back, after a prepare
    /// round that adopts any fresher copy the taker's writes left with the others.
    /// With `takerID` (the taker's process) the hand-over stays answerable again until
    /// the taker's first word supersedes the kept copy (see `answerHandover`).
    package mutating func handOff(_ id: SessionID, to taker: String, takerID: NodeID? = nil, requestID: UInt64 = 0, now: MonotonicInstant) -> SessionState {
        let o = owned.removeValue(forKey: id)!
        dirty.remove(id); accessed.remove(id); repair.remove(id)
        // Whatever takeover of it this node still had under way is over: it gave the
        // session away (left in place, a later prepare would hear "owned here" from a
        // node that owns nothing, and the taker would yield to it).
        takeovers[id] = nil
        pendingPromotions.remove(id)
        var kept = o.state
        kept.replicaSet = [settings.selfName] + kept.replicaSet.filter { $0 != settings.selfName && $0 != taker }
        storeBackup(kept, from: taker, ownerID: takerID, now: now)
        handedAway[id] = (now, taker)
        let handed = replicable(o.state)
        if let takerID { unconfirmedHandoffs[id] = UnconfirmedHandoff(to: taker, taker: takerID, handed: handed, requestID: requestID, sentAt: now) }
        counters.handoversGiven += 1
        note(.passivated, id, o.state.stamp)
        return handed
    }

    /// Adopts a session `giver` handed over: owned here under epoch `(highest counter
    /// seen + 1, this node)`, with the replica set of the old owner where this node is
    /// replaced by `giver` (when `giverStays`; a draining giver is left out), filled up
    /// to `replicas` by placement, and sent whole to it at once, so that every old holder
    /// ends up with the new epoch. Returns false (nothing changes) when this node cannot
    /// own (`server` role), already owns it, holds a tombstone at least as new, or the
    /// epoch counter has no successor below `Epoch.maxCounter` (`counters.overflowRefused`).
    /// Also refused: a state of an earlier epoch than the backup copy held here (the
    /// session moved on since it was handed over; a late or repeated answer).
    package mutating func adoptHandover(_ state: SessionState, from giver: String, giverStays: Bool, now: MonotonicInstant) -> Bool {
        let id = state.id
        guard settings.policy.role.owns, owned[id] == nil else { return false }
        if let t = tombstones[id], t.stamp >= state.stamp { return false }
        if let b = backups[id], b.state.stamp.epoch.counter > state.stamp.epoch.counter {
            // A later epoch is held: the session moved on since it was handed over (a late
            // or repeated answer). A copy promised to another taker is no reason to refuse:
            // the confirmation round asks that taker, which yields or makes this node yield.
            counters.staleHandoversRefused += 1
            return false
        }
        var s = state
        let counter = max(s.stamp.epoch.counter, backups[id]?.state.stamp.epoch.counter ?? 0)
        guard let epoch = Epoch(counter: counter, owner: settings.selfID).next(owner: settings.selfID) else {
            counters.overflowRefused += 1
            return false
        }
        s.stamp = Stamp(epoch: epoch, version: s.stamp.version)
        var keep = s.replicaSet
        if keep.contains(settings.selfName) {
            keep = keep.map { $0 == settings.selfName ? giver : $0 }
        }
        if !giverStays { keep.removeAll { $0 == giver } }
        s.replicaSet = placement(for: id, keeping: keep, excluding: giverStays ? nil : giver)
        backups[id] = nil
        tombstones[id] = nil
        takeovers[id] = nil
        pendingPromotions.remove(id)
        owned[id] = Owned(state: s, sentVersion: 0, accessSent: s.lastAccessedAt)
        ownerExpiry.schedule(id, at: s.expiresAt.milliseconds / 1000 + 1)
        counters.takeovers += 1
        note(.activated, id, s.stamp)
        _ = send(id, now: now)
        return true
    }

    /// The first member of the replica set of each owned session that may take it over
    /// now (not departed), for draining: `(session, taker)` pairs, at most `limit`.
    package func drainTargets(limit: Int, excluding: Set<String> = []) -> [(SessionID, String)] {
        var out: [(SessionID, String)] = []
        for (id, o) in owned {
            guard let taker = o.state.replicaSet.first(where: { !departed.contains($0) && !excluding.contains($0) }) else { continue }
            out.append((id, taker))
            if out.count >= limit { break }
        }
        return out
    }

    /// Forgets hand-overs older than the longest cooldown anyone uses (once a second).
    /// Also forgets unconfirmed hand-overs whose copy changed or went away (the taker's
    /// word arrived, or the session moved on).
    mutating func sweepHandedAway(now: MonotonicInstant) {
        guard !handedAway.isEmpty || !unconfirmedHandoffs.isEmpty, now >= nextCooldownSweep else { return }
        nextCooldownSweep = now + .seconds(1)
        let horizon = settings.policy.takeoverCooldown
        handedAway = handedAway.filter { now < $0.value.at + horizon }
        unconfirmedHandoffs = unconfirmedHandoffs.filter { id, u in
            guard let b = backups[id] else { return false }
            return b.owner == u.to && b.state.stamp == u.handed.stamp
        }
    }
}

extension ReplicaShard {
    /// Hand-over answers not confirmed by their taker (no word from it since) for
    /// `4 x retryInterval`: sent again, the same answer to the same request.
    mutating func resendHandoffs(now: MonotonicInstant) -> [(peer: String, taker: NodeID, reply: HandoverReply)] {
        guard !unconfirmedHandoffs.isEmpty else { return [] }
        let every = settings.policy.retryInterval * 4
        var out: [(peer: String, taker: NodeID, reply: HandoverReply)] = []
        for id in unconfirmedHandoffs.keys.sorted() {
            guard var u = unconfirmedHandoffs[id], now - u.sentAt >= every,
                  let b = backups[id], b.owner == u.to, b.state.stamp == u.handed.stamp else { continue }
            u.sentAt = now
            unconfirmedHandoffs[id] = u
            counters.handoversResent += 1
            out.append((u.to, u.taker, HandoverReply(requestID: u.requestID, id: id, answer: .transferred(u.handed))))
        }
        return out
    }
}
