import Testing
@testable import SessionReplicationCore
import SessionReplicationTestKit

/// One `NodeCore` driven event by event: frames and membership messages made by hand,
/// actions read back.
struct NodeCoreTests {
    static let p1 = NodeID(1_000), p1b = NodeID(5_000), p3 = NodeID(3_000)
    static let id = SessionID(high: 42, low: 1)

    /// Node n2 of n1, n2, n3 (a backup), lanes 1.
    static func backup() -> NodeCore {
        var p = ReplicationPolicy()
        p.mode = .synchronous
        p.minSyncReplicas = 1
        let s = NodeSettings(name: "n2", members: ["n1", "n2", "n3"], backupCandidates: ["n1", "n3"], policy: p,
                             sessions: SessionPolicy(), membership: MembershipTuning())
        return NodeCore(settings: s, id: NodeID(2_000), randomSeed: 7, now: .zero)
    }

    static func state(version: UInt64, epochOwner: NodeID = p1, attributes: [String: [UInt8]] = ["a": [1]]) -> SessionState {
        SessionState(id: id, stamp: Stamp(epoch: Epoch(counter: 1, owner: epochOwner), version: version), attributes: attributes,
                     createdAt: WallTime(milliseconds: 1), lastAccessedAt: WallTime(milliseconds: 1),
                     maxInactiveInterval: .seconds(60), replicaSet: ["n2"])
    }

    static func frame(_ sender: NodeID, seq: UInt64, low: UInt64 = 1, _ data: [ReplicationMessage]) -> InboundFrame {
        InboundFrame(senderName: "n1", sender: sender, lane: 0, firstSequence: seq, lowWatermark: low, data: data)
    }

    static func receipts(_ actions: [NodeAction]) -> [Receipt] {
        actions.flatMap { a -> [Receipt] in
            guard case .send(_, let t) = a else { return [] }
            return t.control.compactMap { if case .receipt(let r) = $0 { r } else { nil } }
        }
    }

    var clock = ManualClock()

    /// n1's drain handing session `id` to the node unasked (request id 0), last accessed
    /// now so that it does not expire when the node ticks.
    func drainHandover(_ id: SessionID) -> InboundFrame {
        var state = Self.state(version: 1)
        state.id = id
        state.lastAccessedAt = clock.wall
        let reply = HandoverReply(requestID: 0, id: id, answer: .transferred(state))
        return InboundFrame(senderName: "n1", sender: Self.p1, control: [.handoverReply(reply)])
    }

    @Test("clock samples handed over out of order are no clock jump; a wall clock that ran ahead of the monotonic one is")
    func staleClockSamplesAreNoJump() {
        var b = Self.backup()
        func at(_ mono: Int64, _ wall: Int64) {
            _ = b.tick(now: .zero + .milliseconds(mono), wall: WallTime(milliseconds: 1_700_000_000_000 + wall))
        }
        at(1_000, 1_000)
        at(1_100, 1_100)
        at(1_050, 1_050)  // read before the event above, handed over after it
        at(1_200, 1_200)
        #expect(b.nodeCounters.clockJumps == 0, "a sample older than the last one was taken for a paused monotonic clock")
        at(1_210, 2_210)  // a second of wall time in 10 ms of monotonic time: a paused VM
        #expect(b.nodeCounters.clockJumps == 1)
        at(1_300, 2_300)
        #expect(b.nodeCounters.clockJumps == 1)
    }

    @Test("the absence grace counts from when the node starts listening, not from when it was built")
    func absenceGraceCountsFromListening() {
        var b = Self.backup()
        let wall = WallTime(milliseconds: 1_700_000_000_000)
        let built: Duration = .seconds(100)  // an application built the node, then started it later
        _ = b.listening(now: .zero + built, wall: wall + built)
        _ = b.tick(now: .zero + built + .seconds(1), wall: wall + built + .seconds(1))
        #expect(b.absent.isEmpty, "peers were held absent one second after the node began to listen")
        let grace = NodeCore.absenceGrace(b.settings)
        _ = b.tick(now: .zero + built + grace, wall: wall + built + grace)
        #expect(b.absent == ["n1", "n3"])
    }

