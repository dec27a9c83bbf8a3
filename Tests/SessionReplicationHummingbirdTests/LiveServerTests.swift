import HTTPTypes
import Hummingbird
import HummingbirdTesting
import SessionReplicationHummingbird
import Testing

@Suite("Over a real socket")
struct LiveServerTests {
    @Test("A huge PUT gets its 413 over a real connection, which stays usable afterwards", .timeLimit(.minutes(10)))
    func hugePutLive() async throws {
        let router = Router()
        SessionAPI(backend: FakeBackend()).addRoutes(to: router)
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let id = try await client.newSession()
            let refused = try await client.execute(uri: "/sessions/\(id)/attributes/big", method: .put, body: ByteBuffer(repeating: 1, count: 3 << 20))
            #expect(refused.isError(.contentTooLarge, "payload-too-large"))
            let after = try await client.execute(uri: "/sessions/\(id)/attributes/small", method: .put, body: ByteBuffer(string: "ok"))
            #expect(after.status == .ok)
            let head = try await client.execute(uri: "/healthz", method: .head)
            #expect(head.status == .methodNotAllowed && head.body.readableBytes == 0)
            let health = try await client.execute(uri: "/healthz", method: .get)
            #expect(health.text == #"{"status":"ok"}"#)
        }
    }
}
