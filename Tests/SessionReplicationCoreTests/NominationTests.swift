import Testing
@testable import SessionReplicationCore
import SessionReplicationTestKit

/// A holder that is not first in a departed owner's replica set nominates the first live
/// member, which takes over through a prepare round of its own; promises nobody asked
/// for are ignored.
struct NominationTests {
    static let id = SessionID(high: 77, low: 1)
    static let p1 = NodeID(1_000), p3 = NodeID(3_000)

    static func shard(_ name: String, id: UInt64, candidates: [String]) -> ReplicaShard {
        var policy = ReplicationPolicy()
        policy.replicas = .count(2)
        return ReplicaShard(settings: ShardSettings(selfName: name, selfID: NodeID(id), policy: policy, sessions: SessionPolicy(),
                                                    backupCandidates: candidates))
    }

    /// A copy of `id` owned by n1 (epoch 1), version `version`, naming `replicaSet`.
    static func state(version: UInt64, replicaSet: [String], attributes: [String: [UInt8]] = ["cart": [1]],
                      epoch: Epoch = Epoch(counter: 1, owner: p1)) -> SessionState {
        SessionState(id: id, stamp: Stamp(epoch: epoch, version: version), attributes: attributes,
                     createdAt: ManualClock().wall, lastAccessedAt: ManualClock().wall,
                     maxInactiveInterval: .seconds(60), replicaSet: replicaSet)
    }

    @Test("a promise carrying a session that no takeover here asked for is ignored and counted, never stored")
    func unaskedPromisesAreIgnored() {
        let clock = ManualClock()
        var p = ReplicationPolicy()
        p.replicas = .count(1)
        let settings = NodeSettings(name: "n2", members: ["n1", "n2", "n3"], backupCandidates: ["n1", "n3"], policy: p,
                                    sessions: SessionPolicy(), membership: MembershipTuning())
        var node = NodeCore(settings: settings, id: NodeID(2_000), randomSeed: 7, now: .zero)
        _ = node.receiveMembership(.ping(sequence: 1, target: NodeID(2_000), updates: []), from: "n3", id: Self.p3, reliable: false,
                                   now: clock.now, wall: clock.wall)
        // n3 (a member, holding the cluster key) sends a session as if answering a takeover
        // of n1's sessions that n2 never started.
        let forged = PromiseReply(oldOwner: "n1", oldOwnerID: Self.p1, sinceGrantMs: .max,
                                  entries: [.init(id: Self.id, fresher: Self.state(version: 9, replicaSet: ["n2"]))])
        _ = node.receiveFrame(InboundFrame(senderName: "n3", sender: Self.p3, control: [.promise(forged)]), now: clock.now, wall: clock.wall)
        #expect(node.copy(of: Self.id) == nil, "an unasked promise was stored as a copy")
        #expect(node.replicationCounters.unaskedPromiseEntries == 1)
        #expect(node.lanes.allSatisfy { $0.takeoversPending == 0 })
    }

