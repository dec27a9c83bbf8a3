import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOPosix
import SessionReplicationCore
import SessionReplicationHummingbird
import Synchronization
import Testing

/// docs/design.md (Membership and failover), and docs/contracts.md: a node that may not serve a session (`affinity: none`, or
/// within `takeoverCooldown`) forwards the request to its owner; `421 misdirected` with
/// `X-DRS-Owner` only when forwarding fails.
@Suite("Forwarding to the owner", .timeLimit(.minutes(10)))
struct ForwardingTests {
    static let forwardedBy = HTTPField.Name(SessionForwarder.forwardedByHeader)!

    /// A live server for `backend` (the owner) and, beside it, the router of a node that
    /// refers every session to that owner, forwarding with `forwarder`.
    func withOwnerAndReferrer(ownerPort: Int? = nil, forwarder: SessionForwarder?, referrer: FakeBackend = FakeBackend(nodeName: "n1", replicaSet: ["n2"]),
                              _ body: @Sendable @escaping (FakeBackend, any TestClientProtocol, any TestClientProtocol) async throws -> Void) async throws {
        let owner = FakeBackend(nodeName: "n2", replicaSet: ["n1"])
        let router = Router()
        router.middlewares.add(PathRecorder(backend: owner))
        SessionAPI(backend: owner).addRoutes(to: router)
        try await Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0))).test(.live) { ownerClient in
            referrer.keep(by: "n2", at: "127.0.0.1", port: ownerPort ?? ownerClient.port!)
            let referrerRouter = Router()
            SessionAPI(backend: referrer, forwarder: forwarder).addRoutes(to: referrerRouter)
            try await Application(router: referrerRouter, configuration: .init(address: .hostname("127.0.0.1", port: 0))).test(.live) { client in
                try await body(owner, ownerClient, client)
            }
        }
    }

    @Test("reads and writes on a node that does not own the session are answered by the owner, body and cookie included")
    func forwardsToOwner() async throws {
        let outcomes = OutcomeLog()
        let forwarder = SessionForwarder { outcomes.add($0) }
        try await withOwnerAndReferrer(forwarder: forwarder) { owner, ownerClient, client in
            let id = try await ownerClient.newSession(#"{"attributes":{"cart":"YXBwbGVz"}}"#)
            let read = try await client.execute(uri: "/sessions/\(id).n1", method: .get)
            #expect(read.status == .ok && read.headers[.owner] == "n2", "\(read.status) \(read.text)")
            #expect((read.object["attributes"] as? [String: String])?["cart"] == "YXBwbGVz")
            #expect(read.headers[.setCookie]?.hasPrefix("DRSSESSIONID=\(id).n2;") == true, "the load balancer learns the owner's route")
            let put = try await client.execute(uri: "/sessions/\(id)/attributes/pears", method: .put, body: ByteBuffer(string: "two"))
            #expect(put.status == .ok && put.headers[.owner] == "n2" && put.headers[.durability] == "replicated", "\(put.status) \(put.text)")
            let sessionID = try #require(SessionID(cookieValue: id))
            let stored = try #require(owner.state(of: sessionID))
            #expect(stored.attributes["pears"] == Array("two".utf8))
            // Many at once, with bodies, over the real socket (a body streamed on from the
            // server's request stream crashed the node under wrk: it may be iterated once).
            try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for i in 0..<64 {
                    group.addTask {
                        try await client.execute(uri: "/sessions/\(id)/attributes/a\(i % 8)", method: .put, body: ByteBuffer(repeating: UInt8(i), count: 1024)).status
                    }
                }
                for try await status in group { #expect(status == .ok) }
            }
            let gone = try await client.execute(uri: "/sessions/\(id)", method: .delete)
            #expect(gone.status == .noContent && gone.headers[.contentLength] == nil)
            let after = try await client.execute(uri: "/sessions/\(id)", method: .get)
            #expect(after.isError(.notFound, "session-not-found") && after.headers[.owner] == nil)
            #expect(outcomes.values == Array(repeating: true, count: 68))
        }
        await forwarder.shutdown()
    }

    @Test("a forwarded request that lands on a node that does not own the session follows that node's hint, its path growing")
    func followsHints() async throws {
        let forwarder = SessionForwarder()
        try await withOwnerAndReferrer(forwarder: forwarder) { owner, ownerClient, client in
            let id = try await ownerClient.newSession()
            // n3 forwarded it to n1, whose hint was one move behind: n1 forwards to n2.
            let put = try await client.execute(uri: "/sessions/\(id)/attributes/a", method: .put, headers: [Self.forwardedBy: "n3"], body: ByteBuffer(string: "x"))
            #expect(put.status == .ok && put.headers[.owner] == "n2", "\(put.status) \(put.text)")
            let sessionID = try #require(SessionID(cookieValue: id))
            let stored = try #require(owner.state(of: sessionID))
            #expect(stored.attributes["a"] == Array("x".utf8))
            #expect(owner.forwardPaths.last == "n3, n1", "the owner sees the whole path")
        }
        await forwarder.shutdown()
    }

    @Test("a request is never forwarded to a node already on its path, nor past maxHops: 421 misdirected naming the owner",
          arguments: ["n2", "n1", "n4, n2, n5", "n3, n4, n5"])
    func boundedPaths(_ path: String) async throws {
        let forwarder = SessionForwarder(maxHops: 3)
        try await withOwnerAndReferrer(forwarder: forwarder) { owner, ownerClient, client in
            let id = try await ownerClient.newSession()
            let again = try await client.execute(uri: "/sessions/\(id)", method: .get, headers: [Self.forwardedBy: path])
            #expect(again.isError(.misdirectedRequest, "misdirected") && again.headers[.owner] == "n2", "\(again.status) \(again.text)")
            #expect(owner.forwardPaths.isEmpty, "nothing reached the owner")
        }
        await forwarder.shutdown()
    }

    @Test("an owner that cannot be reached, or no forwarder, answers 421 misdirected with X-DRS-Owner")
    func unreachableOwner() async throws {
        let outcomes = OutcomeLog()
        let forwarder = SessionForwarder(timeout: .seconds(2)) { outcomes.add($0) }
        // A port nothing listens on: bound, then closed.
        let closed = try await {
            let socket = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
            let port = socket.localAddress!.port!
            try await socket.close()
            return port
        }()
        try await withOwnerAndReferrer(ownerPort: closed, forwarder: forwarder) { _, ownerClient, client in
            let id = try await ownerClient.newSession()
            let refused = try await client.execute(uri: "/sessions/\(id)/attributes/a", method: .put, body: ByteBuffer(string: "x"))
            #expect(refused.isError(.misdirectedRequest, "misdirected") && refused.headers[.owner] == "n2", "\(refused.status) \(refused.text)")
            #expect(outcomes.values == [false])
        }
        await forwarder.shutdown()
        // The referrer holds a backup: a repeatable request whose forward got no answer
        // is run here, taking the session over despite the cooldown (the owner may have
        // died undetected); one that is not (rotate) keeps its 421.
        let retrying = SessionForwarder(timeout: .seconds(2))
        let referrer = FakeBackend(nodeName: "n1", replicaSet: ["n2"])
        try await withOwnerAndReferrer(ownerPort: closed, forwarder: retrying, referrer: referrer) { _, _, client in
            let copy = referrer.addBackup(owner: "n2")
            let rotate = try await client.execute(uri: "/sessions/\(copy.id)/rotate", method: .post)
            #expect(rotate.isError(.misdirectedRequest, "misdirected"), "\(rotate.status) \(rotate.text)")
            let put = try await client.execute(uri: "/sessions/\(copy.id)/attributes/a", method: .put, body: ByteBuffer(string: "x"))
            #expect(put.status == .ok && put.headers[.owner] == "n1", "\(put.status) \(put.text)")
            #expect(referrer.state(of: copy.id)?.attributes["a"] == Array("x".utf8))
            #expect(referrer.insisted == [false, false, true], "rotate once, the PUT, then the PUT again insisting")
        }
        await retrying.shutdown()
        try await withOwnerAndReferrer(forwarder: nil) { _, ownerClient, client in
            let id = try await ownerClient.newSession()
            let plain = try await client.execute(uri: "/sessions/\(id)", method: .get)
            #expect(plain.isError(.misdirectedRequest, "misdirected") && plain.headers[.owner] == "n2")
        }
    }
}

/// Records the path of every forwarded request that reaches the owner in its backend.
struct PathRecorder<Context: RequestContext>: RouterMiddleware {
    let backend: FakeBackend
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let path = request.headers[ForwardingTests.forwardedBy] { backend.recordForwardPath(path) }
        return try await next(request, context)
    }
}

/// The outcomes a forwarder reported, in order.
final class OutcomeLog: Sendable {
    private let box = Mutex<[Bool]>([])
    func add(_ ok: Bool) { box.withLock { $0.append(ok) } }
    var values: [Bool] { box.withLock { $0 } }
}
