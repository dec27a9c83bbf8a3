import Testing
@testable import SessionReplicationCore
import SessionReplicationTestKit

/// Drives single `Membership` machines by hand with a manual clock.
struct MembershipTests {
    static let a = NodeID(100), b = NodeID(200), c = NodeID(300)

    /// `n1` knowing `n2` (and `n3` when `three`) as alive, outputs drained.
    func joined(three: Bool = true, tuning: MembershipTuning = .init()) -> (Membership, ManualClock) {
        let clock = ManualClock()
        var m = Membership(selfName: "n1", selfID: Self.a, seeds: ["n2", "n3"], tuning: tuning, randomSeed: 7, now: clock.now)
        m.receive(.ack(sequence: 0, updates: []), from: "n2", id: Self.b, now: clock.now)
        if three { m.receive(.ack(sequence: 0, updates: []), from: "n3", id: Self.c, now: clock.now) }
        _ = m.takeOutput()
        return (m, clock)
    }

    /// Ticks `m` every millisecond for `duration`, collecting outputs.
    func run(_ m: inout Membership, _ clock: inout ManualClock, for duration: Duration) -> (out: [MembershipOutgoing], events: [MembershipEvent]) {
        var out: [MembershipOutgoing] = [], events: [MembershipEvent] = []
        let end = clock.now + duration
        while clock.now < end {
            clock.advance(by: .milliseconds(1))
            m.tick(now: clock.now)
            let o = m.takeOutput()
            out += o.outgoing
            events += o.events
        }
        return (out, events)
    }

    @Test func sendersBecomeAliveMembersAndTheNodeCountsAsJoined() {
        let clock = ManualClock()
        var m = Membership(selfName: "n1", selfID: Self.a, seeds: ["n2"], randomSeed: 1, now: clock.now)
        #expect(!m.joined)
        m.receive(.ping(sequence: 5, target: Self.a, updates: []), from: "n2", id: Self.b, now: clock.now)
        #expect(m.joined)
        #expect(m.member("n2")?.status == .alive)
        let (out, events) = m.takeOutput()
        #expect(events == [.alive(name: "n2", id: Self.b)])
        guard case .ack(5, _)? = out.first?.message else { Issue.record("expected an ack, got \(out)"); return }
        #expect(out.first?.to == "n2")
    }

    @Test func unjoinedNodePushPullsEverySeedOverTheStreamUntilItHearsFromOne() {
        var clock = ManualClock()
        var m = Membership(selfName: "n1", selfID: Self.a, seeds: ["n3", "n2", "n1"], randomSeed: 1, now: clock.now)
        m.tick(now: clock.now)
        let first = m.takeOutput().outgoing.filter { if case .sync = $0.message { return true } else { return false } }
        #expect(first.map(\.to) == ["n2", "n3"])
        #expect(first.allSatisfy { $0.reliable })
        let retry = run(&m, &clock, for: .milliseconds(600)).out.filter { if case .sync = $0.message { return true } else { return false } }
        #expect(retry.count == 2)
        // A reply joins it; later push-pulls go to one member at a time.
        m.receive(.sync(members: [MemberUpdate(status: .alive, name: "n2", id: Self.b, incarnation: 3, from: "n2"),
                                  MemberUpdate(status: .alive, name: "n3", id: Self.c, incarnation: 0, from: "n3")], reply: false),
                  from: "n2", id: Self.b, reliable: true, now: clock.now)
        #expect(m.joined)
        #expect(m.liveNames == ["n2", "n3"])
        #expect(m.member("n2")?.incarnation == 3)
    }

