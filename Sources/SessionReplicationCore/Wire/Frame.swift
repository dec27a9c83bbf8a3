/// The plaintext header of every replication frame (TCP frame or UDP datagram). It is
/// authenticated as additional data when the body is sealed.
///
/// Layout (little-endian): magic `u16` | protocol version `u8` | flags `u8` |
/// sender name (`u8` length, bytes) | cluster tag `u64` | sender node id (`u64` start, `u64` nonce) |
/// key fingerprint `u32` | counter `u64` | namespace `u16` | lane `u16` |
/// first sequence `u64` | low watermark `u64` | body length `u32`.
package struct FrameHeader: Hashable, Sendable {
    /// `0x5244` ("DR").
    package static let magic: UInt16 = 0x5244
    /// The protocol version this build speaks.
    package static let protocolVersion: UInt8 = 2
    /// Bytes a datagram spends beyond its body, rounded up: the largest header (a 32-byte
    /// sender name), the 16-byte tag and the body's counts. Bodies larger than
    /// `udpMaxPayload` minus this go over TCP.
    package static let maxDatagramOverhead = 128
    /// Namespace of replication frames (the body is a `FrameBody`).
    package static let replicationNamespace: UInt16 = 0
    /// Namespace of membership frames (the body is one `MembershipMessage`).
    package static let membershipNamespace: UInt16 = 1
    /// Sequences at or above this are refused (2^62).
    package static let maxSequence: UInt64 = 1 << 62
    /// Bytes before the sender name.
    package static let fixedPrefix = 5
    /// Bytes after the sender name.
    package static let fixedSuffix = 8 + 16 + 4 + 8 + 2 + 2 + 8 + 8 + 4

    /// Flag bits.
    package struct Flags: OptionSet, Hashable, Sendable {
        /// The flag bits.
        package var rawValue: UInt8
        /// Wraps flag bits.
        package init(rawValue: UInt8) { self.rawValue = rawValue }
        /// The body is AES-GCM ciphertext followed by a 16-byte tag.
        package static let sealed = Flags(rawValue: 1)
        /// The frame was sent as a datagram (replay window instead of strict order).
        package static let datagram = Flags(rawValue: 2)
    }

    /// Sealed and datagram flags; other bits are refused.
    package var flags: Flags
    /// The sender's configured node name.
    package var senderName: String
    /// A stable hash of the cluster id; frames of other clusters are dropped.
    package var clusterTag: UInt64
    /// The sender's per-process node id.
    package var sender: NodeID
    /// Which key of the ring sealed the body (0 when unsealed).
    package var keyFingerprint: UInt32
    /// Per-sender counter: the AES-GCM nonce and the anti-replay sequence.
    package var counter: UInt64
    /// What the body holds: `replicationNamespace` (a `FrameBody`) or
    /// `membershipNamespace` (one `MembershipMessage`).
    package var namespace: UInt16
    /// The sender's stream lane (its shard index).
    package var lane: UInt16
    /// Sequence of the first data message in the body (0 when the body has none).
    package var firstSequence: UInt64
    /// Every sequence below this is receipted or abandoned by the sender.
    package var lowWatermark: UInt64
    /// Length of the body that follows.
    package var bodyLength: UInt32

    /// Creates a header.
    package init(flags: Flags, senderName: String, clusterTag: UInt64, sender: NodeID, keyFingerprint: UInt32,
                counter: UInt64, namespace: UInt16 = 0, lane: UInt16, firstSequence: UInt64, lowWatermark: UInt64, bodyLength: UInt32) {
        self.flags = flags
        self.senderName = senderName
        self.clusterTag = clusterTag
        self.sender = sender
        self.keyFingerprint = keyFingerprint
        self.counter = counter
        self.namespace = namespace
        self.lane = lane
        self.firstSequence = firstSequence
        self.lowWatermark = lowWatermark
        self.bodyLength = bodyLength
    }

    /// The encoded size of this header.
    package var encodedSize: Int { Self.fixedPrefix + senderName.utf8.count + Self.fixedSuffix }

    /// Appends the header.
    package func encode(into w: inout ByteWriter) {
        w.write(Self.magic); w.write(Self.protocolVersion); w.write(flags.rawValue)
        w.write(UInt8(truncatingIfNeeded: senderName.utf8.count)); w.writeRaw(senderName.utf8)
        w.write(clusterTag); w.write(sender); w.write(keyFingerprint); w.write(counter)
        w.write(namespace); w.write(lane); w.write(firstSequence); w.write(lowWatermark); w.write(bodyLength)
    }

    /// Decodes a header, checking the magic, version, name and body length against
    /// `maxBodyBytes` and the bytes actually present.
    package static func decode(_ r: inout ByteReader, maxBodyBytes: Int) throws(DecodeError) -> FrameHeader {
        guard try r.read(UInt16.self, "header.magic") == magic else { throw .badMagic }
        let version = try r.read(UInt8.self, "header.version")
        guard version == protocolVersion else { throw .unsupportedVersion(version) }
        let flags = Flags(rawValue: try r.read(UInt8.self, "header.flags"))
        guard flags.rawValue & ~0b11 == 0 else { throw .invalid(field: "header.flags") }
        let nameLength = Int(try r.read(UInt8.self, "header.senderName"))
        let rawName = try r.readBytes(nameLength, "header.senderName")
        guard NodeName.isValid(rawName[...], maxLength: 32) else { throw .invalid(field: "header.senderName") }
        let header = FrameHeader(
            flags: flags, senderName: String(decoding: rawName, as: UTF8.self),
            clusterTag: try r.read(UInt64.self, "header.clusterTag"),
            sender: try r.readNodeID("header.sender"),
            keyFingerprint: try r.read(UInt32.self, "header.keyFingerprint"),
            counter: try r.read(UInt64.self, "header.counter"),
            namespace: try r.read(UInt16.self, "header.namespace"),
            lane: try r.read(UInt16.self, "header.lane"),
            firstSequence: try r.read(UInt64.self, "header.firstSequence"),
            lowWatermark: try r.read(UInt64.self, "header.lowWatermark"),
            bodyLength: try r.read(UInt32.self, "header.bodyLength"))
        guard header.namespace <= membershipNamespace else { throw .invalid(field: "header.namespace") }
        // Sequences start at 1 and grow by one per message: anything near the top of the
        // range is hostile, and arithmetic on it could overflow.
        guard header.firstSequence < Self.maxSequence, header.lowWatermark < Self.maxSequence else {
            throw .invalid(field: "header.sequence")
        }
        let body = Int(header.bodyLength)
        guard body <= maxBodyBytes else { throw .tooLarge(field: "header.bodyLength", limit: maxBodyBytes, found: body) }
        guard body <= r.remaining else { throw .truncated(field: "frame.body") }
        guard body == r.remaining else { throw .trailingBytes(r.remaining - body) }
        return header
    }
}

