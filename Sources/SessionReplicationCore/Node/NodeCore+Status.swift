/// What a node reports about itself (`/cluster/status`, metrics).
package struct NodeCoreStatus: Hashable, Sendable {
    /// `joining`, `serving`, `fenced` or `leaving`.
    package var state: String
    /// The shortest remaining lease among live peers (`nil` without live peers).
    package var leaseRemaining: Duration?
    /// Sessions owned, backup copies held, owned sessions short of a reachable backup.
    package var primaries = 0, backups = 0, underReplicated = 0
    /// Messages queued and not yet receipted, by peer.
    package var queues: [String: Int] = [:]
    /// p99 of send-to-receipt time by peer, in milliseconds.
    package var lagMsP99: [String: Double] = [:]
    /// Owned sessions still to be sent to a joining member, and those sent.
    package var stateTransferPending = 0, stateTransferDone = 0
    /// Failovers in progress here: takeovers waiting for promises, and promotions waiting
    /// for the old owner's leases to run out (or for their slice of a tick).
    package var takeoversPending = 0, promotionsPending = 0
    /// Control messages (prepares, promises, handovers) queued for each peer and not yet
    /// handed to the transport (they wait for a connection).
    package var controlQueued: [String: Int] = [:]
}

extension NodeCore {
    /// The node's status at `now`. Fenced: declared dead, a lease run out, or (under
    /// `promotion: majority`) no quorum lease.
    package func status(now: MonotonicInstant) -> NodeCoreStatus {
        let remaining = leases.remaining(among: livePeers.sorted(), now: now)
        let fenced = declaredDead || (remaining.map { $0 <= .zero } ?? false) || (settings.majority && !hasQuorum(now: now))
        let state = stopped || draining ? "leaving" : fenced ? "fenced" : membership.joined ? "serving" : "joining"
        var s = NodeCoreStatus(state: state, leaseRemaining: remaining)
        for (name, peer) in peers where !peer.control.isEmpty { s.controlQueued[name] = peer.control.count }
        for lane in lanes {
            s.primaries += lane.ownedCount
            s.backups += lane.backupCount
            s.underReplicated += lane.underReplicatedCount
            s.stateTransferPending += lane.stateTransferPending
            s.stateTransferDone += lane.counters.stateTransfers
            s.takeoversPending += lane.takeoversPending
            s.promotionsPending += lane.promotionsPending
            for (peer, stream) in lane.streams {
                s.queues[peer, default: 0] += stream.entries.count
                if let p99 = stream.receiptLatencyP99 {
                    s.lagMsP99[peer] = max(s.lagMsP99[peer] ?? 0, Double(p99.nanosecondsClamped) / 1e6)
                }
            }
        }
        return s
    }

    /// Replication counters summed over the lanes.
    package var replicationCounters: ReplicationCounters {
        var c = ReplicationCounters()
        for lane in lanes { c.add(lane.counters) }
        return c
    }

    /// Send-to-receipt samples per peer since the last call (for the lag histogram).
    package mutating func takeLatencySamples() -> [String: [Duration]] {
        var out: [String: [Duration]] = [:]
        for l in lanes.indices {
            for (peer, samples) in lanes[l].takeLatencySamples() { out[peer, default: []] += samples }
        }
        return out
    }

    /// Touches nothing: the owned session `id`, for inspection.
    package func ownedState(_ id: SessionID) -> SessionState? {
        if case .owner(let s)? = copy(of: id) { return s }
        return nil
    }
}
