import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import SessionReplicationCore
import SessionReplicationHummingbird
import Testing

@Suite("Hostile input: every bad request gets its documented status and a JSON error")
struct HostileInputTests {
    static let hex = "0123456789abcdef0123456789abcdef"

    @Test("Malformed {id} segments answer 400 invalid-session-id before any lookup", .timeLimit(.minutes(10)))
    func badIDs() async throws {
        let bad = [
            Self.hex.uppercased(), String(Self.hex.dropLast()), Self.hex + "0", Self.hex + ".", Self.hex + ".N1",
            Self.hex + ".n_1", Self.hex + "." + String(repeating: "a", count: 33), Self.hex + "..n1", Self.hex + ".n1.n2",
            "..", ".", "", "%30" + String(Self.hex.dropFirst()), Self.hex + "%2En1", String(Self.hex.dropLast()) + "g",
            Self.hex + "%20", "0x" + String(Self.hex.dropFirst(2)), "é" + String(Self.hex.dropFirst(2)),
        ]
        try await withAPI { client in
            for segment in bad {
                for (uri, method) in [("/sessions/\(segment)", HTTPRequest.Method.get), ("/sessions/\(segment)/attributes/a", .put),
                                      ("/sessions/\(segment)/rotate", .post), ("/cluster/sessions/\(segment)", .get)] {
                    let response = try await client.execute(uri: uri, method: method)
                    #expect(response.isError(.badRequest, "invalid-session-id"), "\(method) \(uri): \(response.status) \(response.text)")
                }
            }
        }
    }

    @Test("Well-formed ids of unknown sessions answer 404, including a route starting with a hyphen", .timeLimit(.minutes(10)))
    func unknownIDs() async throws {
        try await withAPI { client in
            for segment in [Self.hex, Self.hex + ".n1", Self.hex + ".-", Self.hex + "." + String(repeating: "z", count: 32)] {
                let response = try await client.execute(uri: "/sessions/\(segment)", method: .get)
                #expect(response.isError(.notFound, "session-not-found"), "\(segment)")
            }
        }
    }

    @Test("Malformed attribute names answer 400 invalid-attribute-name", .timeLimit(.minutes(10)))
    func badNames() async throws {
        try await withAPI { client in
            let id = try await client.newSession()
            let bad = ["", "%", "%4", "%zz", "a%2", "%00", "%0A", "a%7Fb", "%1B", "%C3", "%FF%FE", "%ED%A0%80",
                       String(repeating: "a", count: 257), String(repeating: "%61", count: 257), "..", "."]
            for name in bad {
                for method in [HTTPRequest.Method.get, .put, .delete] {
                    let response = try await client.execute(uri: "/sessions/\(id)/attributes/\(name)", method: method, body: ByteBuffer(string: "v"))
                    #expect(response.isError(.badRequest, "invalid-attribute-name"), "\(method) \(name.prefix(20)): \(response.status)")
                }
            }
            let longest = try await client.execute(uri: "/sessions/\(id)/attributes/\(String(repeating: "a", count: 256))", method: .put)
            #expect(longest.status == .ok, "256 bytes is allowed")
            let read = try await client.execute(uri: "/sessions/\(id)", method: .get)
            #expect(try read.decode(SessionBody.self).attributes.count == 1, "nothing else was written")
        }
    }

    @Test("Unknown routes and path tricks answer 404 not-found as JSON", .timeLimit(.minutes(10)))
    func unknownRoutes() async throws {
        try await withAPI { client in
            let id = try await client.newSession()
            let paths = ["/", "/nope", "/sessions/\(id)/attributes", "/sessions/\(id)/attributes/a/b", "/sessions/\(id)/",
                         "/sessions/\(id)/nope", "//sessions", "/sessions/\(id)//attributes/a", "/sessions/../healthz", "/./healthz",
                         "/healthz/", "/cluster", "/cluster/", "/cluster/sessions", "/SESSIONS", "/Healthz", "/metrics", "*",
                         "/sessions/\(id)/attributes/a/..", "/cluster/members/../status", "/%73essions"]
            for path in paths {
                let response = try await client.execute(uri: path, method: .get)
                #expect(response.isError(.notFound, "not-found"), "\(path): \(response.status) \(response.text)")
            }
            let trailing = try await client.execute(uri: "/sessions/", method: .get)
            #expect(trailing.isError(.badRequest, "invalid-session-id"), "an empty {id} segment is a bad id")
        }
    }