/// The plaintext body of a frame: `dataCount u16 | controlCount u16 | messages`, data
/// messages first, numbered from the header's `firstSequence`.
package struct FrameBody: Hashable, Sendable {
    /// Sequenced messages, in sequence order.
    package var data: [ReplicationMessage]
    /// Receipts and resync requests.
    package var control: [ReplicationMessage]

    /// Creates a body.
    package init(data: [ReplicationMessage] = [], control: [ReplicationMessage] = []) {
        self.data = data
        self.control = control
    }

    /// Encodes a body from already-encoded messages.
    package static func encode(data: [[UInt8]], control: [[UInt8]]) -> [UInt8] {
        var total = 4
        for m in data { total += m.count }
        for m in control { total += m.count }
        var w = ByteWriter(capacity: total)
        w.write(UInt16(data.count)); w.write(UInt16(control.count))
        for m in data { w.writeRaw(m) }
        for m in control { w.writeRaw(m) }
        return w.bytes
    }

    /// Decodes a body whole: data messages must be sequenced and control messages must
    /// not. Throws the first problem found, in the frame or in any one message (see
    /// `decodeEach` to keep the good messages of a frame holding a bad one).
    package static func decode(_ bytes: UnsafeRawBufferPointer, limits: WireLimits) throws(DecodeError) -> FrameBody {
        let each = try decodeEach(bytes, limits: limits)
        if let first = each.refused.first { throw first.error }
        return FrameBody(data: each.data.map(\.message), control: each.control.map(\.message))
    }

    /// Decodes a body message by message: a message whose content is bad (a count or size
    /// over `limits`, a stamp near the top of its range, an unknown type, a data message
    /// among the control ones) is refused alone, with its position, and the others are
    /// kept. Throws only when the frame itself is broken: its counts (more than
    /// `limits.maxMessages`), a message's type-and-length prefix running past the body,
    /// or bytes left after the last message; then no message can be trusted to be where
    /// the counts say.
    package static func decodeEach(_ bytes: UnsafeRawBufferPointer, limits: WireLimits) throws(DecodeError) -> Decoded {
        var r = ByteReader(bytes)
        let dataCount = Int(try r.read(UInt16.self, "body.dataCount"))
        let controlCount = Int(try r.read(UInt16.self, "body.controlCount"))
        guard dataCount + controlCount <= limits.maxMessages else {
            throw .tooLarge(field: "body.messages", limit: limits.maxMessages, found: dataCount + controlCount)
        }
        guard (dataCount + controlCount) * 5 <= r.remaining else { throw .truncated(field: "body.messages") }
        var out = Decoded()
        out.data.reserveCapacity(dataCount)
        for offset in 0..<(dataCount + controlCount) {
            let isData = offset < dataCount
            let (tag, body) = try MessageCodec.envelope(&r)
            let index = isData ? offset : offset - dataCount
            do throws(DecodeError) {
                let m = try MessageCodec.decodeBody(tag, body, limits: limits)
                if isData {
                    guard m.isSequenced else { throw DecodeError.invalid(field: "body.data") }
                    out.data.append(.init(index: index, message: m))
                } else {
                    guard !m.isSequenced else { throw DecodeError.invalid(field: "body.control") }
                    out.control.append(.init(index: index, message: m))
                }
            } catch {
                out.refused.append(Refusal(sequenced: isData, index: index, error: error))
            }
        }
        guard r.remaining == 0 else { throw .trailingBytes(r.remaining) }
        return out
    }

    /// A body decoded message by message (`decodeEach`).
    package struct Decoded: Hashable, Sendable {
        /// Data messages that decoded, in order; `index` is the offset from the header's
        /// `firstSequence` (the message's sequence is `firstSequence + index`).
        package var data: [Positioned] = []
        /// Control messages that decoded, in order; `index` counts control messages only.
        package var control: [Positioned] = []
        /// Messages refused, in frame order.
        package var refused: [Refusal] = []
        /// Creates an empty result.
        package init() {}
    }

    /// A message with its position in the frame.
    package struct Positioned: Hashable, Sendable {
        /// For a data message, its offset from the header's `firstSequence`; for a
        /// control message, its place among the control messages (from 0).
        package var index: Int
        /// The message.
        package var message: ReplicationMessage
        /// Creates a positioned message.
        package init(index: Int, message: ReplicationMessage) {
            self.index = index
            self.message = message
        }
    }

    /// One message refused on decode, the frame around it kept.
    package struct Refusal: Hashable, Sendable {
        /// Whether it stood among the data (sequenced) messages; its sequence is then
        /// `firstSequence + index`, and the receiver should receipt it as refused.
        package var sequenced: Bool
        /// Offset from `firstSequence` (data) or place among the control messages.
        package var index: Int
        /// Why, naming the field (`DecodeError.reason` for metrics).
        package var error: DecodeError
        /// Creates a refusal.
        package init(sequenced: Bool, index: Int, error: DecodeError) {
            self.sequenced = sequenced
            self.index = index
            self.error = error
        }
    }
}

