import CoreMetrics
import NIOConcurrencyHelpers
import ServiceLifecycle
import SessionReplicationCore

/// A node's metrics through swift-metrics, every name prefixed `drs_`, so that an
/// application embedding a node reports them to whatever backend it bootstrapped
/// (`MetricsSystem.bootstrap`; with none bootstrapped nothing is recorded). The node's
/// counters live in its state machines; `publish()` brings the metrics up to date:
/// counters advance by what happened since the previous call (they stay monotonic),
/// gauges are set, and the timer `drs_replication_lag_seconds{peer}` records the
/// send-to-receipt samples collected since then.
///
/// Run it as a `Service` beside the node (in the same `ServiceGroup`) to publish every
/// `interval`; `drs node` also publishes before each scrape of `/metrics`.
public final class NodeMetrics: Service, Sendable {
    /// Name of the replication lag timer (a histogram in Prometheus).
    public static let replicationLag = "drs_replication_lag_seconds"
    private let node: ReplicationNode
    private let factory: (any MetricsFactory)?
    /// How often `run()` publishes.
    public let interval: Duration
    private let last = NIOLockedValueBox<[String: Int]>([:])

    /// Metrics of `node` through `factory` (default `nil`: the bootstrapped
    /// `MetricsSystem`), published every `interval` (default one second) while `run()`
    /// runs. Never fails.
    public init(node: ReplicationNode, factory: (any MetricsFactory)? = nil, interval: Duration = .seconds(1)) {
        self.node = node
        self.factory = factory
        self.interval = interval
    }