    @Test("a holder not first in the replica set nominates the first; the nominee, holding no copy, takes over with the nominator's copy")
    func nomineeWithoutACopyTakesOver() throws {
        let clock = ManualClock()
        var n2 = Self.shard("n2", id: 2, candidates: ["n1", "n3"])
        var n3 = Self.shard("n3", id: 3, candidates: ["n1", "n2"])
        // n2 backs version 5 of n1's session; its replica set names n3 first, but n3 never
        // received the session (it joined the set just before n1 died).
        #expect(n2.apply(.full(Self.state(version: 5, replicaSet: ["n3", "n2"])), from: "n1", now: clock.now) == .applied)
        let out = n2.memberDeparted("n1", now: clock.now)
        #expect(out.promoted.isEmpty && out.prepares.isEmpty)
        let nominated = try #require(out.nominations["n3"])
        #expect(nominated.map(\.id) == [Self.id])
        // The nominee starts a takeover from an empty stamp and asks every live member.
        #expect(n3.memberDeparted("n1", now: clock.now).prepares.isEmpty)
        let started = n3.onNomination(oldOwner: "n1", entries: nominated, oldOwnerGone: true, now: clock.now)
        #expect(started.prepares["n2"] == [.init(id: Self.id, stamp: ReplicaShard.noCopy)])
        #expect(n3.takeoversPending == 1)
        let answers = n2.onPrepare(from: "n3", PrepareRequest(oldOwner: "n1", entries: try #require(started.prepares["n2"])))
        #expect(answers.first?.fresher?.stamp.version == 5)
        n3.onPromise(from: "n2", PromiseReply(oldOwner: "n1", sinceGrantMs: .max, entries: answers), now: clock.now, lease: .milliseconds(500))
        #expect(n3.tick(now: clock.now, wall: clock.wall, datagram: false).promoted == [Self.id])
        guard case .owner(let promoted)? = n3.copy(of: Self.id) else { Issue.record("not promoted"); return }
        #expect(promoted.stamp.epoch == Epoch(counter: 2, owner: NodeID(3)) && promoted.stamp.version == 5)
        #expect(promoted.attributes == ["cart": [1]])
        #expect(n3.counters.unaskedPromiseEntries == 0)
    }

    @Test("a nominee with an older copy adopts the nominator's fresher one through its own prepare round")
    func nomineeWithAnOlderCopyAdoptsTheFresherOne() throws {
        let clock = ManualClock()
        var n2 = Self.shard("n2", id: 2, candidates: ["n1", "n3"])
        var n3 = Self.shard("n3", id: 3, candidates: ["n1", "n2"])
        // n1 took the session over from n0 (epoch 2) and sent it to n2; n3 still holds n0's
        // version 4 and never heard that n1 owned it.
        let epoch2 = Epoch(counter: 2, owner: Self.p1)
        #expect(n2.apply(.full(Self.state(version: 7, replicaSet: ["n3", "n2"], attributes: ["cart": [7]], epoch: epoch2)), from: "n1", now: clock.now) == .applied)
        let epoch1 = Epoch(counter: 1, owner: NodeID(500))
        #expect(n3.apply(.full(Self.state(version: 4, replicaSet: ["n3"], attributes: ["cart": [4]], epoch: epoch1)), from: "n0", now: clock.now) == .applied)
        let fromN2 = n2.memberDeparted("n1", now: clock.now)
        let nominated = try #require(fromN2.nominations["n3"])
        #expect(n3.memberDeparted("n1", now: clock.now).prepares.isEmpty, "n3's copy answers to n0: n1's departure alone does not touch it")
        let started = n3.onNomination(oldOwner: "n1", entries: nominated, oldOwnerGone: true, now: clock.now)
        #expect(started.nominations.isEmpty, "the nominee passed the nomination on")
        let prepare = try #require(started.prepares["n2"])
        #expect(prepare.first?.stamp.version == 4)
        let answers = n2.onPrepare(from: "n3", PrepareRequest(oldOwner: "n1", entries: prepare))
        n3.onPromise(from: "n2", PromiseReply(oldOwner: "n1", sinceGrantMs: .max, entries: answers), now: clock.now, lease: .milliseconds(500))
        #expect(n3.tick(now: clock.now, wall: clock.wall, datagram: false).promoted == [Self.id])
        guard case .owner(let promoted)? = n3.copy(of: Self.id) else { Issue.record("not promoted"); return }
        #expect(promoted.attributes == ["cart": [7]] && promoted.stamp == Stamp(epoch: Epoch(counter: 3, owner: NodeID(3)), version: 7),
                "the acknowledged version 7 was lost: \(promoted.stamp)")
    }

    @Test("a nomination that arrives before the old owner departs here waits for it, and expires after its lifetime")
    func earlyNominationsWait() throws {
        var clock = ManualClock()
        var n3 = Self.shard("n3", id: 3, candidates: ["n1", "n2"])
        let entries = [PrepareRequest.Entry(id: Self.id, stamp: Self.state(version: 3, replicaSet: []).stamp)]
        let early = n3.onNomination(oldOwner: "n1", entries: entries, oldOwnerGone: false, now: clock.now)
        #expect(early.prepares.isEmpty && n3.nominationsPending == 1)
        let out = n3.memberDeparted("n1", now: clock.now)
        #expect(out.prepares["n2"]?.map(\.id) == [Self.id])
        #expect(n3.nominationsPending == 0)
        // Deferred by `promotion: majority`: kept, and acted on when promotion may run.
        var n4 = Self.shard("n4", id: 4, candidates: ["n1", "n2"])
        _ = n4.onNomination(oldOwner: "n1", entries: entries, oldOwnerGone: true, mayPromote: false, now: clock.now)
        #expect(n4.nominationsPending == 1)
        _ = n4.memberDeparted("n1", now: clock.now, mayPromote: false)
        #expect(n4.nominationsPending == 1 && n4.takeoversPending == 0)
        // Never acted on: dropped after the lifetime.
        clock.advance(by: ReplicaShard.nominationLifetime - .seconds(1))
        _ = n4.tick(now: clock.now, wall: clock.wall, datagram: false)
        #expect(n4.nominationsPending == 1)
        clock.advance(by: .seconds(2))
        _ = n4.tick(now: clock.now, wall: clock.wall, datagram: false)
        #expect(n4.nominationsPending == 0)
    }

    @Test("a holder's older copy naming an owner that is asked in the same round does not end the takeover: that owner answers for itself")
    func anOwnerNamedByAStrayCopyAnswersForItself() throws {
        let clock = ManualClock()
        // n4 backs epoch 3 of a session that n3 owned when n3 died. n1 owned it at epoch 4,
        // then handed it to n3 (epoch 5) and holds that copy; n2 missed the handover and
        // still holds epoch 4, naming n1 as its owner.
        var n4 = Self.shard("n4", id: 4, candidates: ["n1", "n2", "n3"])
        let epoch3 = Epoch(counter: 3, owner: NodeID(2_000)), epoch4 = Epoch(counter: 4, owner: Self.p1), epoch5 = Epoch(counter: 5, owner: Self.p3)
        #expect(n4.apply(.full(Self.state(version: 10, replicaSet: ["n4", "n1"], attributes: ["w": [3]], epoch: epoch3)), from: "n3", now: clock.now) == .applied)
        let round = n4.memberDeparted("n3", now: clock.now)
        #expect(Set(round.prepares.keys) == ["n1", "n2"])
        let stray = PromiseReply.Entry(id: Self.id, fresher: Self.state(version: 12, replicaSet: ["n2"], attributes: ["w": [4]], epoch: epoch4), owner: "n1")
        n4.onPromise(from: "n2", PromiseReply(oldOwner: "n3", sinceGrantMs: .max, entries: [stray]), now: clock.now, lease: .milliseconds(500))
        #expect(n4.takeoversPending == 1, "the takeover ended on a copy naming n1, before n1 itself answered")
        let fromN1 = PromiseReply.Entry(id: Self.id, fresher: Self.state(version: 13, replicaSet: ["n4", "n1"], attributes: ["w": [5]], epoch: epoch5))
        n4.onPromise(from: "n1", PromiseReply(oldOwner: "n3", sinceGrantMs: .max, entries: [fromN1]), now: clock.now, lease: .milliseconds(500))
        #expect(n4.tick(now: clock.now, wall: clock.wall, datagram: false).promoted == [Self.id])
        guard case .owner(let promoted)? = n4.copy(of: Self.id) else { Issue.record("nobody owns the session"); return }
        #expect(promoted.stamp.epoch.counter == 6 && promoted.attributes == ["w": [5]])
        // An owner that is not asked in the round (none of the live members) still ends it:
        // the copy lives on with that owner.
        var n5 = Self.shard("n5", id: 5, candidates: ["n1", "n2", "n3"])
        #expect(n5.apply(.full(Self.state(version: 10, replicaSet: ["n5", "n2"], attributes: ["w": [3]], epoch: epoch3)), from: "n3", now: clock.now) == .applied)
        _ = n5.memberDeparted("n1", now: clock.now)
        let second = n5.memberDeparted("n3", now: clock.now)
        #expect(Set(second.prepares.keys) == ["n2"])
        n5.memberReturned("n1")
        n5.onPromise(from: "n2", PromiseReply(oldOwner: "n3", sinceGrantMs: .max, entries: [stray]), now: clock.now, lease: .milliseconds(500))
        #expect(n5.takeoversPending == 0 && n5.backupOwner(of: Self.id) == "n1")
    }

    @Test("a takeover without a copy yields to a taker with one, and a taker with a copy never yields to one without")
    func copylessTakeoversYield() throws {
        let clock = ManualClock()
        // n2 holds no copy and was nominated; n3 holds one and takes over on its own.
        var n2 = Self.shard("n2", id: 2, candidates: ["n1", "n3"])
        var n3 = Self.shard("n3", id: 3, candidates: ["n1", "n2"])
        #expect(n3.apply(.full(Self.state(version: 2, replicaSet: ["n3"])), from: "n1", now: clock.now) == .applied)
        let copyless = n2.onNomination(oldOwner: "n1", entries: [.init(id: Self.id, stamp: Self.state(version: 2, replicaSet: []).stamp)],
                                       oldOwnerGone: true, now: clock.now)
        let withCopy = n3.memberDeparted("n1", now: clock.now)
        // n3's name is larger, yet it keeps its takeover: n2 has nothing to promote.
        let fromN3 = n3.onPrepare(from: "n2", PrepareRequest(oldOwner: "n1", entries: try #require(copyless.prepares["n3"])))
        #expect(fromN3.first?.ownedByHolder == true)
        #expect(n3.takeoversPending == 1)
        let fromN2 = n2.onPrepare(from: "n3", PrepareRequest(oldOwner: "n1", entries: try #require(withCopy.prepares["n2"])))
        #expect(fromN2.first?.fresher == nil && n2.takeoversPending == 0)
        n2.onPromise(from: "n3", PromiseReply(oldOwner: "n1", sinceGrantMs: .max, entries: fromN3), now: clock.now, lease: .milliseconds(500))
        #expect(n2.tick(now: clock.now, wall: clock.wall, datagram: false).promoted.isEmpty)
        n3.onPromise(from: "n2", PromiseReply(oldOwner: "n1", sinceGrantMs: .max, entries: fromN2), now: clock.now, lease: .milliseconds(500))
        #expect(n3.tick(now: clock.now, wall: clock.wall, datagram: false).promoted == [Self.id])
        // Two nominees without a copy: the smaller name goes on, the other yields.
        var n4 = Self.shard("n4", id: 4, candidates: ["n1", "n2", "n5"])
        var n5 = Self.shard("n5", id: 5, candidates: ["n1", "n2", "n4"])
        let entry = PrepareRequest.Entry(id: Self.id, stamp: Self.state(version: 2, replicaSet: []).stamp)
        let from4 = n4.onNomination(oldOwner: "n1", entries: [entry], oldOwnerGone: true, now: clock.now)
        let from5 = n5.onNomination(oldOwner: "n1", entries: [entry], oldOwnerGone: true, now: clock.now)
        _ = n4.onPrepare(from: "n5", PrepareRequest(oldOwner: "n1", entries: try #require(from5.prepares["n4"])))
        _ = n5.onPrepare(from: "n4", PrepareRequest(oldOwner: "n1", entries: try #require(from4.prepares["n5"])))
        #expect(n4.takeoversPending == 1 && n5.takeoversPending == 0)
    }

    @Test("a copyless nominee that a promise gave a copy still ranks itself copyless against a taker with a copy: exactly one goes on")
    func aCopylessNomineeGivenACopyStillYields() throws {
        let clock = ManualClock()
        // n1 owned the session; n4 backs version 3, n3 holds an older version 2 of it, and
        // n2 holds nothing. n4's copy names n2 first (nominated); n3 takes over on its own.
        var n2 = Self.shard("n2", id: 2, candidates: ["n1", "n3", "n4"])
        var n3 = Self.shard("n3", id: 3, candidates: ["n1", "n2", "n4"])
        var n4 = Self.shard("n4", id: 4, candidates: ["n1", "n2", "n3"])
        #expect(n3.apply(.full(Self.state(version: 2, replicaSet: ["n3"], attributes: ["cart": [2]])), from: "n1", now: clock.now) == .applied)
        #expect(n4.apply(.full(Self.state(version: 3, replicaSet: ["n2", "n4"], attributes: ["cart": [3]])), from: "n1", now: clock.now) == .applied)
        _ = n2.memberDeparted("n1", now: clock.now)
        let withCopy = n3.memberDeparted("n1", now: clock.now)
        let nominated = try #require(n4.memberDeparted("n1", now: clock.now).nominations["n2"])
        let copyless = n2.onNomination(oldOwner: "n1", entries: nominated, oldOwnerGone: true, now: clock.now)
        // n4 answers the copyless nominee first: n2 now holds version 3.
        let fromN4 = n4.onPrepare(from: "n2", PrepareRequest(oldOwner: "n1", entries: try #require(copyless.prepares["n4"])))
        n2.onPromise(from: "n4", PromiseReply(oldOwner: "n1", sinceGrantMs: .max, entries: fromN4), now: clock.now, lease: .milliseconds(500))
        guard case .backup(let held)? = n2.copy(of: Self.id) else { Issue.record("the promise gave n2 no copy"); return }
        #expect(held.stamp.version == 3)
        // The prepares cross. n3 ranks n2 copyless (its prepare said so) and goes on; n2
        // ranks itself the same way although it holds a copy now, so it yields and gives
        // n3 its fresher copy (before, n2 went on by its smaller name: each answered the
        // other "owned", both yielded, and nobody owned the session).
        let fromN3 = n3.onPrepare(from: "n2", PrepareRequest(oldOwner: "n1", entries: try #require(copyless.prepares["n3"])))
        #expect(fromN3.first?.ownedByHolder == true)
        let fromN2 = n2.onPrepare(from: "n3", PrepareRequest(oldOwner: "n1", entries: try #require(withCopy.prepares["n2"])))
        #expect(fromN2.first?.ownedByHolder == false, "the copyless nominee answered as the owner")
        #expect(fromN2.first?.fresher?.stamp.version == 3)
        n2.onPromise(from: "n3", PromiseReply(oldOwner: "n1", sinceGrantMs: .max, entries: fromN3), now: clock.now, lease: .milliseconds(500))
        #expect(n2.takeoversPending == 0 && n2.tick(now: clock.now, wall: clock.wall, datagram: false).promoted.isEmpty)
        n3.onPromise(from: "n2", PromiseReply(oldOwner: "n1", sinceGrantMs: .max, entries: fromN2), now: clock.now, lease: .milliseconds(500))
        let n4ToN3 = n4.onPrepare(from: "n3", PrepareRequest(oldOwner: "n1", entries: try #require(withCopy.prepares["n4"])))
        n3.onPromise(from: "n4", PromiseReply(oldOwner: "n1", sinceGrantMs: .max, entries: n4ToN3), now: clock.now, lease: .milliseconds(500))
        #expect(n3.tick(now: clock.now, wall: clock.wall, datagram: false).promoted == [Self.id])
        guard case .owner(let promoted)? = n3.copy(of: Self.id) else { Issue.record("n3 did not take the session over"); return }
        #expect(promoted.stamp.version == 3 && promoted.attributes == ["cart": [3]], "the fresher version 3 was lost: \(promoted.stamp)")
    }

    @Test("a copyless taker's resent prepare still says it started without a copy after a promise gave it one")
    func aResentCopylessPrepareStaysCopyless() throws {
        var clock = ManualClock()
        var n2 = Self.shard("n2", id: 2, candidates: ["n1", "n3", "n4"])
        var n4 = Self.shard("n4", id: 4, candidates: ["n1", "n2", "n3"])
        #expect(n4.apply(.full(Self.state(version: 3, replicaSet: ["n2", "n4"], attributes: ["cart": [3]])), from: "n1", now: clock.now) == .applied)
        _ = n2.memberDeparted("n1", now: clock.now)
        let nominated = try #require(n4.memberDeparted("n1", now: clock.now).nominations["n2"])
        let copyless = n2.onNomination(oldOwner: "n1", entries: nominated, oldOwnerGone: true, now: clock.now)
        #expect(copyless.prepares["n3"]?.first?.stamp == ReplicaShard.noCopy)
        let fromN4 = n4.onPrepare(from: "n2", PrepareRequest(oldOwner: "n1", entries: try #require(copyless.prepares["n4"])))
        n2.onPromise(from: "n4", PromiseReply(oldOwner: "n1", sinceGrantMs: .max, entries: fromN4), now: clock.now, lease: .milliseconds(500))
        guard case .backup? = n2.copy(of: Self.id) else { Issue.record("the promise gave n2 no copy"); return }
        // n3 has not answered: the prepare to it is resent, and must still say "no copy"
        // (with n2's new stamp, n3 would rank n2 as a taker with a copy).
        clock.advance(by: .seconds(2))
        let resent = n2.tick(now: clock.now, wall: clock.wall, datagram: false).prepares.filter { $0.peer == "n3" }
        let entries = resent.flatMap(\.request.entries)
        #expect(!entries.isEmpty, "no prepare was resent to n3")
        #expect(entries.allSatisfy { $0.stamp == ReplicaShard.noCopy }, "the resent prepare carried \(entries.map(\.stamp))")
    }
}
