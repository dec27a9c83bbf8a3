/// Leases for self-fencing (docs/design.md (Membership and failover)), both sides of them, as a value type with
/// `now` passed in.
///
/// - Asking: every `lease / 4` this node asks each live peer for a grant. A grant for
///   request `r` extends `grantedUntil[peer]` to *the instant `r` was sent* plus `lease`:
///   arrival never extends a lease, so however long the request and the answer took, the
///   lease ends no later than the grantor's own view of it.
/// - Granting: a peer is granted unless this node holds it dead or has revoked it (it
///   promised a takeover of one of its sessions). `lastGranted[peer]` is kept so a taker
///   can wait until every lease it gave the old owner has run out.
/// - Serving: an owner may serve a session only while, at that instant, every member of
///   its replica set it does not hold dead has an unexpired grant (`mayServe`).
///
/// The clock must keep running while the process is stopped (`ContinuousClock`), so a
/// process resumed after SIGSTOP finds its leases expired before it touches a session.
package struct LeaseTable: Sendable {
    /// The lease length `L`.
    package let lease: Duration
    /// Until when each peer's grant runs (asker side).
    package private(set) var grantedUntil: [String: MonotonicInstant] = [:]
    /// When this node last granted each peer (grantor side).
    package private(set) var lastGranted: [String: MonotonicInstant] = [:]
    /// Processes this node will not grant, by member (it promised a takeover of that
    /// process's sessions). Another process of the same name is granted.
    package private(set) var revoked: [String: NodeID] = [:]
    /// Requests answered with a grant, refused.
    package private(set) var granted = 0, refused = 0

    var sequence: UInt64 = 0
    var outstanding: [UInt64: (peer: String, sentAt: MonotonicInstant)] = [:]
    var nextRequest: MonotonicInstant = .zero

    /// The voters of `promotion: majority` (the configured members) and this node's name,
    /// for `hasQuorum(now:)`; empty when the table was made without them.
    package let voters: [String]
    let selfName: String
    /// Until when the grants held make a quorum of `voters` (`.zero`: not now), kept up to
    /// date as grants change so that the check costs one comparison: requests waiting on
    /// a quorum ask on every tick.
    private(set) var quorumUntil: MonotonicInstant = .zero

    /// A table for leases of length `lease` (default 500 ms); `voters` and `selfName` are
    /// what `hasQuorum(now:)` counts, and have no default: a table made without its voters
    /// would never hold a quorum, and a `majority` node would never serve.
    package init(lease: Duration = .milliseconds(500), voters: [String], selfName: String) {
        self.lease = lease
        self.voters = voters
        self.selfName = selfName
        updateQuorum()
    }

    /// The request period: a quarter of the lease.
    package var requestInterval: Duration { lease / 4 }

    /// When `requests` has work next.
    package var nextDeadline: MonotonicInstant { nextRequest }

    /// The lease requests due now, one per peer in `peers`, as `(peer, sequence)`.
    /// Requests older than one lease that were never answered are forgotten.
    package mutating func requests(to peers: [String], now: MonotonicInstant) -> [(peer: String, sequence: UInt64)] {
        guard now >= nextRequest else { return [] }
        nextRequest = now + requestInterval
        let stale = now + (.zero - lease)
        outstanding = outstanding.filter { $0.value.sentAt >= stale }
        var out: [(String, UInt64)] = []
        for peer in peers.sorted() {
            sequence += 1
            outstanding[sequence] = (peer, now)
            out.append((peer, sequence))
        }
        return out
    }

    /// A grant from `peer` for request `sequence`: the lease runs until the request's
    /// send time plus `lease`. Unknown or mismatched sequences are ignored.
    package mutating func onGrant(from peer: String, sequence: UInt64) {
        guard let r = outstanding.removeValue(forKey: sequence), r.peer == peer else { return }
        let until = r.sentAt + lease
        if until > grantedUntil[peer] ?? .zero {
            grantedUntil[peer] = until
            updateQuorum()
        }
    }

    /// A lease request from process `process` of `peer`: whether to grant it. Refused
    /// when `heldDead` (this node holds the asker dead) or that very process is revoked;
    /// granted otherwise (a later process of the name too), recording the grant time.
    package mutating func onRequest(from peer: String, process: NodeID, heldDead: Bool, now: MonotonicInstant) -> Bool {
        guard !heldDead, revoked[peer] != process else { refused += 1; return false }
        lastGranted[peer] = now
        granted += 1
        return true
    }

    /// Stops granting process `process` of `peer` (a takeover of its sessions was
    /// promised).
    package mutating func revoke(_ peer: String, process: NodeID) { revoked[peer] = process }

    /// Grants `peer` again (it rejoined under a new process id).
    package mutating func restore(_ peer: String) {
        revoked[peer] = nil
        grantedUntil[peer] = nil
        lastGranted[peer] = nil
        updateQuorum()
    }

    /// The instant after which no lease this node granted `peer` can still be running
    /// anywhere: a taker waits for it before serving the old owner's sessions.
    package func grantsExpire(for peer: String) -> MonotonicInstant {
        guard let last = lastGranted[peer] else { return .zero }
        return last + Self.safeWait(lease)
    }

    /// How long after a grant the lease it gave can no longer run anywhere: `lease`,
    /// plus 1/8 of it for clock-rate drift (two clocks 5 % apart either way differ by
    /// under 11 %), plus 10 ms of scheduling slack.
    package static func safeWait(_ lease: Duration) -> Duration { lease + lease / 8 + .milliseconds(10) }

    /// Forgets every grant this node holds (its clock stopped for a while: what it
    /// believes of their ends cannot be trusted); it is fenced until fresh grants arrive.
    package mutating func dropGrants() {
        grantedUntil = [:]
        outstanding = [:]
        updateQuorum()
    }

    /// Whether an owner may serve a session with `replicaSet` now: every member in
    /// `live` (the members membership holds alive or suspect) has an unexpired grant.
    /// Members held dead, or never heard of, need none: neither can have taken the
    /// session over.
    package func mayServe(replicaSet: [String], live: Set<String>, now: MonotonicInstant) -> Bool {
        for p in replicaSet where live.contains(p) {
            guard let until = grantedUntil[p], now < until else { return false }
        }
        return true
    }

    /// `mayServe` with liveness given by `isLive` (no set to build).
    package func mayServe(replicaSet: [String], now: MonotonicInstant, isLive: (String) -> Bool) -> Bool {
        for p in replicaSet where isLive(p) {
            guard let until = grantedUntil[p], now < until else { return false }
        }
        return true
    }

    /// Whether `selfName` would hold a quorum of `voters` (`promotion: majority`): itself
    /// (when a voter) and the voters with an unexpired grant are more than half of
    /// `voters`. False without voters. The count voter by voter that `hasQuorum(now:)`
    /// keeps in one comparison; the node asks `hasQuorum(now:)`, the tests compare the two.
    package func hasQuorum(voters: [String], selfName: String, now: MonotonicInstant) -> Bool {
        guard !voters.isEmpty else { return false }
        var count = 0
        for v in voters {
            if v == selfName { count += 1; continue }
            if let until = grantedUntil[v], now < until { count += 1 }
        }
        return count > voters.count / 2
    }

    /// `hasQuorum(voters:selfName:now:)` for the table's own `voters` and `selfName`, in
    /// one comparison. False without voters.
    package func hasQuorum(now: MonotonicInstant) -> Bool { now < quorumUntil }

    /// Recomputes `quorumUntil`: with `need` grants still required beyond this node's own
    /// vote, the quorum lasts until the `need`-th latest grant end among the other voters.
    private mutating func updateQuorum() {
        guard !voters.isEmpty else { quorumUntil = .zero; return }
        let own = voters.reduce(0) { $0 + ($1 == selfName ? 1 : 0) }
        let need = voters.count / 2 + 1 - own
        guard need > 0 else { quorumUntil = MonotonicInstant(nanoseconds: .max); return }
        var ends: [MonotonicInstant] = []
        for v in voters where v != selfName { ends.append(grantedUntil[v] ?? .zero) }
        guard ends.count >= need else { quorumUntil = .zero; return }
        ends.sort(by: >)
        quorumUntil = ends[need - 1]
    }

    /// The shortest remaining lease among `peers` (for `/cluster/status`); `nil` without peers.
    package func remaining(among peers: [String], now: MonotonicInstant) -> Duration? {
        guard !peers.isEmpty else { return nil }
        return peers.map { (grantedUntil[$0] ?? .zero) - now }.min().map { max(.zero, $0) }
    }
}
