/// A taker confirms its epoch before it serves: an adopted handover asks every live
/// member (a prepare that revokes nobody) whether anyone owns the session, holds it from
/// another owner, or ended it; and prepares of takeovers and confirmations that a reset
/// connection lost are sent again.
extension ReplicaShard {
    /// Starts confirming the adoption of `id` (handed over by `giver`): until every live
    /// member other than this node answered, the session is not served. Returns the
    /// prepares to send, by member.
    mutating func startConfirming(_ id: SessionID, giver: String, now: MonotonicInstant) -> [String: [PrepareRequest.Entry]] {
        guard let o = owned[id] else { return [:] }
        let others = settings.members.filter { $0 != settings.selfName && !departed.contains($0) }
        owned[id]!.confirming = Set(others)
        owned[id]!.confirmSentAt = now
        owned[id]!.confirmGiver = giver
        var out: [String: [PrepareRequest.Entry]] = [:]
        for m in others { out[m, default: []].append(.init(id: id, stamp: o.state.stamp)) }
        return out
    }

    /// A member's answer to the confirmation of an adopted session. Someone else owns it
    /// under a later epoch, or holds it from a live owner (the giver included) under an
    /// epoch at least this adoption's: the handover was stale (a late or repeated
    /// answer) and this node yields, keeping a backup. A member that owns it under an
    /// earlier epoch (it adopted a stale handover itself) yields on this node's answer to
    /// its own confirmation; it stays unconfirmed here and is asked again until then. A
    /// tombstone at least as new ends it. Otherwise the member is done; once all are, the
    /// session is served.
    mutating func confirmed(_ e: PromiseReply.Entry, from holder: String, process: NodeID?, now: MonotonicInstant) {
        guard let o = owned[e.id] else { return }
        let giver = o.confirmGiver
        if e.ownedByHolder, let s = e.fresher {
            // Two adopters confirming at once each answer the other "owned": only the one
            // with the earlier epoch yields (before, both did and nobody owned the session).
            guard s.stamp.epoch > o.state.stamp.epoch else { return }
            yield(e.id, to: holder, ownerID: process, state: s.stamp > o.state.stamp ? s : o.state, now: now)
            counters.staleHandoversRefused += 1
            return
        }
        // (The giver included: a copy it sent under an epoch at least this adoption's was
        // made after the handover, which is therefore stale.)
        if let s = e.fresher, let owner = e.owner, owner != settings.selfName, !departed.contains(owner),
           s.stamp.epoch.counter >= o.state.stamp.epoch.counter {
            yield(e.id, to: owner, ownerID: nil, state: s, now: now)
            counters.staleHandoversRefused += 1
            return
        }
        // The same, but that owner departed here before this answer arrived: serving the
        // adopted state would lose the later epoch's writes, and its holders' takeovers
        // may already have yielded to this node's "owned" answer. It becomes a backup of
        // that owner, taken over from it with a round of its own (`takeOverStaleAdoptions`).
        if let s = e.fresher, let owner = e.owner, owner != settings.selfName, departed.contains(owner),
           s.stamp.epoch.counter >= o.state.stamp.epoch.counter {
            yield(e.id, to: owner, ownerID: nil, state: s, now: now)
            staleAdoptions.append(e.id)
            counters.staleHandoversRefused += 1
            return
        }
        if let ended = e.ended, ended.epoch.counter >= o.state.stamp.epoch.counter {
            owned[e.id] = nil
            dirty.remove(e.id); accessed.remove(e.id); repair.remove(e.id)
            addTombstone(e.id, ended, now: now, idle: o.state.maxInactiveInterval)
            return
        }
        owned[e.id]!.confirming.remove(holder)
    }

    /// The departed owners of the stale adoptions `confirmed` found (see
    /// `takeOverStaleAdoptions`).
    package var staleAdoptionOwners: Set<String> {
        Set(staleAdoptions.compactMap { backups[$0]?.owner })
    }

