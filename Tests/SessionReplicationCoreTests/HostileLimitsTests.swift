import Foundation
import Testing
@testable import SessionReplicationCore
import SessionReplicationTestKit

/// Hostile input against the wire codec and the replica shard: nesting, stamps at the
/// top of their range, oversized sessions, per-message refusal.
@Suite(.offThePool)
struct HostileLimitsTests {
    static let owner = NodeID(0x77)

    /// `depth` promises, each carrying the next as its "state", around one whole session.
    static func nestedPromises(depth: Int) -> [UInt8] {
        let inner = MessageCodec.encode(.full(sampleFull()))
        let fields: [UInt8] = {
            var f = ByteWriter(capacity: 40)
            f.write(UInt8(1)); f.write(UInt8(2)); f.writeRaw("n1".utf8) // oldOwner
            f.write(NodeID.none)                                    // oldOwnerID
            f.write(UInt32(0))                                      // sinceGrantMs
            f.write(UInt32(1))                                      // one entry
            f.write(sampleID.high); f.write(sampleID.low); f.write(UInt8(1)) // fresher state follows
            return f.bytes
        }()
        // Written from the outside in: a level's length covers every level inside it.
        // (Built from the inside out, each level copied the growing body: quadratic in
        // depth, and the test spent minutes building its input.)
        let level = 1 + 4 + fields.count
        var w = ByteWriter(capacity: depth * level + inner.count)
        for k in stride(from: depth, to: 0, by: -1) {
            w.write(UInt8(19))                                           // promise
            w.write(UInt32(fields.count + (k - 1) * level + inner.count))
            w.writeRaw(fields)
        }
        w.writeRaw(inner)
        return w.bytes
    }

    @Test("a promise nested 400,000 deep is refused as a bad state, without recursion")
    func deepNestingIsRefused() throws {
        // Before: the generic decoder recursed into the nested promise once per level and
        // the process died of a stack overflow (a 13 MB frame nested 400,000 deep killed a node).
        let bytes = Self.nestedPromises(depth: 400_000)
        #expect(bytes.count > 13_000_000)
        #expect(throws: DecodeError.invalid(field: "promise.state")) { try MessageCodec.decode(bytes) }
        // Inside a frame the bad message is refused alone.
        let body = FrameBody.encode(data: [], control: [bytes, MessageCodec.encode(.receipt(Receipt(lane: 0, through: 1)))])
        let each = try body.withUnsafeBytes { try FrameBody.decodeEach($0, limits: WireLimits()) }
        #expect(each.refused == [.init(sequenced: false, index: 0, error: .invalid(field: "promise.state"))])
        #expect(each.control.map(\.message) == [.receipt(Receipt(lane: 0, through: 1))])
    }

    @Test("a handover answer carrying anything but a whole session is refused")
    func handoverReplyStateMustBeAState() throws {
        var w = ByteWriter()
        MessageCodec.encode(.handoverReply(HandoverReply(requestID: 1, id: sampleID, answer: .transferred(sampleFull()))), into: &w)
        var bytes = w.bytes
        // The nested message's type byte follows requestID (8), id (16) and the answer byte.
        let nested = 1 + 4 + 8 + 16 + 1
        #expect(bytes[nested] == 1)
        bytes[nested] = 21    // another handoverReply instead of a full state
        #expect(throws: DecodeError.invalid(field: "handoverReply.state")) { try MessageCodec.decode(bytes) }
    }

    static func stampAt(counter: UInt64, version: UInt64) -> Stamp {
        Stamp(epoch: Epoch(counter: counter, owner: owner), version: version)
    }

