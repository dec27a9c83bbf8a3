import Testing
@testable import SessionReplicationCore

/// The session table's dense storage: entries added, changed in place and removed from any
/// place (the last entry moves into the hole), with the kept sums matching a walk, and
/// replica sets stored once.
struct SessionTableTests {
    static func backup(_ n: UInt64, owner: String = "n1", size: Int = 3, replicaSet: [String]) -> ReplicaShard.Backup {
        let state = SessionState(id: SessionID(high: 7, low: n), stamp: Stamp(epoch: Epoch(counter: 1, owner: NodeID(1)), version: n),
                                 attributes: ["a": [UInt8](repeating: 1, count: size)], createdAt: WallTime(milliseconds: 1),
                                 lastAccessedAt: WallTime(milliseconds: 1), maxInactiveInterval: .seconds(60), replicaSet: replicaSet)
        return ReplicaShard.Backup(state: state, lastHeard: .zero, owner: owner, ownerID: NodeID(1))
    }

    /// The sums a table keeps, computed by walking it.
    static func walked(_ t: SessionTable<ReplicaShard.Backup>) -> (bytes: Int, holders: [String: Int]) {
        var holders: [String: Int] = [:]
        for (_, b) in t { for p in b.state.replicaSet { holders[p, default: 0] += 1 } }
        return (t.values.reduce(0) { $0 + $1.state.byteSize }, holders)
    }

    @Test("entries added, changed in place and removed (through removeValue and the setter) keep the kept sums equal to a walk")
    func removalsKeepTheTableWhole() {
        var t = SessionTable<ReplicaShard.Backup>()
        for n in 0..<10 as Range<UInt64> { t[SessionID(high: 7, low: n)] = Self.backup(n, size: Int(n) + 1, replicaSet: ["n1", n % 2 == 0 ? "n2" : "n3"]) }
        t.removeValue(forKey: SessionID(high: 7, low: 3))
        t.removeValue(forKey: SessionID(high: 7, low: 9))
        t[SessionID(high: 7, low: 0)] = nil                        // through the setter
        t[SessionID(high: 7, low: 5)]?.state.attributes["a"] = nil // changed in place, still held
        var removedInPlace = t[SessionID(high: 7, low: 6)]
        removedInPlace = nil
        t[SessionID(high: 7, low: 6)] = removedInPlace
        t[SessionID(high: 7, low: 42)]?.state.stamp.version = 1    // absent: nothing added
        #expect(t.count == 6)
        #expect(Set(t.keys) == Set([1, 2, 4, 5, 7, 8].map { SessionID(high: 7, low: $0) }))
        for id in t.keys { #expect(t[id]?.state.id == id && t.withEntry(id, { $0.state.id }) == id) }
        #expect(t.withEntry(SessionID(high: 7, low: 3), { $0.state.id }) == nil)
        #expect(t[SessionID(high: 7, low: 3)] == nil && t[SessionID(high: 7, low: 9)] == nil)
        let w = Self.walked(t)
        #expect(t.bytes == w.bytes)
        #expect(t.holderCounts == w.holders)
        // Added through an in-place change of an absent entry.
        func add(_ e: inout ReplicaShard.Backup?) { e = Self.backup(50, replicaSet: ["n4"]) }
        add(&t[SessionID(high: 7, low: 50)])
        #expect(t[SessionID(high: 7, low: 50)]?.state.stamp.version == 50 && t.holderCounts["n4"] == 1 && t.count == 7)
    }

    @Test("entries naming the same replica set share one stored array")
    func replicaSetsAreShared() {
        var t = SessionTable<ReplicaShard.Backup>()
        // Two arrays equal in value, built apart (as two decoded copies are).
        let a = ["n1", "n2"].map { String($0) }
        let b = ["n1"] + ["n2"]
        t[SessionID(high: 7, low: 1)] = Self.backup(1, replicaSet: a)
        t[SessionID(high: 7, low: 2)] = Self.backup(2, replicaSet: b)
        t[SessionID(high: 7, low: 3)] = Self.backup(3, replicaSet: ["n3"])
        t[SessionID(high: 7, low: 3)]!.state.replicaSet = ["n1", "n2"]
        func base(_ n: UInt64) -> UnsafeRawPointer? { t[SessionID(high: 7, low: n)]!.state.replicaSet.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) } }
        #expect(base(1) != nil && base(1) == base(2) && base(2) == base(3), "equal replica sets are stored more than once")
        #expect(t.holderCounts == ["n1": 3, "n2": 3])
    }
}