/// Anti-replay for one sender: a strictly increasing counter on TCP, a sliding window of
/// `windowSize` counters for datagrams.
package struct ReplayWindow: Hashable, Sendable {
    /// How far behind the highest counter a datagram may be. Default 1,024.
    package static let windowSize: UInt64 = 1024
    private var highestStream: UInt64 = 0
    private var highestDatagram: UInt64 = 0
    private var seen: [UInt64] = Array(repeating: 0, count: Int(ReplayWindow.windowSize / 64))

    /// Creates an empty window.
    package init() {}

    /// Whether a stream (TCP) frame with `counter` is new; records it if so.
    package mutating func acceptStream(_ counter: UInt64) -> Bool {
        guard counter > highestStream else { return false }
        highestStream = counter
        return true
    }

    /// Whether a datagram with `counter` is new and within the window; records it if so.
    package mutating func acceptDatagram(_ counter: UInt64) -> Bool {
        guard counter > 0 else { return false }
        if counter > highestDatagram {
            let shift = counter - highestDatagram
            if shift >= Self.windowSize {
                for i in seen.indices { seen[i] = 0 }
            } else {
                var c = highestDatagram + 1
                while c < counter { clear(c); c += 1 }
            }
            highestDatagram = counter
            mark(counter)
            return true
        }
        guard highestDatagram - counter < Self.windowSize else { return false }
        if isMarked(counter) { return false }
        mark(counter)
        return true
    }

    private func index(_ c: UInt64) -> (Int, UInt64) {
        let slot = c % Self.windowSize
        return (Int(slot / 64), 1 << (slot % 64))
    }
    private mutating func mark(_ c: UInt64) { let (i, bit) = index(c); seen[i] |= bit }
    private mutating func clear(_ c: UInt64) { let (i, bit) = index(c); seen[i] &= ~bit }
    private func isMarked(_ c: UInt64) -> Bool { let (i, bit) = index(c); return seen[i] & bit != 0 }
}
