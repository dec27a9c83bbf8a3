import Testing
@testable import SessionReplicationCore
import SessionReplicationTestKit

/// Two shards, owner "n1" and backup "n2", joined by a tiny in-test network: batches
/// are framed, decoded and applied by hand, receipts are fed back by hand.
private struct TwoNodes {
    static let n1ID = NodeID(0x1111)
    static let n2ID = NodeID(0x2222)
    static let id = SessionID(high: 0xABCD, low: 0x1234)

    var clock = ManualClock()
    var n1: ReplicaShard
    var n2: ReplicaShard
    /// Highest sequence n2 has seen from n1.
    var lastSequence: UInt64 = 0

    init(_ configure: (inout ReplicationPolicy, inout SessionPolicy) -> Void = { _, _ in }) {
        var policy = ReplicationPolicy()
        var sessions = SessionPolicy()
        configure(&policy, &sessions)
        n1 = ReplicaShard(settings: ShardSettings(selfName: "n1", selfID: Self.n1ID, policy: policy, sessions: sessions, backupCandidates: ["n2"]))
        n2 = ReplicaShard(settings: ShardSettings(selfName: "n2", selfID: Self.n2ID, policy: policy, sessions: sessions, backupCandidates: ["n1"]))
    }

    var epoch: Epoch { Epoch(counter: 1, owner: Self.n1ID) }

    @discardableResult
    mutating func create(_ attributes: [String: [UInt8]] = ["a": [1]], maxInactiveInterval: Duration? = nil) throws(SessionError) -> CommitOutcome {
        try n1.create(id: Self.id, attributes: attributes, maxInactiveInterval: maxInactiveInterval,
                      now: clock.now, wall: clock.wall, sessionCount: n1.ownedCount)
    }

    /// Runs a change scope on the owned session and commits its exact changes.
    @discardableResult
    mutating func commit(_ edit: (inout SessionScope) -> Void) throws(SessionError) -> CommitOutcome {
        guard case .owner(let state) = n1.copy(of: Self.id) else { throw SessionError(.sessionNotFound, "not owned") }
        var scope = SessionScope(state: state)
        edit(&scope)
        let changes = scope.changes
        return try n1.commit(Self.id, changes: changes, maxInactiveInterval: changes.maxInactiveIntervalChanged ? scope.maxInactiveInterval : nil,
                             now: clock.now, wall: clock.wall)
    }

    /// Takes n1's never-sent batches for n2, frames and decodes them.
    mutating func transmit() throws -> [(sequence: UInt64, message: ReplicationMessage)] {
        try decode(n1.takeBatches(for: "n2", now: clock.now, datagram: false))
    }

    func decode(_ batches: [OutboundBatch]) throws -> [(sequence: UInt64, message: ReplicationMessage)] {
        var out: [(sequence: UInt64, message: ReplicationMessage)] = []
        for batch in batches {
            let body = try decodeBody(FrameBody.encode(data: batch.messages, control: []))
            #expect(body.control.isEmpty)
            for (i, m) in body.data.enumerated() { out.append((batch.firstSequence + UInt64(i), m)) }
        }
        return out
    }

    /// Applies messages on n2.
    @discardableResult
    mutating func deliver(_ sent: [(sequence: UInt64, message: ReplicationMessage)]) -> [ApplyOutcome] {
        sent.map { s in
            lastSequence = max(lastSequence, s.sequence)
            return n2.apply(s.message, from: "n1", now: clock.now)
        }
    }

    /// Feeds n2's cumulative receipt back to n1.
    @discardableResult
    mutating func receipt(through: UInt64? = nil) -> [(WaiterID, WaitResult)] {
        n1.onReceipt(from: "n2", Receipt(lane: 0, through: through ?? lastSequence), now: clock.now, datagram: false).completed
    }

    /// Transmits, delivers and receipts everything pending; returns what travelled.
    @discardableResult
    mutating func flush() throws -> [ReplicationMessage] {
        let sent = try transmit()
        let outcomes = deliver(sent)
        #expect(outcomes.allSatisfy { $0 == .applied }, "\(outcomes)")
        receipt()
        return sent.map(\.message)
    }

    mutating func tick() -> ReplicaShard.TickOutcome { n1.tick(now: clock.now, wall: clock.wall, datagram: false) }

    var ownerState: SessionState? {
        if case .owner(let s) = n1.copy(of: Self.id) { return s }
        return nil
    }

    var backupState: SessionState? {
        if case .backup(let s) = n2.copy(of: Self.id) { return s }
        return nil
    }
}

/// The code of the `SessionError` that `body` throws, or `nil` when it succeeds.
private func errorCode(_ body: () throws(SessionError) -> Void) -> SessionError.Code? {
    do {
        try body()
        return nil
    } catch {
        return error.code
    }
}

private func onlyDelta(_ messages: [ReplicationMessage]) -> SessionDelta? {
    guard messages.count == 1, case .delta(let d) = messages[0] else { return nil }
    return d
}

private func onlyFull(_ messages: [ReplicationMessage]) -> SessionState? {
    guard messages.count == 1, case .full(let s) = messages[0] else { return nil }
    return s
}

