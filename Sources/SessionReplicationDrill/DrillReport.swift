import Foundation

/// The result of one drill: the JSON of docs/contracts.md (`drs drill --json FILE`), a
/// terminal table (`table`) and an SVG timeline (`svg`). Fields beyond the contract's
/// (mode, victim, events, violations, CPU steal and run queue per second, ...) are extra
/// keys; the contract's keys keep their names and meaning.
public struct DrillReport: Codable, Sendable {
    /// Write counts by outcome (the contract's `writes`).
    public typealias Writes = DrillLedger.WriteCounts

    /// A lost write: the session, the ETag its acknowledgement carried, and how long
    /// before the fault it was acknowledged (negative: after the fault).
    public struct LostWrite: Codable, Sendable, Equatable {
        /// Session id.
        public var session: String
        /// ETag of the acknowledgement.
        public var etag: String
        /// Fault time minus acknowledgement time, in ms.
        public var ageAtFaultMs: Double
        /// Whether it was acknowledged `replicated` (extra key).
        public var replicated: Bool

        /// A lost write with every field given.
        public init(session: String, etag: String, ageAtFaultMs: Double, replicated: Bool) {
            self.session = session; self.etag = etag; self.ageAtFaultMs = ageAtFaultMs; self.replicated = replicated
        }
    }

    /// One second of the drill (the contract's `perSecond`, plus the machine's CPU steal
    /// and run queue in that second, which a noisy shared machine needs beside latencies).
    public struct Second: Codable, Sendable, Equatable {
        /// Seconds since the drill started.
        public var t: Int
        /// 2xx answers to requests sent in this second.
        public var ok: Int
        /// Other answers and failures.
        public var errors: Int
        /// Median latency in ms.
        public var p50Ms: Double
        /// 99th percentile latency in ms.
        public var p99Ms: Double
        /// Share of CPU time stolen by the hypervisor, percent; `nil` when not sampled.
        public var stealPct: Double?
        /// Runnable tasks (`/proc/loadavg`'s fourth field); `nil` when not sampled.
        public var runQueue: Int?

        /// A second with every field given.
        public init(t: Int, ok: Int, errors: Int, p50Ms: Double, p99Ms: Double, stealPct: Double?, runQueue: Int?) {
            self.t = t; self.ok = ok; self.errors = errors; self.p50Ms = p50Ms; self.p99Ms = p99Ms
            self.stealPct = stealPct; self.runQueue = runQueue
        }
    }

    /// Something that happened, at `t` seconds since the start.
    public struct Event: Codable, Sendable, Equatable {
        /// Seconds since the drill started.
        public var t: Double
        /// What: `fault`, `detected`, `promoted`, `fully-replicated`, `healed`, ...
        public var what: String
        /// Details (the node, the signal, the rule).
        public var detail: String

        /// An event with every field given.
        public init(t: Double, what: String, detail: String) { self.t = t; self.what = what; self.detail = detail }
    }

    /// A stale read, as listed in the report (extra key `staleReadDetails`).
    public struct Stale: Codable, Sendable, Equatable {
        /// Session id.
        public var session: String
        /// Seconds since the start at which the read was sent.
        public var t: Double
        /// The node that answered.
        public var servedBy: String?
        /// Sequence numbers of the acknowledged writes it missed.
        public var missing: [Int]
        /// Whether the read probed a node that had just resumed.
        public var probe: Bool

        /// A stale read with every field given.
        public init(session: String, t: Double, servedBy: String?, missing: [Int], probe: Bool) {
            self.session = session; self.t = t; self.servedBy = servedBy; self.missing = missing; self.probe = probe
        }
    }

    /// How the load balancer followed routes the cluster handed out (extra key).
    public struct Routing: Codable, Sendable, Equatable {
        /// Answers that handed out a new route (a `Set-Cookie` naming another node).
        public var newRoutes: Int = 0
        /// Next answers for those sessions that came from the node the new route names.
        public var followed: Int = 0
        /// Next answers that came from another node while the node the route names was
        /// not touched by the fault: the balancer did not follow the route.
        public var notFollowed: Int = 0
        /// Next answers from another node because the fault touched the node the route
        /// names before that answer, or it was not ready (restarted, stopped, cut off,
        /// fenced, or not yet listed by the balancer again): not counted either way.
        public var excused: Int = 0

