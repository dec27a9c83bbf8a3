import Testing
@testable import SessionReplicationCore
import SessionReplicationTestKit

@Suite("Wire codec")
struct WireCodecTests {
    // MARK: - Round trips

    @Test("every replication message survives an encode and decode unchanged")
    func messageRoundTrip() throws {
        for message in sampleMessages() {
            let encoded = MessageCodec.encode(message)
            #expect(try decodeMessage(encoded) == message)
        }
    }

    @Test("a message's length prefix counts exactly the bytes after it")
    func lengthPrefix() {
        let encoded = MessageCodec.encode(.receipt(Receipt(lane: 1, through: 2)))
        #expect(encoded == [16, 29, 0, 0, 0, 1, 0, 2] + [UInt8](repeating: 0, count: 7 + 16 + 3))
        let ranged = MessageCodec.encode(.receipt(Receipt(lane: 1, through: 2, received: [4...5])))
        #expect(ranged.count == 5 + 29 + 16)
        let refused = MessageCodec.encode(.receipt(Receipt(lane: 1, through: 9, refused: [3, 7])))
        #expect(refused.count == 5 + 29 + 16)
        #expect((try? MessageCodec.decode(refused)) == .receipt(Receipt(lane: 1, through: 9, refused: [3, 7])))
    }

