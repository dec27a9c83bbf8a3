/// A reading of a monotonic clock that keeps running while the process is stopped
/// (`ContinuousClock` in the node, a virtual clock in tests), in nanoseconds from an
/// arbitrary origin. The core never reads a clock itself: every event carries `now`.
public struct MonotonicInstant: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// Nanoseconds since the clock's origin.
    public var nanoseconds: UInt64

    /// Creates an instant `nanoseconds` after the clock's origin.
    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    /// The origin of the clock.
    public static let zero = MonotonicInstant(nanoseconds: 0)

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

    /// The instant `duration` later; saturates instead of overflowing, and negative
    /// durations move backwards but never below the origin.
    public static func + (lhs: Self, rhs: Duration) -> Self {
        let delta = rhs.nanosecondsClamped
        if delta >= 0 {
            let (sum, overflow) = lhs.nanoseconds.addingReportingOverflow(UInt64(delta))
            return Self(nanoseconds: overflow ? .max : sum)
        }
        let back = UInt64(-delta)
        return Self(nanoseconds: lhs.nanoseconds > back ? lhs.nanoseconds - back : 0)
    }

    /// The duration from `rhs` to `lhs` (negative when `lhs` is earlier).
    public static func - (lhs: Self, rhs: Self) -> Duration {
        if lhs >= rhs { return .nanoseconds(Int64(clamping: lhs.nanoseconds - rhs.nanoseconds)) }
        return .nanoseconds(-Int64(clamping: rhs.nanoseconds - lhs.nanoseconds))
    }

    public var description: String { "t+\(Double(nanoseconds) / 1e6)ms" }
}

/// Wall-clock time in milliseconds since the Unix epoch (UTC). Used for session
/// timestamps that travel between nodes; nodes are assumed NTP-synchronised.
public struct WallTime: Comparable, Hashable, Sendable {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    public var milliseconds: Int64

    /// Creates a wall time from milliseconds since the Unix epoch.
    public init(milliseconds: Int64) { self.milliseconds = milliseconds }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.milliseconds < rhs.milliseconds }

    /// The wall time `duration` later (saturating).
    public static func + (lhs: Self, rhs: Duration) -> Self {
        Self(milliseconds: lhs.milliseconds.addingClamped(rhs.millisecondsClamped))
    }
}

extension Duration {
    /// The duration in seconds, as a `Double` (attosecond parts included).
    public var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// The duration in whole nanoseconds, clamped to `Int64`.
    public var nanosecondsClamped: Int64 {
        // Durations under about 9.2 s fit in 64-bit attoseconds: one 64-bit division
        // instead of the 128-bit one `components` makes (clocks add durations all the time).
        if let small = Int64(exactly: attoseconds) { return small / 1_000_000_000 }
        let (seconds, attoseconds) = self.components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        return whole.addingClamped(attoseconds / 1_000_000_000)
    }

    /// The duration in whole milliseconds, clamped to `Int64`.
    public var millisecondsClamped: Int64 { nanosecondsClamped / 1_000_000 }
}

extension Int64 {
    @inlinable
    func addingClamped(_ other: Int64) -> Int64 {
        let (sum, overflow) = self.addingReportingOverflow(other)
        if overflow { return other < 0 ? .min : .max }
        return sum
    }
}
