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
}

/// Seals and opens frame bodies with AES-256-GCM under per-sender subkeys
/// `HKDF-SHA256(clusterKey, info: "drs" | clusterId | senderNodeId)`. The nonce is the
/// key fingerprint (4 bytes) and the 64-bit per-sender counter (8 bytes), which doubles
/// as the anti-replay sequence. Without a key (`insecure: true`) bodies travel in clear
/// and only the counter's replay checks apply.
final class FrameSealer: Sendable {
    let clusterID: String
    let clusterTag: UInt64
    private let identity: NIOLockedValueBox<NodeID>
    /// This process's current node id (changes when the node rejoins).
    var selfID: NodeID { identity.withLockedValue { $0 } }
    /// Keys by fingerprint; the first is the sealing key.
    let keys: [(fingerprint: UInt32, key: SymmetricKey)]
    private let counter = NIOLockedValueBox<UInt64>(0)
    private let derived = NIOLockedValueBox<[DerivedKeyID: SymmetricKey]>([:])

    struct DerivedKeyID: Hashable { var sender: UInt64; var fingerprint: UInt32 }

    init(keys: ClusterKeys, clusterID: String, selfID: NodeID) {
        self.clusterID = clusterID
        self.clusterTag = NodeName.stableHash(clusterID)
        self.identity = NIOLockedValueBox(selfID)
        var ring: [(UInt32, SymmetricKey)] = []
        for raw in ([keys.current].compactMap { $0 } + keys.keyring) {
            let digest = Array(SHA256.hash(data: raw))
            let fp = UInt32(digest[0]) | UInt32(digest[1]) << 8 | UInt32(digest[2]) << 16 | UInt32(digest[3]) << 24
            ring.append((fp == 0 ? 1 : fp, SymmetricKey(data: raw)))
        }
        self.keys = ring
    }

    /// Seals later frames as `id` (a rejoin under a new node id).
    func setSelfID(_ id: NodeID) { identity.withLockedValue { $0 = id } }

    /// Whether frames are sealed.
    var sealing: Bool { !keys.isEmpty }

    /// Fingerprint of the sealing key (0 when insecure).
    var currentFingerprint: UInt32 { keys.first?.fingerprint ?? 0 }

    /// The next counter value: strictly increasing for this process.
    func nextCounter() -> UInt64 { counter.withLockedValue { $0 += 1; return $0 } }

    /// Derived keys cached at most. Default 1,024 (peers times key-ring entries).
    static let maxCachedKeys = 1024

    /// The subkey of `sender` under the key with `fingerprint`. Only keys of frames that
    /// authenticated are cached (`remember`), so forged sender ids cost an HKDF each but
    /// never grow the cache.
    private func subkey(sender: NodeID, fingerprint: UInt32) -> (key: SymmetricKey, cached: Bool)? {
        let id = DerivedKeyID(sender: sender.rawValue, fingerprint: fingerprint)
        if let k = derived.withLockedValue({ $0[id] }) { return (k, true) }
        guard let master = keys.first(where: { $0.fingerprint == fingerprint })?.key else { return nil }
        var info = Array("drs".utf8)
        info.append(contentsOf: clusterID.utf8)
        withUnsafeBytes(of: sender.rawValue.littleEndian) { info.append(contentsOf: $0) }
        return (HKDF<SHA256>.deriveKey(inputKeyMaterial: master, info: info, outputByteCount: 32), false)
    }

    private func remember(_ key: SymmetricKey, sender: NodeID, fingerprint: UInt32) {
        derived.withLockedValue { cache in
            if cache.count >= Self.maxCachedKeys { cache.removeAll() }
            cache[DerivedKeyID(sender: sender.rawValue, fingerprint: fingerprint)] = key
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
    func seal(body: [UInt8], headerBytes: [UInt8], counter: UInt64, sender: NodeID, into buffer: inout ByteBuffer) {
        guard let (key, cached) = subkey(sender: sender, fingerprint: currentFingerprint) else {
            buffer.writeBytes(body)
            return
        }
        if !cached { remember(key, sender: sender, fingerprint: currentFingerprint) }
        let box = try! AES.GCM.seal(body, using: key, nonce: nonce(fingerprint: currentFingerprint, counter: counter), authenticating: headerBytes)
        buffer.writeBytes(box.ciphertext)
        buffer.writeBytes(box.tag)
    }

    /// Opens a sealed body; `nil` when the key is unknown or the tag does not verify.
    func open(body: UnsafeRawBufferPointer, header: FrameHeader, headerBytes: UnsafeRawBufferPointer) -> [UInt8]? {
        guard body.count >= 16, let (key, cached) = subkey(sender: header.sender, fingerprint: header.keyFingerprint) else { return nil }
        let ciphertext = UnsafeRawBufferPointer(rebasing: body[0..<(body.count - 16)])
        let tag = UnsafeRawBufferPointer(rebasing: body[(body.count - 16)...])
        guard let box = try? AES.GCM.SealedBox(nonce: nonce(fingerprint: header.keyFingerprint, counter: header.counter),
                                                ciphertext: ciphertext, tag: tag),
              let plain = try? AES.GCM.open(box, using: key, authenticating: headerBytes) else { return nil }
        if !cached { remember(key, sender: header.sender, fingerprint: header.keyFingerprint) }
        return [UInt8](plain)
    }
}
