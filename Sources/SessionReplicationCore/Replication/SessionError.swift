/// Why a session operation failed. `code` matches the HTTP API's error codes.
public struct SessionError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The error code (`session-not-found`, `payload-too-large`, ...).
    public var code: Code
    /// A human-readable message; never contains attribute values.
    public var message: String
    /// The node believed to own the session, when known (`misdirected`,
    /// `session-unavailable`); `nil` otherwise.
    public var owner: String?

    /// Error codes; new ones may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Value: String, Hashable, Sendable {
            case sessionNotFound = "session-not-found"
            case payloadTooLarge = "payload-too-large"
            case capacity
            case insufficientReplicas = "insufficient-replicas"
            case overloaded
            case syncTimeout = "sync-timeout"
            case notOwner = "misdirected"
            case invalidAttributeName = "invalid-attribute-name"
            case preconditionFailed = "precondition-failed"
            case shuttingDown = "not-ready"
            case badRequest = "bad-request"
            case fenced
            case sessionUnavailable = "session-unavailable"
            case noQuorum = "no-quorum"
        }
        let value: Value
        /// The session does not exist (or is tombstoned) on this node.
        public static let sessionNotFound = Code(value: .sessionNotFound)
        /// An attribute or the whole session exceeds its limit; nothing applied.
        public static let payloadTooLarge = Code(value: .payloadTooLarge)
        /// `maxSessions` reached; nothing created.
        public static let capacity = Code(value: .capacity)
        /// Fewer reachable backups than `minSyncReplicas`; nothing applied.
        public static let insufficientReplicas = Code(value: .insufficientReplicas)
        /// A replication queue stayed full for `syncTimeout`; nothing applied.
        public static let overloaded = Code(value: .overloaded)
        /// Synchronous replication timed out; the change is applied, durability unknown.
        public static let syncTimeout = Code(value: .syncTimeout)
        /// This node holds only a backup copy; the owner must be asked.
        public static let notOwner = Code(value: .notOwner)
        /// An attribute name is empty, too long, or holds control characters.
        public static let invalidAttributeName = Code(value: .invalidAttributeName)
        /// The expected `(epoch, version)` did not match.
        public static let preconditionFailed = Code(value: .preconditionFailed)
        /// An argument is outside its domain (an idle limit beyond 1 ms to 366 days).
        public static let badRequest = Code(value: .badRequest)
        /// The node is stopping.
        public static let shuttingDown = Code(value: .shuttingDown)
        /// This node may not act as owner now (declared dead by the cluster, or its
        /// leases lapsed); nothing applied. Another node may own the session.
        public static let fenced = Code(value: .fenced)
        /// No node could be found serving the session right now (its owner is suspect,
        /// a takeover is under way, or holders did not answer in time); retry.
        public static let sessionUnavailable = Code(value: .sessionUnavailable)
        /// Under `promotion: majority`, this node does not hold leases from a majority of
        /// the voters; nothing applied.
        public static let noQuorum = Code(value: .noQuorum)
        public var description: String { value.rawValue }
    }

    /// Creates an error.
    public init(_ code: Code, _ message: String, owner: String? = nil) {
        self.code = code
        self.message = message
        self.owner = owner
    }

    public var description: String { "\(code): \(message)" }
}
