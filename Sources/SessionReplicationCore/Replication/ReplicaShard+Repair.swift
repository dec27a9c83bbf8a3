/// Anti-entropy (docs/design.md (Replication)): every `repairInterval` an owner sends each backup
/// digests of the sessions that backup should hold, 1,024 buckets per lane, each the XOR
/// of hashes of `(id, epoch, version)`. The backup answers with the buckets that differ
/// and what it holds there; the owner pushes its last replicated state of what is
/// missing or stale (never unflushed time-based or manual changes), the invalidation of
/// what ended, and releases copies the backup should not hold.
extension ReplicaShard {
    /// The bucket of `id` among the sessions of one lane of an owner with `lanes` lanes.
    package static func digestBucket(_ id: SessionID, lanes: Int) -> Int {
        Int((id.stableHash / UInt64(max(1, lanes))) % UInt64(DigestRequest.bucketCount))
    }

    /// The hash of one copy: equal for equal `(id, epoch, version)` on every node.
    package static func digestHash(_ id: SessionID, _ stamp: Stamp) -> UInt64 {
        mix64(id.high ^ mix64(id.low ^ mix64(stamp.epoch.counter ^ mix64(stamp.epoch.owner.start ^ mix64(stamp.epoch.owner.nonce ^ mix64(stamp.version))))))
    }

    /// The stamp the backups of an owned session should hold: the last version sent
    /// (`nil` before the first send).
    func replicatedStamp(_ o: Owned) -> Stamp? {
        o.sentVersion == 0 ? nil : Stamp(epoch: o.state.stamp.epoch, version: o.sentVersion)
    }

    /// Digest requests for every backup whose stream is settled (everything sent and
    /// receipted, so the backup has applied all of it when the digest arrives), one per
    /// peer for this lane.
    mutating func digestRequests() -> [(peer: String, request: DigestRequest)] {
        let settled = streams.filter { name, s in
            !departed.contains(name) && !unreachable.contains(name) && s.unsent == 0 && s.receiptedThrough + 1 == s.nextSequence
        }.keys
        // Members never sent anything may still hold stale copies from this owner.
        let peers = Set(settled).union(liveCandidates.filter { streams[$0] == nil && heardAlive.contains($0) && !unreachable.contains($0) })
        guard !peers.isEmpty else { return [] }
        let lanes = max(1, settings.lanes)
        digestRound += 1
        counters.digestRounds += peers.count
        // Kept up to date as sessions change (`SessionTable`): no walk over the sessions.
        return peers.sorted().map { p in
            (p, DigestRequest(round: digestRound, lanes: UInt16(lanes), lane: settings.lane, buckets: owned.digests[p] ?? SessionTable<Owned>.zeros))
        }
    }

    /// The digests `digestRequests` sends, computed by walking every owned session: what
    /// the kept digests must equal (checked by the tests and the simulator).
    package func ownerDigestsByWalk(for peer: String) -> [UInt64] {
        let lanes = max(1, settings.lanes)
        var buckets = SessionTable<Owned>.zeros
        for (id, o) in owned where o.state.replicaSet.contains(peer) {
            guard let stamp = replicatedStamp(o) else { continue }
            buckets[Self.digestBucket(id, lanes: lanes)] ^= Self.digestHash(id, stamp)
        }
        return buckets
    }

    /// The kept owner-side digests for `peer` (zeros when no session names it).
    package func ownerDigests(for peer: String) -> [UInt64] { owned.digests[peer] ?? SessionTable<Owned>.zeros }

    /// Backup side, kept up to date: the digests of this shard's copies owned by `owner`
    /// (equal to `addDigests` for this shard's own lane when the owner runs as many
    /// lanes as this node).
    package func backupDigests(of owner: String) -> [UInt64] { backups.digests[owner] ?? SessionTable<Backup>.zeros }

    /// Backup side: XORs into `digests` the hashes of this shard's copies owned by
    /// `owner` that fall in the owner's `lane` (of `lanes`).
    package func addDigests(owner: String, lanes: Int, lane: Int, into digests: inout [UInt64]) {
        let n = UInt64(max(1, lanes))
        for (id, b) in backups where b.owner == owner && Int(id.stableHash % n) == lane {
            digests[Self.digestBucket(id, lanes: lanes)] ^= Self.digestHash(id, b.state.stamp)
        }
    }