@Suite("Replica shard: replication")
struct ReplicaShardReplicationTests {
    @Test("creation sends a full state and the backup then holds the same attributes and stamp")
    func creation() throws {
        var net = TwoNodes()
        let outcome = try net.create(["user": bytes("alice"), "n": [1, 2]])
        #expect(outcome.waiter == nil && !outcome.localOnly)
        #expect(outcome.state?.replicaSet == ["n2"])
        let full = try #require(onlyFull(try net.flush()))
        #expect(full.stamp == Stamp(epoch: net.epoch, version: 1))
        #expect(full.attributes == ["user": bytes("alice"), "n": [1, 2]])
        let backup = try #require(net.backupState)
        #expect(backup.attributes == ["user": bytes("alice"), "n": [1, 2]])
        #expect(backup.stamp == net.ownerState?.stamp)
        #expect(backup.replicaSet == ["n2"])
        #expect(net.n1.counters.fullStatesSent == 1 && net.n2.counters.appliedFull == 1)
        #expect(net.n1.streams["n2"]?.entries.isEmpty == true)
    }

    @Test("a commit sends a delta with exactly the changed attributes")
    func delta() throws {
        var net = TwoNodes()
        try net.create(["a": [1], "b": [2], "c": [3]])
        try net.flush()
        try net.commit { s in
            s.set("a", [9])
            s.remove("b")
            s.set("c", [3])
            s.remove("absent")
            s.set("d", [4])
        }
        let d = try #require(onlyDelta(try net.flush()))
        #expect(d.updated == ["a": [9], "d": [4]])
        #expect(d.removed == ["b"])
        #expect(d.baseVersion == 1 && d.version == 2)
        let backup = try #require(net.backupState)
        #expect(backup.attributes == ["a": [9], "c": [3], "d": [4]])
        #expect(backup.stamp.version == 2)
        #expect(net.n1.counters.deltasSent == 1 && net.n2.counters.applied == 1)
    }

    @Test("setting an attribute to the bytes it has is no change: no version bump, nothing sent")
    func sameBytes() throws {
        var net = TwoNodes()
        try net.create(["a": [1, 2]])
        try net.flush()
        let outcome = try net.commit { $0.set("a", [1, 2]) }
        #expect(outcome.state?.stamp.version == 1)
        #expect(net.n1.counters.commits == 0)
        #expect(try net.transmit().isEmpty)
    }

    @Test("time-based writes coalesce commits into one delta at the first tick after writeInterval")
    func timeBased() throws {
        var net = TwoNodes { p, _ in
            p.writeFrequency = .timeBased
            p.writeInterval = .seconds(10)
        }
        try net.create(["a": [1]])
        #expect(onlyFull(try net.flush()) != nil)
        try net.commit { $0.set("a", [2]) }
        net.clock.advance(by: .seconds(1))
        try net.commit { $0.set("b", [3]) }
        #expect(try net.transmit().isEmpty)
        net.clock.advance(by: .milliseconds(8_999))
        _ = net.tick()
        #expect(try net.transmit().isEmpty)
        net.clock.advance(by: .milliseconds(1))
        _ = net.tick()
        let d = try #require(onlyDelta(try net.flush()))
        #expect(d.baseVersion == 1 && d.version == 3)
        #expect(d.updated == ["a": [2], "b": [3]])
        #expect(net.backupState?.attributes == ["a": [2], "b": [3]])

        try net.commit { $0.remove("a") }
        net.clock.advance(by: .seconds(10))
        _ = net.tick()
        let next = try #require(onlyDelta(try net.flush()))
        #expect(next.baseVersion == 3 && next.version == 4 && next.removed == ["a"])
        #expect(net.backupState?.attributes == ["b": [3]])
    }

    @Test("manual writes send nothing until sync")
    func manual() throws {
        var net = TwoNodes { p, _ in p.writeFrequency = .manual }
        try net.create(["a": [1]])
        try net.flush()
        try net.commit { $0.set("a", [2]) }
        try net.commit { $0.set("b", [3]) }
        for _ in 0..<5 {
            net.clock.advance(by: .seconds(60))
            _ = net.tick()
        }
        #expect(try net.transmit().isEmpty)
        #expect(net.backupState?.stamp.version == 1)
        let outcome = try net.n1.sync(TwoNodes.id, now: net.clock.now)
        let waiter = try #require(outcome.waiter)
        let sent = try net.transmit()
        let d = try #require(onlyDelta(sent.map(\.message)))
        #expect(d.baseVersion == 1 && d.version == 3 && d.updated == ["a": [2], "b": [3]])
        net.deliver(sent)
        let done = net.receipt()
        #expect(done.count == 1)
        #expect(done.first?.0 == waiter && done.first?.1 == .replicated(["n2"]))
        #expect(net.backupState?.attributes == ["a": [2], "b": [3]])
    }

