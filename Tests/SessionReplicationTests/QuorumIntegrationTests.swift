import SessionReplication
import SessionReplicationCore
import Testing

/// `promotion: majority` against `promotion: any`, with real nodes on loopback: a node
/// left alone (its two peers stopped abruptly) sees no majority.
@Suite("promotion: majority on loopback", .timeLimit(.minutes(10)))
struct QuorumIntegrationTests {
    @Test("alone, a node promotes and serves under promotion any, and under majority serves nothing (no-quorum) and promotes nothing",
          arguments: [MembershipSettings.Promotion.any, .majority])
    func aloneWithoutMajority(_ promotion: MembershipSettings.Promotion) async throws {
        var config = TestCluster.configuration(names: ["n1", "n2", "n3"])
        config.membership.promotion = promotion
        try await TestCluster.with(config) { cluster in
            let n1 = cluster["n1"], n2 = cluster["n2"]
            let own = try #require(try await n1.createSession(attributes: ["a": [1]]).state?.id)
            // Sessions of n2 that n1 backs.
            var backed: [SessionID] = []
            for _ in 0..<40 where backed.count < 3 {
                let r = try await n2.createSession(attributes: ["b": [2]])
                if let s = r.state, s.replicaSet == ["n1"] { backed.append(s.id) }
            }
            #expect(!backed.isEmpty)
            let copies = backed
            let arrived = await eventually { copies.allSatisfy { n1.copy(of: $0)?.backupState != nil } }
            #expect(arrived)
            await cluster["n3"].shutdown()
            await n2.shutdown()
            // Under majority a node that sees no majority alive keeps its peers suspect
            // (so a healed minority does not make the majority drop what it holds); under
            // any it declares them dead.
            let gone = await eventually(timeout: .seconds(60)) {
                n1.members().filter { $0.name != "n1" }.allSatisfy { promotion == .any ? $0.state == "dead" : $0.state != "alive" }
            }
            #expect(gone)
            // Give failover time to act (promotions wait for the old owner's leases).
            // Under majority, wait until the leases n2 and n3 granted before they stopped
            // have run out: until then n1 still holds a quorum and rightly serves.
            try await Task.sleep(for: .seconds(1))
            if promotion == .majority {
                #expect(await eventually { n1.status().state == "fenced" }, "the quorum lease runs out")
            }
            let promoted = copies.filter { n1.copy(of: $0)?.ownerState != nil }.count
            var writeError: SessionError?
            do { _ = try await n1.withSession(own) { $0.set("a", [3]) } } catch let e as SessionError { writeError = e }
            var createError: SessionError?
            do { _ = try await n1.createSession(attributes: [:]) } catch let e as SessionError { createError = e }
            switch promotion {
            case .any:
                #expect(promoted == copies.count, "the only live backup promotes")
                #expect(writeError == nil)
                #expect(createError == nil)
            case .majority:
                #expect(promoted == 0, "a node that sees no majority must not promote")
                #expect(writeError?.code == .noQuorum)
                #expect(createError?.code == .noQuorum)
                #expect(n1.status().state == "fenced")
            }
        }
    }
}