    @Test("A known path with another method answers 405 method-not-allowed with Allow", .timeLimit(.minutes(10)))
    func wrongMethods() async throws {
        let id = Self.hex
        let cases: [(String, HTTPRequest.Method, String)] = [
            ("/sessions", .get, "POST"), ("/sessions", .delete, "POST"),
            ("/sessions/\(id)", .post, "GET, DELETE"), ("/sessions/\(id)", .put, "GET, DELETE"),
            ("/sessions/\(id)", .patch, "GET, DELETE"), ("/sessions/\(id)", .head, "GET, DELETE"),
            ("/sessions/\(id)/attributes/a", .post, "GET, PUT, DELETE"), ("/sessions/\(id)/rotate", .get, "POST"),
            ("/sessions/\(id)/sync", .put, "POST"), ("/cluster/members", .post, "GET"), ("/cluster/status", .delete, "GET"),
            ("/cluster/sessions/\(id)", .post, "GET"), ("/healthz", .post, "GET"), ("/readyz", .options, "GET"),
            ("/sessions/BAD", .patch, "GET, DELETE"), ("/sessions", HTTPRequest.Method("BREW")!, "POST"),
        ]
        try await withAPI { client in
            for (uri, method, allow) in cases {
                let response = try await client.execute(uri: uri, method: method)
                if method == .head {
                    #expect(response.status == .methodNotAllowed && response.body.readableBytes == 0, "a HEAD answer has no body")
                } else {
                    #expect(response.isError(.methodNotAllowed, "method-not-allowed"), "\(method) \(uri): \(response.status)")
                }
                #expect(response.headers[.allow] == allow, "\(method) \(uri)")
            }
        }
    }

    @Test("A PUT body over maxAttributeBytes answers 413 as JSON, applies nothing, and a body at the limit is fine", .timeLimit(.minutes(10)))
    func hugePut() async throws {
        let backend = FakeBackend()
        try await withAPI(backend, settings: .init(maxAttributeBytes: 1 << 20)) { client in
            let id = try await client.newSession()
            let uri = "/sessions/\(id)/attributes/big"
            let huge = ByteBuffer(repeating: 7, count: 3 << 20)
            let refused = try await client.execute(uri: uri, method: .put, body: huge)
            #expect(refused.isError(.contentTooLarge, "payload-too-large"))
            #expect(refused.headers[.contentLength] == String(refused.body.readableBytes))
            let justOver = try await client.execute(uri: uri, method: .put, body: ByteBuffer(repeating: 7, count: (1 << 20) + 1))
            #expect(justOver.isError(.contentTooLarge, "payload-too-large"))
            let read = try await client.execute(uri: "/sessions/\(id)", method: .get)
            #expect(try read.decode(SessionBody.self).version == 0, "nothing applied")
            let atLimit = try await client.execute(uri: uri, method: .put, body: ByteBuffer(repeating: 7, count: 1 << 20))
            #expect(atLimit.status == .ok)
            let next = try await client.execute(uri: "/healthz", method: .get)
            #expect(next.status == .ok, "the client goes on after a refusal")
        }
    }

