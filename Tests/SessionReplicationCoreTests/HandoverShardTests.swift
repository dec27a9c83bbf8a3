import Testing
@testable import SessionReplicationCore
import SessionReplicationTestKit

/// Takeover on request and drain handover in `ReplicaShard`, with a manual clock.
struct HandoverShardTests {
    func shard(_ name: String, id: UInt64, candidates: [String], replicas: Int = 1,
               configure: (inout ReplicationPolicy) -> Void = { _ in }) -> ReplicaShard {
        var policy = ReplicationPolicy()
        policy.replicas = .count(replicas)
        configure(&policy)
        return ReplicaShard(settings: ShardSettings(selfName: name, selfID: NodeID(id), policy: policy, sessions: SessionPolicy(),
                                                    backupCandidates: candidates))
    }

    /// Delivers every unsent message from `from` to `to`.
    func deliver(_ from: inout ReplicaShard, _ fromName: String, to: inout ReplicaShard, _ toName: String, now: MonotonicInstant) throws {
        for batch in from.takeBatches(for: toName, now: now, datagram: false) {
            for bytes in batch.messages { _ = to.apply(try MessageCodec.decode(bytes), from: fromName, now: now) }
        }
    }

    @Test func anOwnerHandsItsSessionToTheBackupThatAskedAndBecomesItsBackup() throws {
        var clock = ManualClock()
        var n1 = shard("n1", id: 1, candidates: ["n2", "n3"])
        var n2 = shard("n2", id: 2, candidates: ["n1", "n3"])
        let id = SessionID(high: 5, low: 5)
        let created = try n1.create(id: id, attributes: ["cart": [1, 2]], maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: 0)
        let backupName = try #require(created.state?.replicaSet.first)
        #expect(backupName == "n2" || backupName == "n3")
        // Make n2 the holder regardless of placement: it asks either way.
        if backupName == "n2" { try deliver(&n1, "n1", to: &n2, "n2", now: clock.now) }
        clock.advance(by: .milliseconds(1))
        let answer = n1.answerHandover(id, to: "n2", now: clock.now, mayHandOver: true)
        guard case .transferred(let state) = answer else { Issue.record("expected the whole session, got \(answer)"); return }
        #expect(state.attributes == ["cart": [1, 2]])
        guard case .backup(let kept)? = n1.copy(of: id) else { Issue.record("the giver must keep a backup"); return }
        #expect(kept.stamp == state.stamp)
        #expect(n1.backupOwner(of: id) == "n2")
        #expect(n1.handedAwayRecently(id, now: clock.now, cooldown: .seconds(5)))
        #expect(!n1.handedAwayRecently(id, now: clock.now + .seconds(6), cooldown: .seconds(5)))

        let adopted = n2.adoptHandover(state, from: "n1", giverStays: true, now: clock.now)
        #expect(adopted)
        guard case .owner(let owned)? = n2.copy(of: id) else { Issue.record("not adopted"); return }
        #expect(owned.stamp.epoch == Epoch(counter: 2, owner: NodeID(2)))
        #expect(owned.stamp.version == state.stamp.version)
        if backupName == "n2" {
            #expect(owned.replicaSet == ["n1"], "the asker's place in the replica set goes to the giver, which has the copy")
        } else {
            #expect(owned.replicaSet == ["n3"], "the old replica set is kept so that every old holder gets the new epoch")
        }
        // The new owner's whole state supersedes the giver's copy; old deltas are refused.
        try deliver(&n2, "n2", to: &n1, "n1", now: clock.now)
        if backupName == "n2" {
            guard case .backup(let b)? = n1.copy(of: id) else { Issue.record("giver lost its copy"); return }
            #expect(b.stamp == owned.stamp)
        }
        let again = n2.adoptHandover(state, from: "n1", giverStays: true, now: clock.now)
        #expect(!again, "adopting twice changes nothing")
    }