    @Test("hole 7: a receipt queued for a process that restarted meanwhile is never sent to its successor")
    mutating func receiptsOfARestartedSenderAreDropped() {
        var b = Self.backup()
        // n1's first process replicates; the connection back to n1 is down, so the receipt
        // waits in the queue.
        _ = b.receiveFrame(Self.frame(Self.p1, seq: 1, [.full(Self.state(version: 1))]), now: clock.now, wall: clock.wall)
        _ = b.flush("n1", now: clock.now, wall: clock.wall, streamConnected: false)
        clock.advance(by: .milliseconds(10))
        // n1 restarted: its new process's first frame arrives, then the connection is up.
        _ = b.receiveFrame(InboundFrame(senderName: "n1", sender: Self.p1b, membership: .leaseGrant(sequence: 1)), now: clock.now, wall: clock.wall)
        let sent = Self.receipts(b.flush("n1", now: clock.now, wall: clock.wall, streamConnected: true))
        #expect(sent.allSatisfy { $0.stream == Self.p1b }, "a receipt for the old process's stream reached the new one: \(sent)")
        // And an owner never counts a receipt about another process's stream.
        var owner = NodeCore(settings: NodeSettings(name: "n1", members: ["n1", "n2"], backupCandidates: ["n2"], policy: ReplicationPolicy(),
                                                    sessions: SessionPolicy(), membership: MembershipTuning()),
                             id: Self.p1b, randomSeed: 1, now: .zero)
        _ = owner.receiveFrame(InboundFrame(senderName: "n2", sender: NodeID(2_000), control: [.receipt(Receipt(lane: 0, through: 5, stream: Self.p1))]),
                               now: clock.now, wall: clock.wall)
        #expect(owner.nodeCounters.foreignReceipts == 1)
    }

    @Test("hole 8: a refusal lost with its receipt is repeated in the next receipt, never turned into an acknowledgement")
    mutating func refusalsAreRepeatedUntilTheSenderMovesOn() {
        var b = Self.backup()
        // n3 is alive under process p3 and takes the session over from n1 (it asks n2 to
        // promise): n2's copy now answers to n3.
        _ = b.receiveMembership(.ping(sequence: 1, target: NodeID(2_000), updates: []), from: "n3", id: Self.p3, reliable: false, now: clock.now, wall: clock.wall)
        _ = b.receiveFrame(Self.frame(Self.p1, seq: 1, [.full(Self.state(version: 1))]), now: clock.now, wall: clock.wall)
        _ = b.flush("n1", now: clock.now, wall: clock.wall, streamConnected: true)
        _ = b.receiveFrame(InboundFrame(senderName: "n3", sender: Self.p3,
                                        control: [.prepare(PrepareRequest(oldOwner: "n1", oldOwnerID: Self.p1, entries: [.init(id: Self.id, stamp: Self.state(version: 1).stamp)]))]),
                           now: clock.now, wall: clock.wall)
        // n1, not yet told, commits version 2: refused. That receipt is lost (a reset).
        var full2 = Self.state(version: 2)
        full2.attributes["b"] = [2]
        _ = b.receiveFrame(Self.frame(Self.p1, seq: 2, [.full(full2)]), now: clock.now, wall: clock.wall)
        let lost = Self.receipts(b.flush("n1", now: clock.now, wall: clock.wall, streamConnected: true))
        #expect(lost.last?.refused == [2])
        // n1's next message (its low watermark still 2: nothing receipted past 1 reached it).
        _ = b.receiveFrame(Self.frame(Self.p1, seq: 3, low: 2, [.touch(Touch(id: Self.id, stamp: full2.stamp, lastAccessedAt: WallTime(milliseconds: 5)))]),
                           now: clock.now, wall: clock.wall)
        let next = Self.receipts(b.flush("n1", now: clock.now, wall: clock.wall, streamConnected: true))
        #expect(next.last?.through == 3)
        #expect(next.last?.refused.contains(2) == true, "the refusal of 2 must be repeated: \(next)")
        // Once n1's low watermark passed 2, it is not repeated any more.
        _ = b.receiveFrame(Self.frame(Self.p1, seq: 4, low: 4, [.touch(Touch(id: Self.id, stamp: full2.stamp, lastAccessedAt: WallTime(milliseconds: 6)))]),
                           now: clock.now, wall: clock.wall)
        #expect(Self.receipts(b.flush("n1", now: clock.now, wall: clock.wall, streamConnected: true)).last?.refused == [])
    }

