import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import SessionReplicationCore
import SessionReplicationHummingbird
import Testing

@Suite("Cluster and health routes")
struct ClusterRouteTests {
    @Test("GET /cluster/members lists members sorted by name with the contract's fields", .timeLimit(.minutes(10)))
    func members() async throws {
        try await withAPI { client in
            let response = try await client.execute(uri: "/cluster/members", method: .get)
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "application/json; charset=utf-8")
            #expect(response.array.allSatisfy { Set($0.keys) == MemberBody.keys })
            let members = try response.decode([MemberBody].self)
            #expect(members == [
                MemberBody(name: "n1", id: "a1", address: "127.0.0.11:7101", state: "alive", incarnation: 1, isSelf: true),
                MemberBody(name: "n2", id: nil, address: "127.0.0.12:7102", state: "suspect", incarnation: 2, isSelf: false),
            ])
            #expect(response.text.contains(#""id":null"#), "an unknown node id is null, not omitted")
        }
    }

    @Test("GET /cluster/status answers the node's status with the contract's fields", .timeLimit(.minutes(10)))
    func status() async throws {
        try await withAPI { client in
            _ = try await client.newSession()
            let response = try await client.execute(uri: "/cluster/status", method: .get)
            #expect(response.status == .ok)
            #expect(Set(response.object.keys) == StatusBody.keys)
            let body = try response.decode(StatusBody.self)
            #expect(body.name == "n1" && body.id == "a1" && body.state == "serving" && body.leaseRemainingMs == 250)
            #expect(body.primaries == 1 && body.backups == 0 && body.underReplicated == 0)
            #expect(body.queues == ["n2": 3] && body.lagMsP99 == ["n2": 1.5])
            #expect(body.stateTransfer.pending == 0 && body.stateTransfer.done == 4)
            #expect(Set((response.object["stateTransfer"] as? [String: Any] ?? [:]).keys) == ["pending", "done"])
        }
    }

    @Test("GET /cluster/sessions/{id} describes this node's copy and never touches it", .timeLimit(.minutes(10)))
    func copies() async throws {
        let backend = FakeBackend()
        let backup = backend.addBackup(owner: "n3")
        try await withAPI(backend) { client in
            let id = try await client.newSession()
            backend.advanceClock(milliseconds: 5000)
            let owned = try await client.execute(uri: "/cluster/sessions/\(id)", method: .get)
            #expect(owned.status == .ok)
            #expect(Set(owned.object.keys) == CopyBody.keys)
            let body = try owned.decode(CopyBody.self)
            #expect(body.role == "owner" && body.owner == "n1" && body.replicaSet == ["n2"])
            #expect(body.epoch == 1 && body.version == 0 && body.etag == "1-00000000000000a10000000000000000-0")
            #expect(body.lastAccessedAt == "2026-11-22T04:30:00.123Z", "a diagnostic read is not an access")
            #expect(owned.headers[.setCookie] == nil)
            #expect(owned.headers[.owner] == "n1")

            let held = try await client.execute(uri: "/cluster/sessions/\(backup.id.hex)", method: .get)
            let copy = try held.decode(CopyBody.self)
            #expect(copy.role == "backup" && copy.owner == "n3" && copy.version == 9 && copy.replicaSet == ["n1"])
            #expect(held.headers[.owner] == "n3")

            _ = try await client.execute(uri: "/sessions/\(id)", method: .delete)
            let ended = try await client.execute(uri: "/cluster/sessions/\(id)", method: .get)
            #expect(Set(ended.object.keys) == CopyBody.keys)
            let tomb = try ended.decode(CopyBody.self)
            #expect(tomb.role == "none" && tomb.etag == "1-00000000000000a10000000000000000-0" && tomb.owner == nil && tomb.lastAccessedAt == nil)

            let unknown = try await client.execute(uri: "/cluster/sessions/\(String(repeating: "0", count: 32))", method: .get)
            #expect(unknown.status == .ok)
            #expect(Set(unknown.object.keys) == CopyBody.keys)
            let none = try unknown.decode(CopyBody.self)
            #expect(none.role == "none" && none.epoch == nil && none.etag == nil && none.replicaSet.isEmpty)
        }
    }

    @Test("/healthz answers ok; /readyz answers ready, or 503 not-ready when the node does not serve", .timeLimit(.minutes(10)))
    func health() async throws {
        let backend = FakeBackend()
        try await withAPI(backend) { client in
            let health = try await client.execute(uri: "/healthz", method: .get)
            #expect(health.status == .ok && health.text == #"{"status":"ok"}"#)
            #expect(health.headers[.contentType] == "application/json; charset=utf-8")
            let ready = try await client.execute(uri: "/readyz", method: .get)
            #expect(ready.status == .ok && ready.text == #"{"status":"ready"}"#)
            backend.setReady(false)
            let notReady = try await client.execute(uri: "/readyz", method: .get)
            #expect(notReady.isError(.serviceUnavailable, "not-ready"))
            let stillHealthy = try await client.execute(uri: "/healthz", method: .get)
            #expect(stillHealthy.status == .ok)
        }
    }

    @Test("A session held here only as a backup answers 503 session-unavailable naming the owner, with Retry-After", .timeLimit(.minutes(10)))
    func backupHeld() async throws {
        let backend = FakeBackend()
        let backup = backend.addBackup(owner: "n3")
        let id = backup.id.hex
        try await withAPI(backend) { client in
            let requests: [(String, HTTPRequest.Method)] = [
                ("/sessions/\(id)", .get), ("/sessions/\(id).n3", .delete), ("/sessions/\(id)/attributes/k", .get),
                ("/sessions/\(id)/attributes/k", .put), ("/sessions/\(id)/attributes/k", .delete),
                ("/sessions/\(id)/rotate", .post), ("/sessions/\(id)/sync", .post),
            ]
            for (uri, method) in requests {
                let response = try await client.execute(uri: uri, method: method, body: ByteBuffer(string: "x"))
                #expect(response.isError(.serviceUnavailable, "session-unavailable"), "\(method) \(uri)")
                #expect(response.headers[.owner] == "n3")
                #expect(response.headers[.retryAfter] == "1")
            }
        }
        #expect(backend.lookup(backup.id) == .backup(backup, owner: "n3"), "nothing was applied to the backup copy")
    }
}