    @Test func aLostHandoverIsAnsweredAgainToTheSameTakerOnlyUntilItsWordArrives() throws {
        var clock = ManualClock()
        // n2 backs the session, so the taker's whole state comes back to n1.
        var n1 = shard("n1", id: 1, candidates: ["n2"], replicas: 1)
        var n2 = shard("n2", id: 2, candidates: ["n1", "n3"], replicas: 1)
        let id = SessionID(high: 21, low: 21)
        let created = try n1.create(id: id, attributes: ["v": [1]], maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: 0)
        let original = try #require(created.state?.replicaSet)
        guard case .transferred(let first) = n1.answerHandover(id, to: "n2", requesterID: NodeID(2), now: clock.now, mayHandOver: true) else {
            Issue.record("not handed over"); return
        }
        // The answer is lost; n2 asks again. The same process gets the same state, with the
        // replica set as first handed (not the kept copy's, which lists n1 first).
        clock.advance(by: .milliseconds(500))
        guard case .transferred(let again) = n1.answerHandover(id, to: "n2", requesterID: NodeID(2), now: clock.now, mayHandOver: true) else {
            Issue.record("not handed again"); return
        }
        #expect(again == first && again.replicaSet == original)
        #expect(n1.counters.handoversResent == 1)
        // Another process under that name, or a node that may not hand over: told about the copy.
        guard case .backup(_, let owner) = n1.answerHandover(id, to: "n2", requesterID: NodeID(99), now: clock.now, mayHandOver: true) else {
            Issue.record("handed to a new process"); return
        }
        #expect(owner == "n2")
        guard case .backup = n1.answerHandover(id, to: "n2", requesterID: NodeID(2), now: clock.now, mayHandOver: false) else {
            Issue.record("handed although it may not"); return
        }
        guard case .backup = n1.answerHandover(id, to: "n3", requesterID: NodeID(3), now: clock.now, mayHandOver: true) else {
            Issue.record("handed to a node it never handed to"); return
        }
        // n2 adopts (its place in the replica set goes to n1) and its whole state reaches
        // n1: the copy is no longer the one handed over, and nothing is handed again.
        let adopted = n2.adoptHandover(again, from: "n1", giverStays: true, now: clock.now)
        #expect(adopted)
        try deliver(&n2, "n2", to: &n1, "n1", now: clock.now)
        #expect(original == ["n2"])
        guard case .backup(let b)? = n1.copy(of: id) else { Issue.record("n1 lost its copy"); return }
        #expect(b.stamp.epoch.counter == first.stamp.epoch.counter + 1)
        guard case .backup = n1.answerHandover(id, to: "n2", requesterID: NodeID(2), now: clock.now, mayHandOver: true) else {
            Issue.record("handed again after the taker's word arrived"); return
        }
        _ = n1.tick(now: clock.now + .seconds(2), wall: clock.wall, datagram: false)
        #expect(n1.unconfirmedHandoffs.isEmpty, "swept once the copy changed")
    }

    @Test func aHandedStateOlderThanTheCopyHeldHereIsRefused() throws {
        let clock = ManualClock()
        var n1 = shard("n1", id: 1, candidates: ["n2", "n3"], replicas: 1)
        var n2 = shard("n2", id: 2, candidates: ["n1", "n3"], replicas: 1)
        let id = SessionID(high: 22, low: 22)
        _ = try n1.create(id: id, attributes: ["v": [1]], maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: 0)
        let handed = n1.handOff(id, to: "n2", now: clock.now)
        // Meanwhile the session moved on: n2 holds a copy of a later epoch, owned by n3.
        var later = handed
        later.stamp = Stamp(epoch: Epoch(counter: handed.stamp.epoch.counter + 2, owner: NodeID(3)), version: handed.stamp.version + 4)
        later.replicaSet = ["n2"]
        #expect(n2.apply(.full(later), from: "n3", now: clock.now) == .applied)
        let adopted = n2.adoptHandover(handed, from: "n1", giverStays: true, now: clock.now)
        #expect(!adopted)
        #expect(n2.counters.staleHandoversRefused == 1)
        guard case .backup(let b)? = n2.copy(of: id) else { Issue.record("the later copy was replaced"); return }
        #expect(b.stamp == later.stamp)
    }

