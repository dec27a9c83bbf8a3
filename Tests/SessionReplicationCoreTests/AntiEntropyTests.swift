import Testing
@testable import SessionReplicationCore
import SessionReplicationTestKit

/// Anti-entropy digests between an owner shard and a backup shard, with a manual clock.
struct AntiEntropyTests {
    func shard(_ name: String, id: UInt64, candidates: [String], repair: Duration = .seconds(30)) -> ReplicaShard {
        var policy = ReplicationPolicy()
        policy.replicas = .count(1)
        policy.repairInterval = repair
        var s = ReplicaShard(settings: ShardSettings(selfName: name, selfID: NodeID(id), policy: policy, sessions: SessionPolicy(),
                                                     backupCandidates: candidates))
        for c in candidates { s.memberReturned(c) }
        return s
    }

    /// Sends everything queued from `owner` to `backup` (applying it unless `lose`) and
    /// receipts it, as a live connection would.
    func exchange(_ owner: inout ReplicaShard, _ backup: inout ReplicaShard, now: MonotonicInstant, lose: Bool = false) throws {
        var through: UInt64 = 0
        for batch in owner.takeBatches(for: "n2", now: now, datagram: false) {
            for (i, bytes) in batch.messages.enumerated() {
                if !lose { _ = backup.apply(try MessageCodec.decode(bytes), from: "n1", now: now) }
                through = batch.firstSequence + UInt64(i)
            }
        }
        if through > 0 { _ = owner.onReceipt(from: "n2", Receipt(lane: 0, through: through), now: now, datagram: false) }
    }

    /// One anti-entropy round: the owner's digests, the backup's answer, the owner's
    /// pushes and releases. Returns how many buckets differed.
    func round(_ owner: inout ReplicaShard, _ backup: inout ReplicaShard, clock: inout ManualClock, repair: Duration = .seconds(30)) throws -> Int {
        _ = owner.tick(now: clock.now, wall: clock.wall, datagram: false) // schedules the first round
        clock.advance(by: repair)
        let out = owner.tick(now: clock.now, wall: clock.wall, datagram: false)
        guard let request = out.digests.first(where: { $0.peer == "n2" })?.request else { return -1 }
        let coded = try MessageCodec.decode(MessageCodec.encode(.digest(request)))
        guard case .digest(let d) = coded else { return -1 }
        var mine = [UInt64](repeating: 0, count: DigestRequest.bucketCount)
        backup.addDigests(owner: "n1", lanes: Int(d.lanes), lane: Int(d.lane), into: &mine)
        let differing = (0..<DigestRequest.bucketCount).filter { mine[$0] != d.buckets[$0] }
        guard !differing.isEmpty else { return 0 }
        let held = backup.heldEntries(owner: "n1", lanes: Int(d.lanes), lane: Int(d.lane), buckets: Set(differing))
        let reply = DigestReply(round: d.round, lane: d.lane, buckets: differing.map { UInt16($0) }, held: held)
        let release = owner.onDigestReply(from: "n2", reply, now: clock.now)
        backup.release(release, from: "n1")
        try exchange(&owner, &backup, now: clock.now)
        return differing.count
    }

    @Test func aLostChangeIsFoundByTheDigestsAndPushedWhole() throws {
        var clock = ManualClock()
        var n1 = shard("n1", id: 1, candidates: ["n2"])
        var n2 = shard("n2", id: 2, candidates: ["n1"])
        var ids: [SessionID] = []
        for i in 0..<50 {
            let id = SessionID(high: 10, low: UInt64(i))
            _ = try n1.create(id: id, attributes: ["v": [0]], maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: i)
            ids.append(id)
        }
        try exchange(&n1, &n2, now: clock.now)
        #expect(try round(&n1, &n2, clock: &clock) == 0, "in sync: every bucket matches")
        // A change receipted but never applied (a bug, a lost apply): only digests notice.
        var change = ChangeSet()
        change.updated["v"] = [7]
        _ = try n1.commit(ids[3], changes: change, maxInactiveInterval: nil, now: clock.now, wall: clock.wall)
        try exchange(&n1, &n2, now: clock.now, lose: true)
        #expect(n2.copy(of: ids[3])?.backupAttributes?["v"] == [0])
        #expect(try round(&n1, &n2, clock: &clock) == 1)
        #expect(n2.copy(of: ids[3])?.backupAttributes?["v"] == [7], "the whole session was pushed")
        #expect(try round(&n1, &n2, clock: &clock) == 0, "and the next round finds nothing")
        #expect(n1.counters.repairsSent >= 1)
    }

