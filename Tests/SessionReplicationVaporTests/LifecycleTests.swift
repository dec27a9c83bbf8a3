import SessionReplication
import SessionReplicationCore
import SessionReplicationVapor
import Testing
import Vapor
import VaporTesting

@Suite("The node lives and dies with the Vapor application", .timeLimit(.minutes(10)))
struct LifecycleTests {
    @Test("boot starts the node; shutdown hands its sessions to a live backup and stops it")
    func bootAndDrain() async throws {
        try await VaporCluster.with(unstarted: ["n1"]) { cluster in
            let n1 = cluster["n1"], n2 = cluster["n2"]
            #expect(n1.replicationPort == nil)
            let app = try await Application.make(.testing)
            app.logger.logLevel = .error
            app.sessions.use(.drs(n1))
            app.middleware.use(app.sessions.middleware)
            TestRoutes.register(on: app, node: n1)
            var created: SessionReplicationCore.SessionID?
            do {
                try await app.asyncBoot()
                cluster.connect()
                #expect(await cluster.joined(), "n1 did not join after boot")
                // Ready means joined and unfenced: it needs its peers, reached only now.
                #expect(await eventually { n1.isReady }, "n1 did not become ready after boot")
                let response = try await app.testing().sendRequest(.POST, "set/k/v")
                #expect(response.status == .ok)
                created = try clusterID(response.sessionCookie)
                _ = try await n1.sync(created!)
            } catch {
                try? await app.asyncShutdown()
                throw error
            }
            let id = try #require(created)
            try await app.asyncShutdown()
            #expect(!n1.isReady)
            #expect(n2.lookup(id).ownedAttributes == ["k": Array("v".utf8)], "the session was not handed over to n2")
        }
    }

    @Test("Vapor's synchronous boot fails with a message instead of blocking")
    func synchronousBootFails() async throws {
        try await VaporCluster.with(["n1"], unstarted: ["n1"]) { cluster in
            let app = try await Application.make(.testing)
            app.logger.logLevel = .error
            app.sessions.use(.drs(cluster["n1"]))
            #expect(throws: (any Error).self) { _ = try app.testing() }
            try await app.asyncShutdown()
        }
    }
}
