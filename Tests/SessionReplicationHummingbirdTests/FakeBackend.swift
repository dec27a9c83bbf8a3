@testable import SessionReplication
import SessionReplicationCore
import SessionReplicationTestKit
import Synchronization

/// An in-memory `SessionBackend` honouring the protocol's semantics closely enough for
/// the HTTP tests: owned sessions, backup copies, tombstones, `If-Match`, size limits,
/// and injectable failures. State sits behind a `Mutex` because `lookup`, `members` and
/// `status` are synchronous requirements.
final class FakeBackend: SessionBackend {
    static let ownerNodeID = NodeID(0xA1)

    let nodeName: String
    let replicaSet: [String]
    private let store: Mutex<Store>

    struct Store {
        var owned: [SessionID: SessionState] = [:]
        var backups: [SessionID: (state: SessionState, owner: String)] = [:]
        var ended: [SessionID: Stamp] = [:]
        var ready = true
        var wallMilliseconds: Int64 = 1_795_321_800_123
        var random = SeededGenerator(seed: 7)
        var failure: (any Error)?
        var failuresLeft = 0
        /// Sessions not held here that `takeOver` refers to this owner (`misdirected`).
        var keptBy: String?
        var endpoints: [String: (host: String, port: Int)] = [:]
        /// The `X-DRS-Forwarded-By` values of the forwarded requests that reached this node.
        var forwardPaths: [String] = []
        var insisted: [Bool] = []
    }

    init(nodeName: String = "n1", replicaSet: [String] = ["n2"]) {
        self.nodeName = nodeName
        self.replicaSet = replicaSet
        self.store = Mutex(Store())
    }

    // MARK: Test controls

    var isReady: Bool { store.withLock { $0.ready } }
    func setReady(_ ready: Bool) { store.withLock { $0.ready = ready } }
    /// The next backend call (other than lookups) throws `error`.
    func failNext(_ error: any Error, times: Int = 1) {
        store.withLock {
            $0.failure = error
            $0.failuresLeft = times
        }
    }
    var forwardPaths: [String] { store.withLock { $0.forwardPaths } }
    func recordForwardPath(_ path: String) { store.withLock { $0.forwardPaths.append(path) } }
    func advanceClock(milliseconds: Int64) { store.withLock { $0.wallMilliseconds += milliseconds } }
    /// Adds a backup copy of a fresh session owned by `owner`.
    func addBackup(owner: String) -> SessionState {
        store.withLock { store in
            let id = SessionID.random(using: &store.random)
            let wall = WallTime(milliseconds: store.wallMilliseconds)
            let state = SessionState(id: id, stamp: Stamp(epoch: Epoch(counter: 3, owner: NodeID(0xB2)), version: 9), attributes: ["k": [1]],
                                     createdAt: wall, lastAccessedAt: wall, maxInactiveInterval: .seconds(1800), replicaSet: [nodeName])
            store.backups[id] = (state, owner)
            return state
        }
    }
    func state(of id: SessionID) -> SessionState? { store.withLock { $0.owned[id] } }
    /// From now on `takeOver` of a session not owned here throws `misdirected` naming
    /// `owner` (as `affinity: none` does), which serves HTTP at `host:port`.
    func keep(by owner: String, at host: String, port: Int) {
        store.withLock {
            $0.keptBy = owner
            $0.endpoints[owner] = (host, port)
        }
    }

    func httpEndpoint(of node: String) -> (host: String, port: Int)? { store.withLock { $0.endpoints[node] } }

    func takeOver(_ id: SessionID) async throws {
        let (lookup, kept) = (lookup(id), store.withLock { $0.keptBy })
        if case .owned = lookup { return }
        if let kept { throw SessionError(.notOwner, "session \(id) is owned by \(kept)", owner: kept) }
        switch lookup {
        case .backup(_, let owner): throw SessionError(.sessionUnavailable, "this node holds only a backup of \(id)", owner: owner)
        default: throw SessionError(.sessionNotFound, "no session \(id)")
        }
    }

    /// As a cooling-down node: with `ignoringCooldown` a backup copy held here becomes
    /// owned (the takeover succeeds); otherwise `takeOver(_:)`. Records each call's flag.
    func takeOver(_ id: SessionID, ignoringCooldown: Bool) async throws {
        store.withLock { $0.insisted.append(ignoringCooldown) }
        guard ignoringCooldown else { return try await takeOver(id) }
        let adopted: Bool = store.withLock { store in
            guard let backup = store.backups.removeValue(forKey: id) else { return false }
            store.owned[id] = backup.state
            return true
        }
        if !adopted { try await takeOver(id) }
    }
    /// The `ignoringCooldown` flag of every `takeOver(_:ignoringCooldown:)` call, in order.
    var insisted: [Bool] { store.withLock { $0.insisted } }

    // MARK: SessionBackend

