import SessionReplicationCore

/// How durable a committed write is when the call returns.
public enum Durability: Hashable, Sendable {
    /// Applied on this node only (no backups, a time-based or manual write not yet sent,
    /// best-effort, or a synchronous write degraded after its timeout).
    case local
    /// Applied (synchronous) or receipted (acknowledged `sync`) on the named backups;
    /// for a best-effort `sync`, the backups the change was sent to.
    case replicated([String])
}

/// The outcome of a write.
public struct WriteResult: Hashable, Sendable {
    /// The session after the write; `nil` when the scope invalidated it.
    public var state: SessionState?
    /// Its durability.
    public var durability: Durability
}

/// Counters of a node: replication (summed over shards) and transport.
public struct NodeCounters: Hashable, Sendable {
    /// Replication counters summed over shards.
    public var replication = ReplicationCounters()
    /// Frames sent over TCP.
    public var streamFramesSent = 0
    /// Datagrams sent.
    public var datagramsSent = 0
    /// UDP sockets (replication or membership) bound again after a send error closed them.
    public var socketRebinds = 0
    /// Frames received and accepted.
    public var framesReceived = 0
    /// Frames dropped, by reason.
    public var rejected: [FrameRejection: Int] = [:]
    /// Data messages ignored as duplicates by the stream receivers.
    public var duplicateMessages = 0
    /// Stream sequences skipped as gaps.
    public var skippedSequences = 0
    /// Sessions owned.
    public var primaries = 0
    /// Backup copies held.
    public var backups = 0
    /// Messages queued and not yet receipted, by peer.
    public var queueDepth: [String: Int] = [:]

    /// Total frames dropped.
    public var rejectedTotal: Int { rejected.values.reduce(0, +) }
}