    @Test func silentMemberIsProbedIndirectlyThenSuspectedThenDeclaredDead() {
        var (m, clock) = joined()
        var sawIndirect = false, sawTCP = false, suspectAt: MonotonicInstant?, deadAt: MonotonicInstant?
        // n3 answers nothing; n2 answers every ping it receives (as the relay would nack).
        for _ in 0..<3_000 where deadAt == nil {
            clock.advance(by: .milliseconds(1))
            m.tick(now: clock.now)
            let (out, events) = m.takeOutput()
            for o in out {
                switch o.message {
                case .ping(let seq, _, _) where o.to == "n2":
                    m.receive(.ack(sequence: seq, updates: []), from: "n2", id: Self.b, now: clock.now)
                case .pingRequest(let seq, "n3", _, _):
                    sawIndirect = true
                    m.receive(.nack(sequence: seq, updates: []), from: "n2", id: Self.b, now: clock.now)
                case .ping(_, _, _) where o.to == "n3" && o.reliable:
                    sawTCP = true
                default: break
                }
            }
            for e in events {
                if e == .suspect(name: "n3", id: Self.c) { suspectAt = clock.now }
                if e == .dead(name: "n3", id: Self.c) { deadAt = clock.now }
            }
        }
        #expect(sawIndirect)
        #expect(sawTCP)
        let suspected = try! #require(suspectAt), dead = try! #require(deadAt)
        // Three live members: no confirmations are expected, so the shortest suspicion
        // (suspicionMultiplier probe intervals) applies.
        #expect(dead - suspected == .milliseconds(400))
        #expect(m.member("n3")?.status == .dead)
        #expect(m.localHealth == 0, "the relay's nacks show this node is healthy")
        #expect(m.counters.deathsDeclared == 1)
    }

    @Test func missedNacksRaiseLocalHealthWhichStretchesTheProbePeriod() {
        var (m, clock) = joined()
        // Nobody answers a probe and the relays' nacks never come, yet the members keep
        // refuting their suspicion: the fault must be this node's own.
        var pingTimes: [MonotonicInstant] = []
        var incarnation: UInt64 = 0
        for _ in 0..<8_000 {
            clock.advance(by: .milliseconds(1))
            m.tick(now: clock.now)
            let (out, events) = m.takeOutput()
            for o in out { if case .ping = o.message, !o.reliable { pingTimes.append(clock.now) } }
            for case .suspect(let name, let id) in events {
                incarnation += 1
                m.receive(.ack(sequence: 0, updates: [MemberUpdate(status: .alive, name: name, id: id, incarnation: incarnation, from: name)]),
                          from: name, id: id, now: clock.now)
                _ = m.takeOutput()
            }
        }
        #expect(m.localHealth == MembershipTuning().maxLocalHealth)
        #expect(m.member("n2")?.status.isLive == true)
        let gaps = zip(pingTimes.dropFirst(), pingTimes).map { $0 - $1 }
        #expect(gaps.first == .milliseconds(100), "healthy: one probe per probeInterval")
        #expect(gaps.last == .milliseconds(900), "at the worst health, (8 + 1) x probeInterval: \(gaps)")
    }

    @Test func suspicionOfSelfIsRefutedWithAHigherIncarnation() {
        var (m, clock) = joined()
        m.receive(.ack(sequence: 0, updates: [MemberUpdate(status: .suspect, name: "n1", id: Self.a, incarnation: 0, from: "n2")]),
                  from: "n2", id: Self.b, now: clock.now)
        #expect(m.incarnation == 1)
        #expect(m.counters.refutations == 1)
        #expect(m.localHealth == 1)
        // The refutation rides on the next message.
        clock.advance(by: .milliseconds(1))
        m.receive(.ping(sequence: 9, target: Self.a, updates: []), from: "n3", id: Self.c, now: clock.now)
        let ack = m.takeOutput().outgoing.first
        #expect(ack?.message.updates.contains(MemberUpdate(status: .alive, name: "n1", id: Self.a, incarnation: 1, from: "n1")) == true)
    }

