#if canImport(Glibc)
import Glibc
#endif
import SessionReplicationCore

/// Everything a simulated cluster did that the invariants look at, shared by every node
/// across crashes and restarts: the answers clients got (with global times), every state
/// seen, and the violations found.
package final class ClusterLog {
    /// A write the cluster acknowledged.
    package struct Ack: Sendable {
        /// The session, the attribute the write added and its value.
        package var session: SessionID, attribute: String, value: UInt64
        /// The stamp it was committed at.
        package var stamp: Stamp
        /// The backups that confirmed it (`nil`: local durability).
        package var replicatedTo: [String]?
        /// When the write began and was answered (global), and where.
        package var began: MonotonicInstant, at: MonotonicInstant
        package var node: String
    }
    /// A read the cluster answered.
    package struct Read: Sendable {
        /// The session and the attributes the state held.
        package var session: SessionID, attributes: Set<String>
        /// Its stamp.
        package var stamp: Stamp
        /// When the read began and was answered (global), and where.
        package var began: MonotonicInstant, at: MonotonicInstant
        package var node: String
    }
    /// Acknowledged writes in order.
    package internal(set) var acks: [Ack] = []
    /// Answered reads in order.
    package internal(set) var reads: [Read] = []
    /// Deletes acknowledged, by session: when the delete began and was answered.
    package internal(set) var deletes: [SessionID: (began: MonotonicInstant, at: MonotonicInstant)] = [:]
    /// Sessions a delete was asked for, whatever the answer (a `504` leaves the end applied
    /// on the owner: the session may be gone).
    package internal(set) var deleteAsked: Set<SessionID> = []
    /// Sessions created (acknowledged), by node.
    package internal(set) var created: [SessionID: String] = [:]
    /// Every state seen by `(session, stamp)`: a fingerprint of its attribute names.
    var states: [SessionID: [Stamp: NameSet]] = [:]

    /// A set of attribute names as a count and an order-free sum of their FNV-1a hashes:
    /// every write adds a name, so building a `Set` of them on each observation cost the
    /// simulator a share that grew with every write.
    struct NameSet: Equatable {
        var count = 0
        var sum: UInt64 = 0
        init(_ names: Dictionary<String, [UInt8]>.Keys) {
            for name in names {
                var h: UInt64 = 0xcbf2_9ce4_8422_2325
                for b in name.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
                sum &+= h
                count += 1
            }
        }
    }
    /// Violations found while running.
    package internal(set) var violations: [String] = []
    /// How requests ended, by kind and outcome (`write:ok`, `takeOver:session-unavailable`).
    package internal(set) var outcomes: [String: Int] = [:]
    /// Takeover searches that answered `session-not-found`: session, node, when.
    package internal(set) var notFound: [(session: SessionID, node: String, at: MonotonicInstant)] = []
    /// Rejoins, by node.
    package internal(set) var rejoins: [String: Int] = [:]
    /// Writes acknowledged `replicated` whose every holder crashed or rejoined (dropping
    /// its copies) before the write reached another: their loss is allowed.
    package internal(set) var lostWithHolders: Set<String> = []
    /// Sessions every copy of which was on nodes that lost them (more holders crashed
    /// than the replica count covers): "not found" and "no owner" are allowed for them.
    package internal(set) var lostSessions: Set<SessionID> = []
    /// The nodes holding any copy of a session, owner or backup (set by the scenario).
    package var sessionHolders: (SessionID) -> [String] = { _ in [] }
    /// Replicated acknowledgements with fewer confirmed holders than `minSyncReplicas`
    /// at the moment they were answered.
    package var minSyncReplicas = 1
    /// Per-session idle limits the scenario gives at creation (short ones expire).
    package var idleLimits: [SessionID: Duration] = [:]
    /// Reads the global clock (set by the scenario).
    package var globalNow: () -> MonotonicInstant = { .zero }
    /// Where every node's copies are, for the checks made at an acknowledgement (set by
    /// the scenario): node name to that node's copy of a session, `nil` when crashed.
    package var copies: (String, SessionID) -> HeldCopy? = { _, _ in nil }
    var clock: MonotonicInstant = .zero
    /// The high half of the scenario's session ids.
    package var seedHigh: UInt64 = 0
    /// The nodes whose copy of a session holds an attribute (set by the scenario).
    package var holders: (SessionID, String) -> [String] = { _, _ in [] }
    /// Prints a trace of every log line and decision when set (`DRS_SIM_TRACE=1`).
    package var tracing = getenv("DRS_SIM_TRACE") != nil

    /// Creates an empty log.
    package init() {}

    /// Records a violation.
    package func violation(_ text: String) {
        if violations.count < 50 { violations.append("at \(globalNow()): \(text)") }
    }

    func idleLimit(_ id: SessionID) -> Duration? { idleLimits[id] }

    /// A state observed on `node`: no two distinct states may share a stamp.
    func saw(_ state: SessionState, at node: String) {
        let names = NameSet(state.attributes.keys)
        if let old = states[state.id]?[state.stamp], old != names {
            violation("\(node): \(state.id) at \(state.stamp.etag) holds \(state.attributes.keys.sorted()) (\(names.count)), elsewhere another set of \(old.count)")
        }
        states[state.id, default: [:]][state.stamp] = names
    }

    func scopeSaw(_ state: SessionState, node: String) { saw(state, at: node) }

    /// Sessions that expired, by session: when (global) and where.
    package internal(set) var expiries: [SessionID: (at: MonotonicInstant, node: String)] = [:]
    /// The last time a client's request on each session was answered (an access), and by
    /// which node.
    package internal(set) var lastAccess: [SessionID: MonotonicInstant] = [:]
    var lastAccessOn: [String: [SessionID: MonotonicInstant]] = [:]
    /// How far wall clocks may disagree (the scenario's skew).
    package var maxSkew: Duration = .milliseconds(50)

    func event(_ e: SessionEvent, node: String) {
        guard case .expired = e.kind else { return }
        let at = globalNow()
        expiries[e.id] = (at, node)
        // No session expires before its last access plus its idle limit, as the owner that
        // expires it saw that access (an access another owner served may not have reached
        // it: best-effort, time-based writes).
        if let idle = idleLimits[e.id], let last = lastAccessOn[node]?[e.id], at < last + (idle - maxSkew * 2) {
            violation("\(node) expired \(e.id) at \(at), last access \(last), idle limit \(idle)")
        }
    }

    func rejoined(_ node: String) {
        rejoins[node, default: 0] += 1
        deferred.append(.lost(node))
        trace(node, NodeLog(.warning, "rejoined under a new id"))
    }

    func trace(_ node: String, _ line: NodeLog) {
        guard tracing else { return }
        let meta = line.metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        print("\(globalNow()) \(node): \(line.message) \(meta)")
    }

    /// A request ended: judged and recorded.
    func completed(_ op: ClientOp, _ result: RequestResult, node: String, began: MonotonicInstant) {
        let at = globalNow()
        let kind: String
        switch op {
        case .write: kind = "write"
        case .read: kind = "read"
        case .delete: kind = "delete"
        case .create: kind = "create"
        case .takeOver: kind = "takeOver"
        case .drain: kind = "drain"
        }
        if case .failed(let e) = result { outcomes["\(kind):\(e.code)", default: 0] += 1 } else { outcomes["\(kind):ok", default: 0] += 1 }
        if tracing { print("\(at) \(node): answered \(op) with \(result)") }
        switch (op, result) {
        case (.write(let id, _, _), .written), (.read(let id), .session(_?)), (.create(let id), .written):
            lastAccess[id] = max(lastAccess[id] ?? .zero, at)
            lastAccessOn[node, default: [:]][id] = max(lastAccessOn[node]?[id] ?? .zero, at)
        default:
            break
        }
        switch (op, result) {
        case (.write(let id, let attr, let value), .written(let state?, let names)):
            saw(state, at: node)
            acks.append(Ack(session: id, attribute: attr, value: value, stamp: state.stamp, replicatedTo: names,
                            began: began, at: at, node: node))
            if let names { deferred.append(.holders(id, attr, names, node)) }
        case (.read(let id), .session(let state?)):
            saw(state, at: node)
            reads.append(Read(session: id, attributes: Set(state.attributes.keys), stamp: state.stamp, began: began, at: at, node: node))
        case (.delete(let id), .written(nil, _)):
            deletes[id] = (began, at)
        case (.create(let id), .written(let state?, _)):
            saw(state, at: node)
            created[id] = node
        case (.takeOver(let id), .failed(let e)) where e.code == .sessionNotFound:
            notFound.append((id, node, at))
        default:
            break
        }
    }

    enum Check {
        case holders(SessionID, String, [String], String)
        case lost(String)
    }
    /// Checks that look at every node's copies: they run between events (a node's copies
    /// cannot be read while it handles one).
    var deferred: [Check] = []

    /// Runs the deferred checks (the scenario calls it after every event).
    func runDeferred() {
        guard !deferred.isEmpty else { return }
        let checks = deferred
        deferred = []
        for c in checks {
            switch c {
            case .holders(let id, let attr, let names, let node): checkHolders(id, attr, names, node: node)
            case .lost(let node): losing(node, holders: holders)
            }
        }
    }

    /// At the moment a write is answered `replicated`, at least `minSyncReplicas` of the
    /// backups it names hold it (or crashed since they confirmed it).
    func checkHolders(_ id: SessionID, _ attr: String, _ names: [String], node: String) {
        if names.count < minSyncReplicas {
            violation("\(node) answered \(id) \(attr) replicated to \(names) only, minSyncReplicas \(minSyncReplicas)")
            return
        }
        for n in names {
            switch copies(n, id) {
            case .backup(let s)?, .owner(let s)?:
                if s.attributes[attr] == nil {
                    violation("\(node) answered \(id) \(attr) replicated to \(names), but \(n) holds \(s.stamp.etag) without it")
                }
            case .tombstone?, nil:
                break
            }
        }
    }

    /// `node` is about to lose every copy it holds (a crash or a rejoin): replicated
    /// writes it alone holds are lost with it, which the invariants allow.
    func losing(_ node: String, holders: (SessionID, String) -> [String]) {
        for a in acks where a.replicatedTo != nil && !lostWithHolders.contains(key(a)) {
            let h = holders(a.session, a.attribute)
            if h == [node] || h.isEmpty { lostWithHolders.insert(key(a)) }
        }
        // A crash is judged before the node goes (it is the last holder); a rejoin after
        // it dropped its copies (nobody holds the session any more).
        for id in Set(acks.map(\.session)) where !lostSessions.contains(id) {
            let h = sessionHolders(id)
            if h == [node] || h.isEmpty { lostSessions.insert(id) }
        }
    }

    func key(_ a: Ack) -> String { "\(a.session)/\(a.attribute)" }
}
