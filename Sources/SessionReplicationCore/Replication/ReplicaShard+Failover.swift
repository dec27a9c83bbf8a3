/// Failover: what a shard does when membership declares a member dead (or it leaves).
extension ReplicaShard {
    /// What `memberDeparted` did.
    public struct FailoverOutcome: Sendable {
        /// Backup copies this node promoted to owned sessions (new epoch, new backups).
        public var promoted: [SessionID] = []
        /// Owned sessions that got a new backup in place of the departed one.
        public var rereplicated: [SessionID] = []
        /// Waits that can no longer complete (their only remaining target departed).
        public var completed: [(WaiterID, WaitResult)] = []
    }

    /// Backup candidates not departed, in configuration order.
    var liveCandidates: [String] { settings.backupCandidates.filter { !departed.contains($0) } }

    /// The replica set for `id`: the live members of `keeping` first, then the first live
    /// eligible members in rendezvous order, up to `replicas`. Never this node.
    func placement(for id: SessionID, keeping: [String]) -> [String] {
        let live = liveCandidates
        let wanted = settings.policy.replicas.resolve(eligible: live.count)
        var set = keeping.filter { $0 != settings.selfName && !departed.contains($0) && live.contains($0) }
        if set.count > wanted { set = Array(set.prefix(wanted)) }
        guard set.count < wanted else { return set }
        let others = live.filter { !set.contains($0) }
        set += Placement.choose(id, count: wanted - set.count, among: others)
        return set
    }

    /// `member` was declared dead or left. Its streams and waits end; owned sessions it
    /// backed get a new backup (sent the whole session); backup copies it owned are
    /// promoted here when this node is the first live member of their replica set (a
    /// new epoch `(counter + 1, this node)`, a new replica set, replicated whole at once).
    /// Copies whose first live member is another node wait for that node's full state.
    public mutating func memberDeparted(_ member: String, now: MonotonicInstant) -> FailoverOutcome {
        var out = FailoverOutcome()
        guard member != settings.selfName else { return out }
        departed.insert(member)
        streams[member] = nil
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
        for id in owned.keys.sorted() where owned[id]!.state.replicaSet.contains(member) {
            let set = placement(for: id, keeping: owned[id]!.state.replicaSet)
            owned[id]!.state.replicaSet = set
            owned[id]!.needsFull = true
            _ = send(id, now: now)
            counters.rereplications += 1
            out.rereplicated.append(id)
        }
        for id in backups.keys.sorted() where backups[id]!.owner == member {
            // Only nodes that may own take over (a `server` node keeps its copy, which is
            // evicted after maxInactiveInterval + backupGrace if nobody claims it).
            let holders = backups[id]!.state.replicaSet.filter { !departed.contains($0) }
            guard settings.policy.role.owns, holders.first == settings.selfName || holders.isEmpty else {
                if let next = holders.first { backups[id]!.owner = next }
                continue
            }
            promote(id, now: now)
            out.promoted.append(id)
        }
        return out
    }

    /// `member` is alive (joined, or a new process under its name): placement may name
    /// it again, and owned sessions short of backups are queued to be sent to it whole,
    /// a slice per tick (`stateTransferPending` shows progress).
    public mutating func memberReturned(_ member: String) {
        departed.remove(member)
        guard settings.backupCandidates.contains(member) else { return }
        let wanted = settings.policy.replicas.resolve(eligible: liveCandidates.count)
        let short = owned.keys.filter { id in
            let set = owned[id]!.state.replicaSet
            return set.count < wanted && !set.contains(member)
        }
        guard !short.isEmpty else { return }
        refill = Array(refill[refillIndex...]) + short.sorted()
        refillIndex = 0
    }

    /// Owned sessions still queued for a joining member.
    public var stateTransferPending: Int { refill.count - refillIndex }

    /// Sessions sent per tick when filling backups for a joined member. Default 1,000.
    static var refillSlice: Int { 1_000 }

    /// Gives up to `budget` queued sessions their missing backups.
    mutating func runRefill(now: MonotonicInstant, budget: Int) {
        var done = 0
        while refillIndex < refill.count, done < budget {
            let id = refill[refillIndex]
            refillIndex += 1
            guard let entry = owned[id] else { continue }
            let set = placement(for: id, keeping: entry.state.replicaSet)
            guard set != entry.state.replicaSet else { continue }
            owned[id]!.state.replicaSet = set
            owned[id]!.needsFull = true
            _ = send(id, now: now)
            counters.stateTransfers += 1
            done += 1
        }
        if refillIndex == refill.count, !refill.isEmpty {
            refill = []
            refillIndex = 0
        }
    }

    /// Makes the backup copy of `id` an owned session under a new epoch and replicates it.
    mutating func promote(_ id: SessionID, now: MonotonicInstant) {
        guard let b = backups.removeValue(forKey: id) else { return }
        var state = b.state
        state.stamp = Stamp(epoch: Epoch(counter: state.stamp.epoch.counter + 1, owner: settings.selfID), version: state.stamp.version)
        state.replicaSet = placement(for: id, keeping: state.replicaSet)
        owned[id] = Owned(state: state, sentVersion: 0, accessSent: state.lastAccessedAt)
        ownerExpiry.schedule(id, at: state.expiresAt.milliseconds / 1000 + 1)
        counters.promotions += 1
        _ = send(id, now: now)
    }
}