    @Test func aliveWithHigherIncarnationClearsSuspicionButDeathIsFinal() {
        var (m, clock) = joined()
        m.receive(.ack(sequence: 0, updates: [MemberUpdate(status: .suspect, name: "n3", id: Self.c, incarnation: 0, from: "n2")]),
                  from: "n2", id: Self.b, now: clock.now)
        #expect(m.member("n3")?.status == .suspect)
        m.receive(.ack(sequence: 0, updates: [MemberUpdate(status: .alive, name: "n3", id: Self.c, incarnation: 0, from: "n3")]),
                  from: "n2", id: Self.b, now: clock.now)
        #expect(m.member("n3")?.status == .suspect, "the same incarnation does not refute")
        m.receive(.ack(sequence: 0, updates: [MemberUpdate(status: .alive, name: "n3", id: Self.c, incarnation: 1, from: "n3")]),
                  from: "n2", id: Self.b, now: clock.now)
        #expect(m.member("n3")?.status == .alive)
        m.receive(.ack(sequence: 0, updates: [MemberUpdate(status: .dead, name: "n3", id: Self.c, incarnation: 1, from: "n2")]),
                  from: "n2", id: Self.b, now: clock.now)
        #expect(m.member("n3")?.status == .dead)
        m.receive(.ack(sequence: 0, updates: [MemberUpdate(status: .alive, name: "n3", id: Self.c, incarnation: 9, from: "n3")]),
                  from: "n2", id: Self.b, now: clock.now)
        #expect(m.member("n3")?.status == .dead, "incarnations refute suspicion, never death")
        // A later start of n3 (a larger id) is a new member.
        m.receive(.ack(sequence: 0, updates: []), from: "n3", id: NodeID(301), now: clock.now)
        #expect(m.member("n3")?.status == .alive)
        #expect(m.member("n3")?.id == NodeID(301))
        // An earlier process of that name is ignored.
        m.receive(.ack(sequence: 0, updates: [MemberUpdate(status: .dead, name: "n3", id: Self.c, incarnation: 5, from: "n2")]),
                  from: "n2", id: Self.b, now: clock.now)
        #expect(m.member("n3")?.status == .alive)
    }

    @Test func confirmationsShortenTheSuspicionTimeout() {
        // Five live members: k = suspicionMultiplier - 2 = 2 confirmations expected.
        let clock = ManualClock()
        var m = Membership(selfName: "n1", selfID: Self.a, seeds: [], randomSeed: 3, now: clock.now)
        for (i, name) in ["n2", "n3", "n4", "n5"].enumerated() {
            m.receive(.ack(sequence: 0, updates: []), from: name, id: NodeID(UInt64(200 + i)), now: clock.now)
        }
        let suspect = MemberUpdate(status: .suspect, name: "n5", id: NodeID(203), incarnation: 0, from: "n2")
        m.receive(.ack(sequence: 0, updates: [suspect]), from: "n2", id: NodeID(200), now: clock.now)
        let alone = m.suspicions["n5"]!.deadline
        #expect(alone == clock.now + .milliseconds(1_200), "no confirmations: the longest timeout (3 x 400 ms)")
        var confirm = suspect
        confirm.from = "n3"
        m.receive(.ack(sequence: 0, updates: [confirm]), from: "n3", id: NodeID(201), now: clock.now)
        let once = m.suspicions["n5"]!.deadline
        #expect(once < alone)
        m.receive(.ack(sequence: 0, updates: [confirm]), from: "n3", id: NodeID(201), now: clock.now)
        #expect(m.suspicions["n5"]!.deadline == once, "a repeated confirmer is not independent")
        confirm.from = "n4"
        m.receive(.ack(sequence: 0, updates: [confirm]), from: "n4", id: NodeID(202), now: clock.now)
        #expect(m.suspicions["n5"]!.deadline == clock.now + .milliseconds(400))
    }

    @Test func relayPingsTheTargetAndForwardsItsAckOrNacksInTime() {
        var (m, clock) = joined()
        m.receive(.pingRequest(sequence: 77, target: "n3", targetID: Self.c, updates: []), from: "n2", id: Self.b, now: clock.now)
        let ping = m.takeOutput().outgoing.first
        guard case .ping(let mine, Self.c, _)? = ping?.message, ping?.to == "n3" else { Issue.record("no relay ping: \(String(describing: ping))"); return }
        m.receive(.ack(sequence: mine, updates: []), from: "n3", id: Self.c, now: clock.now)
        guard case .ack(77, _)? = m.takeOutput().outgoing.first?.message else { Issue.record("ack not relayed"); return }
        // A second request the target never answers: a nack before the requester's timeout.
        m.receive(.pingRequest(sequence: 78, target: "n3", targetID: Self.c, updates: []), from: "n2", id: Self.b, now: clock.now)
        _ = m.takeOutput()
        let out = run(&m, &clock, for: .milliseconds(40)).out
        #expect(out.contains { if case .nack(78, _) = $0.message, $0.to == "n2" { return true } else { return false } })
    }