    @Test("all-attributes writes send the whole session every time")
    func allAttributes() throws {
        var net = TwoNodes { p, _ in p.writeContents = .allAttributes }
        try net.create(["a": [1], "b": [2]])
        try net.flush()
        try net.commit { $0.set("b", [5]) }
        let full = try #require(onlyFull(try net.flush()))
        #expect(full.attributes == ["a": [1], "b": [5]])
        #expect(full.stamp.version == 2)
        #expect(net.backupState?.stamp.version == 2)
        #expect(net.n1.counters.deltasSent == 0 && net.n1.counters.fullStatesSent == 2)
    }

    @Test("transient attributes never leave the owner")
    func transient() throws {
        var net = TwoNodes { _, s in s.transientAttributes = ["tmp*"] }
        try net.create(["a": [1], "tmpToken": [7]])
        let full = try #require(onlyFull(try net.flush()))
        #expect(full.attributes == ["a": [1]])
        try net.commit { s in
            s.set("tmpOther", [8])
            s.remove("tmpToken")
            s.set("a", [2])
        }
        let d = try #require(onlyDelta(try net.flush()))
        #expect(d.updated == ["a": [2]])
        #expect(d.removed.isEmpty)
        #expect(net.ownerState?.attributes == ["a": [2], "tmpOther": [8]])
        #expect(net.backupState?.attributes == ["a": [2]])
    }

    @Test("a delta whose base does not match asks for a resync, and the full state sent then applies")
    func resync() throws {
        var net = TwoNodes()
        try net.create(["a": [1]])
        try net.flush()
        try net.commit { $0.set("a", [2]) }
        _ = try net.transmit() // lost on the way
        try net.commit { $0.set("b", [3]) }
        let third = try net.transmit()
        #expect(third.map(\.sequence) == [3])
        #expect(net.deliver(third) == [.needsResync])
        #expect(net.backupState?.stamp.version == 1)
        net.n1.onResync(from: "n2", entries: [.init(sequence: 3, id: TwoNodes.id)], now: net.clock.now)
        let sent = try net.transmit()
        let full = try #require(onlyFull(sent.map(\.message)))
        #expect(full.stamp.version == 3)
        #expect(net.deliver(sent) == [.applied])
        #expect(net.backupState == net.ownerState)
        #expect(net.n1.counters.resyncsServed == 1)
    }

    @Test("a full state older than the held copy is ignored")
    func staleFull() throws {
        var net = TwoNodes()
        try net.create(["a": [1]])
        let first = try net.transmit()
        net.deliver(first)
        try net.commit { $0.set("a", [2]) }
        try net.flush()
        #expect(net.deliver(first) == [.ignored])
        #expect(net.backupState?.stamp.version == 2)
        #expect(net.backupState?.attributes == ["a": [2]])
        #expect(net.n2.counters.staleIgnored == 1)
    }

    @Test("an invalidation tombstones the backup and a later older full state is ignored")
    func invalidation() throws {
        var net = TwoNodes { p, _ in p.mode = .bestEffort }
        try net.create(["a": [1]])
        let first = try net.transmit()
        net.deliver(first)
        let outcome = try net.n1.invalidate(TwoNodes.id, reason: .invalidated, now: net.clock.now)
        #expect(outcome.waiter != nil) // acknowledged even in best-effort mode
        let sent = try net.transmit()
        guard sent.count == 1, case .invalidate(let inv) = sent[0].message else { Issue.record("\(sent)"); return }
        #expect(inv.stamp == Stamp(epoch: net.epoch, version: 1) && inv.reason == .invalidated)
        #expect(net.deliver(sent) == [.applied])
        #expect(net.n2.copy(of: TwoNodes.id) == .tombstone(inv.stamp))
        #expect(net.deliver(first) == [.fenced], "refused, so it confirms no write")
        #expect(net.n2.copy(of: TwoNodes.id) == .tombstone(inv.stamp))
        #expect(net.n1.copy(of: TwoNodes.id) == .tombstone(inv.stamp))
        let done = net.receipt()
        #expect(done.map(\.1) == [.replicated(["n2"])])
    }
}

@Suite("Replica shard: modes")
struct ReplicaShardModeTests {
    @Test("best-effort writes meet backpressure: beyond the backlog a change is refused overloaded with nothing applied, passes when forced, and passes again once receipts drain the queue")
    func bestEffortBacklog() throws {
        var net = TwoNodes { p, _ in
            p.mode = .bestEffort
            p.udpWindow = 1      // the backlog is then its floor, 256 KiB
            p.udpMaxPayload = 1400
        }
        try net.create(["a": [1]])
        let big = [UInt8](repeating: 7, count: 16 << 10)
        var accepted = 0
        var refused: SessionError?
        // Nothing receipted: the queue to n2 grows by 16 KiB a write.
        for i in 0..<40 {
            do {
                _ = try net.commit { $0.set("v", big + [UInt8(i)]) }
                accepted += 1
            } catch {
                refused = error
                break
            }
        }
        // Before: best-effort never refused, and the queue grew to maxQueueBytes, then shed.
        #expect(refused?.code == .overloaded, "\(String(describing: refused))")
        #expect((16...17).contains(accepted), "\(accepted) writes before the 256 KiB backlog")
        guard case .owner(let state) = net.n1.copy(of: TwoNodes.id) else { Issue.record("not owned"); return }
        #expect(state.stamp.version == UInt64(1 + accepted), "the refused write applied nothing")
        // The wait is over (syncTimeout passed in the node): the write goes ahead.
        var change = ChangeSet()
        change.updated = ["v": big]
        let forced = try net.n1.commit(TwoNodes.id, changes: change, maxInactiveInterval: nil,
                                       now: net.clock.now, wall: net.clock.wall, ignoringBacklog: true)
        #expect(forced.state?.stamp.version == UInt64(2 + accepted))
        // The backup catches up: receipts empty the queue, and writes pass again at once.
        _ = try net.flush()
        #expect(throws: Never.self) { _ = try net.commit { $0.set("v", [1]) } }
    }

