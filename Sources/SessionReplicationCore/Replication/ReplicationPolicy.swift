/// How many backups each session gets.
public enum ReplicaCount: Hashable, Sendable, CustomStringConvertible {
    /// Exactly this many backups (0 means no replication), or fewer while fewer eligible
    /// members are live.
    case count(Int)
    /// Every live eligible member other than the owner.
    case all

    /// The number of backups to choose among `eligible` candidates.
    public func resolve(eligible: Int) -> Int {
        switch self {
        case .count(let n): return min(n, eligible)
        case .all: return eligible
        }
    }

    public var description: String {
        switch self {
        case .count(let n): return String(n)
        case .all: return "all"
        }
    }
}

/// What a node does in the cluster. Default `both`.
public enum NodeRole: String, Hashable, Sendable, CaseIterable {
    /// Owns sessions and stores backups.
    case both
    /// Owns sessions, stores no backups.
    case client
    /// Stores backups, never owns sessions.
    case server

    /// Whether this role accepts backup copies.
    public var storesBackups: Bool { self != .client }
    /// Whether this role creates and owns sessions.
    public var owns: Bool { self != .server }
}

/// When a committed change is acknowledged relative to its replication. Default `acknowledged`.
public enum ReplicationMode: String, Hashable, Sendable, CaseIterable {
    /// DRS: send, resend up to `retryCount` times when no receipt arrives within
    /// `retryInterval`, then drop, count and mark the session for repair.
    case bestEffort = "best-effort"
    /// The caller does not wait; unreceipted deltas are resent until receipted.
    case acknowledged
    /// The write answers only after `minSyncReplicas` backups applied it.
    case synchronous
}

/// The transport for deltas. Default `tcp`. `udp` is honoured only in best-effort mode;
/// acknowledged and synchronous carry deltas over TCP whatever this says.
public enum TransportKind: String, Hashable, Sendable, CaseIterable {
    /// One TCP connection per peer; frames up to 16 MiB.
    case tcp
    /// Datagrams up to `udpMaxPayload`, paced and windowed; larger frames go over TCP.
    case udp
}

/// When changes are sent to backups. Default `endOfService`.
public enum WriteFrequency: Hashable, Sendable, CustomStringConvertible {
    /// At the end of every change scope (every request).
    case endOfService
    /// Only when `sync` is called for the session.
    case manual
    /// Every `writeInterval`, coalescing all changes since the last send.
    case timeBased

    /// The configuration spelling: `end-of-service`, `manual`, `time-based`.
    public var description: String {
        switch self {
        case .endOfService: return "end-of-service"
        case .manual: return "manual"
        case .timeBased: return "time-based"
        }
    }
}

/// What a replication message carries. Default `updatedAttributes`.
public enum WriteContents: String, Hashable, Sendable, CaseIterable {
    /// Only the attributes set or removed since the last replicated state.
    case updatedAttributes = "updated-attributes"
    /// The whole session every time.
    case allAttributes = "all-attributes"
}

/// What a synchronous write does when `syncTimeout` passes. Default `fail`.
public enum SyncTimeoutAction: String, Hashable, Sendable, CaseIterable {
    /// The write answers `sync-timeout`; the change stays applied, durability unknown.
    case fail
    /// The write succeeds with local durability.
    case degrade
}

/// Whether ownership follows requests. Default `sticky`.
public enum Affinity: String, Hashable, Sendable, CaseIterable {
    /// Ownership follows requests (takeover on a request elsewhere).
    case sticky
    /// A live owner keeps its sessions; other nodes forward.
    case none
}

