import Foundation
@testable import SessionReplicationCore
import SessionReplicationTestKit

// Shared fixtures and decoding helpers for the core tests.

let sampleID = SessionID(high: 0x0123_4567_89ab_cdef, low: 0xfedc_ba98_7654_3210)
let sampleOwner = NodeID(0xA1B2_C3D4_E5F6_0718)
let sampleEpoch = Epoch(counter: 3, owner: sampleOwner)
let sampleStamp = Stamp(epoch: sampleEpoch, version: 42)

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

func sampleFull() -> SessionState {
    SessionState(id: sampleID, stamp: sampleStamp,
                 attributes: ["user": bytes("alice"), "cart": [0, 1, 2, 255], "empty": [], "résumé": [7]],
                 createdAt: WallTime(milliseconds: 1_700_000_000_000), lastAccessedAt: WallTime(milliseconds: 1_700_000_123_456),
                 maxInactiveInterval: .seconds(1800), replicaSet: ["n2", "node-3"])
}

func sampleDelta() -> SessionDelta {
    SessionDelta(id: sampleID, epoch: sampleEpoch, baseVersion: 40, version: 42,
                 lastAccessedAt: WallTime(milliseconds: 1_700_000_200_000), maxInactiveInterval: .milliseconds(90_001),
                 replicaSet: ["n2"], updated: ["cart": [9, 9], "user": bytes("bob")], removed: ["flash", "tmp"])
}

/// One message of every kind (and a few shapes of each).
func sampleMessages() -> [ReplicationMessage] {
    var bare = sampleFull()
    bare.attributes = [:]
    bare.replicaSet = []
    return [
        .full(sampleFull()),
        .full(bare),
        .delta(sampleDelta()),
        .delta(SessionDelta(id: sampleID, epoch: sampleEpoch, baseVersion: 0, version: 1, lastAccessedAt: WallTime(milliseconds: 0),
                            maxInactiveInterval: .seconds(1), replicaSet: [], updated: [:], removed: [])),
        .invalidate(Invalidation(id: sampleID, stamp: sampleStamp, reason: .invalidated)),
        .invalidate(Invalidation(id: sampleID, stamp: sampleStamp, reason: .expired)),
        .invalidate(Invalidation(id: sampleID, stamp: sampleStamp, reason: .rotated)),
        .touch(Touch(id: sampleID, stamp: sampleStamp, lastAccessedAt: WallTime(milliseconds: 1_700_000_999_000))),
        .receipt(Receipt(lane: 7, through: 123_456_789)),
        .resync(ResyncRequest(lane: 2, entries: [.init(sequence: 5, id: sampleID), .init(sequence: 9, id: SessionID(high: 1, low: 2))])),
        .resync(ResyncRequest(lane: 0, entries: [])),
        .prepare(PrepareRequest(oldOwner: "n1", entries: [.init(id: sampleID, stamp: sampleStamp)])),
        .nominate(PrepareRequest(oldOwner: "n2", oldOwnerID: NodeID(77), entries: [.init(id: sampleID, stamp: sampleStamp)])),
        .promise(PromiseReply(oldOwner: "node-3", sinceGrantMs: 250, entries: [.init(id: sampleID, fresher: sampleFull()),
                                                                                .init(id: SessionID(high: 1, low: 2), fresher: nil)])),
        .promise(PromiseReply(oldOwner: "n1", sinceGrantMs: .max, entries: [])),
    ]
}

func sampleHeader(bodyLength: Int, flags: FrameHeader.Flags = [], namespace: UInt16 = 0, senderName: String = "n1") -> FrameHeader {
    FrameHeader(flags: flags, senderName: senderName, clusterTag: 0xC1C2_C3C4_C5C6_C7C8, sender: sampleOwner,
                keyFingerprint: 0xDEAD_BEEF, counter: 77, namespace: namespace, lane: 3, firstSequence: 1_000,
                lowWatermark: 990, bodyLength: UInt32(bodyLength))
}

/// A whole frame (header then plaintext body) carrying `data` and `control`.
func makeFrame(data: [ReplicationMessage], control: [ReplicationMessage], flags: FrameHeader.Flags = []) -> [UInt8] {
    let body = FrameBody.encode(data: data.map(MessageCodec.encode), control: control.map(MessageCodec.encode))
    var w = ByteWriter()
    sampleHeader(bodyLength: body.count, flags: flags).encode(into: &w)
    w.writeRaw(body)
    return w.bytes
}

/// Decodes one message and requires that it used the whole buffer.
func decodeMessage(_ input: [UInt8], limits: WireLimits = WireLimits()) throws(DecodeError) -> ReplicationMessage {
    let result: Result<ReplicationMessage, DecodeError> = input.withUnsafeBytes { raw in
        Result { () throws(DecodeError) in
            var r = ByteReader(raw)
            let m = try MessageCodec.decode(&r, limits: limits)
            guard r.remaining == 0 else { throw .trailingBytes(r.remaining) }
            return m
        }
    }
    return try result.get()
}