    @Test func aSuspectedTargetHearsOfItFirstWhenProbed() {
        var (m, clock) = joined(three: false)
        m.receive(.ack(sequence: 0, updates: [MemberUpdate(status: .suspect, name: "n2", id: Self.b, incarnation: 4, from: "n3")]),
                  from: "n3", id: Self.c, now: clock.now)
        let pings = run(&m, &clock, for: .milliseconds(200)).out.filter { if case .ping = $0.message, $0.to == "n2" { return true } else { return false } }
        #expect(pings.first?.message.updates.first == MemberUpdate(status: .suspect, name: "n2", id: Self.b, incarnation: 4, from: "n1"))
    }

    @Test func gracefulLeaveIsToldToEveryLiveMemberAndRecordedAsLeft() {
        var (m, clock) = joined()
        m.leave(now: clock.now)
        let out = m.takeOutput().outgoing
        #expect(Set(out.map(\.to)) == ["n2", "n3"])
        #expect(out.allSatisfy { $0.message.updates.contains { $0.status == .left && $0.name == "n1" } })
        // It stops probing but still answers.
        #expect(run(&m, &clock, for: .milliseconds(500)).out.allSatisfy { if case .ping = $0.message { return false } else { return true } })
        var other = Membership(selfName: "n2", selfID: Self.b, seeds: [], randomSeed: 1, now: clock.now)
        for o in out where o.to == "n2" { other.receive(o.message, from: "n1", id: Self.a, now: clock.now) }
        #expect(other.member("n1")?.status == .left)
    }

    @Test func aProcessDeclaredDeadLearnsItWhenItSpeaksAndStops() {
        var (m, clock) = joined()
        m.receive(.ack(sequence: 0, updates: [MemberUpdate(status: .dead, name: "n1", id: Self.a, incarnation: 0, from: "n2")]),
                  from: "n2", id: Self.b, now: clock.now)
        #expect(m.status == .dead)
        #expect(m.takeOutput().events == [.selfDeclaredDead])
        #expect(run(&m, &clock, for: .milliseconds(500)).out.isEmpty, "a dead process sends nothing")

        // The other side: a member held dead that keeps talking is told.
        var (n, clock2) = joined()
        n.receive(.ack(sequence: 0, updates: [MemberUpdate(status: .dead, name: "n3", id: Self.c, incarnation: 0, from: "n2")]),
                  from: "n2", id: Self.b, now: clock2.now)
        _ = n.takeOutput()
        clock2.advance(by: .milliseconds(1))
        n.receive(.ping(sequence: 1, target: Self.a, updates: []), from: "n3", id: Self.c, now: clock2.now)
        let told = n.takeOutput().outgoing
        #expect(told.contains { $0.to == "n3" && $0.message.updates.contains { $0.status == .dead && $0.name == "n3" } })
    }

