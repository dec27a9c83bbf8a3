import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTesting
import Logging
import NIOCore
import NIOPosix
import SessionReplication
import SessionReplicationCore
@testable import SessionReplicationHummingbird
import Testing

/// A raw TCP client: what a hostile one sends, byte by byte.
private struct RawClient {
    let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>

    static func connect(port: Int) async throws -> RawClient {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
        }
        // Writes go straight to the channel, never through the outbound writer: finished
        // now (without half-closure this closes nothing), its deinit cannot trap when the
        // client is dropped before the close it asked for has reached the writer (a make
        // test run crashed on "Deinited NIOAsyncWriter without calling finish()").
        channel.outbound.finish()
        return RawClient(channel: channel)
    }

    func send(_ text: String) async throws { try await channel.channel.writeAndFlush(ByteBuffer(string: text)) }

    /// Everything received until the server closes the connection (or `limit` seconds pass).
    func readUntilClosed(limit: Duration = .seconds(60)) async throws -> (text: String, closed: Bool) {
        try await withThrowingTaskGroup(of: (String, Bool).self) { group in
            group.addTask {
                var text = ""
                for try await chunk in channel.inbound { text += String(buffer: chunk) }
                return (text, true)
            }
            group.addTask {
                try await Task.sleep(for: limit)
                return ("", false)
            }
            let first = try await group.next()!
            group.cancelAll()
            channel.channel.close(promise: nil)
            return first
        }
    }
}

/// A live server of the API over `backend` with `http` settings; `body` gets its port.
private func withLiveServer(_ backend: any SessionBackend, http: HTTPSettings = HTTPSettings(), settings: SessionAPI.Settings = .init(),
                            _ body: @Sendable @escaping (Int) async throws -> Void) async throws {
    let router = Router(context: DRSRequestContext.self)
    SessionAPI(backend: backend, settings: settings).addRoutes(to: router)
    var logger = Logger(label: "hostile-http")
    logger.logLevel = .critical
    let app = Application(router: router, server: try DRSHTTPServer.builder(http),
                          configuration: DRSHTTPServer.configuration(address: .hostname("127.0.0.1", port: 0), serverName: nil,
                                                                     settings: http, logger: logger),
                          logger: logger)
    try await app.test(.live) { client in
        guard let port = client.port else { Issue.record("no port"); return }
        try await body(port)
    }
}

@Suite("Hostile HTTP clients")
struct HostileHTTPTests {
    /// One started node (insecure, loopback) configured by `configure`, its HTTP API
    /// under Hummingbird's router test client; the node is shut down whatever happens.
    func withOneNode(_ configure: (inout ClusterConfiguration) -> Void = { _ in },
                     _ body: @escaping @Sendable (ReplicationNode, any TestClientProtocol) async throws -> Void) async throws {
        var config = ClusterConfiguration(clusterID: "one", keys: .insecure,
                                          nodes: [NodeEndpoint(name: "n1", address: "127.0.0.1", httpPort: 0, replicationPort: 0, membershipPort: 0)])
        configure(&config)
        var logger = Logger(label: "one")
        logger.logLevel = .critical
        let node = try ReplicationNode(configuration: config, name: "n1", logger: logger)
        try await node.start()
        do {
            let router = Router()
            SessionAPI(backend: node, settings: .init(configuration: config)).addRoutes(to: router)
            try await Application(router: router).test(.router) { client in try await body(node, client) }
        } catch {
            await node.shutdown()
            throw error
        }
        await node.shutdown()
    }

    @Test("POST /sessions with 70,000 attributes answers 413 payload-too-large and creates nothing", .timeLimit(.minutes(10)))
    func tooManyAttributes() async throws {
        try await withOneNode { node, client in
            let attributes = (0..<70_000).map { "\"a\($0)\":\"\"" }.joined(separator: ",")
            // Before: 201, then every backup refused the session's frame and the lane stalled.
            let refused = try await client.create("{\"attributes\":{\(attributes)}}")
            #expect(refused.isError(.contentTooLarge, "payload-too-large"), "\(refused.status) \(refused.text)")
            #expect(node.status().primaries == 0)
            let fine = try await client.create("{\"attributes\":{\"a\":\"AA==\"}}")
            #expect(fine.status == .created)
        }
    }

