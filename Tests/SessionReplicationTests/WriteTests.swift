import SessionReplication
import SessionReplicationCore
import Testing

@Suite("A write whose changes are known up front, in one core event", .timeLimit(.minutes(10)))
struct WriteTests {
    @Test("write sets and removes as a scope would: no change for the bytes already held, If-Match checked, replicated, refused where not owned")
    func writeIsAScope() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2"])
        try await TestCluster.with(config) { cluster in
            let n1 = cluster["n1"]
            let created = try #require(try await n1.createSession(attributes: ["a": [1], "b": [2]]).state)
            let first = try #require(try await n1.write(created.id, set: ["a": [7]], remove: ["b"]).state)
            #expect(first.attributes == ["a": [7]] && first.stamp.version == created.stamp.version + 1)
            // The bytes already held, and an absent attribute: nothing changes.
            let same = try #require(try await n1.write(created.id, set: ["a": [7]], remove: ["gone"]).state)
            #expect(same.stamp == first.stamp)
            // If-Match.
            let stale = await #expect(throws: SessionError.self) { _ = try await n1.write(created.id, ifMatch: created.stamp, set: ["a": [8]]) }
            #expect(stale?.code == .preconditionFailed)
            #expect(try await n1.write(created.id, ifMatch: first.stamp, set: ["a": [8]]).state?.attributes == ["a": [8]])
            // A new idle limit.
            let limited = try #require(try await n1.write(created.id, set: [:], maxInactiveInterval: .seconds(77)).state)
            #expect(limited.maxInactiveInterval == .seconds(77))
            // Replicated like any commit.
            _ = try await n1.sync(created.id)
            #expect(cluster["n2"].copy(of: created.id)?.backupState?.attributes == ["a": [8]])
            // Only the owner writes.
            let misdirected = await #expect(throws: SessionError.self) { _ = try await cluster["n2"].write(created.id, set: ["a": [9]]) }
            #expect(misdirected?.code == .notOwner)
            let unknown = await #expect(throws: SessionError.self) { _ = try await n1.write(SessionID(high: 1, low: 1), set: ["a": [9]]) }
            #expect(unknown?.code == .sessionNotFound)
        }
    }
}