        /// All zero.
        public init() {}
    }

    /// The scenario (`kill-primary`, `hang`, ...).
    public var scenario: String
    /// Path of the cluster configuration.
    public var config: String
    /// How the fault was injected (signal, nftables rule, ...).
    public var mechanism: String
    /// Wall-clock start, RFC 3339 UTC.
    public var startedAt: String
    /// Length of the whole drill in seconds (load, fault, heal and final reads).
    public var durationS: Double
    /// Sessions the load used.
    public var sessions: Int
    /// Write counts by outcome.
    public var writes: Writes
    /// Acknowledged writes missing from the final reads.
    public var acknowledgedWritesLost: Int
    /// Sessions with an acknowledged write whose final read answered 404.
    public var sessionsLost: Int
    /// Reads that missed a write acknowledged before they were sent.
    public var staleReads: Int
    /// Requests of the load that did not end in a 2xx.
    public var requestsFailed: Int
    /// Fault until a survivor listed the victim dead (or left); `nil` when not seen.
    public var timeToDetectMs: Double?
    /// Fault until the survivors owned every session; `nil` when not seen.
    public var timeToPromoteMs: Double?
    /// Fault until every survivor reported no under-replicated session and no pending
    /// transfer after promotion; `nil` when not seen.
    public var timeToFullReplicationMs: Double?
    /// Every lost write.
    public var lostWrites: [LostWrite]
    /// Throughput, errors and latency per second.
    public var perSecond: [Second]