    @Test("a copy sent by a process this node holds dead is refused, not stored where nobody promotes it")
    mutating func framesOfADeadProcessAreRefused() {
        var b = Self.backup()
        _ = b.receiveMembership(.ping(sequence: 1, target: NodeID(2_000), updates: []), from: "n1", id: Self.p1, reliable: false, now: clock.now, wall: clock.wall)
        _ = b.receiveMembership(.ping(sequence: 2, target: NodeID(2_000), updates: [MemberUpdate(status: .dead, name: "n1", id: Self.p1, incarnation: 0, from: "n3")]),
                                from: "n3", id: Self.p3, reliable: false, now: clock.now, wall: clock.wall)
        #expect(b.membership.member("n1")?.status == .dead)
        let actions = b.receiveFrame(Self.frame(Self.p1, seq: 1, [.full(Self.state(version: 1))]), now: clock.now, wall: clock.wall)
        // Held dead means retired at once: its frames are refused from then on.
        #expect(actions.contains(.refused(.retiredProcess)))
        #expect(b.copy(of: Self.id) == nil)
    }

    @Test("a member that hands a session over unasked is draining: no failover or refill places a copy on it until a new process of it is alive")
    mutating func aDrainingGiverIsPlacedNoMore() {
        var b = Self.backup()
        _ = b.receiveMembership(.ping(sequence: 1, target: NodeID(2_000), updates: []), from: "n1", id: Self.p1, reliable: false, now: clock.now, wall: clock.wall)
        _ = b.receiveMembership(.ping(sequence: 1, target: NodeID(2_000), updates: []), from: "n3", id: Self.p3, reliable: false, now: clock.now, wall: clock.wall)
        // n1 drains: it hands its session to n2 (request id 0, nobody asked).
        _ = b.receiveFrame(drainHandover(Self.id), now: clock.now, wall: clock.wall)
        #expect(b.ownedState(Self.id)?.replicaSet == ["n3"])
        // n3 dies: its replacement must not be the draining n1.
        _ = b.receiveMembership(.ping(sequence: 2, target: NodeID(2_000), updates: [MemberUpdate(status: .dead, name: "n3", id: Self.p3, incarnation: 0, from: "n1")]),
                                from: "n1", id: Self.p1, reliable: false, now: clock.now, wall: clock.wall)
        #expect(b.ownedState(Self.id).map { !$0.replicaSet.contains("n1") } == true, "a failover placed a copy on the draining n1")
        // n1 restarted (a new process): it backs sessions again.
        _ = b.receiveMembership(.ping(sequence: 3, target: NodeID(2_000), updates: []), from: "n1", id: Self.p1b, reliable: false, now: clock.now, wall: clock.wall)
        for _ in 0..<3 {
            clock.advance(by: .milliseconds(100))
            _ = b.tick(now: clock.now, wall: clock.wall)
        }
        #expect(b.ownedState(Self.id)?.replicaSet == ["n1"])
    }

    @Test("after this node rejoins, a member still draining is marked again by its next handover and placed no more")
    mutating func aDrainingGiverIsMarkedAgainAfterARejoin() {
        var b = Self.backup()
        func alive(_ name: String, _ pid: NodeID, _ seq: UInt64) {
            _ = b.receiveMembership(.ping(sequence: seq, target: b.id, updates: []), from: name, id: pid, reliable: false, now: clock.now, wall: clock.wall)
        }
        func handOver(_ id: SessionID) { _ = b.receiveFrame(drainHandover(id), now: clock.now, wall: clock.wall) }
        alive("n1", Self.p1, 1)
        alive("n3", Self.p3, 1)
        handOver(SessionID(high: 42, low: 1))
        b.rejoin()
        alive("n1", Self.p1, 2)
        alive("n3", Self.p3, 2)
        let second = SessionID(high: 42, low: 2)
        handOver(second)
        #expect(b.ownedState(second)?.replicaSet == ["n3"])
        _ = b.receiveMembership(.ping(sequence: 3, target: b.id, updates: [MemberUpdate(status: .dead, name: "n3", id: Self.p3, incarnation: 0, from: "n1")]),
                                from: "n1", id: Self.p1, reliable: false, now: clock.now, wall: clock.wall)
        #expect(b.ownedState(second).map { !$0.replicaSet.contains("n1") } == true, "after the rejoin a failover placed a copy on the draining n1")
    }

