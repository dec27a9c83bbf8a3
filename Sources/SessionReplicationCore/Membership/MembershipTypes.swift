/// What a member's state is in this node's view (SWIM).
public enum MemberStatus: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// Answering probes.
    case alive = 0
    /// A probe failed; declared dead unless it refutes within the suspicion timeout.
    case suspect = 1
    /// Declared dead. Final for this node id: the process must rejoin under a new id.
    case dead = 2
    /// Left gracefully. Final for this node id.
    case left = 3

    /// `alive`, `suspect`, `dead` or `left`, as in `GET /cluster/members`.
    public var description: String {
        switch self {
        case .alive: return "alive"
        case .suspect: return "suspect"
        case .dead: return "dead"
        case .left: return "left"
        }
    }

    /// Alive or suspect: still counted as a member for placement and leases.
    public var isLive: Bool { self == .alive || self == .suspect }
}

/// One member as this node sees it.
package struct Member: Hashable, Sendable {
    /// The configured name.
    package var name: String
    /// The id of the process currently known under that name (fresh per process start;
    /// a larger id is a later start).
    package var id: NodeID
    /// The member's incarnation: it raises it to refute suspicion.
    package var incarnation: UInt64
    /// Its state.
    package var status: MemberStatus
    /// When this node last saw the state change (local monotonic clock).
    package var since: MonotonicInstant

    /// Creates a member record.
    package init(name: String, id: NodeID, incarnation: UInt64, status: MemberStatus, since: MonotonicInstant) {
        self.name = name
        self.id = id
        self.incarnation = incarnation
        self.status = status
        self.since = since
    }
}

/// A gossiped statement about one member: piggybacked on probes and carried whole by
/// push-pull.
package struct MemberUpdate: Hashable, Sendable {
    /// What is stated.
    package var status: MemberStatus
    /// The member's name.
    package var name: String
    /// The member's process id.
    package var id: NodeID
    /// The incarnation the statement is about.
    package var incarnation: UInt64
    /// Who made the statement (suspicions and deaths); the member itself otherwise.
    package var from: String

    /// Creates an update.
    package init(status: MemberStatus, name: String, id: NodeID, incarnation: UInt64, from: String) {
        self.status = status
        self.name = name
        self.id = id
        self.incarnation = incarnation
        self.from = from
    }

    /// Bytes this update takes on the wire: status, name, node id (16), incarnation, from.
    package var encodedSize: Int { 1 + 1 + name.utf8.count + 16 + 8 + 1 + from.utf8.count }
}

/// A membership message. The sender's name and process id travel in the frame header.
package enum MembershipMessage: Hashable, Sendable {
    /// A probe of the process `target`; answered with `ack(sequence)`.
    case ping(sequence: UInt64, target: NodeID, updates: [MemberUpdate])
    /// The answer to a ping (or a relayed answer to a ping request).
    case ack(sequence: UInt64, updates: [MemberUpdate])
    /// Asks the receiver to probe `target` and relay the ack (SWIM's indirect probe).
    case pingRequest(sequence: UInt64, target: String, targetID: NodeID, updates: [MemberUpdate])
    /// Lifeguard: the relay did not hear from the target in time, but is itself alive.
    case nack(sequence: UInt64, updates: [MemberUpdate])
    /// Push-pull: the sender's whole member list; `reply` asks for the receiver's.
    case sync(members: [MemberUpdate], reply: Bool)
    /// Asks the receiver for a lease (`LeaseTable`).
    case leaseRequest(sequence: UInt64)
    /// Grants the lease asked for by request `sequence`.
    case leaseGrant(sequence: UInt64)

    /// The piggybacked updates (the list itself for `sync`).
    package var updates: [MemberUpdate] {
        switch self {
        case .ping(_, _, let u), .ack(_, let u), .pingRequest(_, _, _, let u), .nack(_, let u): return u
        case .sync(let m, _): return m
        case .leaseRequest, .leaseGrant: return []
        }
    }
}

