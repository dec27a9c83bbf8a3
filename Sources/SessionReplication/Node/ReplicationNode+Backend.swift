import SessionReplicationCore

extension ReplicationNode: SessionBackend {
    /// This node's configured name.
    public var nodeName: String { endpoint.name }

    /// Whether the node serves (`/readyz`): started, not stopping or draining, joined,
    /// and not fenced (a current lease from every live peer; a quorum lease under
    /// `promotion: majority`).
    public var isReady: Bool {
        let t = now
        return isStarted && !isStopped && core.read { $0.isReady(now: t) }
    }

    /// Creates a session with a fresh id (the `SessionBackend` requirement).
    public func createSession(attributes: [String: [UInt8]], maxInactiveInterval: Duration?) async throws -> WriteResult {
        try await createSession(id: nil, attributes: attributes, maxInactiveInterval: maxInactiveInterval)
    }

    /// What this node holds of `id`, without touching it.
    public func lookup(_ id: SessionID) -> SessionLookup {
        core.read { core in
            switch core.copy(of: id) {
            case .owner(let s): return .owned(s)
            case .backup(let s): return .backup(s, owner: core.backupOwner(of: id) ?? "unknown")
            case .tombstone(let stamp): return .ended(stamp)
            case nil: return .unknown
            }
        }
    }

    /// Gives an owned session a new id with the same attributes and idle limit (defence
    /// against fixation), then tombstones the old id on every backup. Throws like
    /// `createSession` and `invalidate`; when the old id's invalidation times out the new
    /// session exists and `sync-timeout` is thrown. The old session's scope is held
    /// throughout, so no change to it is lost between the copy and the end.
    public func rotate(_ id: SessionID) async throws -> WriteResult {
        let r = core.newRequest()
        let first = await request(r) { c, t, w in c.beginScope(r, id, ifMatch: nil, now: t, wall: w) }
        guard case .ready(let state) = first else { throw unexpected(first) }
        let created: WriteResult
        do {
            created = try await createSession(attributes: state.attributes, maxInactiveInterval: state.maxInactiveInterval)
        } catch {
            _ = await request(r) { c, t, w in c.commitScope(r, .abort(SessionError(.badRequest, "rotation failed")), now: t, wall: w) }
            throw error
        }
        _ = try writeResult(await request(r) { c, t, w in c.commitScope(r, .invalidate(.rotated), now: t, wall: w) })
        return created
    }

    /// Invalidates `id` when this node owns it; a no-op when it holds nothing, only a
    /// tombstone, or only a backup.
    public func invalidateIfOwned(_ id: SessionID) async throws {
        guard case .owned = lookup(id) else { return }
        do {
            try await invalidate(id)
        } catch let error as SessionError where error.code == .sessionNotFound {
            return
        }
    }

    /// The core's own status, with what the public one leaves out (failovers in
    /// progress, control messages queued): for `drs bench`.
    package func coreStatus() -> NodeCoreStatus {
        let t = now
        return core.read { $0.status(now: t) }
    }

    /// The core's own counters: for `drs bench`.
    package func coreCounters() -> NodeCoreCounters { core.read { $0.nodeCounters } }

    /// This node's status.
    public func status() -> NodeStatus {
        let t = now
        let s = core.read { $0.status(now: t) }
        let leaseMs = s.leaseRemaining.map { Int($0.millisecondsClamped) } ?? 0
        let state = isStopped ? "leaving" : s.state
        return NodeStatus(name: endpoint.name, id: nodeID.description, state: state, leaseRemainingMs: leaseMs,
                          primaries: s.primaries, backups: s.backups, underReplicated: s.underReplicated,
                          queues: s.queues, lagMsP99: s.lagMsP99, stateTransferPending: s.stateTransferPending,
                          stateTransferDone: s.stateTransferDone)
    }
}