    // Extra keys.
    /// Replication mode of the configuration.
    public var mode: String
    /// Replication transport.
    public var transport: String
    /// Whether anti-entropy repair ran (`--repair off` sets `repairInterval` past the drill's end).
    public var repair: Bool
    /// `haproxy` or `direct`.
    public var loadBalancer: String
    /// The node the fault hit.
    public var victim: String
    /// Requests per second asked for.
    public var rate: Double
    /// The replication lag p99 (ms) the victim reported just before the fault, by peer maximum.
    public var lagMsP99AtFault: Double?
    /// Sessions whose final read never answered.
    public var sessionsUnreadable: Int
    /// Fault, detection, promotion, healing and other moments.
    public var events: [Event]
    /// Up to 50 stale reads.
    public var staleReadDetails: [Stale]
    /// How the load balancer followed new routes.
    public var routing: Routing
    /// What the drill judges a violation of the cluster's guarantees (exit 1 when any).
    public var violations: [String]
    /// `answers` (failed requests by answer) as one phrase, the most frequent first:
    /// `"421 misdirected: 4, timeout: 1"`; empty for none.
    public static func summary(of answers: [String: Int]) -> String {
        answers.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }
            .map { "\($0.key): \($0.value)" }.joined(separator: ", ")
    }

    /// The failed requests of the load by answer (`"421 misdirected": 3`), summing to
    /// `requestsFailed`; empty when none failed.
    public var failedAnswers: [String: Int] = [:]

    /// A report with every field given.
    public init(scenario: String, config: String, mechanism: String, startedAt: String, durationS: Double, sessions: Int,
                writes: Writes, acknowledgedWritesLost: Int, sessionsLost: Int, staleReads: Int, requestsFailed: Int,
                timeToDetectMs: Double?, timeToPromoteMs: Double?, timeToFullReplicationMs: Double?, lostWrites: [LostWrite],
                perSecond: [Second], mode: String, transport: String, repair: Bool, loadBalancer: String, victim: String,
                rate: Double, lagMsP99AtFault: Double?, sessionsUnreadable: Int, events: [Event], staleReadDetails: [Stale],
                routing: Routing, violations: [String], failedAnswers: [String: Int] = [:]) {
        self.scenario = scenario; self.config = config; self.mechanism = mechanism; self.startedAt = startedAt
        self.durationS = durationS; self.sessions = sessions; self.writes = writes
        self.acknowledgedWritesLost = acknowledgedWritesLost; self.sessionsLost = sessionsLost; self.staleReads = staleReads
        self.requestsFailed = requestsFailed; self.timeToDetectMs = timeToDetectMs; self.timeToPromoteMs = timeToPromoteMs
        self.timeToFullReplicationMs = timeToFullReplicationMs; self.lostWrites = lostWrites; self.perSecond = perSecond
        self.mode = mode; self.transport = transport; self.repair = repair; self.loadBalancer = loadBalancer; self.victim = victim
        self.rate = rate; self.lagMsP99AtFault = lagMsP99AtFault; self.sessionsUnreadable = sessionsUnreadable
        self.events = events; self.staleReadDetails = staleReadDetails; self.routing = routing; self.violations = violations
        self.failedAnswers = failedAnswers
    }

    /// Encodes every key, writing `null` for a time that was not seen (the contract lists
    /// `timeToDetectMs`, `timeToPromoteMs` and `timeToFullReplicationMs` in every report).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(scenario, forKey: .scenario)
        try c.encode(config, forKey: .config)
        try c.encode(mechanism, forKey: .mechanism)
        try c.encode(startedAt, forKey: .startedAt)
        try c.encode(durationS, forKey: .durationS)
        try c.encode(sessions, forKey: .sessions)
        try c.encode(writes, forKey: .writes)
        try c.encode(acknowledgedWritesLost, forKey: .acknowledgedWritesLost)
        try c.encode(sessionsLost, forKey: .sessionsLost)
        try c.encode(staleReads, forKey: .staleReads)
        try c.encode(requestsFailed, forKey: .requestsFailed)
        try c.encode(timeToDetectMs, forKey: .timeToDetectMs)
        try c.encode(timeToPromoteMs, forKey: .timeToPromoteMs)
        try c.encode(timeToFullReplicationMs, forKey: .timeToFullReplicationMs)
        try c.encode(lostWrites, forKey: .lostWrites)
        try c.encode(perSecond, forKey: .perSecond)
        try c.encode(mode, forKey: .mode)
        try c.encode(transport, forKey: .transport)
        try c.encode(repair, forKey: .repair)
        try c.encode(loadBalancer, forKey: .loadBalancer)
        try c.encode(victim, forKey: .victim)
        try c.encode(rate, forKey: .rate)
        try c.encode(lagMsP99AtFault, forKey: .lagMsP99AtFault)
        try c.encode(sessionsUnreadable, forKey: .sessionsUnreadable)
        try c.encode(events, forKey: .events)
        try c.encode(staleReadDetails, forKey: .staleReadDetails)
        try c.encode(routing, forKey: .routing)
        try c.encode(violations, forKey: .violations)
        try c.encode(failedAnswers, forKey: .failedAnswers)
    }

    /// What a scenario promises beyond what every drill judges (lost or missed `replicated`
    /// writes and unreadable sessions are always violations).
    public struct Expectations: Sendable {
        /// A stale answer from a node probed right after it resumed is a violation. True
        /// for pauses in every mode; for partitions only under `promotion: majority`
        /// (under `any` a cut-off node serves alone, which docs/design.md (Membership and failover) documents).
        public var resumedNodeNeverStale = true
        /// Public so callers can build one.
        public init() {}
    }

    /// Judges a ledger: the violations `DrillReport.violations` lists.
    ///
    /// - a write acknowledged `replicated` missing from its session's final state;
    /// - a read that missed a write acknowledged `replicated` before the read was sent;
    /// - with `resumedNodeNeverStale`, a read from a node probed right after it resumed
    ///   that misses a write present in the session's final state (fencing);
    /// - a session that answered neither a state nor 404 at the end.
    /// Other losses (writes acknowledged `local` in acknowledged or best-effort mode) are
    /// counted and listed with their age, not judged: they are the documented window.
    public static func violations(of ledger: DrillLedger, expecting e: Expectations = Expectations()) -> [String] {
        var out: [String] = []
        let lost = ledger.lostWrites
        let replicatedLost = lost.filter(\.replicated)
        if !replicatedLost.isEmpty {
            out.append("\(replicatedLost.count) write(s) acknowledged replicated were lost (first: session \(replicatedLost[0].session) write \(replicatedLost[0].seq))")
        }
        let stale = ledger.staleReads
        let staleReplicated = stale.filter { $0.missedReplicated && !$0.probe }
        if !staleReplicated.isEmpty {
            out.append("\(staleReplicated.count) read(s) missed a write acknowledged replicated before they were sent (first: session \(staleReplicated[0].session) from \(staleReplicated[0].servedBy ?? "?"))")
        }
        // A resumed node's answer breaks fencing when it is older than what survived: it
        // misses a write that is in the session's final state. Missing only writes lost
        // anyway (acknowledged `local` and never replicated) is the loss, counted above.
        let probes = stale.filter { $0.probe && !$0.missingSurvivors.isEmpty }
        if e.resumedNodeNeverStale, !probes.isEmpty {
            out.append("\(probes.count) read(s) of a resumed node served a session older than what survived (first: session \(probes[0].session) from \(probes[0].servedBy ?? "?"))")
        }
        let unreadable = ledger.unreadableSessions
        if let first = ledger.unreadableReasons.first {
            out.append("\(unreadable.count) session(s) could not be read at the end (first: \(first.session): \(first.reason))")
        }
        return out
    }

    // MARK: - Terminal table

    /// The report as a table for the terminal.
    public var table: String {
        func ms(_ v: Double?) -> String { v.map { String(format: "%.0f ms", $0) } ?? "not seen" }
        var rows: [(String, String)] = [
            ("scenario", "\(scenario) on \(victim) (\(mechanism))"),
            ("config", "\(config): \(mode) over \(transport), repair \(repair ? "on" : "off"), load via \(loadBalancer)"),
            ("sessions", "\(sessions), \(String(format: "%.0f", rate)) requests/s asked, \(String(format: "%.1f", durationS)) s"),
            ("writes", "\(writes.attempted) attempted, \(writes.acknowledged) acknowledged (\(writes.acknowledgedReplicated) replicated), \(writes.failed) failed, \(writes.indeterminate) indeterminate"),
            ("acknowledged writes lost", "\(acknowledgedWritesLost)"),
            ("sessions lost", "\(sessionsLost)"),
            ("stale reads", "\(staleReads)"),
            ("requests failed", "\(requestsFailed)" + (failedAnswers.isEmpty ? "" : " (\(Self.summary(of: failedAnswers)))")),
            ("sessions unreadable at end", "\(sessionsUnreadable)"),
            ("time to detect", ms(timeToDetectMs)),
            ("time to promote", ms(timeToPromoteMs)),
            ("time to full replication", ms(timeToFullReplicationMs)),
            ("replication lag p99 before fault", lagMsP99AtFault.map { String(format: "%.2f ms", $0) } ?? "-"),
        ]
        if routing.newRoutes > 0 {
            let excused = routing.excused > 0 ? "; \(routing.excused) not checked: the route's node was faulted or not ready" : ""
            rows.append(("new routes followed by LB", "\(routing.followed) of \(routing.followed + routing.notFollowed) checked (\(routing.newRoutes) handed out\(excused))"))
        }
        let width = rows.map(\.0.count).max() ?? 0
        var lines = rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }
        if !lostWrites.isEmpty {
            lines.append("")
            lines.append("lost writes (age at fault = how long before the fault it was acknowledged):")
            for w in lostWrites.prefix(20) {
                lines.append("  session \(w.session)  etag \(w.etag)  age at fault \(String(format: "%.1f", w.ageAtFaultMs)) ms\(w.replicated ? "  REPLICATED" : "")")
            }
            if lostWrites.count > 20 { lines.append("  ... \(lostWrites.count - 20) more in the JSON") }
        }
        lines.append("")
        lines.append("  t   ok/s  err/s   p50 ms   p99 ms  steal%  runq")
        for s in perSecond {
            let steal = s.stealPct.map { String(format: "%.1f", $0) } ?? "-", runq = s.runQueue.map(String.init) ?? "-"
            lines.append(String(format: "%3d  %5d  %5d  %7.2f  %7.2f  ", s.t, s.ok, s.errors, s.p50Ms, s.p99Ms)
                + String(repeating: " ", count: max(0, 6 - steal.count)) + steal + "  " + String(repeating: " ", count: max(0, 4 - runq.count)) + runq)
        }
        for e in events { lines.append(String(format: "  at %6.2f s  ", e.t) + e.what + "  " + e.detail) }
        lines.append(violations.isEmpty ? "no violations" : "VIOLATIONS:\n" + violations.map { "  - " + $0 }.joined(separator: "\n"))
        return lines.joined(separator: "\n")
    }

    // MARK: - SVG timeline

    /// An SVG timeline: successful requests per second (green) and errors per second (red
    /// bars) on the left axis, p99 latency (blue) on the right axis, the events as
    /// labelled vertical lines.
    public var svg: String {
        let w = 960.0, h = 420.0, left = 60.0, right = 70.0, top = 40.0, bottom = 50.0
        let plotW = w - left - right, plotH = h - top - bottom
        let tMax = max(durationS, Double((perSecond.last?.t ?? 0) + 1), 1)
        let yMax = max(Double(perSecond.map { max($0.ok, $0.errors) }.max() ?? 0), 1) * 1.1
        let latMax = max(perSecond.map(\.p99Ms).max() ?? 0, 1) * 1.1
        func x(_ t: Double) -> Double { left + t / tMax * plotW }
        func y(_ v: Double) -> Double { top + plotH - v / yMax * plotH }
        func yl(_ v: Double) -> Double { top + plotH - v / latMax * plotH }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        var out = ["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"11\">",
                   "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
                   "<text x=\"\(f(left))\" y=\"18\" font-size=\"14\">\(esc("drs drill \(scenario) on \(victim) (\(config), \(mode), \(loadBalancer)): \(acknowledgedWritesLost) acknowledged writes lost, \(staleReads) stale reads"))</text>",
                   "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#999\"/>"]
        for i in 0...4 {
            let v = yMax / 1.1 * Double(i) / 4, l = latMax / 1.1 * Double(i) / 4
            out.append("<text x=\"\(f(left - 6))\" y=\"\(f(y(v) + 4))\" text-anchor=\"end\" fill=\"#2a7\">\(Int(v))</text>")
            out.append("<text x=\"\(f(w - right + 6))\" y=\"\(f(yl(l) + 4))\" fill=\"#36c\">\(f(l))</text>")
        }
        let step = max(1, Int((tMax / 10).rounded(.up)))
        for t in stride(from: 0, through: Int(tMax), by: step) {
            out.append("<text x=\"\(f(x(Double(t))))\" y=\"\(f(top + plotH + 16))\" text-anchor=\"middle\">\(t) s</text>")
        }
        out.append("<text x=\"12\" y=\"\(f(top + plotH / 2))\" transform=\"rotate(-90 12 \(f(top + plotH / 2)))\" text-anchor=\"middle\" fill=\"#2a7\">requests/s (ok green, errors red)</text>")
        out.append("<text x=\"\(f(w - 12))\" y=\"\(f(top + plotH / 2))\" transform=\"rotate(90 \(f(w - 12)) \(f(top + plotH / 2)))\" text-anchor=\"middle\" fill=\"#36c\">p99 latency ms</text>")
        let barW = plotW / tMax * 0.8
        for s in perSecond where s.errors > 0 {
            out.append("<rect x=\"\(f(x(Double(s.t))))\" y=\"\(f(y(Double(s.errors))))\" width=\"\(f(barW))\" height=\"\(f(top + plotH - y(Double(s.errors))))\" fill=\"#d33\" opacity=\"0.7\"/>")
        }
        let okPoints = perSecond.map { "\(f(x(Double($0.t) + 0.5))),\(f(y(Double($0.ok))))" }.joined(separator: " ")
        let latPoints = perSecond.map { "\(f(x(Double($0.t) + 0.5))),\(f(yl($0.p99Ms)))" }.joined(separator: " ")
        out.append("<polyline points=\"\(okPoints)\" fill=\"none\" stroke=\"#2a7\" stroke-width=\"2\"/>")
        out.append("<polyline points=\"\(latPoints)\" fill=\"none\" stroke=\"#36c\" stroke-width=\"1.5\" stroke-dasharray=\"4 2\"/>")
        let colors = ["fault": "#d33", "detected": "#e80", "promoted": "#a3a", "fully-replicated": "#2a7", "healed": "#333"]
        for (i, e) in events.enumerated() {
            let color = colors[e.what] ?? "#666"
            out.append("<line x1=\"\(f(x(e.t)))\" y1=\"\(f(top))\" x2=\"\(f(x(e.t)))\" y2=\"\(f(top + plotH))\" stroke=\"\(color)\" stroke-dasharray=\"2 2\"/>")
            out.append("<text x=\"\(f(x(e.t) + 3))\" y=\"\(f(top + 12 + Double(i % 5) * 12))\" fill=\"\(color)\">\(esc(e.what))</text>")
        }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }
}