/// Every replication knob of a node (docs/design.md (Replication)), with its documented default.
public struct ReplicationPolicy: Hashable, Sendable {
    /// Backups per session. Default 1.
    public var replicas: ReplicaCount = .count(1)
    /// Default `both`.
    public var role: NodeRole = .both
    /// Default `acknowledged`.
    public var mode: ReplicationMode = .acknowledged
    /// Backups that must apply a synchronous write; `nil` means `replicas`.
    public var minSyncReplicas: Int? = nil
    /// Default `tcp`.
    public var transport: TransportKind = .tcp
    /// Default `endOfService`.
    public var writeFrequency: WriteFrequency = .endOfService
    /// Period of time-based writes. Default 10 s.
    public var writeInterval: Duration = .seconds(10)
    /// Default `updatedAttributes`.
    public var writeContents: WriteContents = .updatedAttributes
    /// Best-effort: a message still unreceipted `retryInterval x (retryCount + 1)` after
    /// its first transmission is dropped; the oldest unreceipted message is resent every
    /// `retryInterval` meanwhile (so `retryCount` times). Default 3.
    public var retryCount: Int = 3
    /// Time without a receipt after which a send counts as failed. Default 200 ms.
    public var retryInterval: Duration = .milliseconds(200)
    /// How long a synchronous write (or a full queue) waits. Default 500 ms.
    public var syncTimeout: Duration = .milliseconds(500)
    /// Default `fail`.
    public var onSyncTimeout: SyncTimeoutAction = .fail
    /// Period of repair: sessions whose replication was dropped are re-sent whole.
    /// Default 30 s.
    public var repairInterval: Duration = .seconds(30)
    /// Whether a request on a node that does not own the session takes it over
    /// (`sticky`) or is referred to the owner, which keeps it (`none`: the HTTP API
    /// forwards it there, `421 misdirected` naming the owner when forwarding fails).
    /// Default `sticky`.
    public var affinity: Affinity = .sticky
    /// A node that handed a session away less than this long ago refers requests for it
    /// to the new owner (the HTTP API forwards them; `421 misdirected` naming it when
    /// forwarding fails) instead of taking it back. Default 5 s.
    public var takeoverCooldown: Duration = .seconds(5)
    /// How long a node asking for a session (takeover on request) keeps asking before it
    /// answers `503 session-unavailable`. Default 1 s.
    public var handoverTimeout: Duration = .seconds(1)
    /// On SIGTERM a node hands each owned session to the first live member of its
    /// replica set, answering `503` meanwhile, for at most this long; what is left is
    /// taken over by failover once the node has left. Default 10 s.
    public var drainTimeout: Duration = .seconds(10)
    /// Bytes of data messages queued per peer (shared by the node's shards) before the
    /// overflow policy applies. Invalidations, last-access updates, resync and repair
    /// messages are queued regardless. Default 64 MiB.
    public var maxQueueBytes: Int = 64 << 20
    /// Largest UDP payload; larger frames go over TCP. Default 1,400 bytes.
    public var udpMaxPayload: Int = 1400
    /// Unreceipted datagrams allowed in flight per peer (UDP window). Default 1,024.
    public var udpWindow: Int = 1024
    /// Datagrams per second per peer (token-bucket pacing). Default 100,000.
    public var udpRate: Int = 100_000
    /// Out-of-order frames a receiver buffers before skipping a gap. Default 64.
    public var reorderFrames: Int = 64
    /// How long a receiver waits for a missing frame before skipping it. Default 20 ms.
    public var reorderDelay: Duration = .milliseconds(20)

    /// Creates the default policy.
    public init() {}

    /// How many backups must apply a synchronous write when the replica set has `backups`
    /// members: an explicit `minSyncReplicas` always (with fewer backups the write is
    /// refused or degraded: `replicated` never promises fewer copies than configured);
    /// without one, every backup of the replica set (at most `replicas`).
    public func syncReplicasNeeded(backups: Int) -> Int {
        if let minSyncReplicas { return minSyncReplicas }
        switch replicas {
        case .count(let n): return min(n, backups)
        case .all: return backups
        }
    }

    /// The transport deltas really travel on: UDP only in best-effort mode.
    public var effectiveTransport: TransportKind { mode == .bestEffort ? transport : .tcp }
}

