import SessionReplicationCore

/// The node's public session API: each call is a request to the core, awaited until it
/// completes.
extension ReplicationNode {
    /// Creates a session owned by this node and replicates it at once. In synchronous
    /// mode returns after `minSyncReplicas` backups applied it. Throws `SessionError`:
    /// `capacity`, `payload-too-large`, `invalid-attribute-name`, `bad-request` (idle
    /// limit), `misdirected` (a `server` node), `insufficient-replicas`, `overloaded`
    /// (a full queue), `not-ready` (stopped), `no-quorum` (`promotion: majority` and no
    /// quorum lease within `4 x lease`) with nothing created; or `sync-timeout`
    /// (created, durability unknown). A given `id` (derived ids, such as the
    /// `PersistDriver`'s) fails with `precondition-failed` when this node already holds
    /// anything under it; by default the id is drawn from the system CSPRNG.
    public func createSession(id given: SessionID? = nil, attributes: [String: [UInt8]] = [:], maxInactiveInterval: Duration? = nil) async throws -> WriteResult {
        var rng = SystemRandomNumberGenerator()
        let id = given ?? SessionID.random(using: &rng)
        let r = core.newRequest()
        return try writeResult(await request(r) { c, t, w in
            c.create(r, id: id, attributes: attributes, maxInactiveInterval: maxInactiveInterval, now: t, wall: w)
        })
    }

    /// Reads an owned session, counting as an access. Returns `nil` when this node does
    /// not own it; waits for a scope in progress on it (so no read sees an unreplicated
    /// synchronous write) and for this node to pass the serving check (leases from its
    /// live backups). Throws `fenced` when the check still fails after `4 x lease`,
    /// `session-unavailable` when this node rejoined the cluster meanwhile, and
    /// `not-ready` once stopped.
    public func session(_ id: SessionID) async throws -> SessionState? {
        try await session(id, touching: true)
    }

    /// `session(_:)`; with `touching` false the read is no access (it does not move the
    /// session's idle deadline). Throws as `session(_:)`.
    public func session(_ id: SessionID, touching: Bool) async throws -> SessionState? {
        let r = core.newRequest()
        switch await request(r, { c, t, w in c.read(r, id, touching: touching, now: t, wall: w) }) {
        case .result(.session(let s)): return s
        case let other: throw unexpected(other)
        }
    }

    /// This node's own copy of `id` (owner, backup or tombstone), without touching it.
    public func copy(of id: SessionID) -> HeldCopy? { core.read { $0.copy(of: id) } }

    /// Runs `body` as a change scope on an owned session: scopes on one session run one at
    /// a time; at the end the exact changes are committed and replicated per
    /// `writeFrequency` and `mode`. `ifMatch` fails with `precondition-failed` when the
    /// session's stamp differs. Throws `session-not-found`, `misdirected` (only a backup
    /// here), `payload-too-large`, `insufficient-replicas`, `overloaded`, `fenced` (nothing
    /// applied in each), `sync-timeout` (applied, durability unknown), or what `body`
    /// throws (nothing applied).
    public func withSession<T: Sendable>(_ id: SessionID, ifMatch: Stamp? = nil,
                                         _ body: (inout SessionScope) throws -> T) async throws -> (value: T, result: WriteResult) {
        let r = core.newRequest()
        let first = await request(r) { c, t, w in c.beginScope(r, id, ifMatch: ifMatch, now: t, wall: w) }
        guard case .ready(let state) = first else { throw unexpected(first) }
        var scope = SessionScope(state: state)
        let value: T
        do {
            value = try body(&scope)
        } catch {
            _ = await request(r) { c, t, w in c.commitScope(r, .abort(SessionError(.badRequest, "the scope's body threw")), now: t, wall: w) }
            throw error
        }
        let commit: ScopeCommit
        if scope.invalidated {
            commit = .invalidate(.invalidated)
        } else {
            let changes = scope.changes
            commit = .changes(changes, maxInactiveInterval: changes.maxInactiveIntervalChanged ? scope.maxInactiveInterval : nil)
        }
        let result = try writeResult(await request(r) { c, t, w in c.commitScope(r, commit, now: t, wall: w) })
        return (value, result)
    }

    /// Sets the attributes in `set` and removes those in `remove` on owned session `id`
    /// (with idle limit `maxInactiveInterval` when given; default unchanged), as a
    /// `withSession` scope doing only that would, but in one event of the node's core
    /// rather than two: the change does not depend on the session's state. Setting the
    /// bytes an attribute already has, or removing an absent one, is no change. `ifMatch`
    /// (default none) fails with `precondition-failed` when the session's stamp differs.
    /// Throws as `withSession`.
    public func write(_ id: SessionID, ifMatch: Stamp? = nil, set: [String: [UInt8]] = [:], remove: Set<String> = [],
                      maxInactiveInterval: Duration? = nil) async throws -> WriteResult {
        var changes = ChangeSet()
        changes.updated = set
        changes.removed = remove
        let r = core.newRequest()
        return try writeResult(await request(r) { c, t, w in
            c.write(r, id, ifMatch: ifMatch, changes: changes, maxInactiveInterval: maxInactiveInterval, now: t, wall: w)
        })
    }

    /// `write(_:ifMatch:set:remove:maxInactiveInterval:)` without an idle limit: the
    /// `SessionBackend` requirement. Throws as `withSession`.
    public func write(_ id: SessionID, ifMatch: Stamp?, set: [String: [UInt8]], remove: Set<String>) async throws -> WriteResult {
        try await write(id, ifMatch: ifMatch, set: set, remove: remove, maxInactiveInterval: nil)
    }

