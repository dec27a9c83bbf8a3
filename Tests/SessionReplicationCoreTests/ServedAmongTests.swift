import Testing
@testable import SessionReplicationCore
import SessionReplicationTestKit

/// `NodeCore.served(among:now:)` (what the simulator's both-serve check asks after every
/// event) answers what `serves` answers id by id, by either of its two ways: a walk over
/// the owned sessions when they are few next to the ids asked, lookups otherwise.
@Suite(.offThePool)
struct ServedAmongTests {
    @Test("served(among:) equals the serving rule id by id, walking or looking up, with and without lapsed leases")
    func servedAmongMatchesServes() async {
        let mismatches: [String] = await onOwnThread {
            var p = ReplicationPolicy()
            p.mode = .acknowledged
            p.replicas = .count(1)
            let c = SimulatedCluster(names: ["n1", "n2", "n3"], policy: p)
            c.run(.seconds(1))
            // 60 sessions on n1: its replica sets name n2 or n3.
            let owned = (0..<60).map { SessionID(high: 5, low: UInt64($0)) }
            for id in owned { c.request("n1", .create(id)) }
            c.run(.seconds(1))
            let strangers = (0..<4).map { SessionID(high: 6, low: UInt64($0)) }
            // 8 ids: 60 owned is past four times 8 (lookups); 24 ids: 60 is within (a walk).
            let few = Array(owned.prefix(6)) + strangers.prefix(2)
            let many = Array(owned.prefix(20)) + strangers
            var out: [String] = []
            func compare(_ moment: String) {
                let clock = c.sim.clock("n1")
                guard let core = c.core("n1") else { return out.append("\(moment): n1 is down") }
                for ids in [few, many] {
                    let expected = ids.filter { core.serves($0, now: clock) }
                    let got = core.served(among: ids, now: clock)
                    if got != expected { out.append("\(moment), \(ids.count) ids: \(got.count) served, the rule says \(expected.count)") }
                }
            }
            compare("all up")
            let servedBefore = c.core("n1")?.served(among: many, now: c.sim.clock("n1")).count ?? 0
            if servedBefore != 20 { out.append("all up: n1 serves \(servedBefore) of its 20 sessions") }
            // n2 hangs: n1's lease from it lapses before n2 is declared dead (here between
            // 250 and 750 ms), so the sessions whose replica set names n2 stop passing
            // while the others still pass.
            c.sim.pause("n2")
            c.run(.milliseconds(500))
            compare("n2 hung")
            let hung = c.core("n1")?.served(among: many, now: c.sim.clock("n1")).count ?? 0
            if !(1..<20).contains(hung) { out.append("n2 hung: n1 serves \(hung) of 20, not some") }
            c.run(.seconds(20))
            compare("n2 declared dead")
            return out
        }
        #expect(mismatches.isEmpty, "\(mismatches)")
    }
}
