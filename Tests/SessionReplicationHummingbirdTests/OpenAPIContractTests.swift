import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOPosix
import SessionReplication
import SessionReplicationCore
@testable import SessionReplicationHummingbird
import Synchronization
import Testing
import Yams

/// Keeps `docs/openapi.yaml` and the server from drifting apart: the documented paths and
/// methods are exactly the routes the router serves, and every documented operation,
/// exercised on a live node with valid and invalid input, answers only documented
/// statuses, with the documented content type, required headers and body schema.
@Suite("docs/openapi.yaml matches the server")
struct OpenAPIContractTests {
    static let methods = ["get", "put", "post", "delete", "patch", "head", "options", "trace"]

    /// The document, loaded with Yams from the repository's `docs/openapi.yaml`.
    static func loadSpec() throws -> JSONInstance {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/openapi.yaml"), encoding: .utf8)
        return JSONInstance(yaml: try Yams.load(yaml: text))
    }

    /// `METHOD /path/{param}` of every documented operation.
    static func documentedOperations(_ spec: JSONInstance) -> Set<String> {
        var out: Set<String> = []
        for (path, item) in spec["paths"]?.object ?? [:] {
            for method in methods where item[method] != nil { out.insert("\(method.uppercased()) \(path)") }
        }
        return out
    }

    @Test("every route the router serves is documented, and every documented operation is served")
    func routesMatch() throws {
        let spec = try Self.loadSpec()
        var served: Set<String> = ["GET /metrics"]  // added beside the API by `drs node`
        for route in APIRoute.allCases {
            let path = "/" + route.segments.map { segment in
                switch segment {
                case .literal(let text): text
                case .id: "{id}"
                case .name: "{name}"
                }
            }.joined(separator: "/")
            for method in route.methods { served.insert("\(method.rawValue) \(path)") }
        }
        let documented = Self.documentedOperations(spec)
        #expect(served.subtracting(documented).isEmpty, "served but not documented: \(served.subtracting(documented).sorted())")
        #expect(documented.subtracting(served).isEmpty, "documented but not served: \(documented.subtracting(served).sorted())")
    }

    @Test("every schema reference resolves, and the checker understands every keyword the schemas use")
    func documentIsCheckable() throws {
        let spec = try Self.loadSpec()
        let checker = JSONSchemaChecker(document: spec)
        #expect(spec["openapi"]?.string?.hasPrefix("3.") == true)
        #expect(spec["components"]?["securitySchemes"]?["bearerAuth"]?["scheme"]?.string == "bearer")
        var problems: [String] = []
        for (name, schema) in spec["components"]?["schemas"]?.object ?? [:] {
            problems += checker.unsupportedKeywords(in: schema, at: "schemas.\(name)")
        }
        for operation in Self.documentedOperations(spec) {
            let (method, path) = Self.split(operation)
            guard let responses = spec["paths"]?[path]?[method]?["responses"]?.object, !responses.isEmpty else {
                problems.append("\(operation): no responses"); continue
            }
            for (status, response) in responses {
                guard let response = checker.resolve(response) else { problems.append("\(operation) \(status): unresolved response"); continue }
                for (media, content) in response["content"]?.object ?? [:] {
                    guard let schema = content["schema"], checker.resolve(schema) != nil else {
                        problems.append("\(operation) \(status) \(media): no schema"); continue
                    }
                    problems += checker.unsupportedKeywords(in: checker.resolve(schema)!, at: "\(operation) \(status)")
                }
                for (header, definition) in response["headers"]?.object ?? [:] where checker.resolve(definition)?["schema"] == nil {
                    problems.append("\(operation) \(status) header \(header): unresolved")
                }
            }
            if spec["paths"]?[path]?[method]?["security"] != .array([]) {
                if responses["401"] == nil { problems.append("\(operation): needs a token but documents no 401") }
            }
        }
        #expect(problems.isEmpty, "\(problems.sorted())")
    }