    @Test("acknowledged writes and best-effort time-based writes never meet the backlog")
    func backlogIsBestEffortEndOfServiceOnly() throws {
        for configure: (inout ReplicationPolicy) -> Void in [{ $0.mode = .acknowledged }, { $0.mode = .bestEffort; $0.writeFrequency = .timeBased }] {
            var net = TwoNodes { p, _ in configure(&p); p.udpWindow = 1 }
            try net.create(["a": [1]])
            let big = [UInt8](repeating: 7, count: 16 << 10)
            // 640 KiB queued, none receipted: not one write refused.
            for i in 0..<40 { _ = try net.commit { $0.set("v", big + [UInt8(i)]) } }
        }
    }

    @Test("best-effort resends exactly retryCount times, drops once, and repairs with a full state")
    func bestEffort() throws {
        var net = TwoNodes { p, _ in
            p.mode = .bestEffort
            p.retryCount = 3
            p.retryInterval = .milliseconds(200)
            p.repairInterval = .seconds(30)
        }
        try net.create(["a": [1]])
        #expect(try net.transmit().map(\.sequence) == [1])
        for step in 1...3 {
            net.clock.advance(by: .milliseconds(200))
            let out = net.tick()
            #expect(out.resend.map(\.peer) == ["n2"])
            #expect(try net.decode(out.resend.flatMap(\.batches)).map(\.sequence) == [1])
            #expect(net.n1.counters.retries == step && net.n1.counters.drops == 0)
        }
        net.clock.advance(by: .milliseconds(200))
        // The drop is announced: a frame without data carries the new low watermark.
        let announced = net.tick().resend.flatMap(\.batches)
        #expect(announced.map(\.messages.count) == [0] && announced.map(\.lowWatermark) == [2])
        #expect(net.n1.counters.retries == 3 && net.n1.counters.drops == 1)
        #expect(net.n1.streams["n2"]?.entries.isEmpty == true)
        // Nothing more until the repair pass, which sends the whole session again.
        net.clock.advance(by: .seconds(29))
        _ = net.tick()
        #expect(try net.transmit().isEmpty)
        net.clock.advance(by: .seconds(1))
        _ = net.tick()
        #expect(net.n1.counters.repairsSent == 1)
        let sent = try net.transmit()
        let full = try #require(onlyFull(sent.map(\.message)))
        #expect(sent.map(\.sequence) == [2])
        #expect(full.stamp.version == 1 && full.attributes == ["a": [1]])
        #expect(net.deliver(sent) == [.applied])
    }

    @Test("acknowledged mode resends without end and never drops")
    func acknowledged() throws {
        var net = TwoNodes { p, _ in p.retryInterval = .milliseconds(200) }
        try net.create(["a": [1]])
        _ = try net.transmit()
        for _ in 0..<25 {
            net.clock.advance(by: .milliseconds(200))
            _ = net.tick()
        }
        #expect(net.n1.counters.retries == 25 && net.n1.counters.drops == 0)
        #expect(net.n1.streams["n2"]?.entries.count == 1)
        net.receipt(through: 1)
        #expect(net.n1.streams["n2"]?.entries.isEmpty == true)
    }

    @Test("a synchronous write completes only after the receipt covering its sequence")
    func synchronousReceipt() throws {
        var net = TwoNodes { p, _ in p.mode = .synchronous }
        let created = try #require(try net.create(["a": [1]]).waiter)
        let committed = try #require(try net.commit { $0.set("a", [2]) }.waiter)
        #expect(created != committed)
        let sent = try net.transmit()
        #expect(sent.map(\.sequence) == [1, 2])
        #expect(net.deliver(sent) == [.applied, .applied])
        #expect(net.receipt(through: 0).isEmpty)
        let first = net.receipt(through: 1)
        #expect(first.count == 1 && first.first?.0 == created && first.first?.1 == .replicated(["n2"]))
        let second = net.receipt(through: 2)
        #expect(second.count == 1 && second.first?.0 == committed && second.first?.1 == .replicated(["n2"]))
        #expect(net.receipt(through: 2).isEmpty)
    }