    /// After a healed partition each side holds the other dead and sends it its whole
    /// list. The side that sees a majority of the configured nodes alive must never
    /// yield, even when the other side's list counts as many live members (a tie once
    /// made every node of a healed 2+1 partition drop all its sessions).
    @Test func aNodeSeeingAMajorityAliveNeverYieldsToAListFromAMemberItHoldsDead() {
        // n3 with n2 alive and n1 held dead: 2 of 3 alive here.
        let clock = ManualClock()
        var m = Membership(selfName: "n3", selfID: Self.c, seeds: ["n1", "n2"], randomSeed: 7, now: clock.now)
        m.receive(.ack(sequence: 0, updates: []), from: "n1", id: Self.a, now: clock.now)
        m.receive(.ack(sequence: 0, updates: [MemberUpdate(status: .dead, name: "n1", id: Self.a, incarnation: 0, from: "n2")]),
                  from: "n2", id: Self.b, now: clock.now)
        _ = m.takeOutput()
        #expect(m.member("n1")?.status == .dead)
        // n1's list counts two live members (itself and n2, whom it has not yet heard
        // declare it dead) and says n3 is dead: a tie, where the old rule made the
        // larger name (n3) yield.
        let list = [MemberUpdate(status: .alive, name: "n1", id: Self.a, incarnation: 0, from: "n1"),
                    MemberUpdate(status: .alive, name: "n2", id: Self.b, incarnation: 0, from: "n2"),
                    MemberUpdate(status: .dead, name: "n3", id: Self.c, incarnation: 0, from: "n1")]
        m.receive(.sync(members: list, reply: false), from: "n1", id: Self.a, reliable: true, now: clock.now)
        #expect(m.status == .alive, "a majority side keeps its sessions")
        #expect(!m.takeOutput().events.contains(.selfDeclaredDead))

        // The minority side: n1 alone (n2 and n3 held dead) yields to n2's list of two.
        var (k, clock2) = joined()
        _ = run(&k, &clock2, for: .seconds(20))  // nothing answers: both suspected, then dead
        #expect(k.member("n2")?.status == .dead && k.member("n3")?.status == .dead)
        clock2.advance(by: .milliseconds(1))
        let majority = [MemberUpdate(status: .alive, name: "n2", id: Self.b, incarnation: 0, from: "n2"),
                        MemberUpdate(status: .alive, name: "n3", id: Self.c, incarnation: 0, from: "n3"),
                        MemberUpdate(status: .dead, name: "n1", id: Self.a, incarnation: 0, from: "n2")]
        k.receive(.sync(members: majority, reply: false), from: "n2", id: Self.b, reliable: true, now: clock2.now)
        #expect(k.status == .dead)
        #expect(k.deathVerdict?.declarer == "n2" && k.deathVerdict?.liveHere == 1 && k.deathVerdict?.listLive == 2)
    }

    /// A cut between n1 and n3 alone, n2 reaching both: each declared the other dead by
    /// its own verdict and each sees a majority (itself and n2). Exactly one must rejoin:
    /// they compare lists as two sides do, and the larger name yields.
    @Test func twoNodesEachSeeingAMajorityAndHoldingTheOtherDeadSettleWhoRejoins() {
        func node(_ name: String, _ id: NodeID, holdsDead dead: String, _ deadID: NodeID) -> Membership {
            let clock = ManualClock()
            var m = Membership(selfName: name, selfID: id, seeds: ["n1", "n2", "n3"], randomSeed: 7, now: clock.now)
            m.receive(.ack(sequence: 0, updates: []), from: dead, id: deadID, now: clock.now)
            m.receive(.ack(sequence: 0, updates: []), from: "n2", id: Self.b, now: clock.now)
            m.acceptDeath(of: dead, id: deadID, declaredBy: name, now: clock.now)  // its own verdict
            _ = m.takeOutput()
            #expect(m.member(dead)?.status == .dead && m.member("n2")?.status == .alive)
            return m
        }
        func list(_ name: String, _ id: NodeID, dead: String, _ deadID: NodeID) -> [MemberUpdate] {
            [MemberUpdate(status: .alive, name: name, id: id, incarnation: 0, from: name),
             MemberUpdate(status: .alive, name: "n2", id: Self.b, incarnation: 0, from: "n2"),
             MemberUpdate(status: .dead, name: dead, id: deadID, incarnation: 0, from: name)]
        }
        var n3 = node("n3", Self.c, holdsDead: "n1", Self.a)
        var n1 = node("n1", Self.a, holdsDead: "n3", Self.c)
        n3.receive(.sync(members: list("n1", Self.a, dead: "n3", Self.c), reply: false), from: "n1", id: Self.a, reliable: true, now: ManualClock().now)
        n1.receive(.sync(members: list("n3", Self.c, dead: "n1", Self.a), reply: false), from: "n3", id: Self.c, reliable: true, now: ManualClock().now)
        #expect(n3.status == .dead, "neither yielded: each holds the other dead for good")
        #expect(n1.status == .alive, "both yielded")
    }

