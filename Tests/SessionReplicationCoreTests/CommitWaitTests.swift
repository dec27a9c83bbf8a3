import Testing
@testable import SessionReplicationCore
import SessionReplicationTestKit

/// A scope whose commit finds the owner's leases lapsed (its body outlived them) waits for
/// fresh grants, up to `4 x lease`, instead of failing `fenced` at once.
struct CommitWaitTests {
    static let p2 = NodeID(2_000)
    var clock = ManualClock()

    /// Ticks `node` for `span` in 50 ms steps, n2 answering its probes (alive) but no
    /// lease request; returns the actions and the last lease request it sent to n2.
    mutating func run(_ node: inout NodeCore, for span: Duration) -> (actions: [NodeAction], leaseRequest: UInt64?) {
        var actions: [NodeAction] = []
        var sequence: UInt64?
        var left = span
        while left > .zero {
            clock.advance(by: .milliseconds(50))
            left -= .milliseconds(50)
            let step = node.tickAnsweringProbes(of: "n2", id: Self.p2, at: clock)
            sequence = step.leaseRequest ?? sequence
            actions += step.actions
        }
        return (actions, sequence)
    }

    /// Whether `actions` complete request `r`, and how.
    static func completion(_ actions: [NodeAction], _ r: RequestID) -> RequestResult? {
        for case .complete(let q, let result) in actions where q == r { return result }
        return nil
    }

    @Test("a commit whose leases lapsed while its body ran waits for fresh grants and then commits; without grants it fails fenced after 4 x lease",
          arguments: [true, false])
    mutating func aCommitWaitsForFreshGrants(grantsReturn: Bool) throws {
        var p = ReplicationPolicy()
        p.mode = .bestEffort
        let settings = NodeSettings(name: "n1", members: ["n1", "n2"], backupCandidates: ["n2"], policy: p,
                                    sessions: SessionPolicy(), membership: MembershipTuning())
        var n1 = NodeCore(settings: settings, id: NodeID(1_000), randomSeed: 3, now: .zero)
        _ = n1.receiveMembership(.ping(sequence: 1, target: n1.id, updates: []), from: "n2", id: Self.p2, reliable: false, now: clock.now, wall: clock.wall)
        let first = try #require(run(&n1, for: .milliseconds(100)).leaseRequest, "no lease request to n2")
        _ = n1.receiveFrame(InboundFrame(senderName: "n2", sender: Self.p2, membership: .leaseGrant(sequence: first)), now: clock.now, wall: clock.wall)
        let id = SessionID(high: 9, low: 9)
        let created = n1.create(RequestID(1), id: id, attributes: ["a": [1]], maxInactiveInterval: nil, now: clock.now, wall: clock.wall)
        guard case .written? = Self.completion(created, RequestID(1)) else { Issue.record("not created: \(created)"); return }
        let began = n1.beginScope(RequestID(2), id, ifMatch: nil, now: clock.now, wall: clock.wall)
        #expect(began.contains { if case .scopeReady(RequestID(2), _) = $0 { true } else { false } })
        // The body runs for two leases; nobody answers the lease requests meanwhile.
        let (_, pending) = run(&n1, for: settings.lease * 2)
        var changes = ChangeSet()
        changes.updated["a"] = [2]
        let committed = n1.commitScope(RequestID(2), .changes(changes, maxInactiveInterval: nil), now: clock.now, wall: clock.wall)
        #expect(n1.membership.liveNames.contains("n2"), "n2 was declared dead: nothing tested")
        #expect(Self.completion(committed, RequestID(2)) == nil, "the commit did not wait for grants: \(committed)")
        #expect(n1.ownedState(id)?.attributes["a"] == [1], "a waiting commit applied its changes")
        if grantsReturn {
            let sequence = try #require(pending, "no lease request while the body ran")
            var after = n1.receiveFrame(InboundFrame(senderName: "n2", sender: Self.p2, membership: .leaseGrant(sequence: sequence)), now: clock.now, wall: clock.wall)
            after += run(&n1, for: .milliseconds(100)).actions
            guard case .written(let state, _)? = Self.completion(after, RequestID(2)) else { Issue.record("not committed: \(after)"); return }
            #expect(state?.attributes["a"] == [2])
            #expect(n1.ownedState(id)?.attributes["a"] == [2])
        } else {
            let after = run(&n1, for: settings.lease * 4 + .milliseconds(100)).actions
            guard case .failed(let e)? = Self.completion(after, RequestID(2)) else { Issue.record("no answer after 4 x lease: \(after)"); return }
            #expect(e.code == .fenced)
            #expect(n1.membership.liveNames.contains("n2"), "n2 was declared dead: nothing tested")
            #expect(n1.ownedState(id)?.attributes["a"] == [1])
        }
    }
}
