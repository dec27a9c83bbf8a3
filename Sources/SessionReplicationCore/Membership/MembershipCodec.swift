/// Binary encoding of `MembershipMessage`, little-endian: `type u8 | fields`, updates as
/// `count u16 | (status u8 | name | id u64 | incarnation u64 | from)*` with names as
/// `u8 length | bytes`. Decoding checks every length and name and refuses trailing bytes.
package enum MembershipCodec {
    enum Tag: UInt8 {
        case ping = 32, ack = 33, pingRequest = 34, nack = 35, sync = 36, leaseRequest = 37, leaseGrant = 38
    }

    /// Most updates in one message. Default 4,096 members.
    package static let maxUpdates = 4_096
    /// Incarnations at or above this (2^62) are refused on decode: a node refuting a
    /// suspicion takes the heard incarnation plus one.
    package static let maxIncarnation: UInt64 = 1 << 62

    /// Encodes one message.
    package static func encode(_ message: MembershipMessage) -> [UInt8] {
        var w = ByteWriter(capacity: 64 + message.updates.count * 40)
        switch message {
        case .ping(let seq, let target, let updates):
            w.write(Tag.ping.rawValue); w.write(seq); w.write(target); writeUpdates(updates, &w)
        case .ack(let seq, let updates):
            w.write(Tag.ack.rawValue); w.write(seq); writeUpdates(updates, &w)
        case .pingRequest(let seq, let target, let targetID, let updates):
            w.write(Tag.pingRequest.rawValue); w.write(seq); writeName(target, &w); w.write(targetID); writeUpdates(updates, &w)
        case .nack(let seq, let updates):
            w.write(Tag.nack.rawValue); w.write(seq); writeUpdates(updates, &w)
        case .sync(let members, let reply):
            w.write(Tag.sync.rawValue); w.write(UInt8(reply ? 1 : 0)); writeUpdates(members, &w)
        case .leaseRequest(let seq):
            w.write(Tag.leaseRequest.rawValue); w.write(seq)
        case .leaseGrant(let seq):
            w.write(Tag.leaseGrant.rawValue); w.write(seq)
        }
        return w.bytes
    }

    /// Whether `byte` is the first byte of a membership message (and not a replication one).
    package static func isMembership(firstByte byte: UInt8) -> Bool { Tag(rawValue: byte) != nil }

    /// Decodes one message filling the whole buffer.
    package static func decode(_ bytes: UnsafeRawBufferPointer) throws(DecodeError) -> MembershipMessage {
        var r = ByteReader(bytes)
        guard let tag = Tag(rawValue: try r.read(UInt8.self, "membership.type")) else { throw .invalid(field: "membership.type") }
        let message: MembershipMessage
        switch tag {
        case .ping:
            let seq = try r.read(UInt64.self, "ping.sequence")
            let target = try r.readNodeID("ping.target")
            message = .ping(sequence: seq, target: target, updates: try readUpdates(&r))
        case .ack:
            let seq = try r.read(UInt64.self, "ack.sequence")
            message = .ack(sequence: seq, updates: try readUpdates(&r))
        case .pingRequest:
            let seq = try r.read(UInt64.self, "pingRequest.sequence")
            let target = try readName(&r, "pingRequest.target")
            let id = try r.readNodeID("pingRequest.targetID")
            message = .pingRequest(sequence: seq, target: target, targetID: id, updates: try readUpdates(&r))
        case .nack:
            let seq = try r.read(UInt64.self, "nack.sequence")
            message = .nack(sequence: seq, updates: try readUpdates(&r))
        case .sync:
            let flag = try r.read(UInt8.self, "sync.reply")
            guard flag <= 1 else { throw .invalid(field: "sync.reply") }
            message = .sync(members: try readUpdates(&r), reply: flag == 1)
        case .leaseRequest:
            message = .leaseRequest(sequence: try r.read(UInt64.self, "leaseRequest.sequence"))
        case .leaseGrant:
            message = .leaseGrant(sequence: try r.read(UInt64.self, "leaseGrant.sequence"))
        }
        guard r.remaining == 0 else { throw .trailingBytes(r.remaining) }
        return message
    }

    /// Decodes one message filling all of `bytes`.
    package static func decode(_ bytes: [UInt8]) throws(DecodeError) -> MembershipMessage {
        let result: Result<MembershipMessage, DecodeError> = bytes.withUnsafeBytes { raw in
            Result { () throws(DecodeError) in try decode(raw) }
        }
        return try result.get()
    }

    static func writeName(_ name: String, _ w: inout ByteWriter) {
        w.write(UInt8(truncatingIfNeeded: name.utf8.count)); w.writeRaw(name.utf8)
    }

    static func readName(_ r: inout ByteReader, _ field: String) throws(DecodeError) -> String {
        let length = Int(try r.read(UInt8.self, field))
        let raw = try r.readBytes(length, field)
        guard NodeName.isValid(raw[...], maxLength: 32) else { throw .invalid(field: field) }
        return String(decoding: raw, as: UTF8.self)
    }

    static func writeUpdates(_ updates: [MemberUpdate], _ w: inout ByteWriter) {
        w.write(UInt16(truncatingIfNeeded: updates.count))
        for u in updates {
            w.write(u.status.rawValue); writeName(u.name, &w); w.write(u.id); w.write(u.incarnation); writeName(u.from, &w)
        }
    }

    static func readUpdates(_ r: inout ByteReader) throws(DecodeError) -> [MemberUpdate] {
        let count = Int(try r.read(UInt16.self, "updates.count"))
        guard count <= maxUpdates else { throw .tooLarge(field: "updates.count", limit: maxUpdates, found: count) }
        guard count * 20 <= r.remaining else { throw .truncated(field: "updates") }
        var out: [MemberUpdate] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            guard let status = MemberStatus(rawValue: try r.read(UInt8.self, "update.status")) else { throw .invalid(field: "update.status") }
            let name = try readName(&r, "update.name")
            let id = try r.readNodeID("update.id")
            let incarnation = try r.read(UInt64.self, "update.incarnation")
            // A refutation adds one to the highest incarnation heard.
            guard incarnation < maxIncarnation else { throw .invalid(field: "update.incarnation") }
            let from = try readName(&r, "update.from")
            out.append(MemberUpdate(status: status, name: name, id: id, incarnation: incarnation, from: from))
        }
        return out
    }
}