    @Test func piggybackedGossipFitsTheBudgetAndIsRetransmittedALimitedNumberOfTimes() {
        var tuning = MembershipTuning()
        tuning.gossipBudget = 200
        let clock = ManualClock()
        var m = Membership(selfName: "n1", selfID: Self.a, seeds: [], tuning: tuning, randomSeed: 1, now: clock.now)
        let names = (0..<40).map { "member-\($0)" }
        m.receive(.sync(members: names.enumerated().map { MemberUpdate(status: .alive, name: $1, id: NodeID(UInt64(1000 + $0)), incarnation: 0, from: $1) },
                        reply: false), from: "member-0", id: NodeID(1000), reliable: true, now: clock.now)
        var sends = 0, seen: [String: Int] = [:]
        for i in 0..<200 {
            m.receive(.ping(sequence: UInt64(i + 1), target: Self.a, updates: []), from: "member-1", id: NodeID(1001), now: clock.now)
            for o in m.takeOutput().outgoing {
                let size = o.message.updates.reduce(0) { $0 + $1.encodedSize }
                #expect(size <= 200)
                for u in o.message.updates { seen[u.name, default: 0] += 1 }
                sends += 1
            }
        }
        // 41 live members: each update goes out 4 * ceil(log10(42)) = 8 times.
        #expect(seen["member-7"] == 8)
        #expect(seen.count == 41)
        #expect(sends == 200)
    }

    @Test func codecRoundTripsEveryMessageAndRefusesHostileBytes() throws {
        let u = [MemberUpdate(status: .suspect, name: "n2", id: Self.b, incarnation: 9, from: "n3"),
                 MemberUpdate(status: .left, name: "node-7", id: NodeID(.max), incarnation: MembershipCodec.maxIncarnation - 1, from: "node-7")]
        let messages: [MembershipMessage] = [
            .ping(sequence: 1, target: Self.a, updates: u), .ping(sequence: .max, target: Self.b, updates: []),
            .ack(sequence: 2, updates: u), .pingRequest(sequence: 3, target: "n3", targetID: Self.c, updates: u),
            .nack(sequence: 4, updates: []), .sync(members: u, reply: true), .sync(members: [], reply: false),
            .leaseRequest(sequence: 5), .leaseGrant(sequence: .max),
        ]
        for message in messages {
            let bytes = MembershipCodec.encode(message)
            #expect(MembershipCodec.isMembership(firstByte: bytes[0]))
            let back = try MembershipCodec.decode(bytes)
            #expect(back == message)
            // Every truncation fails cleanly; so does a trailing byte.
            for cut in 0..<bytes.count {
                #expect(throws: DecodeError.self) { try MembershipCodec.decode(Array(bytes[0..<cut])) }
            }
            #expect(throws: DecodeError.self) { try MembershipCodec.decode(bytes + [0]) }
        }
        // Random mutations never trap.
        var random = SeededGenerator(seed: 42)
        for _ in 0..<2_000 {
            var bytes = MembershipCodec.encode(messages[Int(random.next() % UInt64(messages.count))])
            for _ in 0..<(1 + random.next() % 4) { bytes[Int(random.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: random.next()) }
            _ = try? MembershipCodec.decode(bytes)
        }
        // A bad name, status or count is named.
        var bad = MembershipCodec.encode(.ack(sequence: 1, updates: [u[0]]))
        bad[11] = 9  // status
        #expect(throws: DecodeError.invalid(field: "update.status")) { try MembershipCodec.decode(bad) }
        var upper = MembershipCodec.encode(.ack(sequence: 1, updates: [u[0]]))
        upper[13] = UInt8(ascii: "N")
        #expect(throws: DecodeError.invalid(field: "update.name")) { try MembershipCodec.decode(upper) }
    }

    @Test func freshNodeIDsOfLaterStartsAreLarger() {
        let first = NodeID.fresh(start: WallTime(milliseconds: 1_700_000_000_000), random: .max)
        let second = NodeID.fresh(start: WallTime(milliseconds: 1_700_000_000_001), random: 0)
        #expect(second > first)
    }

    @Test func naturalLogarithmIsAccurate() {
        for (x, ln) in [(1.0, 0.0), (2.0, 0.693_147_180_559_945), (10.0, 2.302_585_092_994_046), (0.5, -0.693_147_180_559_945), (1000.0, 6.907_755_278_982_137)] {
            #expect(abs(MathSupport.ln(x) - ln) < 1e-9)
        }
        #expect(MathSupport.ceilLog10(1) == 1)
        #expect(MathSupport.ceilLog10(11) == 2)
        #expect(MathSupport.ceilLog10(1000) == 3)
    }
}