/// What membership tells the node.
package enum MembershipEvent: Hashable, Sendable {
    /// A member (or a new process of a known name) is alive.
    case alive(name: String, id: NodeID)
    /// A member is suspected.
    case suspect(name: String, id: NodeID)
    /// A member process was declared dead (or replaced by a later start).
    case dead(name: String, id: NodeID)
    /// A member left gracefully.
    case left(name: String, id: NodeID)
    /// Another member declared this process dead: it must drop what it holds and rejoin
    /// under a new node id.
    case selfDeclaredDead
    /// A later process of this node's own name is known (this process started with a
    /// smaller id, its wall clock stepped back): it must take an id above `by` and join
    /// again, or every member keeps ignoring it.
    case selfSuperseded(by: NodeID)
}

/// A message for the node to send.
package struct MembershipOutgoing: Hashable, Sendable {
    /// The member name to send to.
    package var to: String
    /// The message.
    package var message: MembershipMessage
    /// Send on the reliable stream (TCP fallback ping, push-pull) instead of a datagram.
    package var reliable: Bool
    /// Creates an outgoing message.
    package init(to: String, message: MembershipMessage, reliable: Bool) {
        self.to = to
        self.message = message
        self.reliable = reliable
    }
}

/// Tunables of the failure detector, with defaults tuned for a LAN (and loopback):
/// detection in well under a second without false alarms on a loaded host.
public struct MembershipTuning: Hashable, Sendable {
    /// Period between probes (scaled by local health). Default 100 ms.
    public var probeInterval: Duration = .milliseconds(100)
    /// Wait for a direct ack before indirect probes (scaled by local health). Default 40 ms.
    public var probeTimeout: Duration = .milliseconds(40)
    /// Members asked to probe indirectly. Default 3.
    public var indirectChecks = 3
    /// Suspicion timeout in probe intervals, times `max(1, log10(n))`. Default 4.
    public var suspicionMultiplier = 4
    /// The longest suspicion (no confirmations), as a multiple of the shortest. Default 3
    /// (memberlist uses 6 with a 1 s probe; with 100 ms probes 3 keeps detection near 1 s).
    public var suspicionMaxMultiplier = 3
    /// Each update is piggybacked `retransmitMultiplier * ceil(log10(n + 1))` times. Default 4.
    public var retransmitMultiplier = 4
    /// Highest Lifeguard local health score. Default 8.
    public var maxLocalHealth = 8
    /// Bytes of updates piggybacked per message, under a datagram. Default 1,000.
    public var gossipBudget = 1_000
    /// Full member-list exchange with one random member. Default 10 s.
    public var pushPullInterval: Duration = .seconds(10)
    /// While no peer is known, push-pull to every seed this often. Default 500 ms.
    public var joinRetryInterval: Duration = .milliseconds(500)
    /// How long dead and left members stay listed. Default 60 s.
    public var tombstoneTTL: Duration = .seconds(60)
    /// Also ping over the reliable stream when the direct probe times out. Default true.
    public var tcpFallback = true
    /// When set, a suspicion becomes a death only while this node sees at least this many
    /// members alive, itself included (`promotion: majority` sets a majority of the
    /// configured members): a node cut off from the majority keeps its peers suspect
    /// instead of declaring them dead, so a healed partition does not make the majority's
    /// members rejoin and drop what they hold. Default nil (always).
    public var deathQuorum: Int? = nil

    /// The defaults.
    public init() {}
}

/// Counters of the membership protocol.
public struct MembershipCounters: Hashable, Sendable {
    /// Messages handed to the node to send (datagrams and stream messages).
    public var messagesSent = 0
    /// Messages received.
    public var messagesReceived = 0
    /// Probes started.
    public var probes = 0
    /// Probes that ended without any ack.
    public var probesFailed = 0
    /// Ping requests sent (indirect probes).
    public var indirectProbes = 0
    /// Times this node refuted a suspicion of itself.
    public var refutations = 0
    /// Members this node started suspecting from its own probes.
    public var suspicionsRaised = 0
    /// Members this node declared dead when a suspicion timed out.
    public var deathsDeclared = 0
    /// Updates piggybacked.
    public var updatesSent = 0
    /// All zero.
    public init() {}
}