    @Test("a drain in progress when this node is declared dead completes with what it handed over, and the node stays leaving")
    mutating func aDrainEndsWhenTheNodeRejoins() {
        var b = Self.backup()
        _ = b.receiveMembership(.ping(sequence: 1, target: b.id, updates: []), from: "n1", id: Self.p1, reliable: false, now: clock.now, wall: clock.wall)
        _ = b.receiveMembership(.ping(sequence: 1, target: b.id, updates: []), from: "n3", id: Self.p3, reliable: false, now: clock.now, wall: clock.wall)
        _ = b.receiveFrame(drainHandover(Self.id), now: clock.now, wall: clock.wall)
        // No lease from n3 yet: the session may not be served, so the drain waits for it.
        let started = b.drain(RequestID(9), now: clock.now, wall: clock.wall)
        #expect(!started.contains { if case .complete(RequestID(9), _) = $0 { true } else { false } })
        b.rejoin()
        let actions = b.takeActions()
        #expect(actions.contains(.complete(RequestID(9), .drained(0))), "the drain did not complete at the rejoin: \(actions)")
        #expect(b.status(now: clock.now).state == "leaving")
    }

    @Test("a late frame of an earlier process (a smaller id) is refused and does not retire the current process")
    mutating func aLateFrameOfAnEarlierProcessRetiresNothing() {
        var b = Self.backup()
        _ = b.receiveFrame(Self.frame(Self.p1, seq: 1, [.full(Self.state(version: 1))]), now: clock.now, wall: clock.wall)
        // n1 restarted as p1b; a process it ran between (smaller id, never heard from
        // here: it learned of p1 and took a larger id) sent a frame that arrives last.
        _ = b.receiveFrame(InboundFrame(senderName: "n1", sender: Self.p1b, membership: .leaseGrant(sequence: 1)), now: clock.now, wall: clock.wall)
        #expect(b.peers["n1"]?.current == Self.p1b)
        let between = NodeID(4_000)
        let actions = b.receiveFrame(InboundFrame(senderName: "n1", sender: between, control: [.receipt(Receipt(lane: 0, through: 1, stream: NodeID(2_000)))]),
                                     now: clock.now, wall: clock.wall)
        #expect(actions.contains(.refused(.retiredProcess)))
        #expect(b.peers["n1"]?.current == Self.p1b, "the late frame of an earlier process retired the current one")
        #expect(b.peers["n1"]?.retired.contains(Self.p1b) == false)
    }

    @Test("a message that did not decode is refused alone: the ones behind it apply, and the receipt names it")
    mutating func oneBadMessageIsRefusedAlone() {
        var b = Self.backup()
        var body = FrameBody.Decoded()
        let other = SessionID(high: 42, low: 2)
        var second = Self.state(version: 1)
        second.id = other
        body.data = [.init(index: 0, message: .full(Self.state(version: 1))), .init(index: 2, message: .full(second))]
        body.refused = [.init(sequenced: true, index: 1, error: .tooLarge(field: "full.attributeCount", limit: 4096, found: 70_000))]
        let frame = InboundFrame(senderName: "n1", sender: Self.p1, lane: 0, firstSequence: 1, lowWatermark: 1, decoded: body)
        #expect(frame.refusedData == [1] && frame.data.count == 3)
        _ = b.receiveFrame(frame, now: clock.now, wall: clock.wall)
        #expect(b.copy(of: Self.id) != nil && b.copy(of: other) != nil, "the messages around the bad one apply")
        let r = Self.receipts(b.flush("n1", now: clock.now, wall: clock.wall, streamConnected: true))
        #expect(r.last?.through == 3 && r.last?.refused == [2])
        #expect(b.nodeCounters.messagesRefused == 1)
    }

