import Testing
@testable import SessionReplicationCore
import SessionReplicationTestKit

/// A draining node that comes to own a session again (a failover promoted the copy it
/// kept) hands it over too, for as long as its drain window (`drainTimeout`) lasts.
struct DrainWindowTests {
    static let p1 = NodeID(1_000), p3 = NodeID(3_000)
    static let id = SessionID(high: 42, low: 7)

    var clock = ManualClock()

    /// n2 of n1, n2, n3, backing `id` for n1 (replica set n2).
    func node(drainTimeout: Duration) -> NodeCore {
        var p = ReplicationPolicy()
        p.drainTimeout = drainTimeout
        let s = NodeSettings(name: "n2", members: ["n1", "n2", "n3"], backupCandidates: ["n1", "n3"], policy: p,
                             sessions: SessionPolicy(), membership: MembershipTuning())
        var n = NodeCore(settings: s, id: NodeID(2_000), randomSeed: 7, now: .zero)
        for (name, pid) in [("n1", Self.p1), ("n3", Self.p3)] {
            _ = n.receiveMembership(.ping(sequence: 1, target: n.id, updates: []), from: name, id: pid, reliable: false, now: clock.now, wall: clock.wall)
        }
        let state = SessionState(id: Self.id, stamp: Stamp(epoch: Epoch(counter: 1, owner: Self.p1), version: 3), attributes: ["cart": [1]],
                                 createdAt: clock.wall, lastAccessedAt: clock.wall, maxInactiveInterval: .seconds(600), replicaSet: ["n2"])
        _ = n.receiveFrame(InboundFrame(senderName: "n1", sender: Self.p1, lane: 0, firstSequence: 1, lowWatermark: 1, data: [.full(state)]),
                           now: clock.now, wall: clock.wall)
        return n
    }

    /// Handover answers `actions` send unasked (request id 0) to `peer` (after a flush).
    static func handovers(_ actions: [NodeAction], to peer: String) -> [SessionID] {
        actions.flatMap { a -> [SessionID] in
            guard case .send(let to, let t) = a, to == peer else { return [] }
            return t.control.compactMap { if case .handoverReply(let r) = $0, r.requestID == 0 { r.id } else { nil } }
        }
    }

    /// Ticks `n` once after 100 ms, n3 answering its probes; returns the actions and
    /// the lease request it sent n3, if any.
    mutating func step(_ n: inout NodeCore) -> ([NodeAction], UInt64?) {
        clock.advance(by: .milliseconds(100))
        let step = n.tickAnsweringProbes(of: "n3", id: Self.p3, at: clock)
        return (step.actions, step.leaseRequest)
    }

    @Test("a draining node hands over a session it owns again after its drain completed, inside drainTimeout and not once it ran out",
          arguments: [true, false])
    mutating func reownedSessionsAreHandedOver(insideWindow: Bool) throws {
        var n2 = node(drainTimeout: insideWindow ? .seconds(60) : .seconds(1))
        guard case .backup? = n2.copy(of: Self.id) else { Issue.record("n2 holds no backup copy"); return }
        // Nothing owned: the drain completes at once.
        #expect(n2.drain(RequestID(9), now: clock.now, wall: clock.wall).contains(.complete(RequestID(9), .drained(0))))
        // Outside the window: n1 dies 1.5 s after the drain began (a 1 s window).
        if !insideWindow { for _ in 0..<15 { _ = step(&n2) } }
        // n3 says n1 died; n2, the first live holder, asks n3 and promotes once it answered.
        let dead = MemberUpdate(status: .dead, name: "n1", id: Self.p1, incarnation: 0, from: "n3")
        _ = n2.receiveMembership(.ping(sequence: 2, target: n2.id, updates: [dead]), from: "n3", id: Self.p3, reliable: false, now: clock.now, wall: clock.wall)
        let promise = PromiseReply(oldOwner: "n1", oldOwnerID: Self.p1, sinceGrantMs: .max, entries: [.init(id: Self.id, fresher: nil)])
        _ = n2.receiveFrame(InboundFrame(senderName: "n3", sender: Self.p3, control: [.promise(promise)]), now: clock.now, wall: clock.wall)
        var sent: [NodeAction] = []
        var leaseRequest: UInt64?
        for _ in 0..<40 where n2.ownedState(Self.id) == nil || leaseRequest == nil {
            let (_, lease) = step(&n2)
            leaseRequest = lease ?? leaseRequest
        }
        let promoted = try #require(n2.ownedState(Self.id), "the failover did not promote n2's copy")
        #expect(promoted.replicaSet == ["n3"])
        // n3's lease makes the session servable; the next ticks hand it over, or not.
        let sequence = try #require(leaseRequest)
        sent += n2.receiveFrame(InboundFrame(senderName: "n3", sender: Self.p3, membership: .leaseGrant(sequence: sequence)), now: clock.now, wall: clock.wall)
        for _ in 0..<5 { sent += step(&n2).0 }
        // What the node queued for n3 goes out when the shell flushes it.
        sent += n2.flush("n3", now: clock.now, wall: clock.wall, streamConnected: true)
        if insideWindow {
            #expect(Self.handovers(sent, to: "n3") == [Self.id])
            #expect(n2.ownedState(Self.id) == nil, "the draining node kept the session it came to own again")
        } else {
            #expect(Self.handovers(sent, to: "n3").isEmpty)
            #expect(n2.ownedState(Self.id) != nil, "a session was handed over after the drain window ran out")
        }
    }
}
