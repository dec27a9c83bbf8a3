import Foundation
import SessionReplication
import SessionReplicationCore
import Vapor

/// A Vapor 4 session driver that keeps Vapor's sessions in a replicated cluster, so that
/// a user keeps their session when the process that served it dies:
///
///     app.sessions.use(.drs(node))
///     app.middleware.use(app.sessions.middleware)
///
/// - **Data.** Each key of `SessionData` is one attribute of the same name holding the
///   value's UTF-8 bytes. A request writes only the keys it changed (against what it
///   read), so the delta replicated to the backups carries those keys alone, and two
///   requests on one session that change different keys both keep their change (last
///   writer wins per key). A request that changes nothing writes nothing (its read
///   already counted as an access). Attributes that are not valid UTF-8 (written through
///   the HTTP API) are invisible here and never overwritten. A key that cannot be an
///   attribute name (empty, over 256 bytes, a control character) fails the request
///   with `500`.
/// - **Ids.** A new session gets the node's 128-bit id from the system CSPRNG. The id
///   handed to Vapor (and so the cookie) is `<32 hex>.<owner>`, the cluster's route, which
///   `drs lb-config haproxy` routes on; it is renewed whenever the owner changes. A
///   cookie of `<32 hex>` or `<32 hex>.<any route>` is read; anything else reads as no
///   session (Vapor then starts a new one), without asking the cluster.
/// - **Ownership.** A request on a node that does not own its session takes it over first
///   (`takeOver(_:ignoringCooldown: true)`: an application cannot send its client to the
///   owner, so the cooldown is ignored), from the owner or, after the owner died, from the
///   promoted backup. A session idle past its limit reads as no session even before the
///   owner's sweep ends it.
/// - **Errors.** Cluster errors become a Vapor `Abort` (`abort(for:retryAfter:)`): `503`
///   with `Retry-After` while the session cannot be reached (its owner died and failover
///   is under way, a node is fenced or stopping), `504` on `sync-timeout`. A session
///   ended by another request between this request's read and its write is written again
///   under a new id, as Vapor's own drivers keep the data of the request.
///
/// The node must run (see `DRSNodeLifecycle`, which `.drs(node)` registers by default).
public struct DRSSessionDriver: AsyncSessionDriver {
    /// The driver's settings, each with its default.
    public struct Configuration: Sendable {
        /// Idle limit of sessions this driver creates; `nil` (the default) uses the
        /// cluster's `sessions.maxInactiveInterval` (30 minutes unless configured). Must be
        /// 1 ms to 366 days, else creating a session fails with `500`.
        public var maxInactiveInterval: Duration?
        /// Seconds in the `Retry-After` header of `503` answers. Default 1.
        public var retryAfter: Int

        /// Creates settings; every argument has its documented default.
        public init(maxInactiveInterval: Duration? = nil, retryAfter: Int = 1) {
            self.maxInactiveInterval = maxInactiveInterval
            self.retryAfter = retryAfter
        }
    }

    /// The node the sessions live in.
    public let node: ReplicationNode
    /// The driver's settings.
    public let configuration: Configuration

    /// A driver over `node`, which must be started (`DRSNodeLifecycle` or `run()`), with
    /// `configuration` (defaults: the cluster's idle limit, `Retry-After: 1`).
    public init(node: ReplicationNode, configuration: Configuration = .init()) {
        self.node = node
        self.configuration = configuration
    }

    /// The cluster's id of a Vapor session id (`<32 hex>` or `<32 hex>.<route>`); `nil`
    /// for anything else.
    public static func clusterID(of id: Vapor.SessionID) -> SessionReplicationCore.SessionID? {
        SessionReplicationCore.SessionID(cookieValue: id.string)
    }

    /// The Vapor session id of `id` as this node hands it out: `<32 hex>.<node name>`.
    public func vaporID(of id: SessionReplicationCore.SessionID) -> Vapor.SessionID {
        Vapor.SessionID(string: id.cookieValue(route: node.nodeName))
    }

    // MARK: - AsyncSessionDriver

    /// Creates a session owned by this node holding `data` (one attribute per key) and
    /// replicates it; returns `<id>.<this node>`. Throws `Abort`: `503` (`capacity`,
    /// `insufficient-replicas`, `overloaded`, `no-quorum`, `not-ready`; nothing created),
    /// `504` (`sync-timeout`: created, durability unknown), `500` (a key that cannot be an
    /// attribute name, a session over `maxSessionBytes`).
    public func createSession(_ data: SessionData, for request: Request) async throws -> Vapor.SessionID {
        try await mappingErrors {
            let attributes = try SessionDataMapping.attributes(data.snapshot)
            let result = try await node.createSession(id: nil, attributes: attributes, maxInactiveInterval: configuration.maxInactiveInterval)
            guard let state = result.state else { throw SessionError(.sessionUnavailable, "the node answered a creation without its state") }
            request.storage[ReadKey.self] = ReadSnapshot(id: state.id, data: data.snapshot)
            return vaporID(of: state.id)
        }
    }