    @Test("the checker refuses bodies that break a schema", arguments: [
        (#"{"epoch":1,"version":2}"#, "required property etag is missing"),
        (#"{"epoch":1.5,"version":2,"etag":"x"}"#, "expected integer"),
        (#"{"epoch":1,"version":2,"etag":"x","extra":true}"#, "property extra is not allowed"),
        (#"{"epoch":-1,"version":2,"etag":"x"}"#, "below the minimum"),
    ])
    func checkerFails(body: String, problem: String) throws {
        let spec = try Self.loadSpec()
        let checker = JSONSchemaChecker(document: spec)
        let problems = checker.check(try JSONInstance(json: Data(body.utf8)), against: .object(["$ref": .string("#/components/schemas/Write")]))
        #expect(problems.contains { $0.contains(problem) }, "\(problems)")
        let member = #"[{"name":"n1","id":null,"address":"x","state":"gone","incarnation":0,"self":true}]"#
        let members = try JSONInstance(json: Data(member.utf8))
        let schema = try #require(spec["paths"]?["/cluster/members"]?["get"]?["responses"]?["200"]?["content"]?["application/json"]?["schema"])
        #expect(checker.check(members, against: schema).contains { $0.contains("\"gone\" is not one of") })
    }

    @Test("every documented operation on a live node answers as documented, for valid and invalid input", .timeLimit(.minutes(10)))
    func liveNode() async throws {
        let spec = try Self.loadSpec()
        let recorder = ContractRecorder(spec: spec)
        try await LiveCluster.with { cluster in
            let settings = SessionAPI.Settings(bearerToken: LiveCluster.token, maxAttributeBytes: 4096, maxCreateBodyBytes: 64 << 10)
            let router = Router()
            SessionAPI(backend: cluster.n1, settings: settings).addRoutes(to: router)
            let prometheus = PrometheusExport()
            prometheus.addRoute(to: router, publishing: NodeMetrics(node: cluster.n1, factory: prometheus.factory))
            let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
            try await app.test(.live) { client in
                try await Self.exercise(ContractClient(client: client, recorder: recorder), cluster: cluster)
            }
        }
        #expect(recorder.problems.isEmpty, "\(recorder.problems)")
        // Every operation answered at least one success, and (when it documents any)
        // at least one error.
        for operation in Self.documentedOperations(spec).sorted() {
            let seen = recorder.statuses(of: operation)
            #expect(seen.contains { (200..<300).contains($0) }, "\(operation): no success seen (saw \(seen.sorted()))")
            let (method, path) = Self.split(operation)
            let documentsErrors = (spec["paths"]?[path]?[method]?["responses"]?.object ?? [:]).keys.contains { !$0.hasPrefix("2") }
            if documentsErrors { #expect(seen.contains { $0 >= 400 }, "\(operation): no error seen (saw \(seen.sorted()))") }
        }
    }

    /// Whether the document waives the token for `operation` (`security: []`).
    static func isOpen(_ operation: String, in spec: JSONInstance) -> Bool {
        let (method, path) = split(operation)
        return spec["paths"]?[path]?[method]?["security"]?.array?.isEmpty == true
    }

    /// The requests of the live test, in order; each answer is checked by the recorder.
    static func exercise(_ c: ContractClient, cluster: LiveCluster) async throws {
        let unknown = "0123456789abcdef0123456789abcdef"

        // Without the token: 401 everywhere but where the document waives it (`security: []`).
        for operation in documentedOperations(c.recorder.spec) where !isOpen(operation, in: c.recorder.spec) {
            let (method, path) = split(operation)
            let uri = path.replacingOccurrences(of: "{id}", with: unknown).replacingOccurrences(of: "{name}", with: "a")
            let answer = try await c.send(HTTPRequest.Method(rawValue: method.uppercased())!, path, uri, authorized: false)
            #expect(answer.status == .unauthorized, "\(operation)")
        }

        // Health and cluster views.
        #expect(try await c.send(.get, "/healthz", "/healthz", authorized: false).status == .ok)
        // Ready once joined and holding its leases (a moment after start).
        var ready = false
        for _ in 0..<200 where !ready {
            ready = try await c.send(.get, "/readyz", "/readyz").status == .ok
            if !ready { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(ready)
        #expect(try await c.send(.get, "/cluster/members", "/cluster/members").status == .ok)
        #expect(try await c.send(.get, "/cluster/status", "/cluster/status").status == .ok)
        #expect(try await c.send(.get, "/metrics", "/metrics").status == .ok)

        // Creation: valid, malformed, oversized.
        let created = try await c.send(.post, "/sessions", "/sessions", body: #"{"maxInactiveInterval":600,"attributes":{"cart":"YXBwbGVz"}}"#)
        #expect(created.status == .created)
        let id = try #require(try JSONInstance(json: Data(buffer: created.body))["id"]?.string)
        let etag = try #require(created.headers[.eTag])
        #expect(try await c.send(.post, "/sessions", "/sessions").status == .created, "an empty body creates a session")
        for bad in ["{", "[]", #"{"color":"red"}"#, #"{"attributes":{"a":"!"}}"#, #"{"maxInactiveInterval":0}"#, #"{"attributes":{"":"YQ=="}}"#] {
            #expect(try await c.send(.post, "/sessions", "/sessions", body: bad).status == .badRequest, "\(bad)")
        }
        let huge = #"{"attributes":{"big":""# + String(repeating: "A", count: 80 << 10) + #""}}"#
        #expect(try await c.send(.post, "/sessions", "/sessions", body: huge).status == .contentTooLarge)

        // Reading: by bare id, with another route (a new cookie), malformed, unknown.
        #expect(try await c.send(.get, "/sessions/{id}", "/sessions/\(id)").status == .ok)
        let rerouted = try await c.send(.get, "/sessions/{id}", "/sessions/\(id).n2")
        #expect(rerouted.status == .ok && rerouted.headers[.setCookie] != nil)
        #expect(try await c.send(.get, "/sessions/{id}", "/sessions/\(id.uppercased())").status == .badRequest)
        let missing = try await c.send(.get, "/sessions/{id}", "/sessions/\(unknown)")
        #expect(missing.status == .notFound || missing.status == .serviceUnavailable, "no member holds it")

        // Attributes.
        let attribute = "/sessions/{id}/attributes/{name}"
        let put = try await c.send(.put, attribute, "/sessions/\(id)/attributes/pears", body: "two", headers: [.ifMatch: etag])
        #expect(put.status == .ok)
        #expect(try await c.send(.put, attribute, "/sessions/\(id)/attributes/pears", body: "three", headers: [.ifMatch: etag]).status == .preconditionFailed)
        #expect(try await c.send(.put, attribute, "/sessions/\(id)/attributes/big", body: String(repeating: "x", count: 5000)).status == .contentTooLarge)
        #expect(try await c.send(.put, attribute, "/sessions/\(id)/attributes/%00", body: "x").status == .badRequest)
        let putMissing = try await c.send(.put, attribute, "/sessions/\(unknown)/attributes/a", body: "x")
        #expect(putMissing.status == .notFound || putMissing.status == .serviceUnavailable, "a PUT never creates a session")
        #expect(try await c.send(.put, attribute, "/sessions/\(id)/attributes/empty").status == .ok, "0 bytes are a value")
        let value = try await c.send(.get, attribute, "/sessions/\(id)/attributes/pears")
        #expect(value.status == .ok && String(buffer: value.body) == "two")
        #expect(try await c.send(.get, attribute, "/sessions/\(id)/attributes/plums").status == .notFound)
        #expect(try await c.send(.delete, attribute, "/sessions/\(id)/attributes/empty").status == .ok)
        #expect(try await c.send(.delete, attribute, "/sessions/\(id)/attributes/plums").status == .ok, "absent: version unchanged")
        #expect(try await c.send(.delete, attribute, "/sessions/\(id)/attributes/pears", headers: [.ifMatch: etag]).status == .preconditionFailed)

        // Sync, rotation and this node's copies.
        let synced = try await c.send(.post, "/sessions/{id}/sync", "/sessions/\(id)/sync")
        #expect(synced.status == .ok)
        #expect(try await c.send(.post, "/sessions/{id}/sync", "/sessions/\(id)x/sync").status == .badRequest)
        #expect(try await c.send(.post, "/sessions/{id}/rotate", "/sessions/\(id)/rotate", headers: [.ifMatch: etag]).status == .preconditionFailed)
        let rotated = try await c.send(.post, "/sessions/{id}/rotate", "/sessions/\(id)/rotate")
        #expect(rotated.status == .ok)
        let newID = try #require(try JSONInstance(json: Data(buffer: rotated.body))["id"]?.string)
        #expect(try await c.send(.post, "/sessions/{id}/rotate", "/sessions/\(id)/rotate").status == .notFound, "the old id is tombstoned")
        #expect(try await c.send(.post, "/sessions/{id}/sync", "/sessions/\(id)/sync").status == .notFound)
        let copy = "/cluster/sessions/{id}"
        for target in [newID, id, unknown] { #expect(try await c.send(.get, copy, "/cluster/sessions/\(target)").status == .ok) }
        #expect(try await c.send(.get, copy, "/cluster/sessions/\(unknown).N2").status == .badRequest)

        // A session owned by n2: its backup copy here, then a takeover on request.
        let remote = try await cluster.n2.createSession(attributes: ["k": Array("v".utf8)])
        let remoteID = try #require(remote.state?.id.hex)
        var role: String?
        for _ in 0..<200 where role != "backup" {
            role = try JSONInstance(json: Data(buffer: try await c.send(.get, copy, "/cluster/sessions/\(remoteID)").body))["role"]?.string
            if role != "backup" { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(role == "backup", "n1 holds n2's session as a backup")
        // Taken over from n2; on a starved machine the search may give up first, which
        // is documented too (the takeover itself is TakeoverIntegrationTests' subject).
        let takenOver = try await c.send(.get, "/sessions/{id}", "/sessions/\(remoteID).n2")
        #expect(takenOver.status == .ok || takenOver.status == .serviceUnavailable)

        // Ending sessions.
        let newETag = try #require(rotated.headers[.eTag])
        #expect(try await c.send(.delete, "/sessions/{id}", "/sessions/\(newID)", headers: [.ifMatch: "\"1-1-1\""]).status == .preconditionFailed)
        #expect(try await c.send(.delete, "/sessions/{id}", "/sessions/\(newID)", headers: [.ifMatch: newETag]).status == .noContent)
        #expect(try await c.send(.delete, "/sessions/{id}", "/sessions/\(newID)").status == .notFound)

        // Outside the documented operations: unknown paths and methods.
        let nowhere = try await c.sendUndocumented(.get, "/nowhere")
        #expect(nowhere.status == .notFound)
        let wrongMethod = try await c.sendUndocumented(.patch, "/sessions/\(remoteID)")
        #expect(wrongMethod.status == .methodNotAllowed && wrongMethod.headers[.allow] == "GET, DELETE")

        // A stopped node: not ready, and nothing is served.
        await cluster.n1.shutdown()
        #expect(try await c.send(.get, "/readyz", "/readyz").status == .serviceUnavailable)
        #expect(try await c.send(.post, "/sessions", "/sessions").status == .serviceUnavailable)
        #expect(try await c.send(.get, "/sessions/{id}", "/sessions/\(remoteID)").status == .serviceUnavailable)
        #expect(try await c.send(.get, "/healthz", "/healthz", authorized: false).status == .ok)
    }

    static func split(_ operation: String) -> (method: String, path: String) {
        let parts = operation.split(separator: " ", maxSplits: 1)
        return (parts[0].lowercased(), String(parts[1]))
    }
}

/// A live client that sends each request as a documented operation and has the answer
/// checked against the document.
struct ContractClient: Sendable {
    let client: any TestClientProtocol
    let recorder: ContractRecorder

    /// Sends `method uri` as the documented operation `method template`, with the bearer
    /// token unless `authorized` is false.
    func send(_ method: HTTPRequest.Method, _ template: String, _ uri: String, body: String? = nil,
              headers: HTTPFields = [:], authorized: Bool = true) async throws -> TestResponse {
        var headers = headers
        if authorized { headers[.authorization] = "Bearer \(LiveCluster.token)" }
        let response = try await client.execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
        recorder.check(response, operation: "\(method.rawValue) \(template)", uri: uri)
        return response
    }

    /// Sends a request no operation documents; the answer must be the generic `Error`.
    func sendUndocumented(_ method: HTTPRequest.Method, _ uri: String) async throws -> TestResponse {
        let response = try await client.execute(uri: uri, method: method, headers: [.authorization: "Bearer \(LiveCluster.token)"])
        recorder.checkError(response, context: "\(method.rawValue) \(uri)")
        return response
    }
}

/// Checks answers against the document and remembers the statuses seen per operation.
final class ContractRecorder: Sendable {
    let spec: JSONInstance
    let checker: JSONSchemaChecker
    private let state = Mutex<(problems: [String], seen: [String: Set<Int>])>(([], [:]))

    init(spec: JSONInstance) {
        self.spec = spec
        self.checker = JSONSchemaChecker(document: spec)
    }

    var problems: [String] { state.withLock { $0.problems } }
    func statuses(of operation: String) -> Set<Int> { state.withLock { $0.seen[operation] ?? [] } }

    /// Checks one answer to the documented `operation` (`GET /sessions/{id}`): its status
    /// is documented, its content type is the documented one (JSON as
    /// `application/json; charset=utf-8`), required headers are present and every
    /// documented header present matches its schema, and a JSON body matches the schema.
    func check(_ response: TestResponse, operation: String, uri: String) {
        let status = Int(response.status.code)
        var found: [String] = []
        defer {
            state.withLock { s in
                s.seen[operation, default: []].insert(status)
                s.problems += found.map { "\(operation) (\(uri)) \(status): \($0)" }
            }
        }
        let (method, path) = OpenAPIContractTests.split(operation)
        guard let documented = spec["paths"]?[path]?[method]?["responses"]?[String(status)],
              let answer = checker.resolve(documented) else {
            found.append("status not documented; body \(String(buffer: response.body).prefix(200))")
            return
        }
        for (name, definition) in answer["headers"]?.object ?? [:] {
            guard let header = checker.resolve(definition), let field = HTTPField.Name(name) else { continue }
            guard let value = response.headers[field] else {
                if header["required"] == .bool(true) { found.append("required header \(name) missing") }
                continue
            }
            found += checkHeader(value, header["schema"] ?? .object([:]), name: name)
        }
        found += checkBody(response, content: answer["content"]?.object)
    }

    /// Checks an answer outside every operation (unknown path, wrong method) against the
    /// generic `Error` schema; a `405` must say `Allow`.
    func checkError(_ response: TestResponse, context: String) {
        var found = checkBody(response, content: ["application/json": .object(["schema": .object(["$ref": .string("#/components/schemas/Error")])])])
        if response.status == .methodNotAllowed, response.headers[.allow] == nil { found.append("405 without Allow") }
        state.withLock { $0.problems += found.map { "\(context) \(response.status.code): \($0)" } }
    }

    private func checkBody(_ response: TestResponse, content: [String: JSONInstance]?) -> [String] {
        guard let content, !content.isEmpty else {
            return response.body.readableBytes == 0 ? [] : ["a body where none is documented"]
        }
        let contentType = response.headers[.contentType] ?? ""
        let media = String(contentType.split(separator: ";").first ?? "").trimmingCharacters(in: .whitespaces).lowercased()
        guard let entry = content[media] else { return ["content type \(contentType) is not one of \(content.keys.sorted())"] }
        switch media {
        case "application/json":
            guard contentType == APIResponse.jsonContentType else { return ["JSON as \(contentType), not \(APIResponse.jsonContentType)"] }
            guard let body = try? JSONInstance(json: Data(buffer: response.body)) else { return ["the body is not JSON"] }
            return checker.check(body, against: entry["schema"] ?? .object([:]))
        case "text/plain":
            // Prometheus text: every sample and every metadata line names a drs_ metric.
            let lines = String(buffer: response.body).split(separator: "\n")
            return lines.compactMap { line in
                let name = line.hasPrefix("# ") ? line.split(separator: " ").dropFirst(2).first : line.split(separator: " ").first
                return name.map { $0.hasPrefix("drs_") } == false ? "metric line without drs_ name: \(line.prefix(80))" : nil
            }
        default:
            return []
        }
    }

    private func checkHeader(_ value: String, _ schema: JSONInstance, name: String) -> [String] {
        let resolved = checker.resolve(schema)
        let instance: JSONInstance
        if resolved?["type"]?.string == "integer" {
            guard let number = Int(value) else { return ["header \(name): \(value) is not an integer"] }
            instance = .number(Double(number), isInteger: true)
        } else {
            instance = .string(value)
        }
        return checker.check(instance, against: schema, at: "header \(name)")
    }
}

/// Two real nodes on 127.0.0.1 (ports chosen by the kernel), acknowledged replication to
/// one backup, joined before the test body runs and shut down whatever happens.
struct LiveCluster: Sendable {
    static let token = "contract-test-token"
    let n1: ReplicationNode
    let n2: ReplicationNode

    static func with(_ body: (LiveCluster) async throws -> Void) async throws {
        var policy = ReplicationPolicy()
        policy.handoverTimeout = .seconds(5)  // two shared cores: answers can be slow
        var membership = MembershipSettings()
        membership.probeInterval = .milliseconds(250)
        membership.lease = .seconds(2)
        var configuration = ClusterConfiguration(
            clusterID: "openapi", keys: ClusterKeys(current: (0..<32).map { UInt8($0 &* 5 &+ 1) }),
            nodes: ["n1", "n2"].map { NodeEndpoint(name: $0, address: "127.0.0.1", httpPort: 0, replicationPort: 0, membershipPort: 0) },
            replication: policy)
        configuration.membership = membership
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var logger = Logger(label: "openapi-contract")
        logger.logLevel = .warning
        var started: [ReplicationNode] = []
        do {
            for name in ["n1", "n2"] {
                let node = try ReplicationNode(configuration: configuration, name: name, logger: logger, eventLoopGroup: group)
                started.append(node)
                try await node.start()
            }
            let (n1, n2) = (started[0], started[1])
            n1.setPeerEndpoint("n2", host: "127.0.0.1", port: n2.replicationPort!, membershipPort: n2.membershipPort)
            n2.setPeerEndpoint("n1", host: "127.0.0.1", port: n1.replicationPort!, membershipPort: n1.membershipPort)
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline, ![n1, n2].allSatisfy({ $0.members().allSatisfy { $0.state == "alive" } }) {
                try await Task.sleep(for: .milliseconds(20))
            }
            try #require([n1, n2].allSatisfy { $0.members().allSatisfy { $0.state == "alive" } }, "the two nodes joined")
            try await body(LiveCluster(n1: n1, n2: n2))
        } catch {
            for node in started { await node.shutdown() }
            try? await group.shutdownGracefully()
            throw error
        }
        for node in started { await node.shutdown() }
        try? await group.shutdownGracefully()
    }
}
