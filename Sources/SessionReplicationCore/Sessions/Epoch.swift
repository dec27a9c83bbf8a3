/// Ownership generation of a session: `(counter, owner)`, ordered by counter then by the
/// owner's node id, so two owners never share one epoch. A takeover takes
/// `(max counter seen + 1, self)`; every holder refuses messages from lower epochs.
public struct Epoch: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// Increases by one at every change of owner.
    public var counter: UInt64
    /// The node that owns the session in this epoch.
    public var owner: NodeID
    /// Counters at or above this (2^62) are refused on decode; a takeover past it fails
    /// instead of wrapping. Honest counters grow by one per change of owner.
    public static let maxCounter: UInt64 = 1 << 62

    /// The next epoch owned by `owner`: `(counter + 1, owner)`; `nil` when that would
    /// reach `maxCounter` (never traps).
    public func next(owner: NodeID) -> Epoch? {
        guard counter < Self.maxCounter - 1 else { return nil }
        return Epoch(counter: counter + 1, owner: owner)
    }

    /// Creates an epoch.
    public init(counter: UInt64, owner: NodeID) {
        self.counter = counter
        self.owner = owner
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.counter, lhs.owner) < (rhs.counter, rhs.owner)
    }

    public var description: String { "\(counter)@\(owner)" }
}

/// The `(epoch, version)` pair that names one state of a session. Versions grow by one
/// with every committed change within an epoch and carry over into the next epoch.
public struct Stamp: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// The ownership generation.
    public var epoch: Epoch
    /// The number of committed changes.
    public var version: UInt64
    /// Versions at or above this (2^62) are refused on decode; a commit past it fails
    /// instead of wrapping. Honest versions grow by one per committed change.
    public static let maxVersion: UInt64 = 1 << 62

    /// Creates a stamp.
    public init(epoch: Epoch, version: UInt64) {
        self.epoch = epoch
        self.version = version
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        if lhs.epoch != rhs.epoch { return lhs.epoch < rhs.epoch }
        return lhs.version < rhs.version
    }

    public var description: String { "\(epoch)/v\(version)" }

    /// The opaque entity tag for HTTP: hex of counter, owner and version.
    public var etag: String {
        "\(String(epoch.counter, radix: 16))-\(epoch.owner)-\(String(version, radix: 16))"
    }

    /// Parses an entity tag made by `etag` (quotes allowed); `nil` when malformed.
    public init?(etag: some StringProtocol) {
        var text = Substring(etag)
        if text.hasPrefix("\""), text.hasSuffix("\""), text.count >= 2 { text = text.dropFirst().dropLast() }
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        let hex = Set("0123456789abcdef")
        guard parts.count == 3, [parts[0], parts[2]].allSatisfy({ !$0.isEmpty && $0.count <= 16 && $0.allSatisfy(hex.contains) }),
              let c = UInt64(parts[0], radix: 16), let o = NodeID(hex: parts[1]),
              let v = UInt64(parts[2], radix: 16) else { return nil }
        self.init(epoch: Epoch(counter: c, owner: o), version: v)
    }
}
