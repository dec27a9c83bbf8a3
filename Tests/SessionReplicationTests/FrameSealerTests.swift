import NIOCore
@testable import SessionReplication
import SessionReplicationCore
import Testing

/// What a sealed frame binds: the sender's name and process enter the subkey, and the
/// key id in the clear header depends on the cluster as well as the key.
struct FrameSealerTests {
    static let key: [UInt8] = (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 11 &+ 5) }

    /// A header as `name` (process `sender`) would send it.
    static func header(name: String, sender: NodeID, sealer: FrameSealer, counter: UInt64, bodyLength: Int) -> FrameHeader {
        FrameHeader(flags: [.sealed], senderName: name, clusterTag: sealer.clusterTag, sender: sender,
                    keyFingerprint: sealer.currentFingerprint, counter: counter, namespace: FrameHeader.replicationNamespace, lane: 0,
                    firstSequence: 1, lowWatermark: 0, bodyLength: UInt32(bodyLength))
    }

    @Test("a body sealed by n2 opens only under n2's name and process: relabelled as n3 or another process of n2, it is refused")
    func senderNameAndProcessBindTheSubkey() {
        let n2 = FrameSealer(keys: ClusterKeys(current: Self.key), clusterID: "c", selfID: NodeID(42))
        let receiver = FrameSealer(keys: ClusterKeys(current: Self.key), clusterID: "c", selfID: NodeID(7))
        let body: [UInt8] = Array("a replication frame body".utf8)
        // The same authenticated header bytes every time, so only the subkey differs:
        // the check is the key derivation, not the header's authentication.
        let headerBytes: [UInt8] = Array(repeating: 0xAB, count: 40)
        var sealed = ByteBuffer()
        n2.seal(body: body, headerBytes: headerBytes, counter: 9, sender: NodeID(42), name: "n2", into: &sealed)
        let bytes = Array(sealed.readableBytesView)
        func open(name: String, sender: NodeID) -> [UInt8]? {
            let h = Self.header(name: name, sender: sender, sealer: n2, counter: 9, bodyLength: bytes.count)
            return bytes.withUnsafeBytes { b in headerBytes.withUnsafeBytes { receiver.open(body: b, header: h, headerBytes: $0) } }
        }
        #expect(open(name: "n2", sender: NodeID(42)) == body)
        #expect(open(name: "n3", sender: NodeID(42)) == nil, "a frame relabelled with another member's name opened")
        #expect(open(name: "n2", sender: NodeID(43)) == nil, "a frame relabelled with another process of n2 opened")
        // A process started in the same millisecond differs only in its 64 random bits:
        // they enter the subkey too.
        #expect(open(name: "n2", sender: NodeID(42, nonce: 1)) == nil, "a frame relabelled with the same start and another nonce opened")
    }

    @Test("the key id in the clear header is not a function of the key alone: the same key gives other ids in other clusters")
    func keyIDIsNoKeyHash() {
        let a = FrameSealer.keyID(Self.key, clusterID: "shop")
        #expect(a == FrameSealer.keyID(Self.key, clusterID: "shop"), "stable for one cluster")
        #expect(a != 0, "0 means unsealed")
        let others = ["shop-2", "bank", "c", ""].map { FrameSealer.keyID(Self.key, clusterID: $0) }
        #expect(!others.contains(a), "a sniffed key id links two clusters that share a key")
        var other = Self.key
        other[0] ^= 1
        #expect(FrameSealer.keyID(other, clusterID: "shop") != a)
    }
}
