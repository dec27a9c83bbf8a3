import Crypto
import Foundation
import Hummingbird
import SessionReplication
import SessionReplicationCore
import ServiceLifecycle

/// A Hummingbird `PersistDriver` that keeps each key in the replicated session store, so
/// that an application's `SessionMiddleware` (or anything else using `PersistDriver`)
/// survives the loss of a node once its sessions fail over.
///
/// - A key maps to the session whose id is the first 128 bits of `SHA-256(key)`; the
///   value is stored JSON-encoded as one attribute named after the key (so a key must be
///   a valid attribute name: 1-256 bytes of UTF-8 without control characters, else
///   `SessionError` `invalid-attribute-name`).
/// - `expires` is an absolute deadline: reads do not touch the session, and every write
///   sets its idle limit to the time left, so the owner expires it at the deadline. A
///   value without `expires` lives 366 days (the longest idle limit) after its last write.
///   `set` without `expires` keeps an existing deadline.
/// - Every call first takes the key's session over when another node owns it (asking
///   the owner its copy names, or every live member), so any node serves any key; a key
///   whose owner cannot be reached within `handoverTimeout` throws `session-unavailable`.
/// - `create` throws `PersistError.duplicate` when the key is live anywhere in the
///   cluster. A key created again after `remove` or expiry starts a new generation that
///   beats its tombstone.
/// - The example application `Examples/Cart` runs Hummingbird's `SessionMiddleware` over
///   this driver on three processes.
public struct DRSPersistDriver: PersistDriver {
    /// The node the values live in.
    public let node: ReplicationNode
    /// Decoded values beside the stamps they were decoded from (`decodedCacheLimit`).
    let decoded: DecodedValueCache

    /// The longest idle limit a session may have (366 days): "no expiry".
    public static let noExpiry: Duration = .seconds(366 * 86_400)

    /// A driver over `node` (which runs as its own service). It keeps up to
    /// `decodedCacheLimit` (default 10,000; 0 for none) decoded values beside the session
    /// stamp they were decoded from, so reading a key whose session has not changed since
    /// this driver last wrote or read it costs no JSON decoding; the cache is emptied when
    /// full. Values are shared as `MemoryPersistDriver` shares them: a class instance
    /// handed out is the one kept.
    public init(node: ReplicationNode, decodedCacheLimit: Int = 10_000) {
        self.node = node
        self.decoded = DecodedValueCache(limit: decodedCacheLimit)
    }

    /// The session id of `key`: the first 128 bits of `SHA-256(key)`.
    public static func sessionID(for key: String) -> SessionID {
        let digest = Array(SHA256.hash(data: Array(key.utf8)))
        var high: UInt64 = 0, low: UInt64 = 0
        for i in 0..<8 { high = high << 8 | UInt64(digest[i]) }
        for i in 8..<16 { low = low << 8 | UInt64(digest[i]) }
        return SessionID(high: high, low: low)
    }

    /// Waits for graceful shutdown; the node is a separate service.
    public func run() async throws {
        try? await gracefulShutdown()
    }

    /// Stores `value` under a new `key`; throws `PersistError.duplicate` if it exists anywhere
    /// in the cluster (the key's session is looked for on every live member and taken over).
    public func create<Object: Codable & Sendable>(key: String, value: Object, expires: Duration?) async throws {
        let stamp = try await put(key: key, bytes: try encode(key: key, value), expires: expires, failIfLive: true)
        if let stamp { decoded.store(Self.sessionID(for: key), key: key, stamp: stamp, value: value) }
    }

    /// Stores `value` under `key`, creating it if needed.
    public func set<Object: Codable & Sendable>(key: String, value: Object, expires: Duration?) async throws {
        let id = Self.sessionID(for: key)
        let bytes = try encode(key: key, value)
        // The common case first: this node owns the key's live session. One scope, no
        // search (the owner's own serving rule applies inside `withSession`).
        if let stamp = try await setIfOwned(id, key: key, bytes: bytes, expires: expires) {
            decoded.store(id, key: key, stamp: stamp, value: value)
            return
        }
        if let stamp = try await put(key: key, bytes: bytes, expires: expires, failIfLive: false) {
            decoded.store(id, key: key, stamp: stamp, value: value)
        }
    }

