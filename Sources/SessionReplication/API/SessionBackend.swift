import SessionReplicationCore

/// What this node knows of a session, for routing a request (never touches it).
public enum SessionLookup: Hashable, Sendable {
    /// This node owns it.
    case owned(SessionState)
    /// This node holds a backup copy; `owner` names the node it came from.
    case backup(SessionState, owner: String)
    /// It ended here (invalidated, expired or rotated) at this stamp: authoritative 404.
    case ended(Stamp)
    /// This node holds nothing about it.
    case unknown
}

/// One member as `GET /cluster/members` lists it.
public struct MemberInfo: Hashable, Sendable, Codable {
    /// Configured name.
    public var name: String
    /// Per-process node id (hex), when known.
    public var id: String?
    /// `address:replicationPort`.
    public var address: String
    /// `alive`, `suspect`, `dead` or `left`.
    public var state: String
    /// Incarnation number (0 until membership gossip exists).
    public var incarnation: UInt64
    /// Whether this is the answering node.
    public var isSelf: Bool

    /// Creates a member entry.
    public init(name: String, id: String?, address: String, state: String, incarnation: UInt64, isSelf: Bool) {
        self.name = name
        self.id = id
        self.address = address
        self.state = state
        self.incarnation = incarnation
        self.isSelf = isSelf
    }

    enum CodingKeys: String, CodingKey {
        case name, id, address, state, incarnation
        case isSelf = "self"
    }
}

/// The node's own state as `GET /cluster/status` reports it.
public struct NodeStatus: Hashable, Sendable {
    /// Configured name.
    public var name: String
    /// Per-process node id (hex).
    public var id: String
    /// `joining`, `serving`, `fenced` or `leaving`.
    public var state: String
    /// Milliseconds of lease left (0 until leases exist).
    public var leaseRemainingMs: Int
    /// Sessions owned.
    public var primaries: Int
    /// Backup copies held.
    public var backups: Int
    /// Owned sessions with a replica set member unreachable or a copy awaiting repair.
    public var underReplicated: Int
    /// Messages queued and unreceipted, by peer.
    public var queues: [String: Int]
    /// 99th percentile of recent send-to-receipt times, by peer, in milliseconds.
    public var lagMsP99: [String: Double]
    /// State transfer to this node: sessions pending and done (0 until joins exist).
    public var stateTransferPending: Int
    /// See `stateTransferPending`.
    public var stateTransferDone: Int

    /// Creates a status.
    public init(name: String, id: String, state: String, leaseRemainingMs: Int, primaries: Int, backups: Int,
                underReplicated: Int, queues: [String: Int], lagMsP99: [String: Double], stateTransferPending: Int, stateTransferDone: Int) {
        self.name = name
        self.id = id
        self.state = state
        self.leaseRemainingMs = leaseRemainingMs
        self.primaries = primaries
        self.backups = backups
        self.underReplicated = underReplicated
        self.queues = queues
        self.lagMsP99 = lagMsP99
        self.stateTransferPending = stateTransferPending
        self.stateTransferDone = stateTransferDone
    }
}

/// What the HTTP API needs from a node. `ReplicationNode` conforms; tests can supply
/// their own. Every method throws `SessionError` with the codes of docs/contracts.md.
public protocol SessionBackend: Sendable {
    /// This node's configured name (the route in cookies).
    var nodeName: String { get }
    /// Whether the node serves: started, not stopping (`/readyz`).
    var isReady: Bool { get }
    /// Creates a session owned here (see `ReplicationNode.createSession`).
    func createSession(attributes: [String: [UInt8]], maxInactiveInterval: Duration?) async throws -> WriteResult
    /// What this node holds of `id`, without touching it.
    func lookup(_ id: SessionID) -> SessionLookup
    /// Makes this node the owner of `id` if it is not (see `ReplicationNode.takeOver`);
    /// throws `session-not-found`, `misdirected` or `session-unavailable` (naming the
    /// owner when known). The default (for backends without a cluster) only checks that
    /// this node owns `id`.
    func takeOver(_ id: SessionID) async throws
    /// `takeOver(_:)`, but with `ignoringCooldown` the node takes the session even when it
    /// handed it away less than `takeoverCooldown` ago (the HTTP API does so when a
    /// forward to the owner got no answer). The default ignores the flag.
    func takeOver(_ id: SessionID, ignoringCooldown: Bool) async throws
    /// Reads an owned session, counting as an access; `nil` when not owned here.
    func session(_ id: SessionID) async throws -> SessionState?
    /// A change scope on an owned session (see `ReplicationNode.withSession`).
    func withSession<T: Sendable>(_ id: SessionID, ifMatch: Stamp?, _ body: (inout SessionScope) throws -> T) async throws -> (value: T, result: WriteResult)
    /// Sets the attributes in `set` and removes those in `remove` on owned session `id`,
    /// as one change scope would (see `ReplicationNode.write`). The default runs
    /// `withSession`.
    func write(_ id: SessionID, ifMatch: Stamp?, set: [String: [UInt8]], remove: Set<String>) async throws -> WriteResult
    /// Sends pending changes and waits per mode (see `ReplicationNode.sync`).
    func sync(_ id: SessionID) async throws -> WriteResult
    /// Ends a session; returns once every reachable backup holds the tombstone.
    func invalidate(_ id: SessionID) async throws
    /// Gives the session a new id with the same attributes and tombstones the old one.
    func rotate(_ id: SessionID) async throws -> WriteResult
    /// The members, sorted by name.
    func members() -> [MemberInfo]
    /// This node's status.
    func status() -> NodeStatus
    /// Where member `node` serves the HTTP API (its configured `address` and `httpPort`),
    /// for forwarding a request to a session's owner; `nil` when unknown, in which case
    /// the request answers `421 misdirected` with `X-DRS-Owner`. The default (for backends
    /// without a cluster) knows no member.
    func httpEndpoint(of node: String) -> (host: String, port: Int)?
}

extension SessionBackend {
    /// The default `write`: a `withSession` scope that sets and removes the attributes.
    /// Throws what `withSession` throws.
    public func write(_ id: SessionID, ifMatch: Stamp?, set: [String: [UInt8]], remove: Set<String>) async throws -> WriteResult {
        try await withSession(id, ifMatch: ifMatch) { scope in
            for (name, value) in set { scope.set(name, value) }
            for name in remove { scope.remove(name) }
        }.result
    }

    /// The default `httpEndpoint(of:)`: `nil` for every member (never forwards).
    public func httpEndpoint(of node: String) -> (host: String, port: Int)? { nil }

    /// The default `takeOver(_:ignoringCooldown:)`: `takeOver(_:)`.
    public func takeOver(_ id: SessionID, ignoringCooldown: Bool) async throws {
        try await takeOver(id)
    }

    /// The default `takeOver`: returns when `id` is owned here; else throws
    /// `session-unavailable` naming the owner of a backup copy, or `session-not-found`.
    public func takeOver(_ id: SessionID) async throws {
        switch lookup(id) {
        case .owned: return
        case .backup(_, let owner):
            throw SessionError(.sessionUnavailable, "this node holds only a backup of \(id)", owner: owner)
        case .ended, .unknown:
            throw SessionError(.sessionNotFound, "no session \(id)")
        }
    }
}