    @Test("receipt ranges must be ascending, disjoint and above the cumulative sequence")
    func receiptRangesValidated() throws {
        #expect(try decodeMessage(MessageCodec.encode(.receipt(Receipt(lane: 0, through: 2, received: [4...5, 7...9])))) ==
                .receipt(Receipt(lane: 0, through: 2, received: [4...5, 7...9])))
        for bad in [[2...3], [5...6, 4...4], [4...6, 6...7]] as [[ClosedRange<UInt64>]] {
            #expect(throws: DecodeError.invalid(field: "receipt.range")) {
                try decodeMessage(MessageCodec.encode(.receipt(Receipt(lane: 0, through: 2, received: bad))))
            }
        }
    }

    @Test("a frame header and body survive an encode and decode unchanged")
    func frameRoundTrip() throws {
        let data = sampleMessages().filter(\.isSequenced)
        let control = sampleMessages().filter { !$0.isSequenced }
        let frame = makeFrame(data: data, control: control, flags: [.sealed, .datagram])
        let (header, body) = try decodeFrame(frame)
        let bodyLength = frame.count - encodedHeaderSize
        #expect(header == sampleHeader(bodyLength: bodyLength, flags: [.sealed, .datagram]))
        #expect(body == FrameBody(data: data, control: control))
    }

    @Test("a header's encodedSize is the number of bytes it encodes to")
    func headerSize() {
        for name in ["n", "n1", "node-12345"] {
            let header = sampleHeader(bodyLength: 0, senderName: name)
            var w = ByteWriter()
            header.encode(into: &w)
            #expect(header.encodedSize == w.bytes.count, "\(name)")
        }
    }

    @Test("an empty frame body round trips")
    func emptyBody() throws {
        #expect(try decodeBody(FrameBody.encode(data: [], control: [])) == FrameBody())
    }

    // MARK: - Truncation

    @Test("every proper prefix of every message is rejected as truncated")
    func truncatedMessages() {
        for message in sampleMessages() {
            let encoded = MessageCodec.encode(message)
            for n in 0..<encoded.count {
                let error = decodeError { () throws(DecodeError) in try decodeMessage(Array(encoded.prefix(n))) }
                #expect(error?.reason == "truncated", "prefix \(n) of \(encoded.count) gave \(String(describing: error))")
            }
        }
    }

    @Test("every proper prefix of a frame is rejected as truncated")
    func truncatedFrames() {
        let frame = makeFrame(data: sampleMessages().filter(\.isSequenced), control: sampleMessages().filter { !$0.isSequenced })
        for n in 0..<frame.count {
            let error = decodeError { () throws(DecodeError) in try decodeFrame(Array(frame.prefix(n))) }
            #expect(error?.reason == "truncated", "prefix \(n) of \(frame.count) gave \(String(describing: error))")
        }
    }

    @Test("every proper prefix of a frame body is rejected as truncated")
    func truncatedBodies() {
        let body = FrameBody.encode(data: sampleMessages().filter(\.isSequenced).map(MessageCodec.encode),
                                    control: sampleMessages().filter { !$0.isSequenced }.map(MessageCodec.encode))
        for n in 0..<body.count {
            let error = decodeError { () throws(DecodeError) in try decodeBody(Array(body.prefix(n))) }
            #expect(error?.reason == "truncated", "prefix \(n) of \(body.count) gave \(String(describing: error))")
        }
    }

    // MARK: - Oversized lengths

    @Test("an attribute count beyond maxAttributes is refused before reading attributes")
    func attributeCount() {
        var w = fullPrefix()
        w.write(UInt32(65_537))
        #expect(throws: DecodeError.tooLarge(field: "full.attributeCount", limit: 65_536, found: 65_537)) {
            try decodeMessage(wrapMessage(type: 1, w.bytes))
        }
        var limits = WireLimits()
        limits.maxAttributes = 2
        var d = deltaPrefix()
        d.write(UInt32(3))
        #expect(throws: DecodeError.tooLarge(field: "delta.setCount", limit: 2, found: 3)) {
            try decodeMessage(wrapMessage(type: 2, d.bytes), limits: limits)
        }
        var r = deltaPrefix()
        r.write(UInt32(0)); r.write(UInt32.max)
        #expect(throws: DecodeError.tooLarge(field: "delta.removedCount", limit: 65_536, found: Int(UInt32.max))) {
            try decodeMessage(wrapMessage(type: 2, r.bytes))
        }
    }

    @Test("an attribute name of 256 bytes is accepted and one of 257 refused")
    func nameLength() throws {
        let ok = try decodeMessage(fullWithAttribute(name: Array(repeating: UInt8(ascii: "x"), count: 256)))
        guard case .full(let s) = ok else { Issue.record("not a full state"); return }
        #expect(s.attributes.keys.first?.utf8.count == 256)
        #expect(throws: DecodeError.tooLarge(field: "attribute.name", limit: 256, found: 257)) {
            try decodeMessage(fullWithAttribute(name: Array(repeating: UInt8(ascii: "x"), count: 257)))
        }
    }

    @Test("an attribute value beyond maxValueBytes is refused, at the limit accepted")
    func valueLength() throws {
        var limits = WireLimits()
        limits.maxValueBytes = 8
        _ = try decodeMessage(fullWithAttribute(name: bytes("a"), value: Array(repeating: 1, count: 8)), limits: limits)
        #expect(throws: DecodeError.tooLarge(field: "attribute.value", limit: 8, found: 9)) {
            try decodeMessage(fullWithAttribute(name: bytes("a"), value: Array(repeating: 1, count: 9)), limits: limits)
        }
        // A claimed 4 GiB value with the default limits is refused by its length alone.
        var w = fullPrefix()
        w.write(UInt32(1)); w.writeShortString("a"); w.write(UInt32.max)
        #expect(throws: DecodeError.tooLarge(field: "attribute.value", limit: 4 << 20, found: Int(UInt32.max))) {
            try decodeMessage(wrapMessage(type: 1, w.bytes))
        }
    }

    @Test("a replica set of more than 64 names is refused")
    func replicaSetSize() {
        let names = (0..<65).map { bytes("n\($0)") }
        var w = fullPrefix(replicaNames: names)
        w.write(UInt32(0))
        #expect(throws: DecodeError.tooLarge(field: "replicaSet.count", limit: 64, found: 65)) {
            try decodeMessage(wrapMessage(type: 1, w.bytes))
        }
    }

    @Test("a body length beyond maxFrameBytes is refused before waiting for the body")
    func bodyLength() {
        var w = ByteWriter()
        sampleHeader(bodyLength: (16 << 20) + 1).encode(into: &w)
        #expect(throws: DecodeError.tooLarge(field: "header.bodyLength", limit: 16 << 20, found: (16 << 20) + 1)) {
            try decodeFrame(w.bytes)
        }
    }

    @Test("more messages in a body than maxMessages are refused")
    func messageCount() {
        var limits = WireLimits()
        limits.maxMessages = 3
        let r = MessageCodec.encode(.receipt(Receipt(lane: 0, through: 1)))
        let t = MessageCodec.encode(.touch(Touch(id: sampleID, stamp: sampleStamp, lastAccessedAt: WallTime(milliseconds: 1))))
        #expect(throws: DecodeError.tooLarge(field: "body.messages", limit: 3, found: 4)) {
            try decodeBody(FrameBody.encode(data: [t, t], control: [r, r]), limits: limits)
        }
    }

    @Test("a resync request with too many entries, or fewer bytes than it claims, is refused")
    func resyncCount() {
        var big = ByteWriter()
        big.write(UInt16(0)); big.write(UInt32(70_000))
        #expect(throws: DecodeError.tooLarge(field: "resync.count", limit: 65_535, found: 70_000)) {
            try decodeMessage(wrapMessage(type: 17, big.bytes))
        }
        var short = ByteWriter()
        short.write(UInt16(0)); short.write(UInt32(2)); short.writeRaw(Array(repeating: UInt8(0), count: 24))
        #expect(throws: DecodeError.truncated(field: "resync.entries")) {
            try decodeMessage(wrapMessage(type: 17, short.bytes))
        }
    }

    // MARK: - Header checks

    @Test("a frame with bad magic is refused")
    func badMagic() {
        var frame = makeFrame(data: [], control: [.receipt(Receipt(lane: 0, through: 1))])
        frame[0] ^= 0xFF
        #expect(throws: DecodeError.badMagic) { try decodeFrame(frame) }
    }

    @Test("a frame of another protocol version is refused with that version")
    func unsupportedVersion() {
        var frame = makeFrame(data: [], control: [.receipt(Receipt(lane: 0, through: 1))])
        frame[2] = 3
        #expect(throws: DecodeError.unsupportedVersion(3)) { try decodeFrame(frame) }
        // Version 1 carried 64-bit node ids.
        frame[2] = 1
        #expect(throws: DecodeError.unsupportedVersion(1)) { try decodeFrame(frame) }
        frame[2] = 0
        #expect(throws: DecodeError.unsupportedVersion(0)) { try decodeFrame(frame) }
    }

    @Test("unknown flag bits, an invalid sender name or an unknown namespace are refused")
    func headerFields() {
        var frame = makeFrame(data: [], control: [])
        frame[3] = 0b100
        #expect(throws: DecodeError.invalid(field: "header.flags")) { try decodeFrame(frame) }

        for name in ["N1", "", "-n1", "n_1", String(repeating: "a", count: 33)] {
            var w = ByteWriter()
            sampleHeader(bodyLength: 0, senderName: name).encode(into: &w)
            #expect(throws: DecodeError.invalid(field: "header.senderName"), "\(name)") { try decodeFrame(w.bytes) }
        }

        let body = FrameBody.encode(data: [], control: [])
        var w = ByteWriter()
        sampleHeader(bodyLength: body.count, namespace: 2).encode(into: &w)
        w.writeRaw(body)
        #expect(throws: DecodeError.invalid(field: "header.namespace")) { try decodeFrame(w.bytes) }
    }

    @Test("bytes after the frame body are refused as trailing")
    func trailingFrameBytes() {
        var frame = makeFrame(data: [], control: [.receipt(Receipt(lane: 0, through: 1))])
        frame += [0, 0, 0]
        #expect(throws: DecodeError.trailingBytes(3)) { try decodeFrame(frame) }
    }

    // MARK: - Message checks

    @Test("an unknown message type is refused as invalid")
    func unknownType() {
        for type: UInt8 in [0, 5, 15, 26, 255] {
            #expect(throws: DecodeError.invalid(field: "message.type"), "type \(type)") {
                try decodeMessage(wrapMessage(type: type, [1, 2, 3]))
            }
        }
    }

    @Test("attribute names that are not UTF-8 are refused")
    func invalidUTF8() {
        for name: [UInt8] in [[0xFF], [0xC3], [0x61, 0x80], [0xED, 0xA0, 0x80], [0xC0, 0xAF]] {
            #expect(throws: DecodeError.invalid(field: "attribute.name"), "\(name)") {
                try decodeMessage(fullWithAttribute(name: name))
            }
        }
    }

    @Test("empty attribute names and names with control characters are refused")
    func controlCharacters() {
        for name in ["", "\u{0}", "a\tb", "line\n", "\u{7F}", "x\u{85}"] {
            #expect(throws: DecodeError.invalid(field: "attribute.name"), "\(name.debugDescription)") {
                try decodeMessage(fullWithAttribute(name: bytes(name)))
            }
        }
        var d = deltaPrefix()
        d.write(UInt32(0)); d.write(UInt32(1)); d.writeShortString("bad\u{1B}")
        #expect(throws: DecodeError.invalid(field: "attribute.name")) { try decodeMessage(wrapMessage(type: 2, d.bytes)) }
    }

    @Test("invalid replica names are refused")
    func replicaNames() {
        for name in ["N2", "", "n 2", String(repeating: "b", count: 33)] {
            var w = fullPrefix(replicaNames: [bytes(name)])
            w.write(UInt32(0))
            #expect(throws: DecodeError.invalid(field: "replicaSet.name"), "\(name)") {
                try decodeMessage(wrapMessage(type: 1, w.bytes))
            }
        }
    }

    @Test("a delta whose version does not exceed its base is refused")
    func deltaVersion() {
        for (base, version): (UInt64, UInt64) in [(5, 5), (6, 5), (UInt64.max, 0)] {
            var d = deltaPrefix(base: base, version: version)
            d.write(UInt32(0)); d.write(UInt32(0))
            #expect(throws: DecodeError.invalid(field: "delta.version"), "\(base) -> \(version)") {
                try decodeMessage(wrapMessage(type: 2, d.bytes))
            }
        }
    }

    @Test("an idle limit of zero, negative or more than a year is refused")
    func maxInactiveInterval() throws {
        for ms: Int64 in [0, -1, .min, 366 * 86_400_000 + 1] {
            var w = fullPrefix(miiMilliseconds: ms)
            w.write(UInt32(0))
            #expect(throws: DecodeError.invalid(field: "maxInactiveInterval"), "\(ms)") {
                try decodeMessage(wrapMessage(type: 1, w.bytes))
            }
            var d = deltaPrefix(miiMilliseconds: ms)
            d.write(UInt32(0)); d.write(UInt32(0))
            #expect(throws: DecodeError.invalid(field: "maxInactiveInterval"), "\(ms)") {
                try decodeMessage(wrapMessage(type: 2, d.bytes))
            }
        }
        var w = fullPrefix(miiMilliseconds: 366 * 86_400_000)
        w.write(UInt32(0))
        guard case .full(let s) = try decodeMessage(wrapMessage(type: 1, w.bytes)) else { Issue.record("not a full state"); return }
        #expect(s.maxInactiveInterval == .seconds(366 * 86_400))
    }

    @Test("an unknown end reason is refused")
    func endReason() {
        var encoded = MessageCodec.encode(.invalidate(Invalidation(id: sampleID, stamp: sampleStamp, reason: .expired)))
        encoded[encoded.count - 1] = 9
        #expect(throws: DecodeError.invalid(field: "invalidate.reason")) { try decodeMessage(encoded) }
    }

    @Test("a message length longer than its fields leaves trailing bytes, shorter cuts the last field short")
    func messageLengthMismatch() {
        let touch = MessageCodec.encode(.touch(Touch(id: sampleID, stamp: sampleStamp, lastAccessedAt: WallTime(milliseconds: 5))))
        let body = Array(touch[5...])
        #expect(throws: DecodeError.trailingBytes(3)) {
            try decodeMessage(wrapMessage(type: 4, body + [0, 0, 0]))
        }
        // The body is read within its declared length only (the next message starts there).
        #expect(throws: DecodeError.truncated(field: "touch.lastAccessedAt")) {
            try decodeMessage(wrapMessage(type: 4, body, length: UInt32(body.count - 1)))
        }
    }

    @Test("bytes after the last message of a body are refused as trailing")
    func trailingBodyBytes() {
        let body = FrameBody.encode(data: [], control: [MessageCodec.encode(.receipt(Receipt(lane: 0, through: 1)))])
        #expect(throws: DecodeError.trailingBytes(2)) { try decodeBody(body + [1, 2]) }
    }

    @Test("a control message in the data section, or a data message in the control section, is refused")
    func sectionMismatch() {
        let receipt = MessageCodec.encode(.receipt(Receipt(lane: 0, through: 1)))
        let touch = MessageCodec.encode(.touch(Touch(id: sampleID, stamp: sampleStamp, lastAccessedAt: WallTime(milliseconds: 1))))
        #expect(throws: DecodeError.invalid(field: "body.data")) { try decodeBody(FrameBody.encode(data: [receipt], control: [])) }
        #expect(throws: DecodeError.invalid(field: "body.control")) { try decodeBody(FrameBody.encode(data: [], control: [touch])) }
    }

    // MARK: - Fuzzing

    @Test("2,000 seeded mutations of valid frames each decode or throw a DecodeError, and what decodes re-encodes stably")
    func mutations() {
        var rng = SeededGenerator(seed: 0x5EED_0F_D15C)
        let all = sampleMessages()
        let bases: [[UInt8]] = [
            makeFrame(data: all.filter(\.isSequenced), control: all.filter { !$0.isSequenced }),
            makeFrame(data: [.full(sampleFull())], control: []),
            makeFrame(data: [.delta(sampleDelta())], control: [.receipt(Receipt(lane: 1, through: 9))], flags: [.datagram]),
        ]
        let headerSize = encodedHeaderSize
        var decoded = 0, rejected = 0
        var reasons: Set<String> = []
        for i in 0..<2_000 {
            var frame = bases[i % bases.count]
            switch rng.below(4) {
            case 0: // flip 1 to 4 bits
                for _ in 0...rng.below(4) {
                    let at = rng.below(frame.count)
                    frame[at] ^= UInt8(1) << UInt8(rng.below(8))
                }
            case 1: // truncate or extend
                if rng.below(2) == 0 {
                    frame = Array(frame.prefix(rng.below(frame.count)))
                } else {
                    frame += (0..<rng.below(16) + 1).map { _ in UInt8.random(in: 0...255, using: &rng) }
                }
            case 2: // overwrite 1, 2 or 4 body bytes with a hostile length or count
                let widths = [1, 2, 4]
                let width = widths[rng.below(3)]
                let at = headerSize + rng.below(frame.count - headerSize - width)
                let values: [UInt32] = [0, 1, 0xFF, 0xFFFF, 0xFFFF_FFFF, 0x8000_0000, UInt32(truncatingIfNeeded: rng.next())]
                let value = values[rng.below(values.count)]
                for k in 0..<width { frame[at + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(k))) }
            default: // random bytes over a random range
                let at = rng.below(frame.count)
                let n = min(frame.count - at, rng.below(12) + 1)
                for k in 0..<n { frame[at + k] = UInt8.random(in: 0...255, using: &rng) }
            }
            let result: Result<(FrameHeader, FrameBody), DecodeError> = Result { () throws(DecodeError) in try decodeFrame(frame) }
            switch result {
            case .success(let (header, body)):
                decoded += 1
                let again = makeFrameLike(header, body)
                let redecoded = Result { () throws(DecodeError) in try decodeFrame(again) }
                #expect((try? redecoded.get())?.1 == body, "mutation \(i) decoded but did not re-encode stably")
            case .failure(let error):
                rejected += 1
                reasons.insert(error.reason)
            }
        }
        #expect(decoded + rejected == 2_000)
        #expect(decoded > 0)
        #expect(rejected > 1_000)
        #expect(reasons.isSuperset(of: ["truncated", "invalid", "oversized", "trailing", "bad-magic", "version"]), "\(reasons)")
    }

    private func makeFrameLike(_ header: FrameHeader, _ body: FrameBody) -> [UInt8] {
        let b = FrameBody.encode(data: body.data.map(MessageCodec.encode), control: body.control.map(MessageCodec.encode))
        var h = header
        h.bodyLength = UInt32(b.count)
        var w = ByteWriter()
        h.encode(into: &w)
        w.writeRaw(b)
        return w.bytes
    }

    // MARK: - Identifiers

    @Test("a session id parses from 32 lowercase hex digits, with or without a route")
    func sessionIDParsing() throws {
        let hex = "0123456789abcdeffedcba9876543210"
        let id = try #require(SessionID(cookieValue: hex))
        #expect(id == sampleID)
        #expect(id.hex == hex)
        #expect(SessionID(cookieValue: hex + ".n1") == sampleID)
        #expect(SessionID(cookieValue: hex + ".node-7") == sampleID)
        #expect(SessionID(cookieValue: hex + "." + String(repeating: "r", count: 32)) == sampleID)
        #expect(SessionID(cookieValue: hex[...]) == sampleID)
    }

    @Test("malformed session ids are rejected", arguments: [
        "", "0123456789ABCDEFfedcba9876543210", "0123456789abcdeffedcba987654321", "0123456789abcdeffedcba98765432100",
        "0123456789abcdeffedcba9876543210.", "0123456789abcdeffedcba9876543210.N1", "0123456789abcdeffedcba9876543210.-n1",
        "0123456789abcdeffedcba9876543210.n_1", "0123456789abcdeffedcba9876543210:n1",
        "0123456789abcdeffedcba9876543210." + String(repeating: "r", count: 33), "0123456789abcdeffedcba987654321g",
        " 0123456789abcdeffedcba987654321", "0x23456789abcdeffedcba9876543210", "0123456789abcdeffedcba98765432é",
        "+123456789abcdeffedcba9876543210",
    ])
    func sessionIDRejected(_ text: String) {
        #expect(SessionID(cookieValue: text) == nil)
    }

    @Test("random session ids print as 32 lowercase hex digits that parse back, cookie form too")
    func sessionIDRoundTrip() throws {
        var rng = SeededGenerator(seed: 7)
        for _ in 0..<100 {
            let id = SessionID.random(using: &rng)
            #expect(id.hex.utf8.count == 32)
            #expect(id.hex == id.hex.lowercased())
            #expect(SessionID(cookieValue: id.hex) == id)
            #expect(SessionID(cookieValue: id.cookieValue(route: "n3")) == id)
        }
    }

    @Test("a stamp's etag parses back to the same stamp, quoted or not")
    func etagRoundTrip() throws {
        let stamps = [sampleStamp, Stamp(epoch: Epoch(counter: 0, owner: NodeID(0)), version: 0),
                      Stamp(epoch: Epoch(counter: .max, owner: NodeID(.max)), version: .max)]
        for stamp in stamps {
            #expect(Stamp(etag: stamp.etag) == stamp)
            #expect(Stamp(etag: "\"\(stamp.etag)\"") == stamp)
        }
        #expect(sampleStamp.etag == "3-a1b2c3d4e5f607180000000000000000-2a")
    }

    @Test("malformed etags are rejected", arguments: [
        "", "\"\"", "1-2", "1-2-3-4", "1--3", "-1-2", "x-1-2", "1-2-z", "1-2-3 ", "\"1-2-3", "1-2-3\"",
        "10000000000000000-1-1", "00000000000000001-1-1", "-0-0-0", "1-2-\"3\"", "W/\"1-2-3\"",
    ])
    func etagRejected(_ text: String) {
        #expect(Stamp(etag: text) == nil)
    }

    @Test("etags not in the form etag prints (a + sign, uppercase digits) are rejected",
          arguments: ["+1-2-3", "1-+2-3", "A-1-1", "1-2-FF"])
    func etagNonCanonical(_ text: String) {
        #expect(Stamp(etag: text) == nil)
    }

    @Test("stamps order by epoch counter, then epoch owner, then version")
    func stampOrder() {
        let a = Stamp(epoch: Epoch(counter: 1, owner: NodeID(9)), version: 100)
        let b = Stamp(epoch: Epoch(counter: 2, owner: NodeID(1)), version: 1)
        let c = Stamp(epoch: Epoch(counter: 2, owner: NodeID(2)), version: 1)
        let d = Stamp(epoch: Epoch(counter: 2, owner: NodeID(2)), version: 2)
        #expect(a < b && b < c && c < d)
        #expect(!(d < a))
    }

    @Test("node names are 1 to 32 of lowercase letters, digits and inner dashes", arguments: [
        ("a", true), ("n1", true), ("0", true), ("node-1", true), ("a-", true), (String(repeating: "z", count: 32), true),
        ("", false), ("-a", false), ("A", false), ("nodeA", false), ("n_1", false), ("n.1", false), (" n1", false),
        (String(repeating: "z", count: 33), false), ("ñ", false), ("n1\n", false),
    ])
    func nodeNames(_ name: String, _ valid: Bool) {
        #expect(NodeName.isValid(name) == valid)
    }
}
