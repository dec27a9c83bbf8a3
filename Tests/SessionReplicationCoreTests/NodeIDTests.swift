import SessionReplicationCore
import Testing

/// Node ids: 128 bits, ordered by start then 64 random bits; on the wire and in ETags whole.
@Suite("Node ids")
struct NodeIDTests {
    @Test("a fresh id keeps all 64 random bits; two starts in one millisecond differ only there, and a later start orders above")
    func freshCarries64RandomBits() {
        let at = WallTime(milliseconds: 1_765_000_000_123)
        let random: UInt64 = 0xFEDC_BA98_7654_3210
        let id = NodeID.fresh(start: at, random: random)
        // Before: `start << 20 | random & 0xFFFFF`, 20 random bits.
        #expect(id.nonce == random && id.start == 1_765_000_000_123)
        let twin = NodeID.fresh(start: at, random: random ^ (1 << 63))
        #expect(twin != id && twin.start == id.start)
        let later = NodeID.fresh(start: WallTime(milliseconds: 1_765_000_000_124), random: 0)
        #expect(later > id && later > twin, "a later process of a node replaces the earlier one")
    }

    @Test("a rejoining process orders above its old id, the verdict's floor and a fresh id, keeping 64 random bits")
    func rejoining() {
        let old = NodeID(500, nonce: .max)
        let fresh = NodeID(400, nonce: 0x1234_5678_9ABC_DEF0)
        let id = NodeID.rejoining(after: old, above: NodeID(700, nonce: 3), fresh: fresh)
        #expect(id > old && id > NodeID(700, nonce: .max) && id.nonce == fresh.nonce)
        #expect(NodeID.rejoining(after: old, above: nil, fresh: NodeID(900, nonce: 1)) == NodeID(900, nonce: 1))
    }

    @Test("ids print as 32 hex digits, parse back, and ETags carry the whole id")
    func textForms() throws {
        let id = NodeID(0x19A_B3C4_D5E6, nonce: 0x0F00_0000_0000_00AB)
        #expect(id.description == "0000019ab3c4d5e60f000000000000ab")
        #expect(NodeID(hex: id.description) == id)
        #expect(NodeID(hex: "0000019ab3c4d5e6") == nil && NodeID(hex: "0000019AB3C4D5E60F000000000000AB") == nil)
        let stamp = Stamp(epoch: Epoch(counter: 3, owner: id), version: 9)
        #expect(stamp.etag == "3-0000019ab3c4d5e60f000000000000ab-9")
        #expect(Stamp(etag: "\"\(stamp.etag)\"") == stamp)
        #expect(Stamp(etag: "3-19ab3c4d5e6-9") == nil, "an owner of fewer than 32 digits is no id of this version")
    }

    @Test("every place an id travels carries its 128 bits: frame header, epochs, receipts, prepares, membership")
    func wire() throws {
        let id = NodeID(0x0123_4567_89AB_CDEF, nonce: 0xFEDC_BA98_7654_3210)
        var w = ByteWriter()
        w.write(id)
        #expect(w.bytes.count == 16)
        let back = try w.bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            return try r.readNodeID("id")
        }
        #expect(back == id)
        let header = FrameHeader(flags: [], senderName: "n1", clusterTag: 1, sender: id, keyFingerprint: 0, counter: 1,
                                 lane: 0, firstSequence: 0, lowWatermark: 0, bodyLength: 0)
        var hw = ByteWriter()
        header.encode(into: &hw)
        #expect(hw.bytes.count == header.encodedSize)
        let decoded = try hw.bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            return try FrameHeader.decode(&r, maxBodyBytes: 0)
        }
        #expect(decoded.sender == id)
        let receipt = ReplicationMessage.receipt(Receipt(lane: 1, through: 5, stream: id))
        #expect(try MessageCodec.decode(MessageCodec.encode(receipt)) == receipt)
        let update = MembershipMessage.ping(sequence: 1, target: id, updates: [MemberUpdate(status: .alive, name: "n2", id: id, incarnation: 0, from: "n2")])
        #expect(try MembershipCodec.decode(MembershipCodec.encode(update)) == update)
    }

    @Test("a member update's encodedSize (the gossip budget's unit) is what it adds on the wire")
    func updateSizeMatchesWire() {
        // Before: encodedSize still counted an 8-byte id, and gossip overran its budget.
        for (name, from) in [("n2", "n1"), ("a-much-longer-member-name", "x")] {
            let u = MemberUpdate(status: .suspect, name: name, id: NodeID(7, nonce: .max), incarnation: 3, from: from)
            let with = MembershipCodec.encode(.ack(sequence: 1, updates: [u])).count
            let without = MembershipCodec.encode(.ack(sequence: 1, updates: [])).count
            #expect(with - without == u.encodedSize)
        }
    }
}