    /// The session's data, taking the session over when another node owns it; `nil` when
    /// the id is malformed, the session does not exist, ended, or is idle past its limit
    /// (Vapor then starts a new session). Throws `Abort` `503` with `Retry-After` when the
    /// session cannot be reached now (`session-unavailable`: its owner does not answer
    /// and failover is under way; `fenced`, `not-ready`, `overloaded`).
    public func readSession(_ sessionID: Vapor.SessionID, for request: Request) async throws -> SessionData? {
        guard let id = Self.clusterID(of: sessionID) else { return nil }
        return try await mappingErrors {
            // The session can move away between the takeover and the read (another node
            // took it meanwhile): take it over again, a few times.
            for _ in 0..<3 {
                guard try await takeOver(id) else { return nil }
                if case .owned(let state) = node.lookup(id), state.expiresAt.milliseconds <= Self.wallMilliseconds { return nil }
                guard let state = try await node.session(id) else {
                    switch node.lookup(id) {
                    case .ended, .unknown: return nil
                    case .owned, .backup: continue
                    }
                }
                let data = SessionDataMapping.data(state.attributes)
                request.storage[ReadKey.self] = ReadSnapshot(id: id, data: data)
                return SessionData(initialData: data)
            }
            throw SessionError(.sessionUnavailable, "session \(id) kept moving to other nodes; retry")
        }
    }

    /// Writes the keys this request changed (against what it read) to the session, taking
    /// it over when another node owns it; returns `<id>.<this node>`, so the cookie follows
    /// the owner. Writes nothing when nothing changed. A session that ended meanwhile is
    /// created again with `data` under a new id. Throws `Abort` as `createSession` and
    /// `readSession` do (`504` on `sync-timeout`: applied here, durability unknown).
    public func updateSession(_ sessionID: Vapor.SessionID, to data: SessionData, for request: Request) async throws -> Vapor.SessionID {
        guard let id = Self.clusterID(of: sessionID) else { return try await createSession(data, for: request) }
        let new = data.snapshot
        let read = request.storage[ReadKey.self].flatMap { $0.id == id ? $0.data : nil }
        if let read, read == new, case .owned = node.lookup(id) { return vaporID(of: id) }
        return try await mappingErrors {
            for attempt in 1...3 {
                guard try await takeOver(id) else { return try await recreate(new, for: request) }
                do {
                    _ = try await node.withSession(id) { scope in
                        // Without a read in this request (a driver used by hand), the
                        // request's data replaces every UTF-8 attribute.
                        let base = read ?? SessionDataMapping.data(scope.attributes)
                        try SessionDataMapping.apply(SessionDataMapping.changes(from: base, to: new), to: &scope)
                    }
                } catch let error as SessionError where error.code == .sessionNotFound {
                    return try await recreate(new, for: request)
                } catch let error as SessionError where error.code == .notOwner && attempt < 3 {
                    continue  // it moved away between the takeover and the write
                }
                request.storage[ReadKey.self] = ReadSnapshot(id: id, data: new)
                return vaporID(of: id)
            }
            throw SessionError(.sessionUnavailable, "session \(id) kept moving to other nodes; retry")
        }
    }

    /// Ends the session (`Session.destroy()`), taking it over first when another node owns
    /// it; returns once every reachable backup holds the tombstone. A malformed id or a
    /// session that does not exist is a no-op. Throws `Abort` `503` when the session cannot
    /// be reached, `504` on `sync-timeout` (ended here, not confirmed by every backup).
    public func deleteSession(_ sessionID: Vapor.SessionID, for request: Request) async throws {
        guard let id = Self.clusterID(of: sessionID) else { return }
        request.storage[ReadKey.self] = nil
        try await mappingErrors {
            for attempt in 1...3 {
                guard try await takeOver(id) else { return }
                do {
                    try await node.invalidateIfOwned(id)
                    if case .backup = node.lookup(id), attempt < 3 { continue }  // moved away meanwhile
                    return
                } catch let error as SessionError where error.code == .notOwner && attempt < 3 {
                    continue
                }
            }
        }
    }

    // MARK: - Support

    /// Makes this node the owner of `id`; `false` when the session does not exist
    /// (authoritatively: a tombstone, or no member holds it).
    private func takeOver(_ id: SessionReplicationCore.SessionID) async throws -> Bool {
        if case .owned = node.lookup(id) { return true }
        do {
            try await node.takeOver(id, ignoringCooldown: true)
            return true
        } catch let error as SessionError where error.code == .sessionNotFound {
            return false
        }
    }

    private func recreate(_ data: [String: String], for request: Request) async throws -> Vapor.SessionID {
        request.logger.debug("session ended during the request; its data is written under a new id")
        return try await createSession(SessionData(initialData: data), for: request)
    }

    static var wallMilliseconds: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// What a request read (or last wrote) of its session: the base its write is
    /// compared with, so that only the keys it changed are written.
    struct ReadSnapshot: Sendable {
        var id: SessionReplicationCore.SessionID
        var data: [String: String]
    }

    enum ReadKey: StorageKey {
        typealias Value = ReadSnapshot
    }
}