    @Test("the node's byte budget (sessions.maxBytes): creates beyond it answer 503 capacity and store nothing", .timeLimit(.minutes(10)))
    func byteBudget() async throws {
        try await withOneNode({
            $0.sessions.maxBytes = 64 << 10
            $0.sessions.maxSessionBytes = 16 << 10
            $0.sessions.maxAttributeBytes = 16 << 10
        }) { node, client in
            // 8 KiB values (base64 of 6 KiB of zeros), until the budget refuses one.
            let value = String(repeating: "A", count: 8 << 10)
            var created = 0, refused: TestResponse?
            for _ in 0..<64 {
                let r = try await client.create("{\"attributes\":{\"v\":\"\(value)\"}}")
                if r.status == .created { created += 1 } else { refused = r; break }
            }
            let answer = try #require(refused, "64 sessions of 6 KiB fitted a 64 KiB budget")
            #expect(answer.isError(.serviceUnavailable, "capacity"), "\(answer.status) \(answer.text)")
            #expect(created * (6 << 10) <= 64 << 10, "\(created) sessions of 6 KiB were stored")
            #expect(node.status().primaries == created, "the refused create stored nothing")
        }
    }

    @Test("/readyz answers without the bearer token (the load balancer's check); other routes still need it")
    func readyzNeedsNoToken() async throws {
        // Before: 401, so `drs lb-config`'s health check marked every node down.
        try await withAPI(settings: .init(bearerToken: "s3cret")) { client in
            let ready = try await client.execute(uri: "/readyz", method: .get)
            #expect(ready.status == .ok)
            let health = try await client.execute(uri: "/healthz", method: .get)
            #expect(health.status == .ok)
            let status = try await client.execute(uri: "/cluster/status", method: .get)
            #expect(status.isError(.unauthorized, "unauthorized"))
        }
    }

    @Test("a bad chunk size answers 400 bad-request, not 500", .timeLimit(.minutes(10)))
    func badChunkSize() async throws {
        try await withLiveServer(FakeBackend()) { port in
            let client = try await RawClient.connect(port: port)
            try await client.send("POST /sessions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n")
            let (text, _) = try await client.readUntilClosed(limit: .seconds(30))
            // Before: HTTP/1.1 500 with {"error":"internal"}.
            #expect(text.hasPrefix("HTTP/1.1 400"), "\(text.prefix(200))")
            #expect(text.contains("\"bad-request\""))
        }
    }

