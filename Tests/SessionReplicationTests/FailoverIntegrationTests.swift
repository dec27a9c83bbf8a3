import SessionReplication
import SessionReplicationCore
import Testing

@Suite("Membership and failover on loopback", .timeLimit(.minutes(10)))
struct FailoverIntegrationTests {
    func state(_ node: ReplicationNode, of peer: String) -> String? {
        node.members().first { $0.name == peer }?.state
    }

    @Test("members find each other through the seeds and list each other alive with their process ids")
    func membersJoin() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2", "n3"])
        try await TestCluster.with(config) { cluster in
            let joined = await eventually {
                cluster.nodes.allSatisfy { n in n.members().allSatisfy { $0.state == "alive" } }
            }
            #expect(joined)
            let view = cluster["n1"].members()
            #expect(view.map(\.name) == ["n1", "n2", "n3"])
            #expect(view.first { $0.name == "n2" }?.id == cluster["n2"].nodeID.description)
            #expect(view.first { $0.name == "n1" }?.isSelf == true)
        }
    }

    @Test("a stopped owner is declared dead and its backups promote its sessions with their last acknowledged attributes")
    func crashedOwnerIsFailedOver() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2", "n3"])
        try await TestCluster.with(config) { cluster in
            let joined = await eventually { cluster.nodes.allSatisfy { n in n.members().allSatisfy { $0.state == "alive" } } }
            #expect(joined)
            let n3 = cluster["n3"]
            var collected: [SessionID] = []
            for i in 0..<30 {
                let created = try await n3.createSession(attributes: ["cart": Array("v1-\(i)".utf8)])
                let id = try #require(created.state?.id)
                _ = try await n3.withSession(id) { $0.set("cart", Array("v2-\(i)".utf8)) }
                collected.append(id)
            }
            let ids = collected
            let replicated = await eventually {
                ids.allSatisfy { id in
                    guard let stamp = n3.copy(of: id)?.ownerState?.stamp else { return false }
                    return [cluster["n1"], cluster["n2"]].contains { $0.copy(of: id)?.backupState?.stamp == stamp }
                }
            }
            #expect(replicated)
            await n3.shutdown()  // abrupt: no leave announced
            let declared = await eventually { state(cluster["n1"], of: "n3") == "dead" && state(cluster["n2"], of: "n3") == "dead" }
            #expect(declared)
            let survivors = [cluster["n1"], cluster["n2"]]
            let promoted = await eventually {
                ids.allSatisfy { id in survivors.contains { $0.copy(of: id)?.ownerState != nil } }
            }
            #expect(promoted)
            for (i, id) in ids.enumerated() {
                let owner = try #require(survivors.first { $0.copy(of: id)?.ownerState != nil })
                let state = try #require(owner.copy(of: id)?.ownerState)
                #expect(state.attributes["cart"] == Array("v2-\(i)".utf8))
                #expect(state.stamp.epoch.counter == 2)
                #expect(state.stamp.epoch.owner == owner.nodeID)
                #expect(state.replicaSet.count == 1 && state.replicaSet[0] != "n3")
            }
            // The new owners replicate to the remaining node and take writes.
            let rereplicated = await eventually {
                ids.allSatisfy { id in
                    guard let owner = survivors.first(where: { $0.copy(of: id)?.ownerState != nil }),
                          let stamp = owner.copy(of: id)?.ownerState?.stamp else { return false }
                    return survivors.contains { $0 !== owner && $0.copy(of: id)?.backupState?.stamp == stamp }
                }
            }
            #expect(rereplicated)
            let owner = try #require(survivors.first { $0.copy(of: ids[0])?.ownerState != nil })
            let write = try await owner.withSession(ids[0]) { $0.set("cart", Array("v3".utf8)) }
            #expect(write.result.state?.attributes["cart"] == Array("v3".utf8))
            let promotions = survivors.reduce(0) { $0 + $1.counters.replication.promotions }
            #expect(promotions == ids.count)
        }
    }

    @Test("a stopped backup is replaced: its owner picks a new backup and sends it the whole session")
    func crashedBackupIsReplaced() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2", "n3"])
        try await TestCluster.with(config) { cluster in
            let joined = await eventually { cluster.nodes.allSatisfy { n in n.members().allSatisfy { $0.state == "alive" } } }
            #expect(joined)
            let n1 = cluster["n1"]
            var found: SessionID?
            // A session whose backup is n3.
            for _ in 0..<64 {
                let created = try await n1.createSession(attributes: ["k": [1, 2, 3]])
                if created.state?.replicaSet == ["n3"] { found = created.state?.id; break }
            }
            let session = try #require(found)
            await cluster["n3"].shutdown()
            let moved = await eventually { n1.copy(of: session)?.ownerState?.replicaSet == ["n2"] }
            #expect(moved)
            let copied = await eventually { cluster["n2"].copy(of: session)?.backupState?.attributes["k"] == [1, 2, 3] }
            #expect(copied)
            #expect(n1.counters.replication.rereplications >= 1)
        }
    }

    @Test("a member that leaves gracefully is listed as left, not dead")
    func gracefulLeave() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2", "n3"])
        try await TestCluster.with(config) { cluster in
            let joined = await eventually { cluster.nodes.allSatisfy { n in n.members().allSatisfy { $0.state == "alive" } } }
            #expect(joined)
            cluster["n2"].leaveCluster()
            let left = await eventually { state(cluster["n1"], of: "n2") == "left" && state(cluster["n3"], of: "n2") == "left" }
            #expect(left)
            await cluster["n2"].shutdown()
        }
    }

    @Test("a member declared dead while cut off learns it when it gets through, drops what it held and rejoins under a new id")
    func declaredDeadMemberRejoins() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2", "n3"])
        try await TestCluster.with(config) { cluster in
            let joined = await cluster.joined()
            #expect(joined)
            let n3 = cluster["n3"]
            let oldID = n3.nodeID
            let created = try await n3.createSession(attributes: ["a": [7]])
            let id = try #require(created.state?.id)
            let synced = try await n3.sync(id)
            // Under load a member can be declared dead by mistake and rejoin, dropping the
            // backup it held (seen: n2, seconds after the join). Cut n3 off only once a
            // backup holds the session again, or the cut is a second fault with one backup.
            let backed = await eventually { ["n1", "n2"].contains { cluster[$0].copy(of: id)?.backupState != nil } }
            #expect(backed, "no backup holds the session after sync answered \(synced.durability)")
            // n1 and n2 lose their way to n3 (n3 still reaches them).
            let (r3, m3) = (n3.replicationPort!, n3.membershipPort!)
            for name in ["n1", "n2"] {
                cluster[name].setPeerEndpoint("n3", host: "127.0.0.1", port: try closedPort(), membershipPort: try closedPort())
            }
            let dead = await eventually { state(cluster["n1"], of: "n3") == "dead" && state(cluster["n2"], of: "n3") == "dead" }
            #expect(dead)
            let promoted = await eventually { [cluster["n1"], cluster["n2"]].contains { $0.copy(of: id)?.ownerState != nil } }
            // A loaded run once saw no promotion: say what the session's backups were.
            #expect(promoted, "created \(created.durability), synced \(synced.durability); n1 holds \(String(describing: cluster["n1"].copy(of: id))), n2 holds \(String(describing: cluster["n2"].copy(of: id)))")
            for name in ["n1", "n2"] { cluster[name].setPeerEndpoint("n3", host: "127.0.0.1", port: r3, membershipPort: m3) }
            let rejoined = await eventually {
                n3.rejoins == 1 && ["n1", "n2"].allSatisfy { name in
                    cluster[name].members().first { $0.name == "n3" }.map { $0.state == "alive" && $0.id == n3.nodeID.description } ?? false
                }
            }
            #expect(rejoined)
            #expect(n3.nodeID > oldID)
            #expect(n3.copy(of: id)?.ownerState == nil, "the old owner dropped its copy")
            let owner = try #require([cluster["n1"], cluster["n2"]].first { $0.copy(of: id)?.ownerState != nil })
            #expect(owner.copy(of: id)?.ownerState?.attributes["a"] == [7])
        }
    }
}
