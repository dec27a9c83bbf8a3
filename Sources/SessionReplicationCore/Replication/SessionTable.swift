/// Something a shard holds that carries a session's state.
protocol HoldsSessionState {
    var state: SessionState { get set }
    /// The copy's share of the anti-entropy digests: the stamp hashed and the peers whose
    /// digest holds it; `nil` for a copy in no digest.
    var digestShare: DigestShare? { get }
    /// Whether the entry waits for answers before it serves (an adopted handover being
    /// confirmed): such entries are resent to every tick, so the table lists them.
    var awaitsConfirmation: Bool { get }
}

/// One copy's part of the anti-entropy digests (see `SessionTable.digests`): the stamp
/// hashed with the session id into the session's bucket, for `peer` and each of `peers`.
struct DigestShare: Equatable, Sendable {
    var stamp: Stamp
    var peer: String?
    var peers: [String]
}

/// A dictionary of held sessions that keeps, as entries come, change and go:
/// - the sum of their sizes (names plus values, what `maxSessionBytes` counts), so the
///   node's byte budget (`sessions.maxBytes`) is checked without walking every session;
/// - the anti-entropy digests of every peer (1,024 buckets, each the XOR of the
///   `digestHash` of the copies in it), so a digest round reads them instead of walking
///   every session (a walk of a million sessions stalled the node for tens of
///   milliseconds).
/// An entry changed in place (`table[id]!.state.attributes[name] = value`) is measured
/// before and after the change; the dictionary's storage is modified in place, never
/// copied.
struct SessionTable<Entry: HoldsSessionState & Sendable>: Sendable, Sequence {
    private(set) var storage: [SessionID: Entry] = [:]
    /// The sum of `SessionState.byteSize` over every entry.
    private(set) var bytes = 0
    /// Digests by peer: bucket `ReplicaShard.digestBucket(id, lanes:)` of a peer holds the
    /// XOR of `ReplicaShard.digestHash(id, share.stamp)` over the entries whose share
    /// names the peer.
    private(set) var digests: [String: [UInt64]] = [:]
    /// The ids whose entry `awaitsConfirmation` (a few at most; a tick visits only these).
    private(set) var awaitingConfirmation: Set<SessionID> = []
    /// How many entries name each member in their state's replica set (so the owned
    /// sessions a member backs are counted without walking every session).
    private(set) var holderCounts: [String: Int] = [:]
    /// One stored array per distinct replica set, shared by every entry that names it (a
    /// replica set decoded or placed for each session is otherwise an array of its own,
    /// about 48 bytes per copy). At most `maxSharedReplicaSets`; past that, arrays are
    /// kept as they come.
    private var replicaSets: Set<[String]> = []
    static var maxSharedReplicaSets: Int { 4_096 }
    /// The lane count the buckets are computed for.
    var lanes = 1 {
        didSet { precondition(storage.isEmpty || lanes == oldValue, "the lane count of a table in use changed") }
    }

    init() {}

    subscript(id: SessionID) -> Entry? {
        get { storage[id] }
        set {
            let old = storage[id]
            var newValue = newValue
            if newValue != nil, old?.state.replicaSet != newValue!.state.replicaSet {
                newValue!.state.replicaSet = storedReplicaSet(newValue!.state.replicaSet)
            }
            bytes += (newValue?.state.byteSize ?? 0) - (old?.state.byteSize ?? 0)
            account(id, from: old?.digestShare, to: newValue?.digestShare)
            countHolders(from: old?.state.replicaSet, to: newValue?.state.replicaSet)
            mark(id, newValue?.awaitsConfirmation == true)
            storage[id] = newValue
        }
        _modify {
            let size = storage[id]?.state.byteSize ?? 0
            let share = storage[id]?.digestShare
            let holders = storage[id]?.state.replicaSet
            defer {
                if let now = storage[id]?.state.replicaSet, now != holders {
                    let stored = storedReplicaSet(now)
                    storage[id]!.state.replicaSet = stored
                }
                bytes += (storage[id]?.state.byteSize ?? 0) - size
                account(id, from: share, to: storage[id]?.digestShare)
                countHolders(from: holders, to: storage[id]?.state.replicaSet)
                mark(id, storage[id]?.awaitsConfirmation == true)
            }
            yield &storage[id]
        }
    }

    @discardableResult
    mutating func removeValue(forKey id: SessionID) -> Entry? {
        guard let old = storage.removeValue(forKey: id) else { return nil }
        bytes -= old.state.byteSize
        account(id, from: old.digestShare, to: nil)
        countHolders(from: old.state.replicaSet, to: nil)
        mark(id, false)
        return old
    }

    /// The stored array equal to `set` (storing `set` if it is new and there is room).
    private mutating func storedReplicaSet(_ set: [String]) -> [String] {
        guard !set.isEmpty else { return set }
        if let stored = replicaSets.firstIndex(of: set) { return replicaSets[stored] }
        if replicaSets.count < Self.maxSharedReplicaSets { replicaSets.insert(set) }
        return set
    }

    private mutating func countHolders(from old: [String]?, to new: [String]?) {
        guard old != new else { return }
        for p in old ?? [] {
            holderCounts[p, default: 0] -= 1
            if holderCounts[p] == 0 { holderCounts[p] = nil }
        }
        for p in new ?? [] { holderCounts[p, default: 0] += 1 }
    }

    private mutating func mark(_ id: SessionID, _ awaits: Bool) {
        if awaits { awaitingConfirmation.insert(id) } else if !awaitingConfirmation.isEmpty { awaitingConfirmation.remove(id) }
    }

    /// Moves an entry's digest share from `old` to `new`.
    mutating func account(_ id: SessionID, from old: DigestShare?, to new: DigestShare?) {
        guard old != new else { return }
        let bucket = ReplicaShard.digestBucket(id, lanes: lanes)
        if let old { toggle(old, id, bucket) }
        if let new { toggle(new, id, bucket) }
    }

    private mutating func toggle(_ share: DigestShare, _ id: SessionID, _ bucket: Int) {
        let h = ReplicaShard.digestHash(id, share.stamp)
        if let p = share.peer { digests[p, default: Self.zeros][bucket] ^= h }
        for p in share.peers { digests[p, default: Self.zeros][bucket] ^= h }
    }

    static var zeros: [UInt64] { [UInt64](repeating: 0, count: DigestRequest.bucketCount) }

    var keys: Dictionary<SessionID, Entry>.Keys { storage.keys }
    var values: Dictionary<SessionID, Entry>.Values { storage.values }
    var count: Int { storage.count }
    var isEmpty: Bool { storage.isEmpty }
    func makeIterator() -> Dictionary<SessionID, Entry>.Iterator { storage.makeIterator() }
}

extension SessionState {
    /// Names plus values of every attribute: what `maxSessionBytes` and the byte budget
    /// count.
    package var byteSize: Int {
        var total = 0
        for (name, value) in attributes { total += name.utf8.count + value.count }
        return total
    }
}