    @Test("an owner whose backup keeps refusing a session stops resending it after maxRefusals, counts it and calls it under-replicated")
    mutating func refusedForGood() throws {
        var p = ReplicationPolicy()
        p.repairInterval = .milliseconds(100)
        var owner = ReplicaShard(settings: ShardSettings(selfName: "n1", selfID: Self.p1, policy: p, sessions: SessionPolicy(), backupCandidates: ["n2"]))
        _ = try owner.create(id: Self.id, attributes: ["a": [1]], maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: 0)
        var givenUp: [SessionID] = []
        _ = owner.tick(now: clock.now, wall: clock.wall, datagram: false)  // sets the first repair time
        for _ in 0...ReplicaShard.maxRefusals {
            guard let batch = owner.takeBatches(for: "n2", now: clock.now, datagram: false).first else { break }
            let seq = batch.firstSequence
            givenUp += owner.onReceipt(from: "n2", Receipt(lane: 0, through: seq, refused: [seq]), now: clock.now, datagram: false).givenUp
            clock.advance(by: .milliseconds(150))
            _ = owner.tick(now: clock.now, wall: clock.wall, datagram: false)
        }
        #expect(givenUp == [Self.id])
        #expect(owner.counters.refusedForGood == 1)
        #expect(owner.underReplicatedCount == 1)
        clock.advance(by: .milliseconds(150))
        _ = owner.tick(now: clock.now, wall: clock.wall, datagram: false)
        #expect(owner.takeBatches(for: "n2", now: clock.now, datagram: false).isEmpty, "nothing is resent any more")
    }

    @Test("a node whose backup keeps refusing a session's changes logs it once, naming the peer and the session, and stops resending")
    mutating func givingUpIsLogged() {
        var p = ReplicationPolicy()
        p.repairInterval = .milliseconds(100)
        let s = NodeSettings(name: "n1", members: ["n1", "n2"], backupCandidates: ["n2"], policy: p,
                             sessions: SessionPolicy(), membership: MembershipTuning())
        var owner = NodeCore(settings: s, id: Self.p1, randomSeed: 7, now: clock.now)
        _ = owner.listening(now: clock.now, wall: clock.wall)
        _ = owner.receiveMembership(.ping(sequence: 1, target: Self.p1, updates: []), from: "n2", id: NodeID(2_000), reliable: false,
                                    now: clock.now, wall: clock.wall)
        _ = owner.create(RequestID(1), id: Self.id, attributes: ["a": [1]], maxInactiveInterval: nil, now: clock.now, wall: clock.wall)
        var logs: [NodeLog] = []
        var sent = 0
        for _ in 0..<12 {
            var actions = owner.tick(now: clock.now, wall: clock.wall)
            actions += owner.flush("n2", now: clock.now, wall: clock.wall, streamConnected: true)
            let sequences = actions.flatMap { a -> [UInt64] in
                guard case .send("n2", let t) = a else { return [] }
                return t.batches.flatMap { b in b.batch.messages.indices.map { b.batch.firstSequence + UInt64($0) } }
            }
            sent += sequences.count
            for seq in sequences {
                let refusal = InboundFrame(senderName: "n2", sender: NodeID(2_000), control: [.receipt(Receipt(lane: 0, through: seq, refused: [seq], stream: Self.p1))])
                actions += owner.receiveFrame(refusal, now: clock.now, wall: clock.wall)
            }
            logs += actions.compactMap { if case .log(let l) = $0, l.level == .warning { l } else { nil } }
            clock.advance(by: .milliseconds(150))
        }
        let givenUp = logs.filter { $0.message.contains("keeps refusing") }
        #expect(sent == ReplicaShard.maxRefusals + 1, "sent once, resent after each of maxRefusals refusals, then no more")
        #expect(givenUp.count == 1, "\(logs)")
        #expect(givenUp.first?.metadata["drs.peer"] == "n2")
        #expect(givenUp.first?.metadata["drs.sessions"] == "\(Self.id)")
        #expect(givenUp.first?.metadata["drs.count"] == "1")
    }
}