    /// Writes `bytes` under `key` by the general path (a search for the key's session
    /// first); returns the stamp written.
    private func put(key: String, bytes: [UInt8], expires: Duration?, failIfLive: Bool) async throws -> Stamp? {
        let id = Self.sessionID(for: key)
        let found = try await locate(id)
        if let state = live(found) {
            if failIfLive { throw PersistError.duplicate }
            guard case .owned = found else {
                throw SessionError(.notOwner, "this node holds only a backup of the key's session")
            }
            return try await write(id, key: key, bytes: bytes, idleLimit: Self.idleLimit(keeping: state, expires: expires, now: nowMilliseconds))
        }
        // Expired but not yet swept by the owner: end it first, then start anew.
        if case .owned = found { try await node.invalidateIfOwned(id) }
        return try await node.createSession(id: id, attributes: [key: bytes], maxInactiveInterval: Self.idleLimit(expires ?? Self.noExpiry)).state?.stamp
    }

    /// Writes `bytes` under `key` in one scope when this node owns the key's live session
    /// and returns the new stamp; `nil` (nothing written) when it does not own it or the
    /// session's deadline passed, so the caller takes the general path.
    func setIfOwned(_ id: SessionID, key: String, bytes: [UInt8], expires: Duration?) async throws -> Stamp? {
        // The deadline as it stands (a scope's state is already touched by the write).
        let now = nowMilliseconds
        guard case .owned(let state) = node.lookup(id), state.expiresAt.milliseconds > now else { return nil }
        do {
            return try await write(id, key: key, bytes: bytes, idleLimit: Self.idleLimit(keeping: state, expires: expires, now: now))
        } catch let error as SessionError where error.code == .sessionNotFound || error.code == .notOwner {
            // It moved or ended since the lookup: nothing was written.
            return nil
        }
    }

    /// Writes `bytes` under `key` of owned session `id` in one scope with idle limit
    /// `idleLimit` (one core event: `ReplicationNode.write`); returns the stamp written.
    /// Throws what `withSession` throws.
    func write(_ id: SessionID, key: String, bytes: [UInt8], idleLimit: Duration) async throws -> Stamp? {
        try await node.write(id, set: [key: bytes], maxInactiveInterval: idleLimit).state?.stamp
    }

    /// The idle limit a write gives `state` (read before the write touches it): `expires`,
    /// else the time left to its deadline, so "none" stays none and a deadline stays put.
    static func idleLimit(keeping state: SessionState, expires: Duration?, now: Int64) -> Duration {
        idleLimit(expires ?? (state.maxInactiveInterval >= noExpiry
            ? noExpiry : .milliseconds(max(1, state.expiresAt.milliseconds - now))))
    }

    /// The value under `key` as `Object`, or `nil` (absent, expired, or not decodable); the
    /// key's session is taken over when another node owns it. Throws `session-unavailable`
    /// when its owner cannot be reached within `handoverTimeout`.
    public func get<Object: Codable & Sendable>(key: String, as: Object.Type) async throws -> Object? {
        guard let state = try await current(Self.sessionID(for: key)) else { return nil }
        return value(of: key, in: state, as: Object.self)
    }

    /// `key`'s value in `state` as `Object`: the kept decoded value when `state` is the
    /// state it was decoded from, else decoded now (and kept); `nil` when absent or not
    /// decodable.
    func value<Object: Codable & Sendable>(of key: String, in state: SessionState, as: Object.Type) -> Object? {
        if let kept = decoded.value(state.id, key: key, stamp: state.stamp, as: Object.self) { return kept }
        guard let bytes = state.attributes[key], let object = try? JSONDecoder().decode(Object.self, from: Data(bytes)) else { return nil }
        decoded.store(state.id, key: key, stamp: state.stamp, value: object)
        return object
    }

