import SessionReplicationCore

/// One member of the cluster as the configuration names it. Each node binds every socket,
/// outgoing ones too, to its own `address`.
public struct NodeEndpoint: Hashable, Sendable {
    /// `[a-z0-9][a-z0-9-]{0,31}`; also the session route.
    public var name: String
    /// IPv4 or IPv6 literal the node binds to. Default `127.0.0.1`.
    public var address: String
    /// Port of the HTTP API. Default 8080; 0 picks a free port (tests).
    public var httpPort: Int
    /// TCP and UDP port of replication traffic. Default 7100; 0 picks a free port (tests).
    public var replicationPort: Int
    /// UDP port of membership traffic. Default 7200.
    public var membershipPort: Int
    /// This node's role, overriding `replication.role` for it; `nil` (the default) uses
    /// the cluster-wide role. A `client` node stores no backups, a `server` node owns none.
    public var role: NodeRole?

    /// Creates an endpoint.
    public init(name: String, address: String = "127.0.0.1", httpPort: Int = 8080, replicationPort: Int = 7100, membershipPort: Int = 7200, role: NodeRole? = nil) {
        self.role = role
        self.name = name
        self.address = address
        self.httpPort = httpPort
        self.replicationPort = replicationPort
        self.membershipPort = membershipPort
    }
}

/// Membership settings (`membership:` in the config file).
public struct MembershipSettings: Hashable, Sendable {
    /// Whether a takeover needs a majority of voters.
    public enum Promotion: String, Hashable, Sendable, CaseIterable {
        /// Any live backup may promote itself.
        case any
        /// Only the side that sees a majority of the configured voters promotes.
        case majority
    }
    /// Period of failure-detector probes; the direct-ack timeout is 40 % of it and the
    /// shortest suspicion 4 periods. Default 100 ms.
    public var probeInterval: Duration = .milliseconds(100)
    /// Lease length `L`. Default 500 ms.
    public var lease: Duration = .milliseconds(500)
    /// Default `any`.
    public var promotion: Promotion = .any
    /// How long dead and left members stay listed. Default 60 s.
    public var tombstoneTTL: Duration = .seconds(60)

    /// Creates the defaults.
    public init() {}

    /// The failure detector's tunables derived from these settings.
    public var tuning: MembershipTuning {
        var t = MembershipTuning()
        t.probeInterval = probeInterval
        t.probeTimeout = probeInterval * 2 / 5
        t.joinRetryInterval = max(.milliseconds(100), probeInterval * 5)
        t.tombstoneTTL = tombstoneTTL
        return t
    }
}

/// HTTP settings (`http:` in the config file).
public struct HTTPSettings: Hashable, Sendable {
    /// Name of the session cookie. Default `DRSSESSIONID`.
    public var cookieName: String = "DRSSESSIONID"
    /// Adds `; Secure` to cookies. Default false.
    public var secureCookie: Bool = false
    /// Bearer token required when the API binds beyond loopback. Default none.
    public var token: String? = nil

    /// Creates the defaults.
    public init() {}
}

/// The cluster's keys for sealing frames (AES-256-GCM).
public struct ClusterKeys: Hashable, Sendable {
    /// The key new frames are sealed with: 32 bytes, or `nil` with `insecure`.
    public var current: [UInt8]?
    /// Older keys still accepted when opening frames (rotation). Default none.
    public var keyring: [[UInt8]] = []
    /// Runs without sealing; must be said explicitly (`insecure: true`).
    public var insecure: Bool = false

    /// Creates a key set. `current` must be 32 bytes unless `insecure` is true.
    public init(current: [UInt8]?, keyring: [[UInt8]] = [], insecure: Bool = false) {
        self.current = current
        self.keyring = keyring
        self.insecure = insecure
    }

    /// No key, frames unsealed (tests and local experiments only).
    public static let insecure = ClusterKeys(current: nil, insecure: true)
}

/// A whole cluster configuration: what a `cluster-configs/*.yaml` file describes.
/// Every node of the cluster loads the same configuration and picks itself by name.
public struct ClusterConfiguration: Hashable, Sendable {
    /// The cluster id (`cluster.id`, required); frames from another cluster are dropped.
    public var clusterID: String
    /// Sealing keys (`cluster.key`, `cluster.keyring`, `cluster.insecure`).
    public var keys: ClusterKeys
    /// The members (`nodes`, required, at least one); they are also the voters.
    public var nodes: [NodeEndpoint]
    /// `replication:` knobs.
    public var replication: ReplicationPolicy
    /// `membership:` settings.
    public var membership: MembershipSettings
    /// `sessions:` limits.
    public var sessions: SessionPolicy
    /// `http:` settings.
    public var http: HTTPSettings

    /// Creates a configuration; call `validate()` before use.
    public init(
        clusterID: String,
        keys: ClusterKeys,
        nodes: [NodeEndpoint],
        replication: ReplicationPolicy = .init(),
        membership: MembershipSettings = .init(),
        sessions: SessionPolicy = .init(),
        http: HTTPSettings = .init()
    ) {
        self.clusterID = clusterID
        self.keys = keys
        self.nodes = nodes
        self.replication = replication
        self.membership = membership
        self.sessions = sessions
        self.http = http
    }

    /// The role of the node named `name`: its own `role`, else `replication.role`.
    public func role(of name: String) -> NodeRole { node(named: name)?.role ?? replication.role }

    /// The endpoint named `name`, or `nil`.
    public func node(named name: String) -> NodeEndpoint? { nodes.first { $0.name == name } }
}