    @Test func twoAdoptersConfirmingAtOnceLeaveTheLaterEpochOwner() throws {
        let clock = ManualClock()
        var n1 = shard("n1", id: 1, candidates: ["n2", "n3"], replicas: 1)
        var n2 = shard("n2", id: 2, candidates: ["n1", "n3"], replicas: 1)
        let id = SessionID(high: 23, low: 23)
        func handed(counter: UInt64, version: UInt64) -> SessionState {
            SessionState(id: id, stamp: Stamp(epoch: Epoch(counter: counter, owner: NodeID(3)), version: version), attributes: ["v": [UInt8(version)]],
                         createdAt: clock.wall, lastAccessedAt: clock.wall, maxInactiveInterval: .seconds(60), replicaSet: ["n3"])
        }
        // n1 adopts a stale answer (epoch 2) while n2, which adopted the session's later
        // handover (epoch 4), still waits for n1's confirmation.
        let later = n2.adoptHandover(handed(counter: 4, version: 19), from: "n3", giverStays: true, now: clock.now)
        let stale = n1.adoptHandover(handed(counter: 2, version: 11), from: "n3", giverStays: true, now: clock.now)
        #expect(later && stale)
        let ask1 = n1.startConfirming(id, giver: "n3", now: clock.now)
        let ask2 = n2.startConfirming(id, giver: "n3", now: clock.now)
        // Each owns it when the other's confirmation arrives, and says so.
        let answer2 = n2.onPrepare(from: "n1", PrepareRequest(oldOwner: "n3", entries: try #require(ask1["n2"])))
        let answer1 = n1.onPrepare(from: "n2", PrepareRequest(oldOwner: "n3", entries: try #require(ask2["n1"])))
        #expect(answer1.first?.ownedByHolder == true && answer2.first?.ownedByHolder == true)
        n1.onPromise(from: "n2", PromiseReply(oldOwner: "n3", sinceGrantMs: .max, entries: answer2), now: clock.now, lease: .milliseconds(500))
        n2.onPromise(from: "n1", PromiseReply(oldOwner: "n3", sinceGrantMs: .max, entries: answer1), now: clock.now, lease: .milliseconds(500))
        guard case .backup(let kept)? = n1.copy(of: id) else { Issue.record("the earlier epoch did not yield"); return }
        #expect(kept.stamp.version == 19)
        guard case .owner(let owner)? = n2.copy(of: id) else { Issue.record("both yielded: nobody owns the session"); return }
        #expect(owner.stamp.epoch.counter == 5)
        // n1's answer to the next round (a backup now) completes n2's confirmation.
        let again = n1.onPrepare(from: "n2", PrepareRequest(oldOwner: "n3", entries: try #require(ask2["n1"])))
        n2.onPromise(from: "n1", PromiseReply(oldOwner: "n3", sinceGrantMs: .max, entries: again), now: clock.now, lease: .milliseconds(500))
        let stillAsking = n2.owned[id]?.confirming.contains("n1")
        #expect(stillAsking == false)
    }

    @Test func aStaleAdoptionWhoseGiverDiedBeforeTheLaterCopyArrivedIsTakenOverNotServed() throws {
        var clock = ManualClock()
        var n2 = shard("n2", id: 2, candidates: ["n1", "n3"], replicas: 2)
        var n3 = shard("n3", id: 3, candidates: ["n1", "n2"], replicas: 2)
        let id = SessionID(high: 24, low: 24)
        func state(counter: UInt64, version: UInt64, replicaSet: [String]) -> SessionState {
            SessionState(id: id, stamp: Stamp(epoch: Epoch(counter: counter, owner: NodeID(1)), version: version), attributes: ["v": [UInt8(version)]],
                         createdAt: clock.wall, lastAccessedAt: clock.wall, maxInactiveInterval: .seconds(60), replicaSet: replicaSet)
        }
        // n1 owns the session under epoch 4 (n2 backs it); n3 adopts a late answer to an
        // old handover (epoch 2) and asks n1 and n2 to confirm.
        let applied = n2.apply(.full(state(counter: 4, version: 19, replicaSet: ["n2", "n3"])), from: "n1", now: clock.now)
        let adopted = n3.adoptHandover(state(counter: 2, version: 11, replicaSet: ["n3"]), from: "n1", giverStays: true, now: clock.now)
        #expect(applied == .applied && adopted)
        let asks = n3.startConfirming(id, giver: "n1", now: clock.now)
        // n1 is declared dead here before n2's answer, which carries n1's later copy.
        _ = n3.memberDeparted("n1", now: clock.now)
        let answer = n2.onPrepare(from: "n3", PrepareRequest(oldOwner: "n1", entries: try #require(asks["n2"])))
        #expect(answer.first?.owner == "n1" && answer.first?.fresher?.stamp.version == 19)
        n3.onPromise(from: "n2", PromiseReply(oldOwner: "n1", sinceGrantMs: .max, entries: answer), now: clock.now, lease: .milliseconds(500))
        // The adopted state (version 11) is not served: n3 keeps the later copy as n1's
        // backup and takes it over from n1 with a round of its own.
        guard case .backup(let kept)? = n3.copy(of: id) else { Issue.record("the stale adoption is served"); return }
        #expect(kept.stamp.version == 19)
        #expect(n3.staleAdoptionOwners == ["n1"])
        let rounds = n3.takeOverStaleAdoptions(mayPromote: true, now: clock.now, processes: ["n1": NodeID(1)], promoteAfter: ["n1": clock.now])
        #expect(rounds.count == 1 && rounds.first?.owner == "n1" && rounds.first?.process == NodeID(1))
        let prepares = try #require(rounds.first?.outcome.prepares["n2"])
        #expect(prepares.map(\.stamp.version) == [19])
        #expect(n3.staleAdoptionOwners.isEmpty)
        let promise = n2.onPrepare(from: "n3", PrepareRequest(oldOwner: "n1", oldOwnerID: NodeID(1), entries: prepares))
        #expect(n2.backupOwner(of: id) == "n3", "n2's copy now answers to the taker")
        n3.onPromise(from: "n2", PromiseReply(oldOwner: "n1", oldOwnerID: NodeID(1), sinceGrantMs: .max, entries: promise), now: clock.now,
                     lease: .milliseconds(500))
        clock.advance(by: .seconds(1))
        let promoted = n3.tick(now: clock.now, wall: clock.wall, datagram: false).promoted
        #expect(promoted == [id])
        guard case .owner(let owner)? = n3.copy(of: id) else { Issue.record("nobody owns the session"); return }
        #expect(owner.stamp.version == 19 && owner.stamp.epoch.counter == 5)
    }

    @Test func theCooldownHoldsOnlyWhileTheTakerStillOwnsTheSession() throws {
        let clock = ManualClock()
        var n1 = shard("n1", id: 1, candidates: ["n2", "n3"], replicas: 1)
        let id = SessionID(high: 12, low: 12)
        let created = try n1.create(id: id, attributes: [:], maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: 0)
        let backup = try #require(created.state?.replicaSet.first)
        let taker = backup == "n2" ? "n3" : "n2"
        _ = n1.handOff(id, to: taker, now: clock.now)
        #expect(n1.handedAwayRecently(id, now: clock.now, cooldown: .seconds(5)))
        // The taker dies (before or after adopting): the giver lists itself first among
        // the holders of its kept copy, so it takes the session back after asking the
        // other holder for a fresher copy. No session is left without an owner.
        let out = n1.memberDeparted(taker, now: clock.now)
        let entries = try #require(out.prepares[backup])
        n1.onPromise(from: backup, PromiseReply(oldOwner: taker, sinceGrantMs: .max, entries: entries.map { .init(id: $0.id, fresher: nil) }),
                     now: clock.now, lease: .milliseconds(500))
        let promoted = n1.tick(now: clock.now + .seconds(1), wall: clock.wall, datagram: false).promoted
        #expect(promoted == [id])
        guard case .owner? = n1.copy(of: id) else { Issue.record("the giver did not take its session back"); return }
    }

    @Test func theCooldownHoldsWhenTheTakerHandsTheSessionOn() throws {
        let clock = ManualClock()
        var n1 = shard("n1", id: 1, candidates: ["n2", "n3"], replicas: 1)
        let id = SessionID(high: 13, low: 13)
        _ = try n1.create(id: id, attributes: [:], maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: 0)
        let given = n1.handOff(id, to: "n2", now: clock.now)
        #expect(n1.handedAwayRecently(id, now: clock.now, cooldown: .seconds(5)))
        // n2's whole state later names n3 as owner (n2 handed it on): n1 still refers
        // requests (to n3 now) rather than move the session once more.
        var moved = given
        moved.stamp = Stamp(epoch: Epoch(counter: 3, owner: NodeID(3)), version: given.stamp.version)
        moved.replicaSet = ["n1"]
        #expect(n1.apply(.full(moved), from: "n3", now: clock.now) == .applied)
        #expect(n1.backupOwner(of: id) == "n3")
        #expect(n1.handedAwayRecently(id, now: clock.now, cooldown: .seconds(5)), "the session moved on: the cooldown holds")
        #expect(!n1.handedAwayRecently(id, now: clock.now + .seconds(5), cooldown: .seconds(5)))
        // A request referred at 4 s restarts the cooldown: it lasts until 9 s.
        n1.renewCooldown(id, now: clock.now + .seconds(4))
        #expect(n1.handedAwayRecently(id, now: clock.now + .seconds(8), cooldown: .seconds(5)))
        #expect(!n1.handedAwayRecently(id, now: clock.now + .seconds(9), cooldown: .seconds(5)))
        // Nothing to renew for a session never handed away from here.
        let other = SessionID(high: 14, low: 14)
        n1.renewCooldown(other, now: clock.now)
        #expect(!n1.handedAwayRecently(other, now: clock.now, cooldown: .seconds(5)))
    }

    @Test func nonOwnersSayWhatTheyHoldAndAffinityNoneKeepsTheSession() throws {
        let clock = ManualClock()
        var n1 = shard("n1", id: 1, candidates: ["n2"]) { $0.affinity = .none }
        var n2 = shard("n2", id: 2, candidates: ["n1"])
        let id = SessionID(high: 6, low: 6)
        _ = try n1.create(id: id, attributes: [:], maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: 0)
        guard case .kept = n1.answerHandover(id, to: "n3", now: clock.now, mayHandOver: true) else {
            Issue.record("affinity none must keep the session"); return
        }
        guard case .kept = n2.answerHandover(id, to: "n3", now: clock.now, mayHandOver: true) else {
            // n2 holds nothing yet.
            try deliver(&n1, "n1", to: &n2, "n2", now: clock.now)
            guard case .backup(_, let owner) = n2.answerHandover(id, to: "n3", now: clock.now, mayHandOver: true) else {
                Issue.record("a backup names its owner"); return
            }
            #expect(owner == "n1")
            // The owner's name asking (a new process under it): the copy is not handed
            // out; failover of the old process decides who owns it.
            guard case .backup = n2.answerHandover(id, to: "n1", now: clock.now, mayHandOver: false) else {
                Issue.record("a copy must not go to a process that may not be its owner"); return
            }
            guard case .none = n2.answerHandover(SessionID(high: 1, low: 1), to: "n3", now: clock.now, mayHandOver: true) else {
                Issue.record("nothing held"); return
            }
            _ = try n1.invalidate(id, reason: .invalidated, now: clock.now)
            guard case .ended = n1.answerHandover(id, to: "n3", now: clock.now, mayHandOver: true) else {
                Issue.record("a tombstone answers ended"); return
            }
            return
        }
        Issue.record("a node holding nothing must not claim the session")
    }

    @Test func aFencedOwnerKeepsItsSession() throws {
        let clock = ManualClock()
        var n1 = shard("n1", id: 1, candidates: ["n2"])
        let id = SessionID(high: 8, low: 8)
        _ = try n1.create(id: id, attributes: [:], maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: 0)
        guard case .kept = n1.answerHandover(id, to: "n2", now: clock.now, mayHandOver: false) else {
            Issue.record("an owner that may not serve must not hand over"); return
        }
        guard case .owner? = n1.copy(of: id) else { Issue.record("ownership lost"); return }
    }

    @Test func aTakeoverByPrepareStopsWhenAHolderOwnsTheSession() throws {
        let clock = ManualClock()
        // n1 owned S with two backups; the second took S over on request; n1 dies; the
        // first (first live holder) prepares and must learn that the second owns S
        // instead of promoting its own copy.
        var n1 = shard("n1", id: 1, candidates: ["n2", "n3"], replicas: 2)
        var holders = ["n2": shard("n2", id: 2, candidates: ["n1", "n3"], replicas: 2),
                       "n3": shard("n3", id: 3, candidates: ["n1", "n2"], replicas: 2)]
        let id = SessionID(high: 3, low: 3)
        let created = try n1.create(id: id, attributes: ["a": [1]], maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: 0)
        let set = try #require(created.state?.replicaSet)
        #expect(Set(set) == ["n2", "n3"])
        let (first, second) = (set[0], set[1])
        var a = holders[first]!, b = holders[second]!
        try deliver(&n1, "n1", to: &a, first, now: clock.now)
        try deliver(&n1, "n1", to: &b, second, now: clock.now)
        guard case .transferred(let state) = n1.answerHandover(id, to: second, now: clock.now, mayHandOver: true) else {
            Issue.record("no handover"); return
        }
        let adopted = b.adoptHandover(state, from: "n1", giverStays: true, now: clock.now)
        #expect(adopted)
        // The new owner's whole state to the first holder is still in flight when n1 dies.
        let out = a.memberDeparted("n1", now: clock.now)
        let entries = try #require(out.prepares[second])
        let promises = b.onPrepare(from: first, PrepareRequest(oldOwner: "n1", entries: entries))
        #expect(promises.first?.ownedByHolder == true)
        a.onPromise(from: second, PromiseReply(oldOwner: "n1", sinceGrantMs: .max, entries: promises), now: clock.now, lease: .milliseconds(500))
        let promoted = a.tick(now: clock.now + .seconds(1), wall: clock.wall, datagram: false).promoted
        #expect(promoted.isEmpty)
        guard case .backup? = a.copy(of: id) else { Issue.record("a holder promoted a session another holder owns"); return }
        #expect(a.backupOwner(of: id) == second)
        holders = [:]
        // The encoded promise keeps the flag.
        let decoded = try MessageCodec.decode(MessageCodec.encode(.promise(PromiseReply(oldOwner: "n1", sinceGrantMs: 3, entries: promises))))
        guard case .promise(let p) = decoded else { Issue.record("not a promise"); return }
        #expect(p.entries.first?.ownedByHolder == true)
    }

    @Test func drainTargetsNameTheFirstLiveMemberOfEachReplicaSet() throws {
        let clock = ManualClock()
        var n1 = shard("n1", id: 1, candidates: ["n2", "n3"], replicas: 2)
        var n2 = shard("n2", id: 2, candidates: ["n1", "n3"], replicas: 2)
        let id = SessionID(high: 4, low: 4)
        let created = try n1.create(id: id, attributes: ["a": [9]], maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: 0)
        let set = try #require(created.state?.replicaSet)
        let targets = n1.drainTargets(limit: 10, excluding: [set[0]])
        #expect(targets.count == 1 && targets[0].1 == set[1])
        let state = n1.handOff(id, to: "n2", now: clock.now)
        let adopted = n2.adoptHandover(state, from: "n1", giverStays: false, now: clock.now)
        #expect(adopted)
        guard case .owner(let s)? = n2.copy(of: id) else { Issue.record("not adopted"); return }
        #expect(!s.replicaSet.contains("n1"), "a draining giver is left out of the new replica set")
        #expect(s.replicaSet == ["n3"])
        #expect(n1.drainTargets(limit: 10).isEmpty)

        // With one backup, the taker's place goes to the next member, never back to the
        // leaving giver (which would leave the session without a backup once it is gone).
        var m1 = shard("n1", id: 1, candidates: ["n2", "n3"])
        var m2 = shard("n2", id: 2, candidates: ["n1", "n3"])
        let other = SessionID(high: 4, low: 5)
        let one = try m1.create(id: other, attributes: [:], maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: 0)
        let taker = try #require(one.state?.replicaSet.first)
        var m = taker == "n2" ? m2 : shard(taker, id: 3, candidates: ["n1", "n2"])
        let handed = m1.handOff(other, to: taker, now: clock.now)
        let took = m.adoptHandover(handed, from: "n1", giverStays: false, now: clock.now)
        #expect(took)
        guard case .owner(let t)? = m.copy(of: other) else { Issue.record("not adopted"); return }
        #expect(t.replicaSet.count == 1 && !t.replicaSet.contains("n1") && !t.replicaSet.contains(taker))
        m2 = m
    }

    @Test func handoverMessagesRoundTrip() throws {
        let state = SessionState(id: SessionID(high: 1, low: 2), stamp: Stamp(epoch: Epoch(counter: 3, owner: NodeID(4)), version: 5),
                                 attributes: ["x": [1]], createdAt: WallTime(milliseconds: 1), lastAccessedAt: WallTime(milliseconds: 2),
                                 maxInactiveInterval: .seconds(60), replicaSet: ["n2"])
        let stamp = state.stamp
        let messages: [ReplicationMessage] = [
            .handover(HandoverRequest(requestID: 7, id: state.id)),
            .handoverReply(HandoverReply(requestID: 7, id: state.id, answer: .none)),
            .handoverReply(HandoverReply(requestID: 7, id: state.id, answer: .ended(stamp))),
            .handoverReply(HandoverReply(requestID: 7, id: state.id, answer: .backup(stamp, owner: "n3"))),
            .handoverReply(HandoverReply(requestID: 7, id: state.id, answer: .kept(stamp))),
            .handoverReply(HandoverReply(requestID: 0, id: state.id, answer: .transferred(state))),
        ]
        for m in messages {
            #expect(try MessageCodec.decode(MessageCodec.encode(m)) == m)
        }
        var bad = MessageCodec.encode(messages[1])
        bad[bad.count - 1] = 9
        #expect(throws: DecodeError.self) { try MessageCodec.decode(bad) }
        var mismatched = MessageCodec.encode(messages[5])
        mismatched[13] ^= 1 // the reply's id no longer matches the state's
        #expect(throws: DecodeError.self) { try MessageCodec.decode(mismatched) }
    }
}