    /// The value and the time left to its deadline.
    public func getWithTTL<Object: Codable & Sendable>(key: String, as: Object.Type) async throws -> (object: Object, ttl: Duration?)? {
        guard let state = try await current(Self.sessionID(for: key)), let object = value(of: key, in: state, as: Object.self) else { return nil }
        let left = state.expiresAt.milliseconds - nowMilliseconds
        return (object, state.maxInactiveInterval >= Self.noExpiry ? nil : .milliseconds(max(0, left)))
    }

    /// Removes `key` (a no-op when absent), taking its session over first when another
    /// node owns it (even one this node handed it to less than `takeoverCooldown` ago).
    /// Throws `misdirected` naming the owner when that node keeps it (`affinity: none`).
    public func remove(key: String) async throws {
        let id = Self.sessionID(for: key)
        let found = try await locate(id)
        if case .backup(let state, let owner) = found, live(found) != nil {
            throw SessionError(.notOwner, "the key's session \(state.id) is owned by \(owner), which keeps it for now", owner: owner)
        }
        try await node.invalidateIfOwned(id)
    }

    /// The key's session as this node may serve it: taken over first when another node
    /// owns it, then read under the serving rule (a fenced node throws `fenced`, never
    /// answers from a copy the cluster may have changed since); `nil` when absent or
    /// expired. Throws `misdirected` when this node cannot own it (a `server` node).
    func current(_ id: SessionID) async throws -> SessionState? {
        // The common case first: an owned session is read once, under the serving rule.
        if let owned = try await node.session(id, touching: false) { return live(.owned(owned)) }
        switch try await locate(id) {
        case .owned:
            guard let state = try await node.session(id, touching: false) else {
                throw SessionError(.sessionUnavailable, "the key's session moved to another node while it was read; retry")
            }
            return live(.owned(state))
        case .backup(_, let owner):
            throw SessionError(.notOwner, "this node cannot own the key's session; its owner is \(owner)", owner: owner)
        case .ended, .unknown:
            return nil
        }
    }

    /// Makes this node the owner of the key's session when another node owns it (so a
    /// key written through one node is found through any other, and `create` sees a
    /// duplicate anywhere in the cluster); returns what this node then holds. Throws
    /// what `ReplicationNode.takeOver` throws, except `session-not-found` (absent).
    func locate(_ id: SessionID) async throws -> SessionLookup {
        do {
            // An application cannot send its client to the owner: the cooldown that makes
            // the HTTP API answer 421 would only fail the write (found by the cart example).
            try await node.takeOver(id, ignoringCooldown: true)
        } catch let error as SessionError where error.code == .sessionNotFound || error.code == .notOwner {
            // Absent; or owned elsewhere and kept there (`affinity: none`): what this
            // node holds decides reads.
            return node.lookup(id)
        }
        return node.lookup(id)
    }

    /// Wall-clock milliseconds since 1970.
    var nowMilliseconds: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// The session's state when this node holds a copy whose deadline has not passed.
    func live(_ lookup: SessionLookup) -> SessionState? {
        switch lookup {
        case .owned(let s), .backup(let s, _): return s.expiresAt.milliseconds > nowMilliseconds ? s : nil
        case .ended, .unknown: return nil
        }
    }

    static func idleLimit(_ d: Duration) -> Duration { min(max(d, .milliseconds(1)), noExpiry) }

    func encode<Object: Encodable>(key: String, _ value: Object) throws -> [UInt8] {
        guard AttributeName.isValid(key) else {
            throw SessionError(.invalidAttributeName, "persist keys become attribute names: 1-256 bytes of UTF-8 without control characters")
        }
        return Array(try JSONEncoder().encode(value))
    }
}