    /// Publishes every `interval` until graceful shutdown or cancellation, and once more
    /// on the way out. Never throws.
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                self.publish()
                try? await Task.sleep(for: self.interval)
            }
        }
        publish()
    }

    private func makeCounter(_ name: String, _ labels: [(String, String)]) -> Counter {
        if let factory { return Counter(label: name, dimensions: labels, factory: factory) }
        return Counter(label: name, dimensions: labels)
    }

    // `help` says what each metric counts, for the reader: swift-metrics carries no help text.
    private func counter(_ name: String, _ labels: [(String, String)], _ help: String, total: Int) {
        let key = name + labels.map { "\($0.0)=\($0.1)" }.joined(separator: ",")
        let delta = last.withLockedValue { last -> Int in
            defer { last[key] = total }
            return total - (last[key] ?? 0)
        }
        if delta > 0 { makeCounter(name, labels).increment(by: delta) }
    }

    private func gauge(_ name: String, _ labels: [(String, String)], _ help: String, _ value: Double) {
        let gauge = factory.map { Gauge(label: name, dimensions: labels, factory: $0) } ?? Gauge(label: name, dimensions: labels)
        gauge.record(value)
    }

    /// Brings every metric up to date (see the type's description). Safe to call from
    /// any thread, at any time, also before the node starts and after it stops.
    public func publish() {
        let c = node.counters
        let r = c.replication
        let policy = node.configuration.replication
        let mt = [("mode", policy.mode.rawValue), ("transport", policy.effectiveTransport.rawValue)]
        gauge("drs_sessions", [("role", "owner")], "Sessions held, by role.", Double(c.primaries))
        gauge("drs_sessions", [("role", "backup")], "Sessions held, by role.", Double(c.backups))
        counter("drs_sessions_created_total", [], "Sessions created on this node.", total: r.sessionsCreated)
        counter("drs_commits_total", [], "Change scopes that changed a session.", total: r.commits)
        for (kind, n) in [("delta", r.deltasSent), ("full", r.fullStatesSent), ("invalidation", r.invalidationsSent), ("touch", r.touchesSent)] {
            counter("drs_messages_sent_total", [("kind", kind)] + mt, "Replication messages queued, one per backup.", total: n)
        }
        counter("drs_retries_total", mt, "Messages resent for want of a receipt.", total: r.retries)
        counter("drs_drops_total", [("reason", "retries")] + mt, "Best-effort messages dropped.", total: r.drops)
        counter("drs_drops_total", [("reason", "queue-full")] + mt, "Best-effort messages dropped.", total: r.overflowDrops)
        counter("drs_backlog_waits_total", mt, "Best-effort writes held back because a backup's queue was over its backlog (per retry).", total: r.backlogWaits)
        counter("drs_repairs_total", [], "Sessions re-sent whole after a drop or a peer restart.", total: r.repairsSent)
        counter("drs_promotions_total", [], "Backup copies promoted after their owner died or left.", total: r.promotions)
        counter("drs_rereplications_total", [], "Owned sessions given a new backup after one departed.", total: r.rereplications)
        counter("drs_state_transfers_total", [], "Owned sessions sent whole to a member that joined.", total: r.stateTransfers)
        counter("drs_takeovers_total", [], "Sessions taken over on request or handed over by a draining owner.", total: r.takeovers)
        counter("drs_handovers_total", [], "Sessions handed over to another node.", total: r.handoversGiven)
        counter("drs_handovers_resent_total", [], "Handovers answered again: the same taker asked once more, its first answer lost.", total: r.handoversResent)
        counter("drs_handovers_refused_stale_total", [], "Handed-over states refused: a copy of a later epoch is held here.", total: r.staleHandoversRefused)
        counter("drs_promises_unasked_total", [], "Promise entries no takeover here asked their sender about (late or forged): ignored.", total: r.unaskedPromiseEntries)
        counter("drs_refused_for_good_total", [], "Sessions whose changes a backup kept refusing: no longer resent to it.", total: r.refusedForGood)
        counter("drs_digest_rounds_total", [], "Anti-entropy digests sent (per backup and lane).", total: r.digestRounds)
        counter("drs_digest_mismatches_total", [], "Anti-entropy buckets a backup reported as differing.", total: r.digestMismatches)
        counter("drs_released_total", [], "Backup copies dropped because their owner no longer lists this node.", total: r.released)
        counter("drs_resyncs_served_total", [], "Resync requests answered as owner.", total: r.resyncsServed)
        counter("drs_resyncs_requested_total", [], "Resync requests sent as backup.", total: r.resyncsRequested)
        counter("drs_applied_total", [("kind", "delta")], "Replicated changes applied to backup copies.", total: r.applied)
        counter("drs_applied_total", [("kind", "full")], "Replicated changes applied to backup copies.", total: r.appliedFull)
        counter("drs_stale_ignored_total", [], "Replicated messages ignored as duplicate or older.", total: r.staleIgnored)
        counter("drs_fenced_rejected_total", [], "Replicated messages refused for an older epoch.", total: r.fencedRejected)
        counter("drs_expired_total", [], "Sessions this owner expired.", total: r.expired)
        counter("drs_backups_evicted_total", [], "Backup copies evicted without word from the owner.", total: r.backupsEvicted)
        counter("drs_sync_timeouts_total", [], "Replication waits that timed out.", total: r.syncTimeouts)
        counter("drs_sync_degraded_total", [], "Synchronous writes degraded to local durability.", total: r.syncDegraded)
        counter("drs_frames_sent_total", [("transport", "tcp")], "Replication frames sent.", total: c.streamFramesSent)
        counter("drs_frames_sent_total", [("transport", "udp")], "Replication frames sent.", total: c.datagramsSent)
        counter("drs_frames_received_total", [], "Replication frames accepted.", total: c.framesReceived)
        counter("drs_socket_rebinds_total", [], "UDP sockets bound again after a send error closed them.", total: c.socketRebinds)
        counter("drs_session_events_dropped_total", [], "Session events a slow subscriber's buffer dropped.", total: node.droppedSessionEvents)
        let f = node.faultCounts
        for (kind, n) in [("dropped", f.dropped), ("delayed", f.delayed), ("duplicated", f.duplicated), ("reordered", f.reordered)] {
            counter("drs_faults_injected_total", [("kind", kind)], "Faults injected into outbound replication traffic (drs node --faults-file).", total: n)
        }
        for reason in FrameRejection.allCases {
            counter("drs_frames_rejected_total", [("reason", reason.rawValue)], "Replication frames dropped, by reason.", total: c.rejected[reason] ?? 0)
        }
        for (peer, depth) in c.queueDepth {
            gauge("drs_queue_depth", [("peer", peer)], "Messages queued and unreceipted, by peer.", Double(depth))
        }
        var states: [String: Int] = [:]
        for m in node.members() { states[m.state, default: 0] += 1 }
        for state in ["alive", "suspect", "dead", "left"] {
            gauge("drs_members", [("state", state)], "Members by state.", Double(states[state] ?? 0))
        }
        for (peer, samples) in node.takeLatencySamples() {
            let timer = factory.map { Timer(label: Self.replicationLag, dimensions: [("peer", peer)], factory: $0) }
                ?? Timer(label: Self.replicationLag, dimensions: [("peer", peer)])
            for s in samples { timer.recordNanoseconds(s.nanosecondsClamped) }
        }
    }
}
