/// When the drill's fault touched each node: from the signal, cut or injection until the
/// node serves again, plus the time the load balancer takes to list it again. A new route
/// to such a node cannot be followed meanwhile (the balancer's health check has it down,
/// or it drains, is fenced or stopped), so the routing check does not count it.
///
/// A value type with no I/O; `drs drill` opens and closes the windows as it acts.
public struct FaultWindows: Sendable, Equatable {
    /// One node's window (drill time, seconds); `until` is infinite while it is open.
    public struct Window: Sendable, Equatable {
        /// The node the fault touched.
        public var node: String
        /// When the fault reached it.
        public var from: Double
        /// When it was back, plus the balancer's settle time; `.infinity` while open.
        public var until: Double

        /// A window with every field given.
        public init(node: String, from: Double, until: Double) {
            self.node = node; self.from = from; self.until = until
        }
    }

    /// The windows in the order they were opened.
    public private(set) var windows: [Window] = []
    /// Added to a node's return: the balancer lists it again only after its health check
    /// passed (the generated HAProxy configuration checks every 250 ms and needs two
    /// passes). Default 1.5 s.
    public var settle: Double

    /// No window yet; `settle` seconds are added to each return (default 1.5).
    public init(settle: Double = 1.5) { self.settle = settle }

    /// The fault reached `node` at `t`. A node already in an open window keeps that one.
    public mutating func open(_ node: String, at t: Double) {
        guard !windows.contains(where: { $0.node == node && $0.until == .infinity }) else { return }
        windows.append(Window(node: node, from: t, until: .infinity))
    }

    /// `node` was back at `t`: its open window ends `settle` seconds later. Does nothing
    /// when `node` has no open window.
    public mutating func close(_ node: String, at t: Double) {
        for k in windows.indices where windows[k].node == node && windows[k].until == .infinity {
            windows[k].until = t + settle
        }
    }

    /// Whether a window of `node` overlaps the span from `start` to `end`.
    public func touched(_ node: String, from start: Double, to end: Double) -> Bool {
        windows.contains { $0.node == node && $0.from <= end && $0.until >= start }
    }
}
