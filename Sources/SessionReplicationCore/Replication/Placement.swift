/// Rendezvous-hash placement: the backups of a session are the first `count` candidates
/// in descending order of `hash(session, member)`. Every node computes the same order
/// from the same view, and a member joining or leaving moves only the sessions whose
/// order it enters or leaves.
package enum Placement {
    /// The rendezvous score of `member` for `id`.
    package static func score(_ id: SessionID, _ member: String) -> UInt64 {
        mix64(id.stableHash ^ NodeName.stableHash(member))
    }

    /// Whether `choose(id, count: count, among: [member] + others)` would pick `member`,
    /// without building the ranking: fewer than `count` of `others` rank above it.
    /// `others` are the other candidates with their `NodeName.stableHash` (computed once
    /// for many sessions); `memberHash` is `member`'s.
    package static func picks(_ member: String, memberHash: UInt64, for id: SessionID, count: Int,
                              among others: [(hash: UInt64, name: String)]) -> Bool {
        guard count > 0 else { return false }
        let h = id.stableHash
        let mine = mix64(h ^ memberHash)
        var above = 0
        for o in others {
            let theirs = mix64(h ^ o.hash)
            if theirs > mine || (theirs == mine && o.name < member) {
                above += 1
                if above >= count { return false }
            }
        }
        return true
    }

    /// The first `count` of `candidates` in rendezvous order for `id` (ties broken by name).
    package static func choose(_ id: SessionID, count: Int, among candidates: [String]) -> [String] {
        guard count > 0 else { return [] }
        let ranked = candidates.map { (score(id, $0), $0) }.sorted { $0.0 != $1.0 ? $0.0 > $1.0 : $0.1 < $1.1 }
        return ranked.prefix(count).map(\.1)
    }
}

/// A lazy timing wheel keyed by whole seconds: entries are popped when their second has
/// passed; the caller re-checks the real deadline and re-schedules if it moved. No timer
/// per session.
package struct ExpiryWheel: Sendable {
    private var buckets: [Int64: [SessionID]] = [:]
    private var sortedKeys: [Int64] = []

    /// Creates an empty wheel.
    package init() {}

    /// Number of entries (including stale ones not yet popped).
    package private(set) var count = 0

    /// Schedules `id` for second `at`.
    package mutating func schedule(_ id: SessionID, at second: Int64) {
        if buckets[second] == nil {
            let i = sortedKeys.partitionPoint { $0 < second }
            sortedKeys.insert(second, at: i)
        }
        buckets[second, default: []].append(id)
        count += 1
    }

    /// Removes and returns every entry scheduled for a second `<= now`.
    package mutating func popDue(_ now: Int64) -> [SessionID] {
        var out: [SessionID] = []
        var taken = 0
        for key in sortedKeys {
            guard key <= now else { break }
            out.append(contentsOf: buckets.removeValue(forKey: key) ?? [])
            taken += 1
        }
        if taken > 0 { sortedKeys.removeFirst(taken) }
        count -= out.count
        return out
    }
}

extension Array {
    /// The first index whose element does not satisfy `belongs` (binary search; the
    /// array must be partitioned by `belongs`).
    func partitionPoint(_ belongs: (Element) -> Bool) -> Int {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if belongs(self[mid]) { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
