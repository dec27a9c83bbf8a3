/// The replicated state of one session: what an owner and each of its backups hold.
public struct SessionState: Hashable, Sendable {
    /// The identifier.
    public var id: SessionID
    /// Ownership generation and change count.
    public var stamp: Stamp
    /// Attribute name to value. Transient attributes live here on the owner but are
    /// never replicated.
    public var attributes: [String: [UInt8]]
    /// When the session was created.
    public var createdAt: WallTime
    /// When the session was last accessed (as the owner saw it).
    public var lastAccessedAt: WallTime
    /// Idle time after which the owner expires the session, in whole milliseconds (what
    /// the wire carries; a finer part is dropped when it is set).
    public var maxInactiveInterval: Duration {
        get { .milliseconds(maxInactiveMilliseconds) }
        set { maxInactiveMilliseconds = newValue.millisecondsClamped }
    }
    /// `maxInactiveInterval`, stored in 8 bytes rather than a `Duration`'s 16 (a million
    /// copies are held at once).
    private var maxInactiveMilliseconds: Int64
    /// The backups the owner chose, in order (`R(S)`), by node name.
    public var replicaSet: [String]

    /// Creates a state.
    public init(id: SessionID, stamp: Stamp, attributes: [String: [UInt8]] = [:], createdAt: WallTime,
                lastAccessedAt: WallTime, maxInactiveInterval: Duration, replicaSet: [String] = []) {
        self.id = id
        self.stamp = stamp
        self.attributes = attributes
        self.createdAt = createdAt
        self.lastAccessedAt = lastAccessedAt
        self.maxInactiveMilliseconds = maxInactiveInterval.millisecondsClamped
        self.replicaSet = replicaSet
    }

    /// Bytes of names plus values: what `maxSessionBytes` limits.
    public var byteCount: Int { attributes.reduce(0) { $0 + $1.key.utf8.count + $1.value.count } }

    /// When the owner expires the session.
    public var expiresAt: WallTime { lastAccessedAt + maxInactiveInterval }
}

/// Attribute names: 1 to 256 bytes of UTF-8 without control characters.
public enum AttributeName {
    /// Longest name in bytes.
    public static let maxBytes = 256

    /// Whether `name` is a valid attribute name.
    public static func isValid(_ name: String) -> Bool {
        let count = name.utf8.count
        guard count >= 1, count <= maxBytes else { return false }
        // Printable ASCII (the usual case) needs no Unicode property lookup.
        if name.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) { return true }
        return !name.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }
}

/// Idle limits a session may have: 1 ms to 366 days (what the wire format carries).
public enum IdleLimit {
    /// Whether `interval` is within the carried range.
    public static func isValid(_ interval: Duration) -> Bool {
        interval >= .milliseconds(1) && interval <= .seconds(366 * 86_400)
    }
}

/// What a change scope did: exactly which attributes were set or removed.
public struct ChangeSet: Hashable, Sendable {
    /// Names set, with their new values.
    public var updated: [String: [UInt8]] = [:]
    /// Names removed.
    public var removed: Set<String> = []
    /// Whether `maxInactiveInterval` changed.
    public var maxInactiveIntervalChanged = false

    /// Creates an empty change set.
    public init() {}

    /// Whether nothing changed.
    public var isEmpty: Bool { updated.isEmpty && removed.isEmpty && !maxInactiveIntervalChanged }

    /// Folds a later change set into this one (coalescing under time-based writes).
    public mutating func merge(_ later: ChangeSet) {
        for (name, value) in later.updated { updated[name] = value; removed.remove(name) }
        for name in later.removed { removed.insert(name); updated[name] = nil }
        maxInactiveIntervalChanged = maxInactiveIntervalChanged || later.maxInactiveIntervalChanged
    }
}

/// A change scope: a working copy of a session inside one request. It records exactly
/// which attributes were set or removed; setting an attribute to the bytes it already
/// has is not a change. Scopes on one session are serialized by the node.
public struct SessionScope: Sendable {
    /// The session's id.
    public let id: SessionID
    /// The state when the scope began.
    public let original: SessionState
    /// The working attributes.
    public private(set) var attributes: [String: [UInt8]]
    /// The working idle limit.
    public var maxInactiveInterval: Duration
    private var touched: Set<String> = []
    /// Whether `invalidate()` was called; the commit then invalidates the session.
    public private(set) var invalidated = false

    /// Begins a scope on `state`.
    public init(state: SessionState) {
        self.id = state.id
        self.original = state
        self.attributes = state.attributes
        self.maxInactiveInterval = state.maxInactiveInterval
    }

    /// The value of `name`, or `nil`.
    public subscript(name: String) -> [UInt8]? {
        get { attributes[name] }
        set {
            touched.insert(name)
            attributes[name] = newValue
        }
    }

    /// Sets `name` to `value`.
    public mutating func set(_ name: String, _ value: [UInt8]) { self[name] = value }

    /// Removes `name`; removing an absent attribute is not a change.
    public mutating func remove(_ name: String) { self[name] = nil }

    /// Marks the session for invalidation at commit.
    public mutating func invalidate() { invalidated = true }

    /// The exact changes against the original state: names whose bytes differ.
    public var changes: ChangeSet {
        var result = ChangeSet()
        for name in touched {
            let before = original.attributes[name]
            let after = attributes[name]
            if before == after { continue }
            if let after { result.updated[name] = after } else { result.removed.insert(name) }
        }
        result.maxInactiveIntervalChanged = maxInactiveInterval != original.maxInactiveInterval
        return result
    }
}
