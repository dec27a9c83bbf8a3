import SessionReplication
import SessionReplicationCore
import Testing

@Suite("Loopback replication between three nodes", .timeLimit(.minutes(10)))
struct ReplicationIntegrationTests {
    @Test("an acknowledged session written on its owner appears on exactly one backup over TCP")
    func acknowledgedTCP() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2", "n3"])
        try await TestCluster.with(config) { cluster in
            let n1 = cluster["n1"]
            let created = try await n1.createSession(attributes: ["cart": Array("apples".utf8)])
            let id = try #require(created.state?.id)
            _ = try await n1.withSession(id) { $0.set("user", Array("ada".utf8)) }
            let owner = try #require(n1.copy(of: id)?.ownerState)
            #expect(owner.replicaSet.count == 1)
            let ok = await eventually {
                cluster.nodes.filter { $0.copy(of: id)?.backupState?.stamp == owner.stamp }.count == 1
            }
            #expect(ok)
            let backup = try #require(cluster[owner.replicaSet[0]].copy(of: id)?.backupState)
            #expect(backup.attributes == owner.attributes)
            #expect(backup.stamp == owner.stamp)
        }
    }
}
