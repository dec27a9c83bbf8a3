import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import SessionReplicationCore
import SessionReplicationHummingbird
import SessionReplicationTestKit
import Testing

@Suite("Seeded property test of the HTTP API")
struct PropertyTests {
    /// Each error code with the status the contract gives it.
    static let documented: [String: HTTPResponse.Status] = [
        "invalid-session-id": .badRequest, "invalid-attribute-name": .badRequest, "bad-request": .badRequest,
        "session-not-found": .notFound, "attribute-not-found": .notFound, "not-found": .notFound,
        "method-not-allowed": .methodNotAllowed, "precondition-failed": .preconditionFailed,
        "payload-too-large": .contentTooLarge, "session-unavailable": .serviceUnavailable,
    ]

    @Test("500 random requests each get a documented status, a JSON error body when not 2xx, and never a 500", .timeLimit(.minutes(10)))
    func randomRequests() async throws {
        // DRS_HTTP_SEED replays another seed; the default one runs in every `make test`.
        let seed = ProcessInfo.processInfo.environment["DRS_HTTP_SEED"].flatMap { UInt64($0) } ?? 0x5EED_0001
        let backend = FakeBackend()
        let backup = backend.addBackup(owner: "n3").id.hex
        try await withAPI(backend, settings: .init(maxAttributeBytes: 512, maxCreateBodyBytes: 2048)) { client in
            var ids = [backup, String(repeating: "f", count: 32)]
            for _ in 0..<3 { ids.append(try await client.newSession()) }
            var random = SeededGenerator(seed: seed)
            var seen: Set<Int> = []
            for index in 0..<500 {
                let request = RandomRequest(ids: ids, using: &random)
                let response = try await client.execute(uri: request.path, method: request.method, headers: request.headers, body: request.body)
                seen.insert(response.status.code)
                let context = "seed \(seed) request \(index): \(request.method) \(request.path) -> \(response.status) \(response.text.prefix(200))"
                if (200..<300).contains(response.status.code) {
                    #expect([200, 201, 204].contains(response.status.code), "\(context)")
                    if response.status == .created, let id = response.object["id"] as? String { ids.append(id) }
                } else {
                    if request.method == .head {
                        #expect([404, 405].contains(response.status.code) && response.body.readableBytes == 0, "\(context)")
                        continue
                    }
                    let code = response.object["error"] as? String ?? "<none>"
                    #expect(Self.documented[code] == response.status, "\(context)")
                    #expect(response.isError(response.status, code), "\(context)")
                    if response.status == .methodNotAllowed { #expect(response.headers[.allow] != nil, "\(context)") }
                }
            }
            #expect(seen.isSuperset(of: [200, 201, 400, 404, 405]), "the generator reaches the interesting answers: \(seen.sorted())")
        }
    }
}

/// A random request: mostly well-shaped paths with hostile pieces mixed in.
struct RandomRequest {
    var method: HTTPRequest.Method
    var path: String
    var headers: HTTPFields = [:]
    var body: ByteBuffer?

    static let methods: [HTTPRequest.Method] = [.get, .get, .put, .put, .post, .post, .delete, .patch, .head, .options, HTTPRequest.Method("X-Y")!]
    static let pieces = ["a", "Z", "%", "%2F", "%2e", "%C3%A9", "%ff", "%00", ".", "..", "", "/", "-", "é", " ", "\t", "?", "#", ";", "0", "f"]

    init(ids: [String], using random: inout SeededGenerator) {
        method = Self.methods.randomElement(using: &random)!
        let id = Self.idSegment(ids, using: &random)
        let name = Bool.random(using: &random) ? ["a", "k", "b%2Fc"].randomElement(using: &random)! : Self.junk(using: &random, maxPieces: 4)
        let attribute = "/sessions/\(id)/attributes/\(name)"
        let templates = [
            "/sessions", "/sessions", "/sessions/\(id)", "/sessions/\(id)", attribute, attribute, attribute, attribute,
            "/sessions/\(id)/rotate", "/sessions/\(id)/sync",
            "/cluster/members", "/cluster/status", "/cluster/sessions/\(id)", "/healthz", "/readyz",
            "/\(Self.junk(using: &random, maxPieces: 6))", "/sessions/\(id)/\(name)", "/cluster/\(name)",
        ]
        path = templates.randomElement(using: &random)!
        if Int.random(in: 0..<4, using: &random) == 0 {
            headers[.ifMatch] = ["*", "\"1-00000000000000a10000000000000000-0\"", "garbage", "\"1-00000000000000a10000000000000000-1\", x", ""].randomElement(using: &random)!
        }
        if Bool.random(using: &random) {
            headers[.cookie] = "DRSSESSIONID=\(ids.randomElement(using: &random)!).\(["n1", "n2", "", "..", "x"].randomElement(using: &random)!)"
        }
        body = Self.body(using: &random)
    }

    static func idSegment(_ ids: [String], using random: inout SeededGenerator) -> String {
        switch Int.random(in: 0..<6, using: &random) {
        case 0, 1: ids.randomElement(using: &random)!
        case 2: ids.randomElement(using: &random)! + "." + ["n1", "n3", "-", "N1", "", "a.b"].randomElement(using: &random)!
        case 3: String(ids.randomElement(using: &random)!.dropLast(Int.random(in: 0...2, using: &random))).uppercased()
        default: junk(using: &random, maxPieces: 5)
        }
    }

    static func junk(using random: inout SeededGenerator, maxPieces: Int) -> String {
        (0..<Int.random(in: 0...maxPieces, using: &random)).map { _ in pieces.randomElement(using: &random)! }.joined()
    }

    static func body(using random: inout SeededGenerator) -> ByteBuffer? {
        switch Int.random(in: 0..<7, using: &random) {
        case 0: return nil
        case 1: return ByteBuffer(bytes: (0..<Int.random(in: 0...1200, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) })
        case 2: return ByteBuffer(string: #"{"attributes": {"k": "dg=="}, "maxInactiveInterval": 30}"#)
        case 3:
            let fragments = ["{", "}", "[", "]", "\"attributes\"", ":", ",", "\"a\"", "1", "null", "true", "\"YQ==\"", "{\"x\":1}", "-1e999"]
            return ByteBuffer(string: (0..<Int.random(in: 0...12, using: &random)).map { _ in fragments.randomElement(using: &random)! }.joined())
        case 4, 5: return ByteBuffer(repeating: 0x41, count: Int.random(in: 400...3000, using: &random))
        default: return ByteBuffer(string: "")
        }
    }
}