    /// Takes over the sessions `confirmed` found stale adoptions of (a later copy whose
    /// owner departed): a takeover round from that owner (its process from `processes`,
    /// `NodeID(0)` when unknown), as a nominated taker, promoting after that owner's
    /// `promoteAfter` instant and the holders' lease waits. With `mayPromote` false
    /// (`promotion: majority` on a side without one) the copies stay backups of the
    /// departed owner, nominated here until it departs again. Returns the outcomes to
    /// send, by old owner. Never fails.
    package mutating func takeOverStaleAdoptions(mayPromote: Bool, now: MonotonicInstant, processes: [String: NodeID],
                                                 promoteAfter: [String: MonotonicInstant]) -> [(owner: String, process: NodeID, outcome: FailoverOutcome)] {
        guard !staleAdoptions.isEmpty else { return [] }
        var byOwner: [String: [PrepareRequest.Entry]] = [:]
        for id in staleAdoptions {
            guard let b = backups[id], departed.contains(b.owner), owned[id] == nil else { continue }
            byOwner[b.owner, default: []].append(.init(id: id, stamp: b.state.stamp))
        }
        staleAdoptions = []
        return byOwner.sorted { $0.key < $1.key }.map { owner, entries in
            let pid = processes[owner] ?? NodeID(0)
            let out = onNomination(oldOwner: owner, oldOwnerID: pid, entries: entries, oldOwnerGone: true, mayPromote: mayPromote,
                                   now: now, promoteAfter: promoteAfter[owner] ?? now)
            return (owner, pid, out)
        }
    }

    /// Gives up ownership of an adopted, unconfirmed session: it is kept as a backup of
    /// `owner` (it never served it, so nothing it holds is newer than what it was handed).
    mutating func yield(_ id: SessionID, to owner: String, ownerID: NodeID?, state: SessionState, now: MonotonicInstant) {
        owned[id] = nil
        dirty.remove(id); accessed.remove(id); repair.remove(id)
        storeBackup(state, from: owner, ownerID: ownerID, now: now)
        counters.takeovers -= 1
        note(.passivated, id, state.stamp)
    }

    /// Prepares and confirmations still waiting for members, sent again every
    /// `retryInterval` (a reset connection loses control messages): by member, with the
    /// old owner each is about (a confirmation names no process to revoke).
    mutating func resendPrepares(now: MonotonicInstant) -> [(peer: String, request: PrepareRequest)] {
        let every = settings.policy.retryInterval
        var out: [String: [(String, NodeID, PrepareRequest.Entry)]] = [:]
        // A failover of a big owner leaves hundreds of thousands of takeovers waiting:
        // they are visited only when the oldest is due (sorting them every tick stalled
        // the node), and resent less often in proportion to how many message parts they
        // fill (answering them takes longer than `retryInterval`, and resending all every
        // 200 ms buried the answers under new prepares).
        let parts = max(1, takeovers.count / ReplicationMessage.maxEntriesPerPart)
        let takeoverEvery = every * parts
        if !takeovers.isEmpty, now >= prepareResendDue {
            for id in takeovers.keys.sorted() {
                guard let t = takeovers[id], now - t.sentAt >= takeoverEvery else { continue }
                takeovers[id]!.sentAt = now
                // A takeover that started without a copy says so again, even once a promise
                // brought it one: the other takers rank it by what its prepares carry, and a
                // resent prepare with a stamp made it rank as a taker with a copy (simulator
                // seed 7012855: each side yielded to the other, nobody owned the session).
                let stamp = copylessTakeovers.contains(id) ? Self.noCopy : backups[id]?.state.stamp ?? Self.noCopy
                for m in t.waiting.sorted() { out[m, default: []].append((t.owner, t.ownerID ?? NodeID(0), .init(id: id, stamp: stamp))) }
            }
            prepareResendDue = (takeovers.values.lazy.map(\.sentAt).min() ?? now) + takeoverEvery
        }
        // Only the sessions awaiting confirmation (sorting every owned id each tick cost
        // a node with a million sessions most of its time).
        for id in owned.awaitingConfirmation.sorted() {
            guard let o = owned[id], !o.confirming.isEmpty, now - o.confirmSentAt >= every else { continue }
            owned[id]!.confirmSentAt = now
            for m in o.confirming.sorted() { out[m, default: []].append((o.confirmGiver, NodeID(0), .init(id: id, stamp: o.state.stamp))) }
        }
        var requests: [(peer: String, request: PrepareRequest)] = []
        for (peer, entries) in out.sorted(by: { $0.key < $1.key }) {
            var byOwner: [String: (NodeID, [PrepareRequest.Entry])] = [:]
            for (owner, ownerID, e) in entries { byOwner[owner, default: (ownerID, [])].1.append(e); byOwner[owner]!.0 = ownerID }
            for (owner, (ownerID, es)) in byOwner.sorted(by: { $0.key < $1.key }) {
                requests.append((peer, PrepareRequest(oldOwner: owner, oldOwnerID: ownerID, entries: es)))
            }
        }
        return requests
    }
}
