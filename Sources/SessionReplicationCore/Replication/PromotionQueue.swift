/// Backup copies waiting to be promoted, each until its old owner's leases ran out: looked
/// up and removed by id in constant time, and taken in the order they came, a bounded
/// number at a time. (An array searched per promise answer made the failover of an owner
/// with a million sessions quadratic.)
struct PromotionQueue: Sendable {
    /// The waiting copies: the owner they must still answer to, and when they may go.
    private(set) var entries: [SessionID: (owner: String, after: MonotonicInstant)] = [:]
    /// Ids in arrival order from `next` on (ids removed meanwhile are skipped).
    private var order: [SessionID] = []
    private var next = 0
    /// Ids met before they were due, for the next pass.
    private var later: [SessionID] = []
    /// No entry is due before this (a lower bound; `takeDue` does nothing until then).
    private var earliest: MonotonicInstant = .zero

    var count: Int { entries.count }
    var isEmpty: Bool { entries.isEmpty }
    func contains(_ id: SessionID) -> Bool { entries[id] != nil }

    /// Queues `id` (replacing what was queued for it).
    mutating func append(_ id: SessionID, owner: String, after: MonotonicInstant) {
        if entries.updateValue((owner, after), forKey: id) == nil { order.append(id) }
        earliest = min(earliest, after)
    }

    mutating func remove(_ id: SessionID) { entries[id] = nil }

    /// Up to `limit` entries due at `now`, removed, in arrival order. Entries not due yet
    /// stay for a later call.
    mutating func takeDue(now: MonotonicInstant, limit: Int) -> [(id: SessionID, owner: String)] {
        guard !entries.isEmpty, now >= earliest else { return [] }
        var out: [(id: SessionID, owner: String)] = []
        while out.count < limit {
            if next == order.count {
                // A pass is over: what was not due is the next pass, from its earliest.
                order = later.filter { entries[$0] != nil }
                later = []
                next = 0
                earliest = order.compactMap { entries[$0]?.after }.min() ?? .zero
                if order.isEmpty || now < earliest { break }
                continue
            }
            let id = order[next]
            next += 1
            guard let e = entries[id] else { continue }
            if now < e.after {
                later.append(id)
                continue
            }
            entries[id] = nil
            out.append((id, e.owner))
        }
        return out
    }
}
