/// Faults a node injects into its own outbound replication traffic (docs/design.md (Testing):
/// this machine has no netem, so delay, duplication and reordering for drills come from
/// the node's transport). All zero (the default) injects nothing.
///
/// Datagrams (UDP) can be dropped, delayed (`delay` plus up to `jitter`), duplicated and
/// reordered (held back by `reorderHold` so later datagrams overtake them). TCP frames are
/// only delayed, by `delay` exactly, which keeps their order: TCP itself never drops,
/// duplicates or reorders what it delivers.
public struct FaultSettings: Sendable, Hashable, CustomStringConvertible {
    /// Share of datagrams dropped, `0...1`. Default 0.
    public var drop: Double = 0
    /// Added to every datagram and frame. Default 0.
    public var delay: Duration = .zero
    /// Up to this much more, uniformly, per datagram. Default 0.
    public var jitter: Duration = .zero
    /// Share of datagrams sent twice (the copy 1 ms after the original), `0...1`. Default 0.
    public var duplicate: Double = 0
    /// Share of datagrams held back by `reorderHold`, `0...1`. Default 0.
    public var reorder: Double = 0
    /// How long a reordered datagram is held back. Default 5 ms.
    public var reorderHold: Duration = .milliseconds(5)

    /// No faults.
    public init() {}

    /// Whether anything is injected.
    public var isActive: Bool { drop > 0 || delay > .zero || jitter > .zero || duplicate > 0 || reorder > 0 }

    /// The spec form `drop=2%,delay=20ms,jitter=5ms,duplicate=5%,reorder=10%,hold=5ms`,
    /// naming only what is set; `off` when nothing is.
    public var description: String {
        guard isActive else { return "off" }
        var parts: [String] = []
        func percent(_ v: Double) -> String { "\((v * 1000).rounded() / 10)%" }
        if drop > 0 { parts.append("drop=\(percent(drop))") }
        if delay > .zero { parts.append("delay=\(delay.milliseconds)ms") }
        if jitter > .zero { parts.append("jitter=\(jitter.milliseconds)ms") }
        if duplicate > 0 { parts.append("duplicate=\(percent(duplicate))") }
        if reorder > 0 { parts.append("reorder=\(percent(reorder))"); parts.append("hold=\(reorderHold.milliseconds)ms") }
        return parts.joined(separator: ",")
    }
}

extension Duration {
    /// Whole and fractional milliseconds, for display.
    fileprivate var milliseconds: Double { Double(nanosecondsClamped) / 1e6 }
}

/// Decides, per outbound datagram or frame, when (and how often) it leaves, under
/// `FaultSettings`; counts what it did. A value type over an injected random source, so
/// a seeded generator replays the same decisions.
public struct FaultPlan<Random: RandomNumberGenerator>: Sendable where Random: Sendable {
    /// What is injected now.
    public var settings: FaultSettings
    private var random: Random
    /// Datagrams dropped, delayed (frames included), duplicated and reordered so far.
    public private(set) var counts = Counts()

    /// Totals since the plan was made.
    public struct Counts: Sendable, Hashable {
        public var dropped = 0, delayed = 0, duplicated = 0, reordered = 0
        public init() {}
    }

    /// A plan under `settings` drawing from `random`.
    public init(settings: FaultSettings, random: Random) {
        self.settings = settings
        self.random = random
    }

    /// The delays after which one datagram is sent: empty when dropped, two when
    /// duplicated; `[.zero]` when no fault applies.
    public mutating func datagram() -> [Duration] {
        let s = settings
        guard s.isActive else { return [.zero] }
        if s.drop > 0, Double.random(in: 0..<1, using: &random) < s.drop {
            counts.dropped += 1
            return []
        }
        var wait = s.delay
        if s.jitter > .zero {
            wait += .nanoseconds(Int64.random(in: 0...s.jitter.nanosecondsClamped, using: &random))
        }
        if s.reorder > 0, Double.random(in: 0..<1, using: &random) < s.reorder {
            wait += s.reorderHold
            counts.reordered += 1
        }
        if wait > .zero { counts.delayed += 1 }
        if s.duplicate > 0, Double.random(in: 0..<1, using: &random) < s.duplicate {
            counts.duplicated += 1
            return [wait, wait + .milliseconds(1)]
        }
        return [wait]
    }

    /// The delay of one TCP write: `settings.delay` (order kept).
    public mutating func frame() -> Duration {
        if settings.delay > .zero { counts.delayed += 1 }
        return settings.delay
    }
}