    @Test func aMissedInvalidationIsResentAndAStrayCopyOfANotOwnedSessionIsKept() throws {
        var clock = ManualClock()
        var n1 = shard("n1", id: 1, candidates: ["n2"])
        var n2 = shard("n2", id: 2, candidates: ["n1"])
        let kept = SessionID(high: 1, low: 1), ended = SessionID(high: 1, low: 2)
        for (i, id) in [kept, ended].enumerated() {
            _ = try n1.create(id: id, attributes: ["v": [1]], maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: i)
        }
        try exchange(&n1, &n2, now: clock.now)
        // A copy claiming n1 as owner of a session n1 does not own (a handover whose
        // taker never adopted it): it may be the only copy, so it is never released.
        let stray = SessionState(id: SessionID(high: 1, low: 3), stamp: Stamp(epoch: Epoch(counter: 1, owner: NodeID(1)), version: 1),
                                 attributes: [:], createdAt: clock.wall, lastAccessedAt: clock.wall,
                                 maxInactiveInterval: .seconds(60), replicaSet: ["n2"])
        #expect(n2.apply(.full(stray), from: "n1", now: clock.now) == .applied)
        // The invalidation of `ended` is lost.
        _ = try n1.invalidate(ended, reason: .invalidated, now: clock.now, wait: false)
        try exchange(&n1, &n2, now: clock.now, lose: true)
        #expect(n2.copy(of: ended)?.backupAttributes != nil)
        #expect(try round(&n1, &n2, clock: &clock) >= 1)
        #expect(n2.copy(of: stray.id)?.backupAttributes != nil, "kept")
        guard case .tombstone? = n2.copy(of: ended) else { Issue.record("the invalidation was not resent"); return }
        #expect(n2.copy(of: kept)?.backupAttributes?["v"] == [1], "what matched is untouched")
    }

    @Test func aCopyOfAnOwnedSessionPlacedElsewhereIsReleased() throws {
        let clock = ManualClock()
        var n1 = shard("n1", id: 1, candidates: ["n2"])
        _ = n1.memberDeparted("n2", now: clock.now)
        let id = SessionID(high: 5, low: 1)
        let created = try n1.create(id: id, attributes: [:], maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: 0)
        #expect(created.state?.replicaSet == [])
        let bucket = ReplicaShard.digestBucket(id, lanes: 1)
        let stale = Stamp(epoch: Epoch(counter: 1, owner: NodeID(1)), version: 1)
        let reply = DigestReply(round: 1, lane: 0, buckets: [UInt16(bucket)], held: [.init(id: id, stamp: stale)])
        let release = n1.onDigestReply(from: "n2", reply, now: clock.now)
        #expect(release == [.init(id: id, stamp: stale)])
        var n2 = shard("n2", id: 2, candidates: ["n1"])
        var copy = created.state!
        copy.replicaSet = ["n2"]
        #expect(n2.apply(.full(copy), from: "n1", now: clock.now) == .applied)
        #expect(n2.release(release, from: "n3") == 0, "only the owner the copy names can release it")
        #expect(n2.release(release, from: "n1") == 1)
        #expect(n2.copy(of: id) == nil)
    }

    @Test func unflushedTimeBasedChangesNeverLeakThroughRepair() throws {
        var clock = ManualClock()
        var policy = ReplicationPolicy()
        policy.replicas = .count(1)
        policy.writeFrequency = .timeBased
        policy.writeInterval = .seconds(3600)
        var n1 = ReplicaShard(settings: ShardSettings(selfName: "n1", selfID: NodeID(1), policy: policy, sessions: SessionPolicy(),
                                                      backupCandidates: ["n2"]))
        n1.memberReturned("n2")
        var n2 = shard("n2", id: 2, candidates: ["n1"])
        let id = SessionID(high: 2, low: 2)
        _ = try n1.create(id: id, attributes: ["v": [1]], maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: 0)
        try exchange(&n1, &n2, now: clock.now)
        var change = ChangeSet()
        change.updated["v"] = [2]
        _ = try n1.commit(id, changes: change, maxInactiveInterval: nil, now: clock.now, wall: clock.wall)
        #expect(try round(&n1, &n2, clock: &clock) == 0, "the backup holds the last replicated state: nothing differs")
        #expect(n2.copy(of: id)?.backupAttributes?["v"] == [1])
    }

