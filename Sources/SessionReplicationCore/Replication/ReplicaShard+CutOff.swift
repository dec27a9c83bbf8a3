/// Members that membership holds alive but that grant this node no lease (a cut link
/// between the two: SWIM keeps both alive through indirect probes): owned sessions whose
/// replica set names one would be fenced for as long as the cut lasts. They are placed
/// elsewhere instead, make-before-break: the new backups get the whole session, and the
/// cut-off member leaves the replica set (its copy, which names this owner, is released by
/// anti-entropy once the link heals; should this owner die meanwhile, the failover's
/// prepare round asks every live member and finds the newer copies).
extension ReplicaShard {
    /// Re-places every owned session whose replica set names a member of `cutOff`;
    /// returns how many moved.
    @discardableResult
    package mutating func replaceCutOff(_ cutOff: Set<String>, now: MonotonicInstant) -> Int {
        guard !cutOff.isEmpty else { return 0 }
        var moved = 0
        // Picked in one walk, then only those sorted (not every id of the table).
        var named: [SessionID] = []
        for (id, o) in owned where o.state.replicaSet.contains(where: { cutOff.contains($0) }) { named.append(id) }
        for id in named.sorted() {
            let current = owned[id]!.state.replicaSet
            let set = placement(for: id, keeping: current.filter { !cutOff.contains($0) }, avoiding: cutOff)
            // Only where another member can take the place: a smaller replica set would
            // trade durability for availability.
            guard set != current, set.count >= current.count else { continue }
            owned[id]!.state.replicaSet = set
            owned[id]!.needsFull = true
            _ = send(id, now: now)
            counters.rereplications += 1
            moved += 1
        }
        return moved
    }
}
