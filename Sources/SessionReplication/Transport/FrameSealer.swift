import Crypto
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import SessionReplicationCore

/// Why an incoming frame was dropped. Each reason is counted.
public enum FrameRejection: String, Error, Hashable, Sendable, CaseIterable {
    /// The bytes did not decode (truncated, bad magic, invalid field, trailing bytes).
    case malformed
    /// A length exceeded its limit.
    case oversized
    /// Another cluster's frame.
    case wrongCluster = "wrong-cluster"
    /// Sealed with a key this node does not have, or the tag did not verify.
    case badSeal = "bad-seal"
    /// Unsealed while this node requires sealing (or the reverse).
    case sealMismatch = "seal-mismatch"
    /// A counter already seen (or too old for the window).
    case replayed
    /// The sender name is not a configured member.
    case unknownSender = "unknown-sender"
    /// The frame claimed to come from this node.
    case selfSent = "self-sent"
    /// A replication connection from an address no configured member has.
    case unknownAddress = "unknown-address"
    /// A replication connection beyond the caps (per peer address, in all).
    case tooManyConnections = "too-many-connections"
    /// A replication connection that sent no authenticated frame in time, or left a frame
    /// unfinished for too long.
    case timedOut = "timed-out"
}

/// Seals and opens frame bodies with AES-256-GCM under per-sender subkeys
/// `HKDF-SHA256(clusterKey, info: "drs" | clusterId | senderName | senderNodeId)` (the
/// id and the name each after a one-byte length, the node id as 8 bytes little-endian),
/// so a frame opens only under the name and process it claims in its header. The nonce is
/// the key id (4 bytes) and the 64-bit per-sender counter (8 bytes), which doubles as the
/// anti-replay sequence. The key id picks the key of the ring without trial decryption;
/// it is derived from the key and the cluster id (`HKDF(key, "drs key id" | clusterId)`),
/// so it neither reveals a hash of the key nor links two clusters that share one. Without
/// a key (`insecure: true`) bodies travel in clear and only the counter's replay checks
/// apply.
package final class FrameSealer: Sendable {
    let clusterID: String
    let clusterTag: UInt64
    private let identity: NIOLockedValueBox<NodeID>
    /// This process's current node id (changes when the node rejoins).
    var selfID: NodeID { identity.withLockedValue { $0 } }
    /// Keys by fingerprint; the first is the sealing key.
    let keys: [(fingerprint: UInt32, key: SymmetricKey)]
    private let counter = NIOLockedValueBox<UInt64>(0)
    private let derived = NIOLockedValueBox<[DerivedKeyID: SymmetricKey]>([:])

    struct DerivedKeyID: Hashable { var sender: NodeID; var name: String; var fingerprint: UInt32 }

    package init(keys: ClusterKeys, clusterID: String, selfID: NodeID) {
        self.clusterID = clusterID
        self.clusterTag = NodeName.stableHash(clusterID)
        self.identity = NIOLockedValueBox(selfID)
        var ring: [(UInt32, SymmetricKey)] = []
        for raw in ([keys.current].compactMap { $0 } + keys.keyring) {
            ring.append((Self.keyID(raw, clusterID: clusterID), SymmetricKey(data: raw)))
        }
        self.keys = ring
    }

    /// The key id of `key` in cluster `clusterID`: 4 bytes of
    /// `HKDF-SHA256(key, info: "drs key id" | clusterId)`, never 0 (0 means unsealed).
    static func keyID(_ key: [UInt8], clusterID: String) -> UInt32 {
        let info = Array("drs key id".utf8) + Array(clusterID.utf8)
        let derived = HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: key), info: info, outputByteCount: 4)
        let id = derived.withUnsafeBytes { raw in
            UInt32(raw[0]) | UInt32(raw[1]) << 8 | UInt32(raw[2]) << 16 | UInt32(raw[3]) << 24
        }
        return id == 0 ? 1 : id
    }

    /// Seals later frames as `id` (a rejoin under a new node id).
    func setSelfID(_ id: NodeID) { identity.withLockedValue { $0 = id } }

    /// Whether frames are sealed.
    var sealing: Bool { !keys.isEmpty }

    /// Key id of the sealing key (0 when insecure); see `keyID`.
    var currentFingerprint: UInt32 { keys.first?.fingerprint ?? 0 }

    /// The next counter value: strictly increasing for this process.
    func nextCounter() -> UInt64 { counter.withLockedValue { $0 += 1; return $0 } }

    /// Derived keys cached at most. Default 1,024 (peers times key-ring entries).
    static let maxCachedKeys = 1024

    /// The subkey of `sender` under the key with `fingerprint`. Only keys of frames that
    /// authenticated are cached (`remember`), so forged sender ids cost an HKDF each but
    /// never grow the cache.
    private func subkey(sender: NodeID, name: String, fingerprint: UInt32) -> (key: SymmetricKey, cached: Bool)? {
        let id = DerivedKeyID(sender: sender, name: name, fingerprint: fingerprint)
        if let k = derived.withLockedValue({ $0[id] }) { return (k, true) }
        guard let master = keys.first(where: { $0.fingerprint == fingerprint })?.key else { return nil }
        return (HKDF<SHA256>.deriveKey(inputKeyMaterial: master, info: Self.subkeyInfo(clusterID: clusterID, name: name, sender: sender),
                                       outputByteCount: 32), false)
    }

    /// `"drs" | len | clusterId | len | senderName | senderNodeId` (lengths one byte,
    /// the node id 16 bytes: start then nonce, little-endian).
    static func subkeyInfo(clusterID: String, name: String, sender: NodeID) -> [UInt8] {
        var info = Array("drs".utf8)
        info.append(UInt8(truncatingIfNeeded: clusterID.utf8.count))
        info.append(contentsOf: clusterID.utf8)
        info.append(UInt8(truncatingIfNeeded: name.utf8.count))
        info.append(contentsOf: name.utf8)
        withUnsafeBytes(of: sender.start.littleEndian) { info.append(contentsOf: $0) }
        withUnsafeBytes(of: sender.nonce.littleEndian) { info.append(contentsOf: $0) }
        return info
    }

    private func remember(_ key: SymmetricKey, sender: NodeID, name: String, fingerprint: UInt32) {
        derived.withLockedValue { cache in
            if cache.count >= Self.maxCachedKeys { cache.removeAll() }
            cache[DerivedKeyID(sender: sender, name: name, fingerprint: fingerprint)] = key
        }
    }

    private func nonce(fingerprint: UInt32, counter: UInt64) -> AES.GCM.Nonce {
        var bytes = [UInt8](repeating: 0, count: 12)
        withUnsafeBytes(of: fingerprint.littleEndian) { for i in 0..<4 { bytes[i] = $0[i] } }
        withUnsafeBytes(of: counter.littleEndian) { for i in 0..<8 { bytes[4 + i] = $0[i] } }
        return try! AES.GCM.Nonce(data: bytes)
    }

    /// Seals `body` with `header` (whose `bodyLength` must already count the 16-byte tag)
    /// as authenticated data, appending ciphertext and tag to `buffer`.
    func seal(body: [UInt8], headerBytes: [UInt8], counter: UInt64, sender: NodeID, name: String, into buffer: inout ByteBuffer) {
        guard let (key, cached) = subkey(sender: sender, name: name, fingerprint: currentFingerprint) else {
            buffer.writeBytes(body)
            return
        }
        if !cached { remember(key, sender: sender, name: name, fingerprint: currentFingerprint) }
        let box = try! AES.GCM.seal(body, using: key, nonce: nonce(fingerprint: currentFingerprint, counter: counter), authenticating: headerBytes)
        buffer.writeBytes(box.ciphertext)
        buffer.writeBytes(box.tag)
    }

    /// Opens a sealed body; `nil` when the key is unknown or the tag does not verify.
    func open(body: UnsafeRawBufferPointer, header: FrameHeader, headerBytes: UnsafeRawBufferPointer) -> [UInt8]? {
        guard body.count >= 16, let (key, cached) = subkey(sender: header.sender, name: header.senderName, fingerprint: header.keyFingerprint) else { return nil }
        let ciphertext = UnsafeRawBufferPointer(rebasing: body[0..<(body.count - 16)])
        let tag = UnsafeRawBufferPointer(rebasing: body[(body.count - 16)...])
        guard let box = try? AES.GCM.SealedBox(nonce: nonce(fingerprint: header.keyFingerprint, counter: header.counter),
                                                ciphertext: ciphertext, tag: tag),
              let plain = try? AES.GCM.open(box, using: key, authenticating: headerBytes) else { return nil }
        if !cached { remember(key, sender: header.sender, name: header.senderName, fingerprint: header.keyFingerprint) }
        return [UInt8](plain)
    }
}