    func createSession(attributes: [String: [UInt8]], maxInactiveInterval: Duration?) async throws -> WriteResult {
        try store.withLock { store in
            try Self.takeFailure(&store)
            guard attributes.keys.allSatisfy(AttributeName.isValid) else { throw SessionError(.invalidAttributeName, "bad name") }
            if let maxInactiveInterval, !IdleLimit.isValid(maxInactiveInterval) { throw SessionError(.badRequest, "idle limit out of range") }
            let id = SessionID.random(using: &store.random)
            let wall = WallTime(milliseconds: store.wallMilliseconds)
            let state = SessionState(id: id, stamp: Stamp(epoch: Epoch(counter: 1, owner: Self.ownerNodeID), version: 0), attributes: attributes,
                                     createdAt: wall, lastAccessedAt: wall, maxInactiveInterval: maxInactiveInterval ?? .seconds(1800),
                                     replicaSet: replicaSet)
            guard state.byteCount <= 4 << 20 else { throw SessionError(.payloadTooLarge, "session too large") }
            store.owned[id] = state
            return WriteResult(state: state, durability: durability)
        }
    }

    func lookup(_ id: SessionID) -> SessionLookup {
        store.withLock { store in
            if let state = store.owned[id] { return .owned(state) }
            if let backup = store.backups[id] { return .backup(backup.state, owner: backup.owner) }
            if let stamp = store.ended[id] { return .ended(stamp) }
            return .unknown
        }
    }

    func session(_ id: SessionID) async throws -> SessionState? {
        try store.withLock { store in
            try Self.takeFailure(&store)
            store.owned[id]?.lastAccessedAt = WallTime(milliseconds: store.wallMilliseconds)
            return store.owned[id]
        }
    }

    func withSession<T: Sendable>(_ id: SessionID, ifMatch: Stamp?, _ body: (inout SessionScope) throws -> T) async throws -> (value: T, result: WriteResult) {
        try store.withLock { store in
            try Self.takeFailure(&store)
            guard var current = store.owned[id] else {
                if store.backups[id] != nil { throw SessionError(.notOwner, "backup only") }
                throw SessionError(.sessionNotFound, "no session")
            }
            if let ifMatch, ifMatch != current.stamp { throw SessionError(.preconditionFailed, "stamp differs") }
            current.lastAccessedAt = WallTime(milliseconds: store.wallMilliseconds)
            var scope = SessionScope(state: current)
            let value = try body(&scope)
            if scope.invalidated {
                store.owned[id] = nil
                store.ended[id] = current.stamp
                return (value, WriteResult(state: nil, durability: durability))
            }
            if !scope.changes.isEmpty {
                current.attributes = scope.attributes
                current.stamp.version += 1
                guard current.byteCount <= 4 << 20 else { throw SessionError(.payloadTooLarge, "session too large") }
            }
            store.owned[id] = current
            return (value, WriteResult(state: current, durability: durability))
        }
    }

    func sync(_ id: SessionID) async throws -> WriteResult {
        try store.withLock { store in
            try Self.takeFailure(&store)
            guard let state = store.owned[id] else { throw SessionError(.sessionNotFound, "no session") }
            return WriteResult(state: state, durability: durability)
        }
    }

    func invalidate(_ id: SessionID) async throws {
        _ = try await withSession(id, ifMatch: nil) { $0.invalidate() }
    }

    func rotate(_ id: SessionID) async throws -> WriteResult {
        try store.withLock { store in
            try Self.takeFailure(&store)
            guard let old = store.owned.removeValue(forKey: id) else { throw SessionError(.sessionNotFound, "no session") }
            store.ended[id] = old.stamp
            var state = old
            state.id = SessionID.random(using: &store.random)
            state.stamp.version += 1
            store.owned[state.id] = state
            return WriteResult(state: state, durability: durability)
        }
    }

    func members() -> [MemberInfo] {
        [
            MemberInfo(name: "n2", id: nil, address: "127.0.0.12:7102", state: "suspect", incarnation: 2, isSelf: false),
            MemberInfo(name: nodeName, id: "a1", address: "127.0.0.11:7101", state: "alive", incarnation: 1, isSelf: true),
        ]
    }

    func status() -> NodeStatus {
        let counts = store.withLock { ($0.owned.count, $0.backups.count) }
        return NodeStatus(name: nodeName, id: "a1", state: "serving", leaseRemainingMs: 250, primaries: counts.0, backups: counts.1,
                          underReplicated: 0, queues: ["n2": 3], lagMsP99: ["n2": 1.5], stateTransferPending: 0, stateTransferDone: 4)
    }

    private var durability: Durability { replicaSet.isEmpty ? .local : .replicated(replicaSet) }

    private static func takeFailure(_ store: inout Store) throws {
        if let failure = store.failure {
            store.failuresLeft -= 1
            if store.failuresLeft <= 0 { store.failure = nil }
            throw failure
        }
    }
}
