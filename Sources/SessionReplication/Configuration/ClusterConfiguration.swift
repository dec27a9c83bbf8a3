import SessionReplicationCore

/// One member of the cluster as the configuration names it. Each node binds every socket,
/// outgoing ones too, to its own `address`.
public struct NodeEndpoint: Hashable, Sendable {
    /// `[a-z0-9][a-z0-9-]{0,31}`; also the session route.
    public var name: String
    /// Where peers reach the node: an IPv4 or IPv6 literal or a DNS host name (resolved
    /// at start and again while the peer is unreachable, so a node back under its name
    /// with a new IP is found). Default `127.0.0.1`.
    public var address: String
    /// The IPv4 or IPv6 literal the node's sockets listen on (`0.0.0.0` and `::` listen on
    /// every address, as in a container). Default `nil`: `address`, resolved if a name.
    public var bind: String?
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
    public init(name: String, address: String = "127.0.0.1", bind: String? = nil, httpPort: Int = 8080, replicationPort: Int = 7100,
                membershipPort: Int = 7200, role: NodeRole? = nil) {
        self.role = role
        self.bind = bind
        self.name = name
        self.address = address
        self.httpPort = httpPort
        self.replicationPort = replicationPort
        self.membershipPort = membershipPort
    }

    /// What the node's sockets listen on: `bind`, else `address` (a name is resolved by
    /// the socket layer when it binds).
    public var listenAddress: String { bind ?? address }

    /// `address:port` as a URL authority: an IPv6 literal in brackets (`[::1]:8080`).
    public func authority(port: Int) -> String { address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)" }
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
    /// A connection that carries no request for this long, or whose request stops
    /// arriving for this long, is closed (`http.idleTimeout`). Default 30 s.
    public var idleTimeout: Duration = .seconds(30)
    /// Time a client has to send one whole request (head and body) once it began: a
    /// request still arriving after it is cut off, however steadily it trickles (slowloris,
    /// endless chunked bodies). Not a configuration key; derived as
    /// `max(60 s, 2 x idleTimeout)` unless set here.
    public var requestTimeout: Duration? = nil
    /// Connections the HTTP API holds open at once (`http.maxConnections`); beyond it new
    /// connections wait in the listen backlog until one closes. Default 1,024.
    public var maxConnections: Int = 1024
    /// TLS for the HTTP API (`http.tls.certificate`, `http.tls.key`). Default none:
    /// plain HTTP.
    public var tls: HTTPTLSFiles? = nil

    /// Creates the defaults.
    public init() {}

    /// `requestTimeout`, or `max(60 s, 2 x idleTimeout)` when not set.
    public var effectiveRequestTimeout: Duration { requestTimeout ?? max(.seconds(60), idleTimeout * 2) }
}

/// PEM files that make the HTTP API speak TLS (`http.tls:`).
public struct HTTPTLSFiles: Hashable, Sendable {
    /// Path of the certificate chain, PEM (`http.tls.certificate`), leaf first.
    public var certificate: String
    /// Path of the private key, PEM (`http.tls.key`).
    public var key: String
    /// Names both files; relative paths are taken from the current directory (the loader
    /// resolves them against the configuration file's folder).
    public init(certificate: String, key: String) {
        self.certificate = certificate
        self.key = key
    }
}

/// The cluster's keys for sealing frames (AES-256-GCM).
public struct ClusterKeys: Hashable, Sendable {
    /// The key new frames are sealed with: 32 bytes, or `nil` with `insecure`.
    public var current: [UInt8]?
    /// Older keys still accepted when opening frames (rotation). Default none.
    public var keyring: [[UInt8]] = []
    /// Runs without sealing; must be said explicitly (`insecure: true`). Refused at load
    /// when any node binds beyond loopback.
    public var insecure: Bool = false
    /// Where `current` was read from (`cluster.keyFile`), when it came from a file; the
    /// loader resolves a relative path against the configuration file's folder. Default
    /// `nil`.
    public var keyFile: String? = nil

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
