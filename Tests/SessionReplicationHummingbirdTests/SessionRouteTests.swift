import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import SessionReplicationCore
import SessionReplicationHummingbird
import Testing

@Suite("Session routes: the happy path of every route, with exact shapes and headers")
struct SessionRouteTests {
    @Test("POST /sessions answers 201 with Location, the creation body, cookie, owner, ETag and durability", .timeLimit(.minutes(10)))
    func createEmpty() async throws {
        try await withAPI { client in
            let response = try await client.create()
            #expect(response.status == .created)
            #expect(response.headers[.contentType] == "application/json; charset=utf-8")
            #expect(Set(response.object.keys) == CreationBody.keys)
            let body = try response.decode(CreationBody.self)
            #expect(body.id.wholeMatch(of: /[0-9a-f]{32}/) != nil)
            #expect(body.route == "n1" && body.owner == "n1")
            #expect(body.epoch == 1 && body.version == 0)
            #expect(body.etag == "1-00000000000000a10000000000000000-0")
            #expect(body.createdAt == "2026-11-22T04:30:00.123Z" && body.lastAccessedAt == body.createdAt)
            #expect(body.maxInactiveInterval == 1800)
            #expect(response.headers[.location] == "/sessions/\(body.id)")
            #expect(response.headers[.owner] == "n1")
            #expect(response.headers[.eTag] == "\"\(body.etag)\"")
            #expect(response.headers[.durability] == "replicated")
            #expect(response.headers[.setCookie] == "DRSSESSIONID=\(body.id).n1; Path=/; HttpOnly; SameSite=Lax")
        }
    }