    @Test func digestMessagesRoundTripAndRejectBadCounts() throws {
        let d = DigestRequest(round: 3, lanes: 2, lane: 1, buckets: (0..<1024).map { UInt64($0) &* 0x9E37 })
        #expect(try MessageCodec.decode(MessageCodec.encode(.digest(d))) == .digest(d))
        let stamp = Stamp(epoch: Epoch(counter: 1, owner: NodeID(2)), version: 3)
        let r = DigestReply(round: 3, lane: 1, buckets: [0, 1023], held: [.init(id: SessionID(high: 1, low: 2), stamp: stamp)])
        #expect(try MessageCodec.decode(MessageCodec.encode(.digestReply(r))) == .digestReply(r))
        let rel = ReleaseRequest(entries: r.held)
        #expect(try MessageCodec.decode(MessageCodec.encode(.release(rel))) == .release(rel))
        let short = DigestRequest(round: 3, lanes: 2, lane: 1, buckets: [1, 2])
        #expect(throws: DecodeError.self) { try MessageCodec.decode(MessageCodec.encode(.digest(short))) }
        let badLane = DigestRequest(round: 3, lanes: 2, lane: 2, buckets: d.buckets)
        #expect(throws: DecodeError.self) { try MessageCodec.decode(MessageCodec.encode(.digest(badLane))) }
        let badBucket = DigestReply(round: 3, lane: 1, buckets: [1024], held: [])
        #expect(throws: DecodeError.self) { try MessageCodec.decode(MessageCodec.encode(.digestReply(badBucket))) }
    }

    /// The digests a shard keeps as sessions are created, changed, sent, lost, ended and
    /// repaired equal a walk over its sessions after every step, on both sides, and a
    /// round between two shards in sync finds nothing.
    @Test func keptDigestsEqualAWalkThroughCreatesChangesLossesEndsAndRepairs() throws {
        var clock = ManualClock()
        var n1 = shard("n1", id: 1, candidates: ["n2"])
        var n2 = shard("n2", id: 2, candidates: ["n1"])
        var random = SeededGenerator(seed: 17)
        var ids: [SessionID] = []
        var rounds = 0, changes = 0
        for step in 0..<400 {
            switch random.next() % 6 {
            case 0, 1:
                let id = SessionID(high: 3, low: UInt64(step))
                _ = try n1.create(id: id, attributes: ["v": [0]], maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: ids.count)
                ids.append(id)
            case 2 where !ids.isEmpty:
                var change = ChangeSet()
                change.updated["a\(step)"] = [UInt8(truncatingIfNeeded: step)]
                _ = try n1.commit(ids[Int(random.next() % UInt64(ids.count))], changes: change, maxInactiveInterval: nil, now: clock.now, wall: clock.wall)
                changes += 1
            case 3 where !ids.isEmpty:
                let id = ids.remove(at: Int(random.next() % UInt64(ids.count)))
                _ = try? n1.invalidate(id, reason: .invalidated, now: clock.now, wait: false)
            case 4:
                try exchange(&n1, &n2, now: clock.now, lose: random.next() % 4 == 0)
            default:
                try exchange(&n1, &n2, now: clock.now)
                if try round(&n1, &n2, clock: &clock) >= 0 { rounds += 1 }
            }
            #expect(n1.keptDigestMismatches().isEmpty, "step \(step): \(n1.keptDigestMismatches())")
            #expect(n2.keptDigestMismatches().isEmpty, "step \(step): \(n2.keptDigestMismatches())")
        }
        try exchange(&n1, &n2, now: clock.now)
        _ = try round(&n1, &n2, clock: &clock)
        #expect(try round(&n1, &n2, clock: &clock) == 0, "repaired: every bucket matches")
        #expect(rounds > 10 && changes > 10 && !ids.isEmpty)
        #expect(n1.ownerDigests(for: "n2") != SessionTable<ReplicaShard.Owned>.zeros, "the kept digests hold the sessions")
    }
}

extension HeldCopy {
    var backupAttributes: [String: [UInt8]]? { if case .backup(let s) = self { return s.attributes } else { return nil } }
}
