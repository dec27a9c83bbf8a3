import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import SessionReplicationHummingbird
import Testing

/// Runs `body` against a router holding only the session API over `backend`.
func withAPI(_ backend: FakeBackend = FakeBackend(), settings: SessionAPI.Settings = .init(),
             _ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
    let router = Router()
    SessionAPI(backend: backend, settings: settings).addRoutes(to: router)
    try await Application(router: router).test(.router, body)
}

extension HTTPField.Name {
    static let owner = HTTPField.Name("X-DRS-Owner")!
    static let durability = HTTPField.Name("X-DRS-Durability")!
}

extension TestResponse {
    /// The body as a JSON object (empty when it is not one).
    var object: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] ?? [:]
    }

    /// The body as a JSON array of objects (empty when it is not one).
    var array: [[String: Any]] {
        (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [[String: Any]] ?? []
    }

    var text: String { String(buffer: body) }

    /// The body decoded strictly as `type` (JSON integers stay integers).
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(type, from: Data(buffer: body))
    }

    /// Whether this is the contract's JSON error `code` with `status`.
    func isError(_ status: HTTPResponse.Status, _ code: String) -> Bool {
        self.status == status && headers[.contentType] == "application/json; charset=utf-8"
            && Set(object.keys) == ["error", "message"] && object["error"] as? String == code
            && !(object["message"] as? String ?? "").isEmpty
    }
}

extension Data {
    init(buffer: ByteBuffer) {
        self.init(buffer.readableBytesView)
    }
}

extension TestClientProtocol {
    /// `POST /sessions` with `body`, returning the creation answer.
    func create(_ body: String? = nil, headers: HTTPFields = [:]) async throws -> TestResponse {
        try await execute(uri: "/sessions", method: .post, headers: headers, body: body.map { ByteBuffer(string: $0) })
    }

    /// A new session's bare id.
    func newSession(_ body: String? = nil) async throws -> String {
        let response = try await create(body)
        #expect(response.status == .created)
        return try #require(response.object["id"] as? String)
    }
}

/// Whether `text` looks like `2026-11-22T04:30:00.123Z`.
func isTimestamp(_ value: Any?) -> Bool {
    guard let text = value as? String else { return false }
    return text.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/) != nil
}
