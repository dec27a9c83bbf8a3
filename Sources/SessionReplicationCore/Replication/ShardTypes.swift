/// Static settings of one shard.
package struct ShardSettings: Sendable {
    /// This node's configured name.
    package var selfName: String
    /// This node's per-process id.
    package var selfID: NodeID
    /// This shard's stream lane.
    package var lane: UInt16
    /// Replication knobs.
    package var policy: ReplicationPolicy
    /// Session limits.
    package var sessions: SessionPolicy
    /// Other members that may hold backups (static membership: the configured nodes
    /// whose role stores backups).
    package var backupCandidates: [String]
    /// Every other member (whatever its role): a takeover asks each live one for its
    /// copy, since any may own or hold the session now. Default: `backupCandidates`.
    package var members: [String]
    /// Bytes reserved for frame header and seal in a datagram. Default
    /// `FrameHeader.maxDatagramOverhead`.
    package var datagramOverhead: Int = FrameHeader.maxDatagramOverhead
    /// Largest batch on TCP. Default 256 KiB.
    package var maxStreamBatchBytes: Int = 256 << 10
    /// Lanes (shards) sharing the UDP window and rate towards one peer. Default 1.
    package var lanes: Int = 1

    /// Creates settings.
    package init(selfName: String, selfID: NodeID, lane: UInt16 = 0, policy: ReplicationPolicy, sessions: SessionPolicy, backupCandidates: [String]) {
        self.selfName = selfName
        self.selfID = selfID
        self.lane = lane
        self.policy = policy
        self.sessions = sessions
        self.backupCandidates = backupCandidates
        self.members = backupCandidates
    }
}

/// Counters a shard keeps; the node sums them across shards for metrics and tests.
public struct ReplicationCounters: Hashable, Sendable {
    /// Sessions created on this node.
    public var sessionsCreated = 0
    /// Scopes that changed a session.
    public var commits = 0
    /// Deltas queued, one per backup.
    public var deltasSent = 0
    /// Whole sessions queued, one per backup (creation, all-attributes, resync, repair).
    public var fullStatesSent = 0
    /// Invalidations queued, one per backup.
    public var invalidationsSent = 0
    /// Last-access updates queued, one per backup.
    public var touchesSent = 0
    /// Messages resent after `retryInterval` without a receipt.
    public var retries = 0
    /// Best-effort messages dropped after `retryCount` resends.
    public var drops = 0
    /// Best-effort messages dropped because a peer's queue was full.
    public var overflowDrops = 0
    /// Sessions re-sent whole by repair after a drop.
    public var repairsSent = 0
    /// Resync requests answered (as owner).
    public var resyncsServed = 0
    /// Resync requests sent (as backup).
    public var resyncsRequested = 0
    /// Deltas, invalidations applied to backup copies.
    public var applied = 0
    /// Whole sessions applied to backup copies.
    public var appliedFull = 0
    /// Messages ignored as duplicates or older than the copy held.
    public var staleIgnored = 0
    /// Messages refused for carrying an older epoch.
    public var fencedRejected = 0
    /// Sessions this owner expired.
    public var expired = 0
    /// Backup copies evicted after `maxInactiveInterval + backupGrace` without word.
    public var backupsEvicted = 0
    /// Waits (synchronous writes, `sync`, deletes) that timed out.
    public var syncTimeouts = 0
    /// Synchronous writes that degraded to local durability.
    public var syncDegraded = 0
    /// Backup copies this node promoted to owned sessions after their owner departed.
    public var promotions = 0
    /// Owned sessions given a new backup after one departed.
    public var rereplications = 0
    /// Receipts of messages a backup refused as fenced (they confirmed no wait).
    public var refusedReceipts = 0
    /// Anti-entropy digest requests sent (one per backup per lane per round).
    public var digestRounds = 0
    /// Buckets a backup reported as differing from this owner's digests.
    public var digestMismatches = 0
    /// Backup copies dropped because their owner said this node should not hold them.
    public var released = 0
    /// Sessions this node took over on request or was handed by a draining owner.
    public var takeovers = 0
    /// Sessions this node handed over to a node that asked for them (or while draining).
    public var handoversGiven = 0
    /// Owned sessions sent whole to a member that (re)joined and now backs them.
    public var stateTransfers = 0
    /// Hand-overs answered again because the taker asked once more before any word of
    /// its own reached this node (its first answer was lost).
    public var handoversResent = 0
    /// Handed-over states refused because this node holds a copy of a later epoch.
    public var staleHandoversRefused = 0
    /// Sessions whose messages a backup refused `ReplicaShard.maxRefusals` times, given
    /// up on (not resent to it any more; under-replicated).
    public var refusedForGood = 0
    /// Promotions, adoptions and commits refused because an epoch counter or a version
    /// had reached its top (`Epoch.maxCounter`, `Stamp.maxVersion`): never wrapped.
    public var overflowRefused = 0
    /// Promise entries no takeover on this node asked their sender about (answers that
    /// came after the takeover ended, or forged ones): ignored, never stored.
    public var unaskedPromiseEntries = 0
    /// Best-effort writes that waited because a backup's queue held more than
    /// `ReplicaShard.bestEffortBacklog` (each write counted once, however long it waited).
    public var backlogWaits = 0
    /// All zero.
    public init() {}