    @Test("stamps, epoch counters, versions and incarnations near the top of their range are refused on decode, naming the field")
    func maximumStampsAreRefused() throws {
        // Before: they decoded, and a takeover (`counter + 1`) or a commit (`version += 1`)
        // on such a copy trapped the node.
        var full = sampleFull()
        full.stamp = Self.stampAt(counter: 3, version: .max)
        #expect(throws: DecodeError.invalid(field: "stamp.version")) { try MessageCodec.decode(MessageCodec.encode(.full(full))) }
        full.stamp = Self.stampAt(counter: Epoch.maxCounter, version: 1)
        #expect(throws: DecodeError.invalid(field: "epoch.counter")) { try MessageCodec.decode(MessageCodec.encode(.full(full))) }
        full.stamp = Self.stampAt(counter: Epoch.maxCounter - 1, version: Stamp.maxVersion - 1)
        #expect(try MessageCodec.decode(MessageCodec.encode(.full(full))) == .full(full), "just below the top decodes")
        var delta = sampleDelta()
        delta.version = 1 << 63
        #expect(throws: DecodeError.invalid(field: "delta.version")) { try MessageCodec.decode(MessageCodec.encode(.delta(delta))) }
        let invalidation = Invalidation(id: sampleID, stamp: Self.stampAt(counter: .max, version: 1), reason: .expired)
        #expect(throws: DecodeError.invalid(field: "epoch.counter")) { try MessageCodec.decode(MessageCodec.encode(.invalidate(invalidation))) }
        let promise = PromiseReply(oldOwner: "n1", sinceGrantMs: 0, entries: [.init(id: sampleID, fresher: {
            var s = sampleFull(); s.stamp = Self.stampAt(counter: 1, version: .max); return s }())])
        #expect(throws: DecodeError.invalid(field: "stamp.version")) { try MessageCodec.decode(MessageCodec.encode(.promise(promise))) }
        let update = MemberUpdate(status: .suspect, name: "n1", id: NodeID(5), incarnation: .max, from: "n2")
        #expect(throws: DecodeError.invalid(field: "update.incarnation")) {
            try MembershipCodec.decode(MembershipCodec.encode(.ping(sequence: 1, target: NodeID(5), updates: [update])))
        }
    }

    @Test("a frame with one bad data message keeps the others, each at its sequence offset")
    func oneBadMessageIsRefusedAlone() throws {
        var huge = sampleFull()
        huge.attributes = Dictionary(uniqueKeysWithValues: (0..<70_000).map { ("a\($0)", [UInt8]()) })
        var late = sampleFull()
        late.stamp = Self.stampAt(counter: 2, version: .max)
        let good = MessageCodec.encode(.full(sampleFull()))
        let body = FrameBody.encode(data: [good, MessageCodec.encode(.full(huge)), MessageCodec.encode(.full(late)), good],
                                    control: [MessageCodec.encode(.receipt(Receipt(lane: 1, through: 5)))])
        // Before: the whole frame failed on the first bad message (so the backup refused
        // the frame, the owner resent it forever and the lane stalled).
        let each = try body.withUnsafeBytes { try FrameBody.decodeEach($0, limits: WireLimits()) }
        #expect(each.data.map(\.index) == [0, 3])
        #expect(each.data.map(\.message) == [.full(sampleFull()), .full(sampleFull())])
        #expect(each.control.map(\.message) == [.receipt(Receipt(lane: 1, through: 5))])
        #expect(each.refused == [
            .init(sequenced: true, index: 1, error: .tooLarge(field: "full.attributeCount", limit: 65_536, found: 70_000)),
            .init(sequenced: true, index: 2, error: .invalid(field: "stamp.version")),
        ])
        // The whole-body decoder still refuses such a frame, naming the first problem.
        #expect(throws: DecodeError.tooLarge(field: "full.attributeCount", limit: 65_536, found: 70_000)) {
            try body.withUnsafeBytes { try FrameBody.decode($0, limits: WireLimits()) }
        }
        // A message in the wrong section is refused alone too.
        let misplaced = FrameBody.encode(data: [MessageCodec.encode(.receipt(Receipt(lane: 1, through: 5)))], control: [good])
        let sorted = try misplaced.withUnsafeBytes { try FrameBody.decodeEach($0, limits: WireLimits()) }
        #expect(sorted.refused.map(\.error) == [.invalid(field: "body.data"), .invalid(field: "body.control")])
    }

    @Test("a broken message prefix still fails the whole frame: nothing after it can be found")
    func aBrokenEnvelopeFailsTheFrame() throws {
        var body = FrameBody.encode(data: [MessageCodec.encode(.full(sampleFull()))], control: [])
        body[5] = 0xFF; body[6] = 0xFF; body[7] = 0xFF; body[8] = 0x7F   // length prefix past the end
        #expect(throws: DecodeError.truncated(field: "message.body")) {
            try body.withUnsafeBytes { try FrameBody.decodeEach($0, limits: WireLimits()) }
        }
    }

    @Test("seeded hostile frames (deep nesting, top stamps, flipped bytes, cut bodies) never crash and every bad message is refused and counted", arguments: 0..<4)
    func seededHostileFrames(seed: Int) throws {
        var rng = SeededGenerator(seed: UInt64(seed) &+ 0x5EED)
        var refused = 0, kept = 0
        for _ in 0..<200 {
            var data: [[UInt8]] = [], expectBad = 0
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                switch Int.random(in: 0..<5, using: &rng) {
                case 0: data.append(Self.nestedPromises(depth: Int.random(in: 1...3000, using: &rng))); expectBad += 1
                case 1:
                    var s = sampleFull()
                    s.stamp = Self.stampAt(counter: UInt64.random(in: Epoch.maxCounter ... .max, using: &rng), version: 1)
                    data.append(MessageCodec.encode(.full(s))); expectBad += 1
                case 2:
                    var d = sampleDelta()
                    d.version = UInt64.random(in: Stamp.maxVersion ... .max, using: &rng)
                    data.append(MessageCodec.encode(.delta(d))); expectBad += 1
                default: data.append(MessageCodec.encode(sampleMessages().filter(\.isSequenced).randomElement(using: &rng)!))
                }
            }
            // Nested promises are control messages: counted as refused in the data section.
            let body = FrameBody.encode(data: data, control: [])
            let each = try body.withUnsafeBytes { try FrameBody.decodeEach($0, limits: WireLimits()) }
            #expect(each.refused.count == expectBad)
            #expect(each.data.count + each.refused.count == data.count)
            refused += each.refused.count
            kept += each.data.count
            // Random damage: a flipped byte or a cut anywhere must throw or decode, never trap.
            var damaged = body
            damaged[Int.random(in: 0..<damaged.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
            _ = try? damaged.withUnsafeBytes { try FrameBody.decodeEach($0, limits: WireLimits()) }
            let cut = Array(body.prefix(Int.random(in: 0..<body.count, using: &rng)))
            _ = try? cut.withUnsafeBytes { try FrameBody.decodeEach($0, limits: WireLimits()) }
        }
        #expect(refused > 0 && kept > 0)
    }

    // MARK: - The shard

    func shard(_ configure: (inout SessionPolicy) -> Void = { _ in }) -> ReplicaShard {
        var sessions = SessionPolicy()
        configure(&sessions)
        return ReplicaShard(settings: ShardSettings(selfName: "n1", selfID: NodeID(1), policy: ReplicationPolicy(), sessions: sessions,
                                                    backupCandidates: ["n2"]))
    }

    @Test("a session with more attributes than a message carries is refused at create and commit, and nothing changes")
    func tooManyAttributesAreRefusedAtTheDoor() throws {
        let clock = ManualClock()
        var s = shard()
        let many = Dictionary(uniqueKeysWithValues: (0..<70_000).map { ("a\($0)", [UInt8]()) })
        // Before: created (201), then refused whole by every backup's decoder.
        #expect(throws: SessionError.self) {
            try s.create(id: sampleID, attributes: many, maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: 0)
        }
        #expect(s.ownedCount == 0)
        let atLimit = Dictionary(uniqueKeysWithValues: (0..<SessionPolicy().maxAttributes).map { ("a\($0)", [UInt8]()) })
        _ = try s.create(id: sampleID, attributes: atLimit, maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: 0)
        var changes = ChangeSet()
        changes.updated = ["one-more": [1]]
        do {
            _ = try s.commit(sampleID, changes: changes, maxInactiveInterval: nil, now: clock.now, wall: clock.wall)
            Issue.record("a commit past maxAttributes went through")
        } catch {
            #expect(error.code == .payloadTooLarge)
        }
        guard case .owner(let state) = s.copy(of: sampleID) else { Issue.record("lost the session"); return }
        #expect(state.attributes.count == SessionPolicy().maxAttributes && state.stamp.version == 1)
    }

    @Test("limits set beyond what a frame carries are still refused at the door")
    func wireLimitsBindEvenAnUnvalidatedPolicy() throws {
        let clock = ManualClock()
        var s = shard { $0.maxAttributes = 1_000_000; $0.maxAttributeBytes = 32 << 20; $0.maxSessionBytes = 64 << 20; $0.maxBytes = nil }
        do {
            _ = try s.create(id: sampleID, attributes: ["v": [UInt8](repeating: 1, count: (4 << 20) + 1)], maxInactiveInterval: nil,
                             now: clock.now, wall: clock.wall, sessionCount: 0)
            Issue.record("a value larger than a message carries was accepted")
        } catch { #expect(error.code == .payloadTooLarge) }
        #expect(SessionPolicy().wireProblem() == nil, "the defaults fit")
    }

    @Test("the node's byte budget refuses a create or a growing commit with capacity, and frees what ends")
    func byteBudget() throws {
        let clock = ManualClock()
        var s = shard { $0.maxBytes = 1000 }
        let a = SessionID(high: 1, low: 1), b = SessionID(high: 1, low: 2)
        _ = try s.create(id: a, attributes: ["x": [UInt8](repeating: 0, count: 599)], maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: 0)
        #expect(s.heldBytes == 600)
        do {
            _ = try s.create(id: b, attributes: ["y": [UInt8](repeating: 0, count: 500)], maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: 1)
            Issue.record("created past the byte budget")
        } catch { #expect(error.code == .capacity) }
        var grow = ChangeSet()
        grow.updated = ["z": [UInt8](repeating: 0, count: 500)]
        do {
            _ = try s.commit(a, changes: grow, maxInactiveInterval: nil, now: clock.now, wall: clock.wall)
            Issue.record("grew past the byte budget")
        } catch { #expect(error.code == .capacity) }
        var shrink = ChangeSet()
        shrink.updated = ["x": [1]]
        _ = try s.commit(a, changes: shrink, maxInactiveInterval: nil, now: clock.now, wall: clock.wall)
        #expect(s.heldBytes == 2)
        _ = try s.invalidate(a, reason: .invalidated, now: clock.now)
        #expect(s.heldBytes == 0)
        _ = try s.create(id: b, attributes: ["y": [UInt8](repeating: 0, count: 500)], maxInactiveInterval: nil, now: clock.now, wall: clock.wall, sessionCount: 0)
        #expect(s.heldBytes == 501)
    }

    @Test("a commit on a version at the top fails with an error, and a handover or promotion at the top counter is refused: nothing traps")
    func overflowSafeShard() throws {
        var clock = ManualClock()
        var s = shard()
        var state = sampleFull()
        state.replicaSet = ["n2"]
        state.stamp = Self.stampAt(counter: 5, version: Stamp.maxVersion - 1)
        let adopted = s.adoptHandover(state, from: "n2", giverStays: true, now: clock.now)
        #expect(adopted)
        var changes = ChangeSet()
        changes.updated = ["v": [1]]
        // Before: `version += 1` trapped once a received version reached 2^64 - 1.
        do {
            _ = try s.commit(sampleID, changes: changes, maxInactiveInterval: nil, now: clock.now, wall: clock.wall)
            Issue.record("committed past the top version")
        } catch { #expect(error.code == .capacity) }
        #expect(s.counters.overflowRefused == 1)

        var taker = shard()
        var top = sampleFull()
        top.stamp = Self.stampAt(counter: Epoch.maxCounter - 1, version: 3)
        // Before: `counter + 1` trapped.
        let refused = !taker.adoptHandover(top, from: "n2", giverStays: true, now: clock.now)
        #expect(refused)
        #expect(taker.counters.overflowRefused == 1)

        // A backup copy at the top counter whose owner dies stays a backup.
        var backup = ReplicaShard(settings: ShardSettings(selfName: "n2", selfID: NodeID(2), policy: ReplicationPolicy(), sessions: SessionPolicy(),
                                                          backupCandidates: ["n1"]))
        var copy = sampleFull()
        copy.replicaSet = ["n2"]
        copy.stamp = Self.stampAt(counter: Epoch.maxCounter - 1, version: 3)
        let applied = backup.apply(.full(copy), from: "n1", now: clock.now)
        #expect(applied == .applied)
        clock.advance(by: .seconds(1))
        let out = backup.memberDeparted("n1", now: clock.now)
        #expect(out.promoted.isEmpty)
        #expect(backup.counters.overflowRefused == 1)
        guard case .backup = backup.copy(of: sampleID) else { Issue.record("the copy was not kept"); return }
    }
}
