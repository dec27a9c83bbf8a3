import SessionReplicationCore

extension ReplicationNode: SessionBackend {
    /// This node's configured name.
    public var nodeName: String { endpoint.name }

    /// Whether the node was started and is not stopping.
    public var isReady: Bool { isStarted && !isStopped && !isDraining && !isDeclaredDead }

    /// Creates a session with a fresh id (the `SessionBackend` requirement).
    public func createSession(attributes: [String: [UInt8]], maxInactiveInterval: Duration?) async throws -> WriteResult {
        try await createSession(id: nil, attributes: attributes, maxInactiveInterval: maxInactiveInterval)
    }

    /// What this node holds of `id`, without touching it.
    public func lookup(_ id: SessionID) -> SessionLookup {
        let box = shard(for: id)
        return box.withCore { core in
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
    /// session exists and `sync-timeout` is thrown.
    public func rotate(_ id: SessionID) async throws -> WriteResult {
        try checkRunning()
        let box = shard(for: id)
        await box.acquireScope(id)
        defer { box.releaseScope(id) }
        try await awaitServing(id)
        guard let state = box.withCore({ $0.access(id, wall: wall) }) else { throw notOwnedHere(id) }
        let created = try await createSession(attributes: state.attributes, maxInactiveInterval: state.maxInactiveInterval)
        let outcome = try box.withCore { try $0.invalidate(id, reason: .rotated, now: now) }
        flushPending(box)
        _ = try await finish(outcome, box: box, invalidation: true)
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

    /// Send-to-receipt samples per peer since the last call (for the lag histogram).
    func takeLatencySamples() -> [String: [Duration]] {
        var out: [String: [Duration]] = [:]
        for shard in shards {
            for (peer, samples) in shard.withCore({ $0.takeLatencySamples() }) { out[peer, default: []] += samples }
        }
        return out
    }

    /// This node's status.
    public func status() -> NodeStatus {
        var under = 0, transferPending = 0
        var lag: [String: Double] = [:]
        for shard in shards {
            shard.withCore { core in
                under += core.underReplicatedCount
                transferPending += core.stateTransferPending
                for (peer, stream) in core.streams {
                    if let p99 = stream.receiptLatencyP99 {
                        lag[peer] = max(lag[peer] ?? 0, Double(p99.nanosecondsClamped) / 1e6)
                    }
                }
            }
        }
        let c = counters
        let live = Array(livePeers.withLockedValue { $0 }).sorted()
        let t = now
        let remaining = leases.withLockedValue { $0.remaining(among: live, now: t) }
        let leaseMs = remaining.map { Int($0.millisecondsClamped) } ?? 0
        let fenced = isDeclaredDead || (remaining.map { $0 <= .zero } ?? false) || (requiresQuorum && !hasQuorum())
        return NodeStatus(name: endpoint.name, id: nodeID.description,
                          state: isStopped || isDraining ? "leaving" : fenced ? "fenced" : membership.withLockedValue({ $0.joined }) ? "serving" : "joining",
                          leaseRemainingMs: leaseMs, primaries: c.primaries, backups: c.backups, underReplicated: under,
                          queues: c.queueDepth, lagMsP99: lag, stateTransferPending: transferPending, stateTransferDone: c.replication.stateTransfers)
    }
}