    @Test("A refused body is drained up to maxDrainBytes; past it the answer is written and the connection given up", .timeLimit(.minutes(10)))
    func drainLimit() async throws {
        try await withAPI(settings: .init(maxAttributeBytes: 10, maxDrainBytes: 100 << 10)) { client in
            let id = try await client.newSession()
            await #expect(throws: (any Error).self) {
                _ = try await client.execute(uri: "/sessions/\(id)/attributes/a", method: .put, body: ByteBuffer(repeating: 1, count: 200 << 10))
            }
            let drained = try await client.execute(uri: "/sessions/\(id)/attributes/a", method: .put, body: ByteBuffer(repeating: 1, count: 50 << 10))
            #expect(drained.isError(.contentTooLarge, "payload-too-large"))
        }
    }

    @Test("POST /sessions refuses malformed JSON, wrong types, bad base64, unknown fields and bad names", .timeLimit(.minutes(10)))
    func badCreateBodies() async throws {
        let badRequests = [
            "{", "[]", "\"x\"", "42", "null", "{\"attributes\": []}", "{\"attributes\": {\"a\": 1}}", "{\"attributes\": \"x\"}",
            "{\"maxInactiveInterval\": \"60\"}", "{\"maxInactiveInterval\": true}", "{\"maxInactiveInterval\": 0}",
            "{\"maxInactiveInterval\": -5}", "{\"maxInactiveInterval\": 1e300}", "{\"maxInactiveInterval\": 40000000}",
            "{\"attributes\": {\"a\": \"abc\"}}", "{\"attributes\": {\"a\": \"ab=c\"}}", "{\"attributes\": {\"a\": \"YQ\"}}",
            "{\"attributes\": {\"a\": \"YR==\"}}", "{\"attributes\": {\"a\": \"Y Q==\"}}", "{\"attributes\": {\"a\": \"YQ==YQ==\"}}",
            "{\"extra\": 1}", "{\"attributes\": {}, \"Attributes\": {}}", "\u{FEFF}{}x", "{} {}", "{\"attributes\": {\"a\": \"YQ==\"}",
        ]
        try await withAPI { client in
            for body in badRequests {
                let response = try await client.create(body)
                #expect(response.isError(.badRequest, "bad-request"), "\(body): \(response.status) \(response.text)")
            }
            for body in [#"{"attributes": {"": "YQ=="}}"#, #"{"attributes": {"a\u0001": "YQ=="}}"#,
                         "{\"attributes\": {\"\(String(repeating: "n", count: 257))\": \"\"}}"] {
                let response = try await client.create(body)
                #expect(response.isError(.badRequest, "invalid-attribute-name"), "\(body.prefix(40))")
            }
            let unknown = try await client.create(#"{"sneaky": true}"#)
            #expect((unknown.object["message"] as? String)?.contains("sneaky") == true, "the message names the problem")
            for body in ["", "  \n", "{}", #"{"maxInactiveInterval": null, "attributes": null}"#, #"{"maxInactiveInterval": 0.5}"#] {
                let response = try await client.create(body)
                #expect(response.status == .created, "\(body)")
            }
        }
    }

    @Test("An oversized POST /sessions body answers 413 payload-too-large", .timeLimit(.minutes(10)))
    func hugeCreate() async throws {
        try await withAPI(settings: .init(maxCreateBodyBytes: 1024)) { client in
            let body = "{\"attributes\": {\"a\": \"\(String(repeating: "A", count: 2048))\"}}"
            let response = try await client.create(body)
            #expect(response.isError(.contentTooLarge, "payload-too-large"))
        }
    }

    @Test("With a bearer token set, requests without it or with a wrong one answer 401; /healthz and /readyz stay open", .timeLimit(.minutes(10)))
    func bearerToken() async throws {
        try await withAPI(settings: .init(bearerToken: "s3cret")) { client in
            var twice = HTTPFields()
            twice.append(HTTPField(name: .authorization, value: "Bearer s3cret"))
            twice.append(HTTPField(name: .authorization, value: "Bearer s3cret"))
            let wrong: [HTTPFields] = [[:], [.authorization: "Bearer nope"], [.authorization: "Bearer s3cret2"], [.authorization: "Bearer s3cre"],
                                       [.authorization: "Basic s3cret"], [.authorization: "s3cret"], [.authorization: "Bearer "], twice]
            for headers in wrong {
                for (uri, method) in [("/sessions", HTTPRequest.Method.post), ("/cluster/status", .get), ("/metrics", .get), ("/nope", .get)] {
                    let response = try await client.execute(uri: uri, method: method, headers: headers)
                    #expect(response.isError(.unauthorized, "unauthorized"), "\(headers) \(uri)")
                    #expect(response.headers[.wwwAuthenticate] == "Bearer")
                }
            }
            let health = try await client.execute(uri: "/healthz", method: .get)
            #expect(health.status == .ok)
            let ready = try await client.execute(uri: "/readyz", method: .get)
            #expect(ready.status == .ok)
            let good = try await client.create(headers: [.authorization: "Bearer s3cret"])
            #expect(good.status == .created)
            let lowercase = try await client.execute(uri: "/cluster/status", method: .get, headers: [.authorization: "bearer s3cret"])
            #expect(lowercase.status == .ok)
        }
    }
}
