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

/// A table of held sessions that keeps, as entries come, change and go:
/// - the sum of their sizes (names plus values, what `maxSessionBytes` counts), so the
///   node's byte budget (`sessions.maxBytes`) is checked without walking every session;
/// - the anti-entropy digests of every peer (1,024 buckets, each the XOR of the
///   `digestHash` of the copies in it), so a digest round reads them instead of walking
///   every session (a walk of a million sessions stalled the node for tens of
///   milliseconds).
/// An entry changed in place (`table[id]!.state.attributes[name] = value`) is measured
/// before and after the change; its storage is modified in place, never copied.
///
/// The entries live in one dense array, and a dictionary maps each id to its place. A
/// dictionary holding the entries themselves keeps up to three empty entry-sized slots per
/// used one after it grows (at 1,000,000 sessions, about 2.1 slots per entry); the dense
/// array keeps little more than the entry, and the dictionary of places only 20 bytes a
/// slot. A removal moves the last entry into the hole, so the order of iteration is that
/// of insertion only until the first removal (callers that decide by order sort). Every
/// entry is keyed by its own `state.id`.
struct SessionTable<Entry: HoldsSessionState & Sendable>: Sendable, Sequence {
    /// Where each entry lives in `entries`.
    private var places: [SessionID: Int32] = [:]
    /// The entries, without holes: `nil` only while a `_modify` that removes one runs.
    private(set) var entries: [Entry?] = []
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
        didSet { precondition(entries.isEmpty || lanes == oldValue, "the lane count of a table in use changed") }
    }

    init() {}

    /// Makes room for `count` entries without growing again.
    mutating func reserveCapacity(_ count: Int) {
        guard count > entries.capacity else { return }
        entries.reserveCapacity(count)
        places.reserveCapacity(count)
    }

    subscript(id: SessionID) -> Entry? {
        get { places[id].map { entries[Int($0)]! } }
        set {
            let old = self[id]
            var newValue = newValue
            assert(newValue.map { $0.state.id == id } ?? true, "an entry keyed by another session's id")
            if newValue != nil, old?.state.replicaSet != newValue!.state.replicaSet {
                newValue!.state.replicaSet = storedReplicaSet(newValue!.state.replicaSet)
            }
            note(id, from: old, to: newValue)
            if let place = places[id].map(Int.init) {
                entries[place] = newValue
                if newValue == nil { close(place, id) }
            } else if let newValue {
                places[id] = Int32(entries.count)
                entries.append(newValue)
            }
        }
        _modify {
            if let place = places[id].map(Int.init) {
                let size = entries[place]!.state.byteSize
                let share = entries[place]!.digestShare
                let holders = entries[place]!.state.replicaSet
                defer {
                    if let now = entries[place]?.state.replicaSet, now != holders {
                        let stored = storedReplicaSet(now)
                        entries[place]!.state.replicaSet = stored
                    }
                    let now = entries[place]
                    assert(now.map { $0.state.id == id } ?? true, "an entry keyed by another session's id")
                    bytes += (now?.state.byteSize ?? 0) - size
                    account(id, from: share, to: now?.digestShare)
                    countHolders(from: holders, to: now?.state.replicaSet)
                    mark(id, now?.awaitsConfirmation == true)
                    if now == nil { close(place, id) }
                }
                yield &entries[place]
            } else {
                var added: Entry? = nil
                defer {
                    if var added {
                        assert(added.state.id == id, "an entry keyed by another session's id")
                        added.state.replicaSet = storedReplicaSet(added.state.replicaSet)
                        note(id, from: nil, to: added)
                        places[id] = Int32(entries.count)
                        entries.append(added)
                    }
                }
                yield &added
            }
        }
    }

    /// Reads the entry of `id` where it lies (`self[id]` hands back a copy of it);
    /// `nil` when there is none.
    @inline(__always)
    func withEntry<T>(_ id: SessionID, _ body: (borrowing Entry) -> T) -> T? {
        guard let place = places[id] else { return nil }
        return entries.withUnsafeBufferPointer { body($0[Int(place)].unsafelyUnwrapped) }
    }

    @discardableResult
    mutating func removeValue(forKey id: SessionID) -> Entry? {
        guard let place = places[id].map(Int.init), let old = entries[place] else { return nil }
        note(id, from: old, to: nil)
        entries[place] = nil
        close(place, id)
        return old
    }

    /// Keeps the sums for an entry going from `old` to `new`.
    private mutating func note(_ id: SessionID, from old: Entry?, to new: Entry?) {
        bytes += (new?.state.byteSize ?? 0) - (old?.state.byteSize ?? 0)
        account(id, from: old?.digestShare, to: new?.digestShare)
        countHolders(from: old?.state.replicaSet, to: new?.state.replicaSet)
        mark(id, new?.awaitsConfirmation == true)
    }

    /// Closes the hole at `place` (the entry of `id`, now `nil`) with the last entry.
    private mutating func close(_ place: Int, _ id: SessionID) {
        places[id] = nil
        let last = entries.count - 1
        if place != last {
            entries.swapAt(place, last)
            places[entries[place]!.state.id] = Int32(place)
        }
        entries.removeLast()
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

    /// The ids, in the order of iteration.
    var keys: LazyMapSequence<[Entry?], SessionID> { entries.lazy.map { $0!.state.id } }
    /// The entries, in the order of iteration.
    var values: LazyMapSequence<[Entry?], Entry> { entries.lazy.map { $0! } }
    var count: Int { entries.count }
    var isEmpty: Bool { entries.isEmpty }
    func makeIterator() -> Iterator { Iterator(base: entries.makeIterator()) }

    /// Walks the entries as `(key, value)` pairs, like a dictionary's.
    struct Iterator: IteratorProtocol {
        var base: IndexingIterator<[Entry?]>
        mutating func next() -> (key: SessionID, value: Entry)? {
            guard let e = base.next() else { return nil }
            let entry = e!
            return (entry.state.id, entry)
        }
    }
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