    /// Backup side: this shard's copies owned by `owner` in the owner's `lane` and one
    /// of `buckets`.
    package func heldEntries(owner: String, lanes: Int, lane: Int, buckets: Set<Int>) -> [DigestReply.Entry] {
        let n = UInt64(max(1, lanes))
        var out: [DigestReply.Entry] = []
        for (id, b) in backups where b.owner == owner && Int(id.stableHash % n) == lane && buckets.contains(Self.digestBucket(id, lanes: lanes)) {
            out.append(.init(id: id, stamp: b.state.stamp))
        }
        return out.sorted { $0.id < $1.id }
    }

    /// Owner side: a backup's answer. For each session in the differing buckets whose
    /// replica set names the backup: the whole session is queued to it when its copy is
    /// missing or differs (a session with unflushed changes is marked to go whole with
    /// its next flush instead); ended sessions it still holds get their invalidation.
    /// Returns the copies the backup should drop (copies at this owner's current epoch
    /// of sessions whose replica set does not name the backup).
    package mutating func onDigestReply(from peer: String, _ reply: DigestReply, now: MonotonicInstant) -> [DigestReply.Entry] {
        let lanes = max(1, settings.lanes)
        let buckets = Set(reply.buckets.map(Int.init))
        var theirs: [SessionID: Stamp] = [:]
        for e in reply.held { theirs[e.id] = e.stamp }
        counters.digestMismatches += buckets.count
        // The differing buckets' sessions first, then in id order (sorting every owned
        // session for a few buckets cost a node with a million sessions a stall).
        let inBuckets = owned.keys.filter { buckets.contains(Self.digestBucket($0, lanes: lanes)) }.sorted()
        for id in inBuckets {
            guard let o = owned[id], o.state.replicaSet.contains(peer), let stamp = replicatedStamp(o) else { continue }
            let held = theirs.removeValue(forKey: id)
            guard held != stamp else { continue }
            if o.sentVersion < o.state.stamp.version || !o.pending.isEmpty {
                owned[id]!.needsFull = true
                continue
            }
            _ = enqueue(MessageCodec.encode(.full(replicable(o.state))), to: peer, session: id, mustDeliver: false)
            counters.fullStatesSent += 1
            counters.repairsSent += 1
        }
        var release: [DigestReply.Entry] = []
        for (id, stamp) in theirs.sorted(by: { $0.key < $1.key }) {
            if let t = tombstones[id], t.stamp >= stamp {
                let message = MessageCodec.encode(.invalidate(Invalidation(id: id, stamp: t.stamp, reason: .invalidated)))
                _ = enqueue(message, to: peer, session: id, mustDeliver: true)
                counters.repairsSent += 1
            } else if let o = owned[id], !o.state.replicaSet.contains(peer), stamp.epoch == o.state.stamp.epoch {
                // Only copies of this owner's own epoch that it placed elsewhere (a
                // displaced backup). A copy from an earlier epoch (the copy an old owner
                // kept after handing the session over) stays: should this owner die before
                // its own copies reach every holder, that copy is what failover promotes.
                // Nor a copy naming this node as owner of a session it does not own: it
                // may be the only one left.
                release.append(.init(id: id, stamp: stamp))
            }
        }
        return release
    }

    /// Backup side: drops the listed copies while they still name `owner` as their owner
    /// and are not newer than the stamp reported; returns how many were dropped.
    @discardableResult
    package mutating func release(_ entries: [DigestReply.Entry], from owner: String) -> Int {
        var dropped = 0
        for e in entries {
            guard let b = backups[e.id], b.owner == owner, b.state.stamp <= e.stamp else { continue }
            backups[e.id] = nil
            dropped += 1
        }
        counters.released += dropped
        return dropped
    }
}

extension ReplicaShard {
    /// Where the kept digests differ from a walk over every session (owner side, for
    /// each peer named; backup side, for each owner held): empty when they agree. For the
    /// tests and the simulator's judge; it walks every session.
    package func keptDigestMismatches() -> [String] {
        var out: [String] = []
        let lanes = max(1, settings.lanes), lane = Int(settings.lane)
        var peers = Set(owned.digests.keys)
        for (_, o) in owned { peers.formUnion(o.state.replicaSet) }
        for p in peers.sorted() where ownerDigests(for: p) != ownerDigestsByWalk(for: p) {
            out.append("lane \(lane): kept owner digests for \(p) differ from a walk")
        }
        var owners = Set(backups.digests.keys)
        for (_, b) in backups { owners.insert(b.owner) }
        for owner in owners.sorted() {
            var walked = SessionTable<Owned>.zeros
            addDigests(owner: owner, lanes: lanes, lane: lane, into: &walked)
            if backupDigests(of: owner) != walked { out.append("lane \(lane): kept backup digests of \(owner) differ from a walk") }
        }
        return out
    }
}
