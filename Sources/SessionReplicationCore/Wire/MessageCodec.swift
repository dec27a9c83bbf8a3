/// Limits every decoder enforces. A message beyond them is dropped and counted.
package struct WireLimits: Hashable, Sendable {
    /// Largest frame body. Default 16 MiB (a 4 MiB session fits with room to spare).
    package var maxFrameBytes: Int = 16 << 20
    /// Most attributes in one message. Default 65,536.
    package var maxAttributes: Int = 65_536
    /// Longest attribute name in bytes. Default 256.
    package var maxNameBytes: Int = 256
    /// Largest attribute value. Default 4 MiB.
    package var maxValueBytes: Int = 4 << 20
    /// Most names in a replica set. Default 64.
    package var maxReplicaSet: Int = 64
    /// Most messages in one frame. Default 65,535.
    package var maxMessages: Int = 65_535
    /// Creates the defaults.
    package init() {}

    /// Bytes a whole session costs in a frame beyond its attributes: the message and
    /// frame prefixes, id, stamp, times, a replica set of `maxReplicaSet` 32-byte names,
    /// the seal's tag, and a handover answer's own fields around it. 4 KiB (about
    /// 2.3 KiB are used).
    package static let stateOverheadBytes = 4096
    /// Bytes each attribute costs beyond its name and value: its two length prefixes.
    package static let attributeOverheadBytes = 6

    /// The encoded size, at most, of a whole session of `attributes` attributes whose
    /// names and values total `bytes`.
    package func encodedStateBytes(attributes: Int, bytes: Int) -> Int {
        Self.stateOverheadBytes + attributes * Self.attributeOverheadBytes + bytes
    }

    /// Why a session of `attributes` attributes whose names and values total `bytes`,
    /// the largest value `largestValue` bytes, could not travel in one message of one
    /// frame (a receiver would refuse it), or `nil` when it can.
    package func sessionProblem(attributes: Int, bytes: Int, largestValue: Int) -> String? {
        if attributes > maxAttributes { return "\(attributes) attributes, more than one message carries (\(maxAttributes))" }
        if largestValue > maxValueBytes { return "a \(largestValue)-byte value, larger than one message carries (\(maxValueBytes))" }
        let encoded = encodedStateBytes(attributes: attributes, bytes: bytes)
        if encoded > maxFrameBytes { return "\(encoded) bytes encoded, more than one frame carries (\(maxFrameBytes))" }
        return nil
    }
}