    @Test("POST /sessions takes initial attributes in base64 and an idle limit in seconds", .timeLimit(.minutes(10)))
    func createWithBody() async throws {
        try await withAPI { client in
            let created = try await client.create(#"{"maxInactiveInterval": 60, "attributes": {"cart": "AAEC/w==", "empty": ""}}"#)
            #expect(created.status == .created)
            let body = try created.decode(CreationBody.self)
            #expect(body.maxInactiveInterval == 60)
            let read = try await client.execute(uri: "/sessions/\(body.id)", method: .get)
            #expect(read.status == .ok)
            #expect(Set(read.object.keys) == SessionBody.keys)
            #expect(try read.decode(SessionBody.self).attributes == ["cart": "AAEC/w==", "empty": ""])
        }
    }

    @Test("A secure cookie setting adds ; Secure and a custom cookie name is used", .timeLimit(.minutes(10)))
    func secureCookie() async throws {
        try await withAPI(settings: .init(cookieName: "SID", secureCookie: true)) { client in
            let response = try await client.create()
            let id = try #require(response.object["id"] as? String)
            #expect(response.headers[.setCookie] == "SID=\(id).n1; Path=/; HttpOnly; SameSite=Lax; Secure")
        }
    }

    @Test("GET /sessions/{id} answers the session with attributes, owner and ETag, and counts as an access", .timeLimit(.minutes(10)))
    func readSession() async throws {
        let backend = FakeBackend()
        try await withAPI(backend) { client in
            let id = try await client.newSession(#"{"attributes": {"a": "aGk="}}"#)
            backend.advanceClock(milliseconds: 1000)
            let response = try await client.execute(uri: "/sessions/\(id).n1", method: .get)
            #expect(response.status == .ok)
            let body = try response.decode(SessionBody.self)
            #expect(body.id == id && body.attributes == ["a": "aGk="])
            #expect(body.lastAccessedAt == "2026-11-22T04:30:01.123Z")
            #expect(response.headers[.owner] == "n1")
            #expect(response.headers[.eTag] == "\"\(body.etag)\"")
            #expect(response.headers[.durability] == nil)
            #expect(response.headers[.setCookie] == nil, "the path's route names the owner")
        }
    }

    @Test("Set-Cookie appears when the request's route (path suffix, else cookie) differs from the owner", .timeLimit(.minutes(10)))
    func cookieRewrite() async throws {
        try await withAPI { client in
            let id = try await client.newSession()
            let expected = "DRSSESSIONID=\(id).n1; Path=/; HttpOnly; SameSite=Lax"
            let otherRoute = try await client.execute(uri: "/sessions/\(id).n9", method: .get)
            #expect(otherRoute.headers[.setCookie] == expected)
            let noRoute = try await client.execute(uri: "/sessions/\(id)", method: .get)
            #expect(noRoute.headers[.setCookie] == expected)
            let goodCookie = try await client.execute(uri: "/sessions/\(id)", method: .get, headers: [.cookie: "a=b; DRSSESSIONID=\(id).n1"])
            #expect(goodCookie.headers[.setCookie] == nil)
            let staleCookie = try await client.execute(uri: "/sessions/\(id)", method: .get, headers: [.cookie: "DRSSESSIONID=\(id).n7"])
            #expect(staleCookie.headers[.setCookie] == expected)
            let suffixWins = try await client.execute(uri: "/sessions/\(id).n1", method: .get, headers: [.cookie: "DRSSESSIONID=\(id).n7"])
            #expect(suffixWins.headers[.setCookie] == nil)
        }
    }

    @Test("PUT, GET and DELETE of an attribute round-trip raw bytes and bump the version", .timeLimit(.minutes(10)))
    func attributes() async throws {
        try await withAPI { client in
            let id = try await client.newSession()
            let put = try await client.execute(uri: "/sessions/\(id)/attributes/cart", method: .put, body: ByteBuffer(bytes: [0, 1, 255]))
            #expect(put.status == .ok)
            #expect(Set(put.object.keys) == WriteBody.keys)
            let written = try put.decode(WriteBody.self)
            #expect(written.version == 1 && written.epoch == 1 && written.etag == "1-00000000000000a10000000000000000-1")
            #expect(put.headers[.eTag] == "\"1-00000000000000a10000000000000000-1\"" && put.headers[.owner] == "n1" && put.headers[.durability] == "replicated")

            let get = try await client.execute(uri: "/sessions/\(id)/attributes/cart", method: .get)
            #expect(get.status == .ok)
            #expect(Array(get.body.readableBytesView) == [0, 1, 255])
            #expect(get.headers[.contentType] == "application/octet-stream")
            #expect(get.headers[.eTag] == "\"1-00000000000000a10000000000000000-1\"")

            let delete = try await client.execute(uri: "/sessions/\(id)/attributes/cart", method: .delete)
            #expect(delete.status == .ok)
            #expect(try delete.decode(WriteBody.self).version == 2)

            let absent = try await client.execute(uri: "/sessions/\(id)/attributes/cart", method: .delete)
            #expect(absent.status == .ok)
            #expect(try absent.decode(WriteBody.self).version == 2, "deleting an absent attribute changes nothing")

            let missing = try await client.execute(uri: "/sessions/\(id)/attributes/cart", method: .get)
            #expect(missing.isError(.notFound, "attribute-not-found"))
            #expect(missing.headers[.owner] == "n1")
        }
    }

    @Test("An empty PUT body stores an empty value; percent-encoded names decode, %2F included", .timeLimit(.minutes(10)))
    func emptyValueAndEncodedNames() async throws {
        try await withAPI { client in
            let id = try await client.newSession()
            let empty = try await client.execute(uri: "/sessions/\(id)/attributes/e", method: .put)
            #expect(empty.status == .ok)
            let slash = try await client.execute(uri: "/sessions/\(id)/attributes/a%2Fb%20c", method: .put, body: ByteBuffer(string: "v"))
            #expect(slash.status == .ok)
            let dots = try await client.execute(uri: "/sessions/\(id)/attributes/%2E%2E", method: .put, body: ByteBuffer(string: "d"))
            #expect(dots.status == .ok)
            let unicode = try await client.execute(uri: "/sessions/\(id)/attributes/%C3%A9t%C3%A9", method: .put, body: ByteBuffer(string: "u"))
            #expect(unicode.status == .ok)
            let read = try await client.execute(uri: "/sessions/\(id)", method: .get)
            #expect(try read.decode(SessionBody.self).attributes == ["e": "", "a/b c": "dg==", "..": "ZA==", "été": "dQ=="])
            let get = try await client.execute(uri: "/sessions/\(id)/attributes/a%2fb%20c", method: .get)
            #expect(get.text == "v")
        }
    }

    @Test("DELETE /sessions/{id} answers 204 without a body, after which the session is 404", .timeLimit(.minutes(10)))
    func deleteSession() async throws {
        try await withAPI { client in
            let id = try await client.newSession()
            let delete = try await client.execute(uri: "/sessions/\(id)", method: .delete)
            #expect(delete.status == .noContent)
            #expect(delete.body.readableBytes == 0 && delete.headers[.contentLength] == nil && delete.headers[.contentType] == nil)
            #expect(delete.headers[.owner] == "n1")
            let read = try await client.execute(uri: "/sessions/\(id)", method: .get)
            #expect(read.isError(.notFound, "session-not-found"))
            let again = try await client.execute(uri: "/sessions/\(id)", method: .delete)
            #expect(again.isError(.notFound, "session-not-found"))
        }
    }

    @Test("POST /sessions/{id}/rotate answers the creation body for a new id with a new cookie; the old id is gone", .timeLimit(.minutes(10)))
    func rotate() async throws {
        try await withAPI { client in
            let id = try await client.newSession(#"{"attributes": {"a": "eA=="}}"#)
            let rotated = try await client.execute(uri: "/sessions/\(id).n1/rotate", method: .post)
            #expect(rotated.status == .ok)
            #expect(Set(rotated.object.keys) == CreationBody.keys)
            let body = try rotated.decode(CreationBody.self)
            #expect(body.id != id && body.owner == "n1")
            #expect(rotated.headers[.setCookie] == "DRSSESSIONID=\(body.id).n1; Path=/; HttpOnly; SameSite=Lax")
            #expect(rotated.headers[.eTag] == "\"\(body.etag)\"")
            let old = try await client.execute(uri: "/sessions/\(id)", method: .get)
            #expect(old.isError(.notFound, "session-not-found"))
            let new = try await client.execute(uri: "/sessions/\(body.id)", method: .get)
            #expect(try new.decode(SessionBody.self).attributes == ["a": "eA=="])
        }
    }

    @Test("POST /sessions/{id}/sync answers the stamp and the backups it reached", .timeLimit(.minutes(10)))
    func sync() async throws {
        try await withAPI { client in
            let id = try await client.newSession()
            let response = try await client.execute(uri: "/sessions/\(id)/sync", method: .post)
            #expect(response.status == .ok)
            #expect(Set(response.object.keys) == SyncBody.keys)
            let body = try response.decode(SyncBody.self)
            #expect(body.replicatedTo == ["n2"] && body.etag == "1-00000000000000a10000000000000000-0")
            #expect(response.headers[.durability] == "replicated")
        }
        try await withAPI(FakeBackend(replicaSet: [])) { client in
            let id = try await client.newSession()
            let response = try await client.execute(uri: "/sessions/\(id)/sync", method: .post)
            #expect(try response.decode(SyncBody.self).replicatedTo == [])
            #expect(response.headers[.durability] == "local")
        }
    }

    @Test("If-Match: the current ETag or * lets a write through, another one answers 412", .timeLimit(.minutes(10)))
    func ifMatch() async throws {
        try await withAPI { client in
            let id = try await client.newSession()
            let uri = "/sessions/\(id)/attributes/a"
            let current = try await client.execute(uri: uri, method: .put, headers: [.ifMatch: "\"1-00000000000000a10000000000000000-0\""], body: ByteBuffer(string: "1"))
            #expect(current.status == .ok)
            let stale = try await client.execute(uri: uri, method: .put, headers: [.ifMatch: "\"1-00000000000000a10000000000000000-0\""], body: ByteBuffer(string: "2"))
            #expect(stale.isError(.preconditionFailed, "precondition-failed"))
            #expect(stale.headers[.eTag] == "\"1-00000000000000a10000000000000000-1\"", "a 412 tells the current ETag")
            let star = try await client.execute(uri: uri, method: .put, headers: [.ifMatch: "*"], body: ByteBuffer(string: "3"))
            #expect(star.status == .ok)
            let list = try await client.execute(uri: uri, method: .delete, headers: [.ifMatch: "\"0-0-0\", \"1-00000000000000a10000000000000000-2\""])
            #expect(list.status == .ok)
            for garbage in ["nonsense", "W/\"1-00000000000000a10000000000000000-3\"", "\"\""] {
                let bad = try await client.execute(uri: uri, method: .put, headers: [.ifMatch: garbage], body: ByteBuffer(string: "4"))
                #expect(bad.isError(.preconditionFailed, "precondition-failed"), "\(garbage)")
            }
            let deleteStale = try await client.execute(uri: "/sessions/\(id)", method: .delete, headers: [.ifMatch: "\"1-00000000000000a10000000000000000-0\""])
            #expect(deleteStale.isError(.preconditionFailed, "precondition-failed"))
            let rotateStale = try await client.execute(uri: "/sessions/\(id)/rotate", method: .post, headers: [.ifMatch: "\"1-00000000000000a10000000000000000-0\""])
            #expect(rotateStale.isError(.preconditionFailed, "precondition-failed"))
            let deleteCurrent = try await client.execute(uri: "/sessions/\(id)", method: .delete, headers: [.ifMatch: "\"1-00000000000000a10000000000000000-3\""])
            #expect(deleteCurrent.status == .noContent)
        }
    }
}
