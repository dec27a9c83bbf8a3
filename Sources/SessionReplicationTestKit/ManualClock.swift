import SessionReplicationCore

/// A virtual clock for tests: a monotonic instant and a wall time that move only when
/// `advance(by:)` is called, so time-driven behaviour is deterministic.
public struct ManualClock: Hashable, Sendable {
    /// The current monotonic reading, passed as `now` to the core.
    public var now: MonotonicInstant
    /// The current wall-clock time, passed as `wall` to the core.
    public var wall: WallTime

    /// Creates a clock at `now` (default the origin) and `wall` (default
    /// 2023-11-14T22:13:20Z, a fixed instant well after the Unix epoch).
    public init(now: MonotonicInstant = .zero, wall: WallTime = WallTime(milliseconds: 1_700_000_000_000)) {
        self.now = now
        self.wall = wall
    }

    /// Moves both the monotonic and the wall clock forward by `duration`.
    public mutating func advance(by duration: Duration) {
        now = now + duration
        wall = wall + duration
    }
}