    @Test("a synchronous write that changes nothing waits for the version it leaves, and is replicated once that is receipted")
    func synchronousNoOpWrite() throws {
        var net = TwoNodes { p, _ in p.mode = .synchronous }
        let created = try #require(try net.create(["a": [1]]).waiter)
        let written = try #require(try net.commit { $0.set("a", [2]) }.waiter)
        // The same bytes again: no change, no new version, but version 2 is not on n2 yet.
        let same = try net.commit { $0.set("a", [2]) }
        #expect(same.state?.stamp.version == 2 && !same.localOnly)
        let waiter = try #require(same.waiter)
        #expect(net.n1.settledWait(waiter) == nil)
        let sent = try net.transmit()
        #expect(net.deliver(sent).allSatisfy { $0 == .applied })
        let done = net.receipt(through: sent.map(\.sequence).max() ?? 0)
        #expect(Set(done.map(\.0)) == [created, written, waiter])
        #expect(done.allSatisfy { $0.1 == .replicated(["n2"]) })
        // Receipted already: the next no-op write settles at once.
        let again = try #require(try net.commit { $0.set("a", [2]) }.waiter)
        #expect(net.n1.settledWait(again) == .replicated(["n2"]))
        // Acknowledged mode keeps answering a no-op at once, as any write there.
        var acked = TwoNodes { p, _ in p.mode = .acknowledged }
        try acked.create(["a": [1]])
        #expect(try acked.commit { $0.set("a", [1]) }.waiter == nil)
    }

    @Test("a synchronous write times out after syncTimeout in tick")
    func synchronousTimeout() throws {
        var net = TwoNodes { p, _ in
            p.mode = .synchronous
            p.syncTimeout = .milliseconds(500)
            p.retryInterval = .seconds(5)
        }
        try net.create(["a": [1]])
        try net.flush()
        let waiter = try #require(try net.commit { $0.set("a", [2]) }.waiter)
        _ = try net.transmit()
        net.clock.advance(by: .milliseconds(499))
        #expect(net.tick().completed.isEmpty)
        net.clock.advance(by: .milliseconds(1))
        let out = net.tick()
        #expect(out.completed.count == 1)
        #expect(out.completed.first?.0 == waiter && out.completed.first?.1 == .timedOut([]))
        #expect(net.n1.counters.syncTimeouts == 1)
        // The change stays applied, and a late receipt completes nothing.
        #expect(net.ownerState?.stamp.version == 2)
        #expect(net.receipt(through: 2).isEmpty)
    }

    @Test("a synchronous write with its backup unreachable fails with insufficientReplicas and applies nothing")
    func insufficientReplicas() throws {
        var net = TwoNodes { p, _ in p.mode = .synchronous }
        try net.create(["a": [1]])
        try net.flush()
        net.n1.setReachable("n2", false)
        #expect(errorCode { () throws(SessionError) in try net.commit { $0.set("a", [2]) } } == .insufficientReplicas)
        #expect(net.ownerState?.stamp.version == 1)
        #expect(net.ownerState?.attributes == ["a": [1]])
        #expect(try net.transmit().isEmpty)
        let other = SessionID(high: 9, low: 9)
        let code = errorCode { () throws(SessionError) in
            _ = try net.n1.create(id: other, attributes: [:], maxInactiveInterval: nil, now: net.clock.now, wall: net.clock.wall, sessionCount: 1)
        }
        #expect(code == .insufficientReplicas)
        #expect(net.n1.copy(of: other) == nil && net.n1.ownedCount == 1)
    }

    @Test("with onSyncTimeout degrade an unreachable backup makes the write local-only")
    func degrade() throws {
        var net = TwoNodes { p, _ in
            p.mode = .synchronous
            p.onSyncTimeout = .degrade
        }
        try net.create(["a": [1]])
        try net.flush()
        net.n1.setReachable("n2", false)
        let outcome = try net.commit { $0.set("a", [2]) }
        #expect(outcome.waiter == nil && outcome.localOnly)
        #expect(outcome.state?.stamp.version == 2)
    }

    @Test("values beyond maxAttributeBytes or sessions beyond maxSessionBytes are refused and nothing applies")
    func payloadTooLarge() throws {
        var net = TwoNodes { _, s in
            s.maxAttributeBytes = 8
            s.maxSessionBytes = 19
        }
        try net.create(["a": [1]])
        try net.flush()
        #expect(errorCode { () throws(SessionError) in try net.commit { $0.set("a", Array(repeating: 0, count: 9)) } } == .payloadTooLarge)
        let tooBig = errorCode { () throws(SessionError) in
            try net.commit { s in
                s.set("b", Array(repeating: 0, count: 8))
                s.set("c", Array(repeating: 0, count: 8))
            }
        }
        #expect(tooBig == .payloadTooLarge)
        #expect(net.ownerState?.stamp.version == 1 && net.ownerState?.attributes == ["a": [1]])
        #expect(try net.transmit().isEmpty)
        // Exactly at both limits is fine: (1 + 1) + (1 + 8) + (1 + 7) = 19 bytes.
        try net.commit { s in
            s.set("b", Array(repeating: 0, count: 8))
            s.set("c", Array(repeating: 0, count: 7))
        }
        #expect(net.ownerState?.stamp.version == 2)
        let createCode = errorCode { () throws(SessionError) in
            _ = try net.n1.create(id: SessionID(high: 5, low: 5), attributes: ["x": Array(repeating: 0, count: 9)],
                                  maxInactiveInterval: nil, now: net.clock.now, wall: net.clock.wall, sessionCount: 1)
        }
        #expect(createCode == .payloadTooLarge)
        #expect(net.n1.ownedCount == 1)
    }