    /// Sends what is pending for `id` (manual and time-based writes) and waits: for
    /// `minSyncReplicas` applies (synchronous), receipts from every reachable backup
    /// (acknowledged), or nothing (best-effort: the result names the replica set the
    /// change was sent to, not a confirmation). Throws `session-not-found`,
    /// `sync-timeout` or `not-ready` (stopped).
    public func sync(_ id: SessionID) async throws -> WriteResult {
        let r = core.newRequest()
        return try writeResult(await request(r) { c, t, w in c.sync(r, id, now: t, wall: w) })
    }

    /// Invalidates an owned session; returns once every reachable backup holds the
    /// tombstone. Throws `session-not-found`, `misdirected`, or `sync-timeout`.
    public func invalidate(_ id: SessionID) async throws {
        _ = try await withSession(id) { $0.invalidate() }
    }

    /// Makes this node the owner of `id` when another node owns it (docs/design.md
    /// (Membership and failover), takeover on request and handover): asks the owner named
    /// by this node's backup copy, or every live member when it holds nothing, follows
    /// referrals to the owner, and adopts the whole state the owner hands over (under a
    /// higher epoch). Returns at once when this node owns `id`.
    ///
    /// Throws `session-not-found` when authoritative (a tombstone here or at a member,
    /// or every live member answered that it holds nothing while none is suspect and
    /// every other configured member is known dead or left); `misdirected` naming the
    /// owner when this node may not take it (`affinity: none`, a `server` node, or it
    /// handed the session away less than `takeoverCooldown` ago); `session-unavailable`
    /// (naming the owner when known) when no owner handed it over within
    /// `handoverTimeout`; `overloaded` when 256 lookups of ids this node holds nothing
    /// of are in flight; `not-ready` while stopping.
    ///
    /// This is `SessionBackend.takeOver`, which every HTTP session route calls.
    public func takeOver(_ id: SessionID) async throws {
        try await takeOver(id, ignoringCooldown: false)
    }

    /// `takeOver(_:)`; with `ignoringCooldown` it takes the session back even when this
    /// node handed it away less than `takeoverCooldown` ago: for callers that cannot send
    /// the client to the owner (the `PersistDriver` inside an application). Throws as
    /// `takeOver(_:)`.
    public func takeOver(_ id: SessionID, ignoringCooldown: Bool) async throws {
        let r = core.newRequest()
        switch await request(r, { c, t, w in c.takeOver(r, id, ignoringCooldown: ignoringCooldown, now: t, wall: w) }) {
        case .result(.tookOver): return
        case let other: throw unexpected(other)
        }
    }

    /// Hands every owned session to the first live member of its replica set, which
    /// already holds its copy (an epoch change, no data transfer beyond the last
    /// changes), for at most `drainTimeout`; requests answer `503 not-ready` with
    /// `Retry-After` meanwhile. Returns how many sessions were handed over. Sessions
    /// without a live backup stay (failover or loss).
    public func drain() async -> Int {
        let r = core.newRequest()
        guard case .result(.drained(let n)) = await request(r, { c, t, w in c.drain(r, now: t, wall: w) }) else { return 0 }
        // Let the last handovers leave before the leave announcement overtakes them.
        try? await Task.sleep(for: .milliseconds(50))
        return n
    }

    /// Counters of this node.
    public var counters: NodeCounters {
        var c = NodeCounters()
        core.read { core in
            c.replication = core.replicationCounters
            for lane in core.lanes {
                c.primaries += lane.ownedCount
                c.backups += lane.backupCount
                for (peer, stream) in lane.streams { c.queueDepth[peer, default: 0] += stream.entries.count }
            }
            c.duplicateMessages = core.nodeCounters.duplicateMessages
            c.skippedSequences = core.nodeCounters.skippedSequences
        }
        transport.withLockedValue { t in
            c.streamFramesSent = t.streamFramesSent
            c.datagramsSent = t.datagramsSent
            c.socketRebinds = t.socketRebinds
            c.framesReceived = t.framesReceived
            c.rejected = t.rejected
        }
        return c
    }

    /// Sessions owned and backup copies held.
    var sessionCount: Int { core.read { $0.sessionCount } }

    /// Send-to-receipt samples per peer since the last call (for the lag histogram).
    func takeLatencySamples() -> [String: [Duration]] { core.modify { $0.takeLatencySamples() } }

    /// Runs `body` on the core (tests that plant state).
    func withCore<T>(_ body: (inout NodeCore) -> T) -> T { core.modify(body) }

    // MARK: - Internals

    /// Runs the event that starts request `r` and waits for its first outcome.
    func request(_ r: RequestID, _ body: (inout NodeCore, MonotonicInstant, WallTime) -> [NodeAction]) async -> RequestOutcome {
        event(body)
        return await core.wait(r)
    }

    func writeResult(_ outcome: RequestOutcome) throws -> WriteResult {
        guard case .result(.written(let state, let names)) = outcome else { throw unexpected(outcome) }
        return WriteResult(state: state, durability: names.map { .replicated($0) } ?? .local)
    }

    /// The error an outcome other than the one expected carries.
    func unexpected(_ outcome: RequestOutcome) -> SessionError {
        if case .result(.failed(let e)) = outcome { return e }
        return SessionError(.sessionUnavailable, "the request ended unexpectedly (\(outcome)); retry")
    }
}