/// Session lifetime and size limits (docs/design.md (Sessions)), with their defaults.
public struct SessionPolicy: Hashable, Sendable {
    /// Idle time after which the owner expires a session. Default 30 minutes.
    public var maxInactiveInterval: Duration = .seconds(30 * 60)
    /// Extra time a backup keeps a copy it has not heard about. Default 60 s.
    public var backupGrace: Duration = .seconds(60)
    /// Attribute name patterns (`*` matches any run of characters) that stay local.
    /// Default none.
    public var transientAttributes: [String] = []
    /// Largest attribute value. Default 1 MiB.
    public var maxAttributeBytes: Int = 1 << 20
    /// Largest session (names plus values). Default 4 MiB.
    public var maxSessionBytes: Int = 4 << 20
    /// Sessions a node owns and holds at most. Default 1,000,000.
    public var maxSessions: Int = 1_000_000
    /// Attributes one session holds at most; a create or commit beyond it fails with
    /// `payload-too-large` and changes nothing. Default 4,096 (one message carries up to
    /// `WireLimits.maxAttributes`, 65,536).
    public var maxAttributes: Int = 4_096
    /// The node's byte budget: names plus values of every session it owns and every
    /// backup copy it holds (`sessions.maxBytes`). A create or a commit that grows a
    /// session beyond it fails with `capacity` and changes nothing; copies received from
    /// owners are always stored. Each of the node's lanes (shards) keeps to an equal
    /// share. `nil` means no budget beyond `maxSessions`. Default 1 GiB.
    public var maxBytes: Int? = 1 << 30
    /// How late last-access times may reach backups; `nil` means
    /// `min(10 s, maxInactiveInterval / 10)`.
    public var accessReplicationInterval: Duration? = nil

    /// Creates the default policy.
    public init() {}

    /// The first of `maxAttributes`, `maxAttributeBytes` and `maxSessionBytes` that lets
    /// a session grow larger than one message of one frame carries under `limits` (a
    /// receiver would refuse it): the field's name (`maxAttributes`, ...) and why; `nil`
    /// when every session these limits allow fits.
    package func wireProblem(limits: WireLimits = WireLimits()) -> (field: String, message: String)? {
        if maxAttributes > limits.maxAttributes {
            return ("maxAttributes", "expected at most \(limits.maxAttributes) (what one replication message carries), found \(maxAttributes)")
        }
        if maxAttributeBytes > limits.maxValueBytes {
            return ("maxAttributeBytes", "expected at most \(limits.maxValueBytes) bytes (what one replication message carries), found \(maxAttributeBytes)")
        }
        let encoded = limits.encodedStateBytes(attributes: maxAttributes, bytes: maxSessionBytes)
        if encoded > limits.maxFrameBytes {
            let room = limits.maxFrameBytes - limits.encodedStateBytes(attributes: maxAttributes, bytes: 0)
            return ("maxSessionBytes", "expected at most \(room) bytes with maxAttributes \(maxAttributes) (a whole session must fit one \(limits.maxFrameBytes)-byte frame), found \(maxSessionBytes)")
        }
        return nil
    }

    /// The effective access replication interval.
    public var effectiveAccessInterval: Duration {
        accessReplicationInterval ?? min(.seconds(10), maxInactiveInterval / 10)
    }

    /// How long tombstones live: `maxInactiveInterval + backupGrace`, at least
    /// `2 x repairInterval`.
    public func tombstoneLifetime(repairInterval: Duration) -> Duration {
        max(maxInactiveInterval + backupGrace, repairInterval * 2)
    }

    /// Whether `name` matches one of the transient patterns.
    public func isTransient(_ name: String) -> Bool {
        transientAttributes.contains { Self.glob($0, matches: name) }
    }

    static func glob(_ pattern: String, matches name: String) -> Bool {
        let p = Array(pattern.utf8), n = Array(name.utf8)
        var pi = 0, ni = 0, star = -1, mark = 0
        while ni < n.count {
            if pi < p.count, p[pi] == UInt8(ascii: "*") {
                star = pi; mark = ni; pi += 1
            } else if pi < p.count, p[pi] == n[ni] {
                pi += 1; ni += 1
            } else if star >= 0 {
                pi = star + 1; mark += 1; ni = mark
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }
}