    @Test("creation at maxSessions fails with capacity")
    func capacity() throws {
        var net = TwoNodes { _, s in s.maxSessions = 2 }
        let code = errorCode { () throws(SessionError) in
            _ = try net.n1.create(id: TwoNodes.id, attributes: [:], maxInactiveInterval: nil, now: net.clock.now, wall: net.clock.wall, sessionCount: 2)
        }
        #expect(code == .capacity)
        #expect(net.n1.ownedCount == 0 && net.n1.counters.sessionsCreated == 0)
        _ = try net.n1.create(id: TwoNodes.id, attributes: [:], maxInactiveInterval: nil, now: net.clock.now, wall: net.clock.wall, sessionCount: 1)
        #expect(net.n1.ownedCount == 1)
    }
}

@Suite("Replica shard: time and fencing")
struct ReplicaShardTimeTests {
    @Test("the owner expires an idle session after maxInactiveInterval and sends an invalidation")
    func ownerExpiry() throws {
        var net = TwoNodes { _, s in s.maxInactiveInterval = .seconds(60) }
        try net.create(["a": [1]])
        try net.flush()
        net.clock.advance(by: .seconds(59))
        #expect(net.tick().expired.isEmpty)
        #expect(try net.transmit().isEmpty)
        net.clock.advance(by: .seconds(2))
        #expect(net.tick().expired == [TwoNodes.id])
        #expect(net.n1.counters.expired == 1)
        let sent = try net.transmit()
        guard sent.count == 1, case .invalidate(let inv) = sent[0].message else { Issue.record("\(sent)"); return }
        #expect(inv.reason == .expired && inv.stamp.version == 1)
        #expect(net.deliver(sent) == [.applied])
        #expect(net.n2.copy(of: TwoNodes.id) == .tombstone(inv.stamp))
        #expect(net.n1.copy(of: TwoNodes.id) == .tombstone(inv.stamp))
    }

    @Test("an access keeps the session alive past its original deadline")
    func accessExtends() throws {
        var net = TwoNodes { _, s in s.maxInactiveInterval = .seconds(60) }
        try net.create(["a": [1]])
        try net.flush()
        net.clock.advance(by: .seconds(30))
        _ = net.n1.access(TwoNodes.id, wall: net.clock.wall)
        net.clock.advance(by: .seconds(40))
        #expect(net.tick().expired.isEmpty)
        net.clock.advance(by: .seconds(22))
        #expect(net.tick().expired == [TwoNodes.id])
    }

    @Test("a backup evicts its copy after maxInactiveInterval + backupGrace without word, and only then")
    func backupEviction() throws {
        var net = TwoNodes { _, s in
            s.maxInactiveInterval = .seconds(60)
            s.backupGrace = .seconds(30)
        }
        try net.create(["a": [1]])
        try net.flush()
        // Word from the owner at 50 s moves the deadline to 140 s.
        net.clock.advance(by: .seconds(50))
        try net.commit { $0.set("a", [2]) }
        try net.flush()
        net.clock.advance(by: .seconds(42))
        _ = net.n2.tick(now: net.clock.now, wall: net.clock.wall, datagram: false)
        #expect(net.backupState?.stamp.version == 2)
        net.clock.advance(by: .seconds(47))
        _ = net.n2.tick(now: net.clock.now, wall: net.clock.wall, datagram: false)
        #expect(net.backupState != nil)
        net.clock.advance(by: .seconds(2))
        _ = net.n2.tick(now: net.clock.now, wall: net.clock.wall, datagram: false)
        #expect(net.n2.copy(of: TwoNodes.id) == nil)
        #expect(net.n2.counters.backupsEvicted == 1)
        #expect(net.n2.streams.isEmpty) // local: nothing is sent
    }

    @Test("an owner refuses messages from an older epoch and keeps its session")
    func fencing() throws {
        var net = TwoNodes()
        try net.create(["a": [1]])
        let mine = try #require(net.ownerState)
        var older = mine
        older.stamp = Stamp(epoch: Epoch(counter: 0, owner: NodeID(0xFFFF)), version: 9)
        older.attributes = ["a": [66]]
        #expect(net.n1.apply(.full(older), from: "n2", now: net.clock.now) == .fenced)
        var sameEpoch = mine
        sameEpoch.stamp.version = 5
        #expect(net.n1.apply(.full(sameEpoch), from: "n2", now: net.clock.now) == .fenced)
        let staleInvalidation = Invalidation(id: TwoNodes.id, stamp: older.stamp, reason: .invalidated)
        #expect(net.n1.apply(.invalidate(staleInvalidation), from: "n2", now: net.clock.now) == .fenced)
        let delta = SessionDelta(id: TwoNodes.id, epoch: older.stamp.epoch, baseVersion: 9, version: 10, lastAccessedAt: net.clock.wall,
                                 maxInactiveInterval: .seconds(60), replicaSet: ["n1"], updated: ["a": [7]], removed: [])
        #expect(net.n1.apply(.delta(delta), from: "n2", now: net.clock.now) == .fenced)
        #expect(net.n1.counters.fencedRejected == 4)
        #expect(net.ownerState == mine)
        // A newer epoch, by contrast, takes the session over.
        var newer = mine
        newer.stamp = Stamp(epoch: Epoch(counter: 2, owner: TwoNodes.n2ID), version: 1)
        newer.replicaSet = ["n1"]
        #expect(net.n1.apply(.full(newer), from: "n2", now: net.clock.now) == .applied)
        #expect(net.n1.copy(of: TwoNodes.id) == .backup(newer))
        // A whole session whose replica set leaves this node out releases its copy.
        var moved = newer
        moved.replicaSet = ["n3"]
        #expect(net.n1.apply(.full(moved), from: "n2", now: net.clock.now) == .applied)
        #expect(net.n1.copy(of: TwoNodes.id) == nil)
    }
}