/// Decodes a frame body.
func decodeBody(_ input: [UInt8], limits: WireLimits = WireLimits()) throws(DecodeError) -> FrameBody {
    let result: Result<FrameBody, DecodeError> = input.withUnsafeBytes { raw in
        Result { () throws(DecodeError) in try FrameBody.decode(raw, limits: limits) }
    }
    return try result.get()
}

/// Decodes a whole frame: header, then the body that follows it.
func decodeFrame(_ input: [UInt8], limits: WireLimits = WireLimits()) throws(DecodeError) -> (FrameHeader, FrameBody) {
    let result: Result<(FrameHeader, FrameBody), DecodeError> = input.withUnsafeBytes { raw in
        Result { () throws(DecodeError) in
            var r = ByteReader(raw)
            let header = try FrameHeader.decode(&r, maxBodyBytes: limits.maxFrameBytes)
            let body = try FrameBody.decode(UnsafeRawBufferPointer(rebasing: raw[r.offset...]), limits: limits)
            return (header, body)
        }
    }
    return try result.get()
}

/// The error `body` throws, or `nil` when it succeeds.
func decodeError<T>(_ body: () throws(DecodeError) -> T) -> DecodeError? {
    do {
        _ = try body()
        return nil
    } catch {
        return error
    }
}

/// `type u8 | length u32 | body`, with `length` defaulting to the body's size.
func wrapMessage(type: UInt8, _ body: [UInt8], length: UInt32? = nil) -> [UInt8] {
    var w = ByteWriter()
    w.write(type)
    w.write(length ?? UInt32(body.count))
    w.writeRaw(body)
    return w.bytes
}

/// The fields of a full state up to (not including) the attribute count.
func fullPrefix(miiMilliseconds: Int64 = 1_800_000, replicaNames: [[UInt8]] = [bytes("n2")], replicaCount: UInt8? = nil) -> ByteWriter {
    var w = ByteWriter()
    w.write(sampleID.high); w.write(sampleID.low)
    w.write(sampleEpoch.counter); w.write(sampleEpoch.owner); w.write(sampleStamp.version)
    w.write(Int64(1_700_000_000_000)); w.write(Int64(1_700_000_000_500))
    w.write(miiMilliseconds)
    w.write(replicaCount ?? UInt8(replicaNames.count))
    for n in replicaNames { w.write(UInt8(n.count)); w.writeRaw(n) }
    return w
}

/// A full-state message with one attribute of raw `name` bytes.
func fullWithAttribute(name: [UInt8], value: [UInt8] = [1, 2, 3]) -> [UInt8] {
    var w = fullPrefix()
    w.write(UInt32(1))
    w.write(UInt16(name.count)); w.writeRaw(name)
    w.writeBlob(value)
    return wrapMessage(type: 1, w.bytes)
}

/// The fields of a delta up to (not including) the set count.
func deltaPrefix(base: UInt64 = 4, version: UInt64 = 5, miiMilliseconds: Int64 = 60_000) -> ByteWriter {
    var w = ByteWriter()
    w.write(sampleID.high); w.write(sampleID.low)
    w.write(sampleEpoch.counter); w.write(sampleEpoch.owner)
    w.write(base); w.write(version)
    w.write(Int64(1_700_000_000_000)); w.write(miiMilliseconds)
    w.write(UInt8(0))
    return w
}

extension SeededGenerator {
    /// A uniform integer in `0..<n`.
    mutating func below(_ n: Int) -> Int { Int(next(upperBound: UInt(n))) }
}

/// The encoded size of `sampleHeader`, measured rather than taken from `encodedSize`.
var encodedHeaderSize: Int {
    var w = ByteWriter()
    sampleHeader(bodyLength: 0).encode(into: &w)
    return w.bytes.count
}

/// Runs CPU-bound simulation work on a thread of its own, so that it never holds the
/// cooperative pool (two threads on a 2-core machine) that the suite's async tests
/// need to resume: blocking it for minutes starved loopback tests into timeouts. One
/// simulation runs at a time (`simulationSlot`), so the loopback clusters running beside
/// them always keep a core: several at once starved their leases and probes.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread {
            simulationSlot.wait()
            let result = body()
            simulationSlot.signal()
            continuation.resume(returning: result)
        }
        thread.stackSize = 16 << 20
        thread.start()
    }
}

/// Admits one simulation thread at a time.
let simulationSlot = DispatchSemaphore(value: 1)

extension NodeCore {
    /// One timer event at `clock`'s time, with `peer` (process `id`) answering every probe
    /// the node sends it, so membership keeps it alive, and granting nothing. Returns the
    /// actions and the lease request the node sent `peer`, if any.
    mutating func tickAnsweringProbes(of peer: String, id: NodeID, at clock: ManualClock) -> (actions: [NodeAction], leaseRequest: UInt64?) {
        var actions = tick(now: clock.now, wall: clock.wall)
        var lease: UInt64?
        var probes: [UInt64] = []
        for case .sendMembership(let m, _) in actions where m.to == peer {
            if case .leaseRequest(let s) = m.message { lease = s }
            if case .ping(let s, _, _) = m.message { probes.append(s) }
        }
        for s in probes {
            actions += receiveMembership(.ack(sequence: s, updates: []), from: peer, id: id, reliable: false, now: clock.now, wall: clock.wall)
        }
        return (actions, lease)
    }
}