    @Test("a request trickled byte by byte is cut off at the request timeout, whatever the idle timeout", .timeLimit(.minutes(10)))
    func slowlorisIsCutOff() async throws {
        var http = HTTPSettings()
        http.idleTimeout = .seconds(1)
        http.requestTimeout = .seconds(2)
        try await withLiveServer(FakeBackend(), http: http) { port in
            let client = try await RawClient.connect(port: port)
            let trickle = Task {
                // Never finishes its headers; a byte every 300 ms keeps it from being idle.
                for byte in "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + String(repeating: "a", count: 10_000) {
                    try await client.send(String(byte))
                    try await Task.sleep(for: .milliseconds(300))
                }
            }
            defer { trickle.cancel() }
            // Before: held open as long as the bytes kept coming (over 100 s, measured).
            let (_, closed) = try await client.readUntilClosed(limit: .seconds(45))
            #expect(closed, "the server kept a trickling request open")
        }
    }

    @Test("an idle connection is closed after http.idleTimeout", .timeLimit(.minutes(10)))
    func idleConnectionsClose() async throws {
        var http = HTTPSettings()
        http.idleTimeout = .seconds(1)
        try await withLiveServer(FakeBackend(), http: http) { port in
            let client = try await RawClient.connect(port: port)
            let (_, closed) = try await client.readUntilClosed(limit: .seconds(45))
            #expect(closed)
        }
    }

    @Test("http.maxConnections caps the connections Hummingbird accepts at once")
    func connectionCap() throws {
        var http = HTTPSettings()
        http.maxConnections = 3
        let configuration = DRSHTTPServer.configuration(address: .hostname("127.0.0.1", port: 0), serverName: nil, settings: http,
                                                        logger: Logger(label: "cap"))
        var delegate = try #require(configuration.availableConnectionsDelegate as? MaximumAvailableConnections)
        for _ in 0..<3 { #expect(delegate.isAcceptingNewConnections()); delegate.connectionOpened() }
        #expect(!delegate.isAcceptingNewConnections())
        delegate.connectionClosed()
        #expect(delegate.isAcceptingNewConnections())
    }

    @Test("one client holds at most its share of lookups of unknown sessions; others keep theirs")
    func perClientLookups() async throws {
        let limiter = ClientLookupLimiter(perClient: 2)
        let (gate, open) = AsyncStream<Void>.makeStream()
        let holders = (0..<2).map { _ in
            Task { try await limiter.withLookup(client: "10.0.0.1") { for await _ in gate { break } } }
        }
        while limiter.count("10.0.0.1") < 2 { try await Task.sleep(for: .milliseconds(5)) }
        // Before: one client could take all 256 of the node's lookups.
        do {
            try await limiter.withLookup(client: "10.0.0.1") {}
            Issue.record("a third lookup of the same client went through")
        } catch let error as SessionError {
            #expect(error.code == .overloaded)
            let answer = APIError(error)
            #expect(answer.status == .serviceUnavailable && answer.headers[.retryAfter] != nil)
        }
        try await limiter.withLookup(client: "10.0.0.2") {}
        open.yield(); open.yield(); open.finish()
        for h in holders { try await h.value }
        #expect(limiter.count("10.0.0.1") == 0)
    }

    @Test("TLS from PEM files serves the API over HTTPS", .timeLimit(.minutes(10)))
    func tlsServes() async throws {
        let dir = NSTemporaryDirectory() + "drs-tls-\(UInt64.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem",
                             "-days", "1", "-subj", "/CN=127.0.0.1"]
        openssl.standardOutput = FileHandle.nullDevice
        openssl.standardError = FileHandle.nullDevice
        try openssl.run()
        await withCheckedContinuation { continuation in
            Thread { openssl.waitUntilExit(); continuation.resume() }.start()
        }
        try #require(openssl.terminationStatus == 0)
        var http = HTTPSettings()
        http.tls = HTTPTLSFiles(certificate: dir + "/cert.pem", key: dir + "/key.pem")
        try await withLiveServer(FakeBackend(), http: http) { port in
            let curl = Process()
            curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            curl.arguments = ["-sk", "--max-time", "120", "https://127.0.0.1:\(port)/healthz"]
            let out = Pipe()
            curl.standardOutput = out
            try curl.run()
            // Waited for on a thread of its own: blocking one of the two threads of the
            // cooperative pool stalled every test of the run (the server's handlers too)
            // until curl gave up.
            let reader = out.fileHandleForReading
            let data = await withCheckedContinuation { continuation in
                Thread {
                    let data = reader.readDataToEndOfFile()
                    curl.waitUntilExit()
                    continuation.resume(returning: data)
                }.start()
            }
            #expect(String(decoding: data, as: UTF8.self) == #"{"status":"ok"}"#)
        }
        #expect(throws: TLSFileError.self) { try DRSHTTPServer.tlsConfiguration(HTTPTLSFiles(certificate: dir + "/none.pem", key: dir + "/key.pem")) }
    }
}
