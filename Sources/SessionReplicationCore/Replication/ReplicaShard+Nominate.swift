/// Nominations: how a holder that is not first in a departed owner's replica set gets the
/// first live member to take a session over, without sending it state nobody asked for.
///
/// A holder whose copy names another node first sends that node a `nominate` with the
/// session ids and its copies' stamps. The nominee starts a takeover of its own (a
/// prepare round to every live member, the nominator included), so every copy it adopts
/// arrives as a promise to a takeover it started: a promise no takeover asked for is
/// ignored. A nominee holding no copy at all runs the same round from an empty stamp
/// (`noCopy`), adopting the freshest copy the answers carry; such a takeover yields to any
/// taker that holds a copy.
extension ReplicaShard {
    /// A nomination waiting for its old owner to depart here.
    struct Nomination: Sendable {
        var oldOwner: String
        var oldOwnerID: NodeID?
        /// The nominator's copy's stamp.
        var stamp: Stamp
        var at: MonotonicInstant
    }

    /// The stamp a takeover without a copy asks with: below every real stamp (epoch
    /// counters start at 1), so every holder's copy is fresher.
    static let noCopy = Stamp(epoch: Epoch(counter: 0, owner: NodeID(0)), version: 0)

    /// How long a nomination waits for its old owner to depart here. Default 10 minutes:
    /// longer than any detection or `promotion: majority` deferral a healthy cluster sees,
    /// and a bound on what forged nominations can hold.
    static var nominationLifetime: Duration { .seconds(600) }

    /// Nominations waiting.
    package var nominationsPending: Int { nominations.count }

    /// A holder asks this node to take over sessions whose owner `oldOwner` departed.
    /// When this node holds that owner gone (`oldOwnerGone`) and may promote (`mayPromote`,
    /// false while `promotion: majority` defers failovers), it starts each takeover now;
    /// otherwise it keeps the nomination until `memberDeparted` for that owner (or
    /// `nominationLifetime`). Sessions owned or being taken over here, sessions ended at
    /// least as recently as the nominator's copy, and copies answering to a live owner
    /// with a stamp at least the nominator's are left alone. A node that may not own
    /// (`role: server`) ignores nominations.
    package mutating func onNomination(oldOwner: String, oldOwnerID: NodeID? = nil, entries: [PrepareRequest.Entry], oldOwnerGone: Bool,
                                       mayPromote: Bool = true, now: MonotonicInstant, promoteAfter: MonotonicInstant = .zero) -> FailoverOutcome {
        var out = FailoverOutcome()
        guard settings.policy.role.owns else { return out }
        for e in entries {
            let n = Nomination(oldOwner: oldOwner, oldOwnerID: oldOwnerID, stamp: e.stamp, at: now)
            if oldOwnerGone, mayPromote {
                takeOver(e.id, nominated: n, now: now, promoteAfter: promoteAfter, out: &out)
            } else {
                nominations[e.id] = n
            }
        }
        return out
    }

    /// Starts the takeovers nominated for sessions of `member` (only those naming
    /// `process`, when both are known).
    mutating func actOnNominations(of member: String, process: NodeID?, now: MonotonicInstant, promoteAfter: MonotonicInstant,
                                   out: inout FailoverOutcome) {
        guard !nominations.isEmpty else { return }
        let due = nominations.filter { _, n in
            n.oldOwner == member && (process == nil || n.oldOwnerID == nil || n.oldOwnerID == NodeID(0) || n.oldOwnerID == process)
        }
        for (id, n) in due.sorted(by: { $0.key < $1.key }) {
            nominations[id] = nil
            takeOver(id, nominated: n, now: now, promoteAfter: promoteAfter, out: &out)
        }
    }

    /// Drops nominations older than `nominationLifetime` (checked at most once a second).
    mutating func sweepNominations(now: MonotonicInstant) {
        guard !nominations.isEmpty, now >= nominationSweepDue else { return }
        nominationSweepDue = now + .seconds(1)
        nominations = nominations.filter { now - $0.value.at < Self.nominationLifetime }
    }

    private mutating func takeOver(_ id: SessionID, nominated n: Nomination, now: MonotonicInstant, promoteAfter: MonotonicInstant,
                                   out: inout FailoverOutcome) {
        guard owned[id] == nil, takeovers[id] == nil, !pendingPromotions.contains(id) else { return }
        if let t = tombstones[id], t.stamp >= n.stamp { return }
        if let b = backups[id] {
            // A copy answering to a live owner, at least as fresh as the nominator's: the
            // nomination is stale.
            guard n.stamp > b.state.stamp || b.owner == n.oldOwner || b.promised else { return }
            backups[id]!.owner = n.oldOwner
            backups[id]!.ownerID = n.oldOwnerID
            backups[id]!.promised = false
            // The nominator deferred to this node: it takes over whatever its own copy's
            // replica set says (two copies naming each other first would otherwise pass
            // the nomination back and forth).
            failOver(id, owner: n.oldOwner, ownerID: n.oldOwnerID, asTaker: true, now: now, promoteAfter: promoteAfter, out: &out)
            return
        }
        let others = settings.members.filter { $0 != settings.selfName && !departed.contains($0) }
        guard !others.isEmpty else { return }
        takeovers[id] = Takeover(owner: n.oldOwner, ownerID: n.oldOwnerID, waiting: Set(others), after: promoteAfter, sentAt: now)
        copylessTakeovers.insert(id)
        for o in others { out.prepares[o, default: []].append(.init(id: id, stamp: Self.noCopy)) }
    }
}
