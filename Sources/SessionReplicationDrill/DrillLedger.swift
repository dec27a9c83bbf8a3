/// The drill's own record of what it asked the cluster and what the cluster answered,
/// kept apart from the cluster so it can judge it (docs/contracts.md, "drill report").
///
/// Every write to session `s` adds one attribute `w<seq>` with a sequence number new for
/// that session (creation is write 0), so a read shows exactly which writes a state holds:
/// a write acknowledged before a read was sent and missing from that read's state makes
/// the read stale, and a write acknowledged and missing from the final read is lost. Times
/// are seconds since the drill started (any monotonic origin works).
///
/// The ledger is a value type with no I/O; the `drs drill` command feeds it.
public struct DrillLedger: Sendable {
    /// How a write ended.
    public enum WriteOutcome: Sendable, Equatable {
        /// A 2xx answer: `etag` names the state; `replicated` when the node answered
        /// `X-DRS-Durability: replicated` (a backup held it before the answer).
        case acknowledged(etag: String, replicated: Bool)
        /// An answer that means nothing was applied (4xx other than timeouts, 503, 421,
        /// or a connection that was refused before the request was sent).
        case failed(String)
        /// The request may or may not have been applied: `504`, a timeout, or a connection
        /// lost after the request was sent. Never counted as lost.
        case indeterminate(String)
    }

    /// One write as the drill saw it.
    public struct Write: Sendable {
        /// Index of the session in `sessions`.
        public var session: Int
        /// The write's sequence number within its session (0 = creation).
        public var seq: Int
        /// When the request was sent.
        public var sentAt: Double
        /// When the answer (or the failure) arrived.
        public var completedAt: Double
        /// The node that answered (`X-DRS-Owner`), when one did.
        public var servedBy: String?
        /// The outcome.
        public var outcome: WriteOutcome

        /// A write record with every field given.
        public init(session: Int, seq: Int, sentAt: Double, completedAt: Double, servedBy: String?, outcome: WriteOutcome) {
            self.session = session; self.seq = seq; self.sentAt = sentAt; self.completedAt = completedAt
            self.servedBy = servedBy; self.outcome = outcome
        }
    }

    /// What a read returned.
    public enum ReadResult: Sendable, Equatable {
        /// A `200` with the sequence numbers of the `w<seq>` attributes it held.
        case state(Set<Int>)
        /// A `404 session-not-found`.
        case notFound
        /// Any other answer or a transport failure.
        case failed(String)
    }

    /// One read as the drill saw it.
    public struct Read: Sendable {
        /// Index of the session.
        public var session: Int
        /// When the request was sent.
        public var sentAt: Double
        /// When the answer arrived.
        public var completedAt: Double
        /// The node that answered (`X-DRS-Owner`), when one did.
        public var servedBy: String?
        /// What it returned.
        public var result: ReadResult
        /// True for reads sent to a node right after it resumed from a pause or a
        /// partition (a stale answer from such a node breaks fencing in every mode).
        public var probe: Bool = false

        /// A read record; `probe` defaults to false.
        public init(session: Int, sentAt: Double, completedAt: Double, servedBy: String?, result: ReadResult, probe: Bool = false) {
            self.session = session; self.sentAt = sentAt; self.completedAt = completedAt
            self.servedBy = servedBy; self.result = result; self.probe = probe
        }
    }

    /// Session ids (32 hex digits), by index.
    public private(set) var sessions: [String] = []
    /// Every write, in the order they completed.
    public private(set) var writes: [Write] = []
    /// Every read during the load (final reads are in `finalReads`).
    public private(set) var reads: [Read] = []
    /// The last read of each session after healing, by index.
    public private(set) var finalReads: [Int: Read] = [:]
    /// Writes acknowledged per session, `(seq, acknowledged at, etag, replicated)` in
    /// the order acknowledged.
    private var acknowledged: [[(seq: Int, at: Double, etag: String, replicated: Bool)]] = []

    /// An empty ledger.
    public init() {}

    /// Registers a session (created or about to be); returns its index.
    public mutating func addSession(_ id: String) -> Int {
        sessions.append(id)
        acknowledged.append([])
        return sessions.count - 1
    }

