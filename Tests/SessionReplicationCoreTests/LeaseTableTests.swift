import Testing
@testable import SessionReplicationCore
import SessionReplicationTestKit

struct LeaseTableTests {
    @Test func aGrantRunsFromTheRequestsSendTimeNotItsArrival() {
        var clock = ManualClock()
        var t = LeaseTable(lease: .milliseconds(500), voters: [], selfName: "n1")
        let requests = t.requests(to: ["n3", "n2"], now: clock.now)
        #expect(requests.map(\.peer) == ["n2", "n3"])
        let early = t.requests(to: ["n2"], now: clock.now)
        #expect(early.isEmpty, "one round per lease / 4")
        clock.advance(by: .milliseconds(300))  // a slow answer
        t.onGrant(from: "n2", sequence: requests[0].sequence)
        #expect(t.grantedUntil["n2"] == .zero + .milliseconds(500))
        #expect(t.mayServe(replicaSet: ["n2"], live: ["n2"], now: clock.now))
        clock.advance(by: .milliseconds(200))
        #expect(!t.mayServe(replicaSet: ["n2"], live: ["n2"], now: clock.now), "expired at send time + L")
        // A grant from the wrong peer, or for an unknown request, changes nothing.
        t.onGrant(from: "n2", sequence: requests[1].sequence)
        t.onGrant(from: "n2", sequence: 999)
        #expect(t.grantedUntil["n2"] == .zero + .milliseconds(500))
    }

    @Test func membersHeldDeadOrNeverHeardOfNeedNoLease() {
        let t = LeaseTable(voters: [], selfName: "n1")
        #expect(t.mayServe(replicaSet: ["n2", "n3"], live: [], now: .zero))
        #expect(!t.mayServe(replicaSet: ["n2", "n3"], live: ["n3"], now: .zero))
        #expect(t.mayServe(replicaSet: [], live: ["n3"], now: .zero))
    }

    @Test func grantorRefusesMembersHeldDeadOrRevokedAndRemembersItsLastGrant() {
        var clock = ManualClock()
        var t = LeaseTable(lease: .milliseconds(500), voters: [], selfName: "n1")
        let g1 = t.onRequest(from: "n1", process: NodeID(1), heldDead: false, now: clock.now)
        #expect(g1)
        clock.advance(by: .milliseconds(100))
        let g2 = t.onRequest(from: "n1", process: NodeID(1), heldDead: false, now: clock.now)
        #expect(g2)
        #expect(t.grantsExpire(for: "n1") == clock.now + .milliseconds(500) + .microseconds(62_500) + .milliseconds(10))
        let g3 = t.onRequest(from: "n1", process: NodeID(1), heldDead: true, now: clock.now)
        #expect(!g3)
        t.revoke("n2", process: NodeID(2))
        let g4 = t.onRequest(from: "n2", process: NodeID(2), heldDead: false, now: clock.now)
        #expect(!g4)
        t.restore("n2")
        let g5 = t.onRequest(from: "n2", process: NodeID(2), heldDead: false, now: clock.now)
        #expect(g5)
        #expect(t.granted == 3 && t.refused == 2)
        #expect(t.grantsExpire(for: "n9") == .zero)
    }

    @Test func remainingIsTheShortestLeaseAmongPeers() {
        var t = LeaseTable(lease: .milliseconds(400), voters: [], selfName: "n1")
        let r = t.requests(to: ["a", "b"], now: .zero)
        t.onGrant(from: "a", sequence: r[0].sequence)
        #expect(t.remaining(among: ["a"], now: .zero + .milliseconds(100)) == .milliseconds(300))
        #expect(t.remaining(among: ["a", "b"], now: .zero + .milliseconds(100)) == .zero)
        #expect(t.remaining(among: [], now: .zero) == nil)
    }

    @Test func aQuorumLeaseNeedsGrantsFromAMajorityOfTheVotersCountingItself() {
        var t = LeaseTable(lease: .milliseconds(500), voters: [], selfName: "n1")
        let voters = ["n1", "n2", "n3", "n4", "n5"]
        #expect(!t.hasQuorum(voters: voters, selfName: "n1", now: .zero))
        let r = t.requests(to: ["n2", "n3"], now: .zero)
        t.onGrant(from: "n2", sequence: r[0].sequence)
        #expect(!t.hasQuorum(voters: voters, selfName: "n1", now: .zero + .milliseconds(10)), "2 of 5")
        t.onGrant(from: "n3", sequence: r[1].sequence)
        #expect(t.hasQuorum(voters: voters, selfName: "n1", now: .zero + .milliseconds(10)), "3 of 5")
        #expect(!t.hasQuorum(voters: voters, selfName: "n1", now: .zero + .milliseconds(500)), "the grants ran out")
        #expect(!t.hasQuorum(voters: ["n2", "n3", "n4", "n5"], selfName: "x", now: .zero + .milliseconds(10)),
                "a non-voter counts only the grants: 2 of 4 is no majority")
        #expect(!t.hasQuorum(voters: [], selfName: "n1", now: .zero))
    }

    /// The kept quorum end answers as the count over the voters does, through grants at
    /// random times, restores and dropped grants, for voter sets with and without this
    /// node and of even and odd size.
    @Test(arguments: [(["n1", "n2", "n3"], "n1"), (["n1", "n2", "n3", "n4"], "n1"), (["n1", "n2", "n3", "n4", "n5"], "n3"),
                      (["n2", "n3", "n4"], "x"), (["n1"], "n1")])
    func theKeptQuorumEndAgreesWithCountingTheVoters(voters: [String], selfName: String) {
        var t = LeaseTable(lease: .milliseconds(500), voters: voters, selfName: selfName)
        var rng = SeededGenerator(seed: UInt64(voters.count) * 31 + UInt64(selfName.utf8.first!))
        var now = MonotonicInstant.zero
        let peers = voters.filter { $0 != selfName } + ["n9"]
        var agreedTrue = 0, agreedFalse = 0
        // Grants arrive late and out of order: each request is answered (or not) some
        // steps after it was sent.
        var inFlight: [(peer: String, sequence: UInt64)] = []
        for _ in 0..<2_000 {
            now = now + .milliseconds(Int64.random(in: 0...60, using: &rng))
            inFlight += t.requests(to: peers, now: now)
            inFlight.shuffle(using: &rng)
            let answered = Int.random(in: 0...inFlight.count, using: &rng)
            for r in inFlight.prefix(answered) where Int.random(in: 0..<4, using: &rng) != 0 { t.onGrant(from: r.peer, sequence: r.sequence) }
            inFlight.removeFirst(answered)
            switch Int.random(in: 0..<40, using: &rng) {
            case 0: t.restore(peers.randomElement(using: &rng)!)
            case 1: t.dropGrants()
            default: break
            }
            // Probes at the kept end itself catch `<` written as `<=`. (A quorum that needs
            // no grant is kept as ending at the clock's last instant, about 584 years on.)
            let end = t.quorumUntil.nanoseconds == .max ? now : t.quorumUntil
            for probe in [now, now + .milliseconds(Int64.random(in: 0...600, using: &rng)), end] {
                let counted = t.hasQuorum(voters: voters, selfName: selfName, now: probe)
                #expect(t.hasQuorum(now: probe) == counted, "at \(probe)")
                if counted { agreedTrue += 1 } else { agreedFalse += 1 }
            }
        }
        #expect(agreedTrue > 0, "the walk reached a quorum")
        #expect(agreedFalse > 0 || voters == [selfName], "the walk lost the quorum")
    }
}