    /// Adds `other` field by field.
    public mutating func add(_ o: ReplicationCounters) {
        sessionsCreated += o.sessionsCreated; commits += o.commits; deltasSent += o.deltasSent
        fullStatesSent += o.fullStatesSent; invalidationsSent += o.invalidationsSent; touchesSent += o.touchesSent
        retries += o.retries; drops += o.drops; overflowDrops += o.overflowDrops; repairsSent += o.repairsSent
        resyncsServed += o.resyncsServed; resyncsRequested += o.resyncsRequested; applied += o.applied
        appliedFull += o.appliedFull; staleIgnored += o.staleIgnored; fencedRejected += o.fencedRejected
        expired += o.expired; backupsEvicted += o.backupsEvicted; syncTimeouts += o.syncTimeouts; syncDegraded += o.syncDegraded
        promotions += o.promotions; rereplications += o.rereplications; takeovers += o.takeovers; handoversGiven += o.handoversGiven; digestRounds += o.digestRounds; refusedReceipts += o.refusedReceipts; digestMismatches += o.digestMismatches; released += o.released; stateTransfers += o.stateTransfers
        handoversResent += o.handoversResent; staleHandoversRefused += o.staleHandoversRefused; refusedForGood += o.refusedForGood; overflowRefused += o.overflowRefused
        backlogWaits += o.backlogWaits; unaskedPromiseEntries += o.unaskedPromiseEntries
    }
}

/// Identifies a pending wait for replication (a synchronous write, a `sync`, a delete).
package struct WaiterID: Hashable, Sendable {
    /// The raw value, unique within a shard.
    package var rawValue: UInt64
}

/// How a wait ended.
package enum WaitResult: Hashable, Sendable {
    /// Enough backups applied (or receipted) the change; the names of those that did.
    case replicated([String])
    /// The timeout passed first; the names of those that had acknowledged.
    case timedOut([String])
}

/// What a commit produced.
package struct CommitOutcome: Sendable {
    /// The session after the commit (`nil` after an invalidation).
    package var state: SessionState?
    /// A wait to complete before answering (synchronous writes, invalidations).
    package var waiter: WaiterID?
    /// Durability when no wait is needed: `true` when nothing needs to be waited for
    /// because the write is local only (no backups, degrade).
    package var localOnly: Bool
}

/// How a backup treated one incoming data message.
package enum ApplyOutcome: Hashable, Sendable {
    /// Applied.
    case applied
    /// Already held, or older than what is held (or beaten by a tombstone): ignored.
    case ignored
    /// Could not be applied (gap, unknown session): ask the owner for the full state.
    case needsResync
    /// Refused: an older epoch than this node's own (fencing).
    case fenced
}

/// A copy this node holds, as seen by inspection (never touches the session).
public enum HeldCopy: Hashable, Sendable {
    case owner(SessionState)
    case backup(SessionState)
    case tombstone(Stamp)
}