/// Binary encoding of `ReplicationMessage`: `type u8 | length u32 | body`, little-endian.
package enum MessageCodec {
    enum Tag: UInt8 {
        case full = 1, delta = 2, invalidate = 3, touch = 4, receipt = 16, resync = 17, prepare = 18, promise = 19, handover = 20, handoverReply = 21, digest = 22, digestReply = 23, release = 24, nominate = 25
    }

    /// Encodes one message with its type and length prefix.
    package static func encode(_ message: ReplicationMessage) -> [UInt8] {
        var w = ByteWriter(capacity: 128)
        encode(message, into: &w)
        return w.bytes
    }

    /// Appends one message with its type and length prefix to `w`.
    package static func encode(_ message: ReplicationMessage, into w: inout ByteWriter) {
        let tag: Tag
        switch message {
        case .full: tag = .full
        case .delta: tag = .delta
        case .invalidate: tag = .invalidate
        case .touch: tag = .touch
        case .receipt: tag = .receipt
        case .resync: tag = .resync
        case .prepare: tag = .prepare
        case .promise: tag = .promise
        case .nominate: tag = .nominate
        case .handover: tag = .handover
        case .handoverReply: tag = .handoverReply
        case .digest: tag = .digest
        case .digestReply: tag = .digestReply
        case .release: tag = .release
        }
        w.write(tag.rawValue)
        let lengthAt = w.bytes.count
        w.write(UInt32(0))
        switch message {
        case .full(let s):
            writeID(s.id, &w); writeStamp(s.stamp, &w)
            w.write(s.createdAt.milliseconds); w.write(s.lastAccessedAt.milliseconds)
            w.write(s.maxInactiveInterval.millisecondsClamped)
            writeNames(s.replicaSet, &w)
            w.write(UInt32(s.attributes.count))
            for name in s.attributes.keys.sorted() {
                w.writeShortString(name); w.writeBlob(s.attributes[name]!)
            }
        case .delta(let d):
            writeID(d.id, &w); writeEpoch(d.epoch, &w)
            w.write(d.baseVersion); w.write(d.version)
            w.write(d.lastAccessedAt.milliseconds); w.write(d.maxInactiveInterval.millisecondsClamped)
            writeNames(d.replicaSet, &w)
            w.write(UInt32(d.updated.count))
            for name in d.updated.keys.sorted() { w.writeShortString(name); w.writeBlob(d.updated[name]!) }
            w.write(UInt32(d.removed.count))
            for name in d.removed { w.writeShortString(name) }
        case .invalidate(let i):
            writeID(i.id, &w); writeStamp(i.stamp, &w); w.write(i.reason.rawValue)
        case .touch(let t):
            writeID(t.id, &w); writeStamp(t.stamp, &w); w.write(t.lastAccessedAt.milliseconds)
        case .receipt(let r):
            w.write(r.lane); w.write(r.through); w.write(r.stream)
            w.write(UInt8(truncatingIfNeeded: r.received.count))
            for range in r.received { w.write(range.lowerBound); w.write(range.upperBound) }
            let refused = r.refused.prefix(Receipt.maxRefused)
            w.write(UInt16(refused.count))
            for s in refused { w.write(s) }
        case .resync(let r):
            w.write(r.lane); w.write(UInt32(r.entries.count))
            for e in r.entries { w.write(e.sequence); writeID(e.id, &w) }
        case .prepare(let p), .nominate(let p):
            writeNames([p.oldOwner], &w)
            w.write(p.oldOwnerID)
            writeEntries(p.entries, &w)
        case .promise(let p):
            writeNames([p.oldOwner], &w)
            w.write(p.oldOwnerID)
            w.write(p.sinceGrantMs)
            w.write(UInt32(p.entries.count))
            for e in p.entries {
                writeID(e.id, &w)
                if let s = e.fresher {
                    w.write(UInt8(e.ownedByHolder ? 2 : 1))
                    encode(.full(s), into: &w)
                    if !e.ownedByHolder { writeNames(e.owner.map { [$0] } ?? [], &w) }
                } else if let ended = e.ended {
                    w.write(UInt8(3))
                    writeStamp(ended, &w)
                } else {
                    w.write(UInt8(0))
                }
            }
        case .handover(let h):
            w.write(h.requestID); writeID(h.id, &w)
        case .handoverReply(let h):
            w.write(h.requestID); writeID(h.id, &w)
            switch h.answer {
            case .none: w.write(UInt8(0))
            case .ended(let stamp): w.write(UInt8(1)); writeStamp(stamp, &w)
            case .backup(let stamp, let owner): w.write(UInt8(2)); writeStamp(stamp, &w); writeNames([owner], &w)
            case .kept(let stamp): w.write(UInt8(3)); writeStamp(stamp, &w)
            case .transferred(let state): w.write(UInt8(4)); encode(.full(state), into: &w)
            }
        case .digest(let d):
            w.write(d.round); w.write(d.lanes); w.write(d.lane)
            w.write(UInt16(truncatingIfNeeded: d.buckets.count))
            for b in d.buckets { w.write(b) }
        case .digestReply(let d):
            w.write(d.round); w.write(d.lane)
            w.write(UInt32(d.buckets.count))
            for b in d.buckets { w.write(b) }
            writeEntries(d.held, &w)
        case .release(let r):
            writeEntries(r.entries, &w)
        }
        w.patch(UInt32(w.bytes.count - lengthAt - 4), at: lengthAt)
    }

    /// Decodes one length-prefixed message from `r`. Throws on any bound violation,
    /// unknown type, invalid UTF-8, a stamp near the top of its range, or a body whose
    /// length disagrees with its prefix. Not recursive: a state inside a `promise` or a
    /// `handoverReply` is read by `readState`, which accepts a whole session and nothing
    /// else. When only the body is bad (the type and length prefix hold), `r` has moved
    /// past the message all the same, so a caller can go on with the next one.
    package static func decode(_ r: inout ByteReader, limits: WireLimits) throws(DecodeError) -> ReplicationMessage {
        let (rawTag, body) = try envelope(&r)
        return try decodeBody(rawTag, body, limits: limits)
    }

    /// The type byte and a reader over exactly the body of the next message, moving `r`
    /// past it. Throws only when the prefix itself is cut short or claims more bytes than
    /// are left (`truncated`): then nothing after it can be found either.
    static func envelope(_ r: inout ByteReader) throws(DecodeError) -> (UInt8, ByteReader) {
        let rawTag = try r.read(UInt8.self, "message.type")
        let length = Int(try r.read(UInt32.self, "message.length"))
        guard length <= r.remaining else { throw .truncated(field: "message.body") }
        return (rawTag, try r.take(length, "message.body"))
    }

    /// Decodes the body of one message of type `rawTag`; `body` must be consumed exactly.
    static func decodeBody(_ rawTag: UInt8, _ body: ByteReader, limits: WireLimits) throws(DecodeError) -> ReplicationMessage {
        guard let tag = Tag(rawValue: rawTag) else { throw .invalid(field: "message.type") }
        var r = body
        let message: ReplicationMessage
        switch tag {
        case .full:
            message = .full(try readFullBody(&r, limits))
        case .delta:
            let id = try readID(&r), epoch = try readEpoch(&r)
            let base = try r.read(UInt64.self, "delta.baseVersion")
            let version = try r.read(UInt64.self, "delta.version")
            guard version > base, version < Stamp.maxVersion else { throw .invalid(field: "delta.version") }
            let accessed = WallTime(milliseconds: try r.read(Int64.self, "delta.lastAccessedAt"))
            let mii = try readInterval(&r)
            let replicas = try readNames(&r, limits)
            let setCount = Int(try r.read(UInt32.self, "delta.setCount"))
            guard setCount <= limits.maxAttributes else { throw .tooLarge(field: "delta.setCount", limit: limits.maxAttributes, found: setCount) }
            var set: [String: [UInt8]] = [:]
            for _ in 0..<setCount {
                let name = try readAttributeName(&r, limits)
                set[name] = try r.readBlob("attribute.value", maxBytes: limits.maxValueBytes)
            }
            let removedCount = Int(try r.read(UInt32.self, "delta.removedCount"))
            guard removedCount <= limits.maxAttributes else { throw .tooLarge(field: "delta.removedCount", limit: limits.maxAttributes, found: removedCount) }
            var removed: [String] = []
            for _ in 0..<removedCount { removed.append(try readAttributeName(&r, limits)) }
            message = .delta(SessionDelta(id: id, epoch: epoch, baseVersion: base, version: version, lastAccessedAt: accessed,
                                          maxInactiveInterval: mii, replicaSet: replicas, updated: set, removed: removed))
        case .invalidate:
            let id = try readID(&r), stamp = try readStamp(&r)
            guard let reason = EndReason(rawValue: try r.read(UInt8.self, "invalidate.reason")) else {
                throw .invalid(field: "invalidate.reason")
            }
            message = .invalidate(Invalidation(id: id, stamp: stamp, reason: reason))
        case .touch:
            let id = try readID(&r), stamp = try readStamp(&r)
            message = .touch(Touch(id: id, stamp: stamp, lastAccessedAt: WallTime(milliseconds: try r.read(Int64.self, "touch.lastAccessedAt"))))
        case .receipt:
            let lane = try r.read(UInt16.self, "receipt.lane")
            let through = try r.read(UInt64.self, "receipt.through")
            guard through < FrameHeader.maxSequence else { throw .invalid(field: "receipt.through") }
            let stream = try r.readNodeID("receipt.stream")
            let count = Int(try r.read(UInt8.self, "receipt.rangeCount"))
            guard count <= Receipt.maxRanges else { throw .tooLarge(field: "receipt.rangeCount", limit: Receipt.maxRanges, found: count) }
            var ranges: [ClosedRange<UInt64>] = []
            var floor = through
            for _ in 0..<count {
                let lower = try r.read(UInt64.self, "receipt.range"), upper = try r.read(UInt64.self, "receipt.range")
                // Ascending, disjoint, above `through`: anything else is malformed.
                guard lower > floor, upper >= lower, upper < FrameHeader.maxSequence else { throw .invalid(field: "receipt.range") }
                ranges.append(lower...upper)
                floor = upper
            }
            let refusedCount = Int(try r.read(UInt16.self, "receipt.refusedCount"))
            guard refusedCount <= Receipt.maxRefused else {
                throw .tooLarge(field: "receipt.refusedCount", limit: Receipt.maxRefused, found: refusedCount)
            }
            var refused: [UInt64] = []
            for _ in 0..<refusedCount {
                let s = try r.read(UInt64.self, "receipt.refused")
                guard s >= 1, s < FrameHeader.maxSequence else { throw .invalid(field: "receipt.refused") }
                refused.append(s)
            }
            message = .receipt(Receipt(lane: lane, through: through, received: ranges, refused: refused, stream: stream))
        case .resync:
            let lane = try r.read(UInt16.self, "resync.lane")
            let count = Int(try r.read(UInt32.self, "resync.count"))
            guard count <= limits.maxMessages else { throw .tooLarge(field: "resync.count", limit: limits.maxMessages, found: count) }
            guard count * 24 <= r.remaining else { throw .truncated(field: "resync.entries") }
            var entries: [ResyncRequest.Entry] = []
            entries.reserveCapacity(count)
            for _ in 0..<count {
                let sequence = try r.read(UInt64.self, "resync.sequence")
                guard sequence < FrameHeader.maxSequence else { throw .invalid(field: "resync.sequence") }
                entries.append(.init(sequence: sequence, id: try readID(&r)))
            }
            message = .resync(ResyncRequest(lane: lane, entries: entries))
        case .prepare:
            let owner = try readNames(&r, limits)
            guard owner.count == 1 else { throw .invalid(field: "prepare.oldOwner") }
            let ownerID = try r.readNodeID("prepare.oldOwnerID")
            message = .prepare(PrepareRequest(oldOwner: owner[0], oldOwnerID: ownerID, entries: try readEntries(&r, limits, "prepare")))
        case .nominate:
            let owner = try readNames(&r, limits)
            guard owner.count == 1 else { throw .invalid(field: "nominate.oldOwner") }
            let ownerID = try r.readNodeID("nominate.oldOwnerID")
            message = .nominate(PrepareRequest(oldOwner: owner[0], oldOwnerID: ownerID, entries: try readEntries(&r, limits, "nominate")))
        case .promise:
            let owner = try readNames(&r, limits)
            guard owner.count == 1 else { throw .invalid(field: "promise.oldOwner") }
            let ownerID = try r.readNodeID("promise.oldOwnerID")
            let since = try r.read(UInt32.self, "promise.sinceGrantMs")
            let count = Int(try r.read(UInt32.self, "promise.count"))
            guard count <= limits.maxMessages else { throw .tooLarge(field: "promise.count", limit: limits.maxMessages, found: count) }
            guard count * 17 <= r.remaining else { throw .truncated(field: "promise.entries") }
            var entries: [PromiseReply.Entry] = []
            for _ in 0..<count {
                let id = try readID(&r)
                switch try r.read(UInt8.self, "promise.hasState") {
                case 0: entries.append(.init(id: id, fresher: nil))
                case let kind where kind == 1 || kind == 2:
                    let s = try readState(&r, limits, "promise.state")
                    guard s.id == id else { throw .invalid(field: "promise.state") }
                    var owner: String?
                    if kind == 1 {
                        let names = try readNames(&r, limits)
                        guard names.count <= 1 else { throw .invalid(field: "promise.owner") }
                        owner = names.first
                    }
                    entries.append(.init(id: id, fresher: s, ownedByHolder: kind == 2, owner: owner))
                case 3:
                    entries.append(.init(id: id, fresher: nil, ended: try readStamp(&r)))
                default: throw .invalid(field: "promise.hasState")
                }
            }
            message = .promise(PromiseReply(oldOwner: owner[0], oldOwnerID: ownerID, sinceGrantMs: since, entries: entries))
        case .handover:
            message = .handover(HandoverRequest(requestID: try r.read(UInt64.self, "handover.requestID"), id: try readID(&r)))
        case .handoverReply:
            let requestID = try r.read(UInt64.self, "handoverReply.requestID")
            let id = try readID(&r)
            let answer: HandoverReply.Answer
            switch try r.read(UInt8.self, "handoverReply.answer") {
            case 0: answer = .none
            case 1: answer = .ended(try readStamp(&r))
            case 2:
                let stamp = try readStamp(&r)
                let owner = try readNames(&r, limits)
                guard owner.count == 1 else { throw .invalid(field: "handoverReply.owner") }
                answer = .backup(stamp, owner: owner[0])
            case 3: answer = .kept(try readStamp(&r))
            case 4:
                let s = try readState(&r, limits, "handoverReply.state")
                guard s.id == id else { throw .invalid(field: "handoverReply.state") }
                answer = .transferred(s)
            default: throw .invalid(field: "handoverReply.answer")
            }
            message = .handoverReply(HandoverReply(requestID: requestID, id: id, answer: answer))
        case .digest:
            let round = try r.read(UInt64.self, "digest.round")
            let lanes = try r.read(UInt16.self, "digest.lanes")
            let lane = try r.read(UInt16.self, "digest.lane")
            guard lanes > 0, lane < lanes else { throw .invalid(field: "digest.lane") }
            let count = Int(try r.read(UInt16.self, "digest.count"))
            guard count == DigestRequest.bucketCount else { throw .invalid(field: "digest.count") }
            guard count * 8 <= r.remaining else { throw .truncated(field: "digest.buckets") }
            var buckets: [UInt64] = []
            buckets.reserveCapacity(count)
            for _ in 0..<count { buckets.append(try r.read(UInt64.self, "digest.bucket")) }
            message = .digest(DigestRequest(round: round, lanes: lanes, lane: lane, buckets: buckets))
        case .digestReply:
            let round = try r.read(UInt64.self, "digestReply.round")
            let lane = try r.read(UInt16.self, "digestReply.lane")
            let count = Int(try r.read(UInt32.self, "digestReply.bucketCount"))
            guard count <= DigestRequest.bucketCount else { throw .tooLarge(field: "digestReply.bucketCount", limit: DigestRequest.bucketCount, found: count) }
            guard count * 2 <= r.remaining else { throw .truncated(field: "digestReply.buckets") }
            var buckets: [UInt16] = []
            for _ in 0..<count {
                let b = try r.read(UInt16.self, "digestReply.bucket")
                guard Int(b) < DigestRequest.bucketCount else { throw .invalid(field: "digestReply.bucket") }
                buckets.append(b)
            }
            message = .digestReply(DigestReply(round: round, lane: lane, buckets: buckets, held: try readEntries(&r, limits, "digestReply")))
        case .release:
            message = .release(ReleaseRequest(entries: try readEntries(&r, limits, "release")))
        }
        guard r.remaining == 0 else { throw .trailingBytes(r.remaining) }
        return message
    }

    /// The fields of a whole session (the body of a `full` message).
    static func readFullBody(_ r: inout ByteReader, _ limits: WireLimits) throws(DecodeError) -> SessionState {
        let id = try readID(&r), stamp = try readStamp(&r)
        let created = WallTime(milliseconds: try r.read(Int64.self, "full.createdAt"))
        let accessed = WallTime(milliseconds: try r.read(Int64.self, "full.lastAccessedAt"))
        let mii = try readInterval(&r)
        let replicas = try readNames(&r, limits)
        let count = Int(try r.read(UInt32.self, "full.attributeCount"))
        guard count <= limits.maxAttributes else { throw .tooLarge(field: "full.attributeCount", limit: limits.maxAttributes, found: count) }
        var attributes: [String: [UInt8]] = [:]
        attributes.reserveCapacity(min(count, r.remaining / 6))
        for _ in 0..<count {
            let name = try readAttributeName(&r, limits)
            attributes[name] = try r.readBlob("attribute.value", maxBytes: limits.maxValueBytes)
        }
        return SessionState(id: id, stamp: stamp, attributes: attributes, createdAt: created,
                            lastAccessedAt: accessed, maxInactiveInterval: mii, replicaSet: replicas)
    }

    /// A whole session nested in another message (`promise`, `handoverReply`): a `full`
    /// message and nothing else, read without recursion; any other type is `invalid(field)`.
    static func readState(_ r: inout ByteReader, _ limits: WireLimits, _ field: String) throws(DecodeError) -> SessionState {
        let (rawTag, body) = try envelope(&r)
        guard rawTag == Tag.full.rawValue else { throw .invalid(field: field) }
        var b = body
        let state = try readFullBody(&b, limits)
        guard b.remaining == 0 else { throw .trailingBytes(b.remaining) }
        return state
    }

    /// Decodes one message filling all of `bytes`.
    package static func decode(_ bytes: [UInt8], limits: WireLimits = WireLimits()) throws(DecodeError) -> ReplicationMessage {
        let result: Result<ReplicationMessage, DecodeError> = bytes.withUnsafeBytes { raw in
            Result { () throws(DecodeError) in
                var r = ByteReader(raw)
                let m = try decode(&r, limits: limits)
                guard r.remaining == 0 else { throw .trailingBytes(r.remaining) }
                return m
            }
        }
        return try result.get()
    }

    /// `count u32 | (id, stamp)*`: the entries of prepares, digest replies and releases.
    static func writeEntries(_ entries: [PrepareRequest.Entry], _ w: inout ByteWriter) {
        w.write(UInt32(entries.count))
        for e in entries { writeID(e.id, &w); writeStamp(e.stamp, &w) }
    }

    static func readEntries(_ r: inout ByteReader, _ limits: WireLimits, _ field: String) throws(DecodeError) -> [PrepareRequest.Entry] {
        let count = Int(try r.read(UInt32.self, "\(field).count"))
        guard count <= limits.maxMessages else { throw .tooLarge(field: "\(field).count", limit: limits.maxMessages, found: count) }
        guard count * 40 <= r.remaining else { throw .truncated(field: "\(field).entries") }
        var entries: [DigestReply.Entry] = []
        entries.reserveCapacity(count)
        for _ in 0..<count { entries.append(.init(id: try readID(&r), stamp: try readStamp(&r))) }
        return entries
    }

    static func writeID(_ id: SessionID, _ w: inout ByteWriter) { w.write(id.high); w.write(id.low) }
    static func writeEpoch(_ e: Epoch, _ w: inout ByteWriter) { w.write(e.counter); w.write(e.owner) }
    static func writeStamp(_ s: Stamp, _ w: inout ByteWriter) { writeEpoch(s.epoch, &w); w.write(s.version) }
    static func writeNames(_ names: [String], _ w: inout ByteWriter) {
        w.write(UInt8(truncatingIfNeeded: names.count))
        for n in names { w.write(UInt8(truncatingIfNeeded: n.utf8.count)); w.writeRaw(n.utf8) }
    }

    static func readID(_ r: inout ByteReader) throws(DecodeError) -> SessionID {
        SessionID(high: try r.read(UInt64.self, "session.id"), low: try r.read(UInt64.self, "session.id"))
    }
    /// An epoch; a counter at or above `Epoch.maxCounter` is `invalid(epoch.counter)`
    /// (a takeover adds one to it).
    static func readEpoch(_ r: inout ByteReader) throws(DecodeError) -> Epoch {
        let counter = try r.read(UInt64.self, "epoch.counter")
        guard counter < Epoch.maxCounter else { throw .invalid(field: "epoch.counter") }
        return Epoch(counter: counter, owner: try r.readNodeID("epoch.owner"))
    }
    /// A stamp; a version at or above `Stamp.maxVersion` is `invalid(stamp.version)` (a
    /// commit adds one to it).
    static func readStamp(_ r: inout ByteReader) throws(DecodeError) -> Stamp {
        let epoch = try readEpoch(&r)
        let version = try r.read(UInt64.self, "stamp.version")
        guard version < Stamp.maxVersion else { throw .invalid(field: "stamp.version") }
        return Stamp(epoch: epoch, version: version)
    }
    static func readInterval(_ r: inout ByteReader) throws(DecodeError) -> Duration {
        let ms = try r.read(Int64.self, "maxInactiveInterval")
        guard ms > 0, ms <= 366 * 86_400_000 else { throw .invalid(field: "maxInactiveInterval") }
        return .milliseconds(ms)
    }
    static func readNames(_ r: inout ByteReader, _ limits: WireLimits) throws(DecodeError) -> [String] {
        let count = Int(try r.read(UInt8.self, "replicaSet.count"))
        guard count <= limits.maxReplicaSet else { throw .tooLarge(field: "replicaSet.count", limit: limits.maxReplicaSet, found: count) }
        var names: [String] = []
        for _ in 0..<count {
            let length = Int(try r.read(UInt8.self, "replicaSet.name"))
            let raw = try r.readBytes(length, "replicaSet.name")
            guard NodeName.isValid(raw[...], maxLength: 32) else { throw .invalid(field: "replicaSet.name") }
            names.append(String(decoding: raw, as: UTF8.self))
        }
        return names
    }
    static func readAttributeName(_ r: inout ByteReader, _ limits: WireLimits) throws(DecodeError) -> String {
        let name = try r.readShortString("attribute.name", maxBytes: limits.maxNameBytes)
        guard AttributeName.isValid(name) else {
            throw .invalid(field: "attribute.name")
        }
        return name
    }
}