@Suite("Replica shard: regressions found in review")
struct ReplicaShardBugTests {
    @Test("a sync under time-based writes leaves nothing for the next timed write")
    func syncThenTimedWrite() throws {
        var net = TwoNodes { p, _ in
            p.writeFrequency = .timeBased
            p.writeInterval = .seconds(10)
        }
        try net.create(["a": [1]])
        try net.flush()
        try net.commit { $0.set("a", [2]) }
        _ = try net.n1.sync(TwoNodes.id, now: net.clock.now)
        let d = try #require(onlyDelta(try net.flush()))
        #expect(d.baseVersion == 1 && d.version == 2)
        net.clock.advance(by: .seconds(10))
        _ = net.tick()
        let batches = net.n1.takeBatches(for: "n2", now: net.clock.now, datagram: false)
        #expect(batches.isEmpty)
        for batch in batches {
            #expect(throws: Never.self) { _ = try decodeBody(FrameBody.encode(data: batch.messages, control: [])) }
        }
    }

    @Test("shrinking maxInactiveInterval brings the owner's expiry forward")
    func shrinkingIdleLimit() throws {
        var net = TwoNodes { _, s in s.maxInactiveInterval = .seconds(1800) }
        try net.create(["a": [1]])
        try net.commit { $0.maxInactiveInterval = .seconds(60) }
        #expect(net.ownerState?.maxInactiveInterval == .seconds(60))
        net.clock.advance(by: .seconds(62))
        #expect(net.tick().expired == [TwoNodes.id])
    }

    @Test("owner-side expiry is not counted as a sync timeout and completes no unknown wait")
    func expiryWaiter() throws {
        var net = TwoNodes { p, s in
            s.maxInactiveInterval = .seconds(60)
            p.syncTimeout = .milliseconds(500)
        }
        try net.create(["a": [1]])
        try net.flush()
        net.clock.advance(by: .seconds(62))
        #expect(net.tick().expired == [TwoNodes.id])
        net.clock.advance(by: .seconds(1))
        let out = net.tick()
        #expect(out.completed.isEmpty)
        #expect(net.n1.counters.syncTimeouts == 0)
    }

    @Test("attribute names the wire refuses are refused at commit with invalidAttributeName")
    func invalidNames() throws {
        for name in ["", "bad\u{0}", String(repeating: "n", count: 257)] {
            var net = TwoNodes()
            try net.create(["a": [1]])
            let code = errorCode { () throws(SessionError) in try net.commit { $0.set(name, [1]) } }
            #expect(code == .invalidAttributeName, "\(name.debugDescription.prefix(20))")
            #expect(net.ownerState?.stamp.version == 1)
        }
    }

    @Test("a tombstone beats an older-epoch delta even when its version is higher")
    func tombstoneBeatsOlderEpochDelta() throws {
        var net = TwoNodes()
        let tombstone = Stamp(epoch: Epoch(counter: 2, owner: TwoNodes.n2ID), version: 5)
        #expect(net.n2.apply(.invalidate(Invalidation(id: TwoNodes.id, stamp: tombstone, reason: .invalidated)), from: "n1", now: net.clock.now) == .applied)
        let zombie = SessionDelta(id: TwoNodes.id, epoch: net.epoch, baseVersion: 5, version: 6, lastAccessedAt: net.clock.wall,
                                  maxInactiveInterval: .seconds(60), replicaSet: ["n2"], updated: ["a": [6]], removed: [])
        #expect(net.n2.apply(.delta(zombie), from: "n1", now: net.clock.now) == .ignored)
        #expect(net.n2.copy(of: TwoNodes.id) == .tombstone(tombstone))
    }

    @Test("every state a shard sends decodes, whatever idle limit creation was given")
    func unencodableIdleLimit() throws {
        for limit: Duration in [.microseconds(500), .zero, .seconds(-5), .seconds(400 * 86_400)] {
            var net = TwoNodes()
            do {
                try net.create(["a": [1]], maxInactiveInterval: limit)
            } catch {
                continue // refusing is fine
            }
            let batches = net.n1.takeBatches(for: "n2", now: net.clock.now, datagram: false)
            #expect(throws: Never.self, "\(limit)") { _ = try net.decode(batches) }
        }
    }
}