    /// Records a completed write. A second record of the same `(session, seq)` is a
    /// programming error of the caller and traps.
    public mutating func record(_ write: Write) {
        precondition(write.session < sessions.count, "unknown session index \(write.session)")
        writes.append(write)
        if case .acknowledged(let etag, let replicated) = write.outcome {
            acknowledged[write.session].append((write.seq, write.completedAt, etag, replicated))
        }
    }

    /// Records a read made during the load.
    public mutating func record(_ read: Read) {
        precondition(read.session < sessions.count, "unknown session index \(read.session)")
        reads.append(read)
    }

    /// Records the final read of a session (the last one recorded wins).
    public mutating func recordFinal(_ read: Read) {
        precondition(read.session < sessions.count, "unknown session index \(read.session)")
        finalReads[read.session] = read
    }

    /// A write that was acknowledged and is missing from the session's final state.
    public struct LostWrite: Sendable, Equatable {
        /// Session id.
        public var session: String
        /// The write's sequence number within its session.
        public var seq: Int
        /// The ETag the acknowledgement carried.
        public var etag: String
        /// When it was acknowledged.
        public var acknowledgedAt: Double
        /// Whether it was acknowledged `replicated`.
        public var replicated: Bool
    }

    /// A read that missed a write acknowledged before it was sent.
    public struct StaleRead: Sendable, Equatable {
        /// Session id.
        public var session: String
        /// When the read was sent.
        public var sentAt: Double
        /// The node that answered.
        public var servedBy: String?
        /// Sequence numbers of the acknowledged writes it missed.
        public var missing: [Int]
        /// Whether one of them was acknowledged `replicated`.
        public var missedReplicated: Bool
        /// Whether the read was a probe of a resumed node.
        public var probe: Bool
        /// Sequence numbers among `missing` that are in the session's final state (the
        /// read was older than what survived, not merely missing a write lost anyway).
        public var missingSurvivors: [Int] = []
    }

    /// Acknowledged writes missing from the final reads (every acknowledged write of a
    /// session whose final read was `404`). Sessions whose final read failed are not
    /// judged (see `unreadableSessions`).
    public var lostWrites: [LostWrite] {
        var lost: [LostWrite] = []
        for (index, acks) in acknowledged.enumerated() {
            guard let final = finalReads[index] else { continue }
            let present: Set<Int>
            switch final.result {
            case .state(let seqs): present = seqs
            case .notFound: present = []
            case .failed: continue
            }
            for a in acks where !present.contains(a.seq) {
                lost.append(LostWrite(session: sessions[index], seq: a.seq, etag: a.etag, acknowledgedAt: a.at, replicated: a.replicated))
            }
        }
        return lost
    }

    /// Sessions with at least one acknowledged write whose final read answered `404`.
    public var lostSessions: [String] {
        acknowledged.indices.compactMap { i in
            (!acknowledged[i].isEmpty && finalReads[i]?.result == .notFound) ? sessions[i] : nil
        }
    }

    /// Sessions whose final read did not answer (neither a state nor `404`), or that
    /// were never read at the end.
    public var unreadableSessions: [String] {
        sessions.indices.compactMap { i in
            if case .state = finalReads[i]?.result { return nil }
            if finalReads[i]?.result == .notFound { return nil }
            return sessions[i]
        }
    }

    /// Why the final reads of `unreadableSessions` failed, `(session, reason)`.
    public var unreadableReasons: [(session: String, reason: String)] {
        sessions.indices.compactMap { i in
            guard let read = finalReads[i] else { return (sessions[i], "never read") }
            if case .failed(let reason) = read.result { return (sessions[i], reason + (read.servedBy.map { " from \($0)" } ?? "")) }
            return nil
        }
    }

