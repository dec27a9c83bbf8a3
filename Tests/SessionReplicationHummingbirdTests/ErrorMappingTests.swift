import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import SessionReplicationCore
import SessionReplicationHummingbird
import Testing

@Suite("Backend errors map to the contract's statuses")
struct ErrorMappingTests {
    struct Secret: Error, CustomStringConvertible {
        var description: String { "secret internals at 0xdeadbeef" }
    }

    @Test("SessionError codes become their contract statuses, with Retry-After where documented", .timeLimit(.minutes(10)))
    func sessionErrors() async throws {
        let cases: [(SessionError.Code, HTTPResponse.Status, String, Bool)] = [
            (.syncTimeout, .gatewayTimeout, "sync-timeout", false),
            (.insufficientReplicas, .serviceUnavailable, "insufficient-replicas", false),
            (.overloaded, .serviceUnavailable, "overloaded", true),
            (.capacity, .serviceUnavailable, "capacity", false),
            (.shuttingDown, .serviceUnavailable, "not-ready", true),
            (.sessionUnavailable, .serviceUnavailable, "session-unavailable", true),
            (.noQuorum, .serviceUnavailable, "no-quorum", false),
            (.payloadTooLarge, .contentTooLarge, "payload-too-large", false),
            (.badRequest, .badRequest, "bad-request", false),
            (.invalidAttributeName, .badRequest, "invalid-attribute-name", false),
            (.preconditionFailed, .preconditionFailed, "precondition-failed", false),
            (.sessionNotFound, .notFound, "session-not-found", false),
        ]
        let backend = FakeBackend()
        try await withAPI(backend) { client in
            let id = try await client.newSession()
            for (code, status, name, retry) in cases {
                backend.failNext(SessionError(code, "detail for \(name)"))
                let write = try await client.execute(uri: "/sessions/\(id)/attributes/a", method: .put, body: ByteBuffer(string: "v"))
                #expect(write.isError(status, name), "\(name) on a write: \(write.status)")
                #expect((write.headers[.retryAfter] == "1") == retry, "\(name)")
                if status != .notFound { #expect(write.headers[.owner] == "n1", "\(name): errors about an owned session name its owner") }

                backend.failNext(SessionError(code, "detail for \(name)"))
                let create = try await client.create()
                #expect(create.isError(status, name), "\(name) on create: \(create.status)")
            }
        }
    }

    @Test("misdirected maps to 421 on creation; on a session it is retried once (the session may have moved), then 503 session-unavailable", .timeLimit(.minutes(10)))
    func misdirected() async throws {
        let backend = FakeBackend()
        try await withAPI(backend) { client in
            let id = try await client.newSession()
            backend.failNext(SessionError(.notOwner, "server role"))
            let create = try await client.create()
            #expect(create.isError(.misdirectedRequest, "misdirected"))
            backend.failNext(SessionError(.notOwner, "moved"))
            let retried = try await client.execute(uri: "/sessions/\(id)", method: .get)
            #expect(retried.status == .ok)
            backend.failNext(SessionError(.notOwner, "lost it"), times: 2)
            let read = try await client.execute(uri: "/sessions/\(id)", method: .get)
            #expect(read.isError(.serviceUnavailable, "session-unavailable"))
            #expect(read.headers[.retryAfter] == "1")
        }
    }

    @Test("Any other error answers 500 internal without leaking its description", .timeLimit(.minutes(10)))
    func unexpected() async throws {
        let backend = FakeBackend()
        try await withAPI(backend) { client in
            let id = try await client.newSession()
            for (uri, method) in [("/sessions", HTTPRequest.Method.post), ("/sessions/\(id)", .get), ("/sessions/\(id)/sync", .post)] {
                backend.failNext(Secret())
                let response = try await client.execute(uri: uri, method: method)
                #expect(response.isError(.internalServerError, "internal"))
                #expect(!response.text.contains("secret") && !response.text.contains("deadbeef"))
            }
        }
    }
}