@Suite("Replica shard: resync requests that get lost")
struct LostResyncTests {
    @Test("a synchronous wait is not confirmed by a receipt when the backup's resync request was lost; the repeated request moves it to the whole session")
    func lostResyncDoesNotConfirm() throws {
        var net = TwoNodes { p, _ in
            p.mode = .synchronous
            p.minSyncReplicas = 1
        }
        try net.create()
        try net.flush()
        // The backup loses its copy (it restarted, say): the next delta cannot apply.
        net.n2 = ReplicaShard(settings: net.n2.settings)
        var inbound = InboundStream()
        let write = try net.commit { $0.set("b", [2]) }
        let waiter = try #require(write.waiter)
        let sent = try net.transmit()
        let delivery = inbound.accept(firstSequence: sent[0].sequence, lowWatermark: sent[0].sequence, messages: sent.map(\.message),
                                      now: net.clock.now, reorderFrames: 64, reorderDelay: .milliseconds(20))
        #expect(net.deliver(delivery.messages.map { ($0.sequence, $0.message) }) == [.needsResync])
        inbound.needsResync(TwoNodes.id, sequence: sent[0].sequence, now: net.clock.now)
        // The frame with the resync request and its receipt is lost. The next receipt
        // covers the sequence but repeats the request first, as every receipt does.
        let repeated = inbound.pendingResyncs(now: net.clock.now)
        #expect(repeated == [.init(sequence: sent[0].sequence, id: TwoNodes.id)])
        net.n1.onResync(from: "n2", entries: repeated, now: net.clock.now)
        #expect(net.receipt(through: sent[0].sequence).isEmpty, "confirmed a change the backup never applied")
        // A second repeat does not queue a second copy of the session.
        net.n1.onResync(from: "n2", entries: repeated, now: net.clock.now)
        let full = try net.transmit()
        #expect(full.count == 1)
        guard case .full = full[0].message else { Issue.record("expected a whole session"); return }
        #expect(net.deliver(full) == [.applied])
        inbound.resolved(TwoNodes.id)
        #expect(inbound.pendingResyncs(now: net.clock.now).isEmpty)
        let done = net.receipt(through: full[0].sequence)
        #expect(done.map(\.0) == [waiter])
        #expect(done.first?.1 == .replicated(["n2"]))
    }

    @Test("a resync request is given up after resyncPatience")
    func resyncPatience() {
        var s = InboundStream()
        s.needsResync(SessionID(high: 1, low: 1), sequence: 4, now: .zero)
        #expect(s.pendingResyncs(now: .zero + .seconds(29)).count == 1)
        #expect(s.pendingResyncs(now: .zero + .seconds(30)).isEmpty)
    }
}

@Suite("Replica shard: resync answers never leak unflushed changes")
struct ResyncUnflushedTests {
    @Test("under manual writes a resync is answered with the whole session only when it is flushed")
    func manualResyncWaitsForFlush() throws {
        var net = TwoNodes { p, _ in p.writeFrequency = .manual }
        try net.create()
        try net.flush()
        try net.commit { $0.set("secret", [9]) }
        #expect(try net.transmit().isEmpty)
        net.n1.onResync(from: "n2", entries: [.init(sequence: 1, id: TwoNodes.id)], now: net.clock.now)
        #expect(try net.transmit().isEmpty, "the resync answer carried a change the application had not synced")
        _ = try net.n1.sync(TwoNodes.id, now: net.clock.now)
        let sent = try net.transmit()
        #expect(sent.count == 1)
        guard case .full(let s) = sent.first?.message else { Issue.record("expected the whole session"); return }
        #expect(s.attributes["secret"] == [9] && s.stamp.version == 2)
    }

    @Test("with nothing unflushed a resync is answered at once with the whole session")
    func resyncAnsweredAtOnce() throws {
        var net = TwoNodes()
        try net.create()
        try net.flush()
        net.n1.onResync(from: "n2", entries: [.init(sequence: 1, id: TwoNodes.id)], now: net.clock.now)
        let sent = try net.transmit()
        guard sent.count == 1, case .full(let s) = sent[0].message else { Issue.record("expected one whole session"); return }
        #expect(s.stamp.version == 1)
    }
}

@Suite("Replica shard: ended ids created again")
struct NewGenerationTests {
    @Test("creating an id that ended starts a new generation whose state beats the backup's tombstone")
    func recreateAfterInvalidation() throws {
        var net = TwoNodes()
        try net.create(["a": [1]])
        try net.flush()
        _ = try net.n1.invalidate(TwoNodes.id, reason: .invalidated, now: net.clock.now)
        try net.flush()
        guard case .tombstone(let t) = net.n2.copy(of: TwoNodes.id) else { Issue.record("no tombstone on the backup"); return }
        try net.create(["a": [2]])
        let created = try #require(net.ownerState)
        #expect(created.stamp.epoch.counter == t.epoch.counter + 1)
        #expect(created.stamp > t)
        try net.flush()
        #expect(net.backupState?.attributes == ["a": [2]])
        #expect(net.backupState?.stamp == created.stamp)
    }
}