    /// Reads during the load (probes included) that missed a write acknowledged before
    /// they were sent; a `404` for a session with such a write counts too. Final reads
    /// are judged by `lostWrites` instead, so nothing is counted twice.
    public var staleReads: [StaleRead] {
        var stale: [StaleRead] = []
        for read in reads {
            let present: Set<Int>
            switch read.result {
            case .state(let seqs): present = seqs
            case .notFound: present = []
            case .failed: continue
            }
            let before = acknowledged[read.session].filter { $0.at < read.sentAt && !present.contains($0.seq) }
            if !before.isEmpty {
                var finalSeqs: Set<Int> = []
                if case .state(let seqs)? = finalReads[read.session]?.result { finalSeqs = seqs }
                stale.append(StaleRead(session: sessions[read.session], sentAt: read.sentAt, servedBy: read.servedBy,
                                       missing: before.map(\.seq), missedReplicated: before.contains { $0.replicated }, probe: read.probe,
                                       missingSurvivors: before.map(\.seq).filter { finalSeqs.contains($0) }))
            }
        }
        return stale
    }

    /// Counts of writes by outcome.
    public struct WriteCounts: Sendable, Equatable, Codable {
        /// Every write sent (creations included).
        public var attempted = 0
        /// 2xx answers.
        public var acknowledged = 0
        /// 2xx answers with `X-DRS-Durability: replicated`.
        public var acknowledgedReplicated = 0
        /// Answers meaning nothing was applied.
        public var failed = 0
        /// `504`, timeouts and connections lost after sending.
        public var indeterminate = 0

        /// All zero.
        public init() {}
    }

    /// Counts of writes by outcome.
    public var writeCounts: WriteCounts {
        var c = WriteCounts()
        for w in writes {
            c.attempted += 1
            switch w.outcome {
            case .acknowledged(_, let replicated):
                c.acknowledged += 1
                if replicated { c.acknowledgedReplicated += 1 }
            case .failed: c.failed += 1
            case .indeterminate: c.indeterminate += 1
            }
        }
        return c
    }

    /// Requests of the load (writes and reads, not final reads) that did not end in a 2xx.
    public var requestsFailed: Int {
        writes.filter { if case .acknowledged = $0.outcome { false } else { true } }.count
            + reads.filter { if case .state = $0.result { false } else { true } }.count
    }

    /// The requests of the load that did not end in a 2xx, by answer: `"<status> <error
    /// code>"` (`"421 misdirected"`, `"503 session-unavailable"`), or the transport's
    /// reason when no answer came. Their sum is `requestsFailed`.
    public var failedAnswers: [String: Int] {
        var counts: [String: Int] = [:]
        for w in writes {
            switch w.outcome {
            case .acknowledged: break
            case .failed(let why), .indeterminate(let why): counts[why, default: 0] += 1
            }
        }
        for r in reads {
            switch r.result {
            case .state: break
            case .notFound: counts["404 session-not-found", default: 0] += 1
            case .failed(let why): counts[why, default: 0] += 1
            }
        }
        return counts
    }

    /// Throughput, errors and latency percentiles per second of the load, by send time
    /// (the nearest-rank percentile of every request's send-to-answer time); CPU steal
    /// and run queue are left `nil` for the caller that sampled them.
    public var perSecond: [DrillReport.Second] {
        var buckets: [Int: (ok: Int, errors: Int, latencies: [Double])] = [:]
        func add(_ sent: Double, _ done: Double, _ ok: Bool) {
            let t = Int(sent.rounded(.down))
            var b = buckets[t] ?? (0, 0, [])
            if ok { b.ok += 1 } else { b.errors += 1 }
            b.latencies.append((done - sent) * 1000)
            buckets[t] = b
        }
        for w in writes {
            if case .acknowledged = w.outcome { add(w.sentAt, w.completedAt, true) } else { add(w.sentAt, w.completedAt, false) }
        }
        for r in reads {
            if case .state = r.result { add(r.sentAt, r.completedAt, true) } else { add(r.sentAt, r.completedAt, false) }
        }
        guard let first = buckets.keys.min(), let last = buckets.keys.max() else { return [] }
        return (first...last).map { t in
            let b = buckets[t] ?? (0, 0, [])
            let sorted = b.latencies.sorted()
            return DrillReport.Second(t: t, ok: b.ok, errors: b.errors, p50Ms: Self.percentile(sorted, 0.50),
                                      p99Ms: Self.percentile(sorted, 0.99), stealPct: nil, runQueue: nil)
        }
    }

    /// The nearest-rank percentile `q` (0...1) of ascending `sorted`; 0 when empty.
    public static func percentile(_ sorted: [Double], _ q: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((q * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }
}
