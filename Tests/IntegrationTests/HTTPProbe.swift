import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore

/// A plain HTTP/1.1 client for tests against `drs` processes, on NIO (Hummingbird's test
/// client). Not `URLSession`: FoundationNetworking crashes the whole test process
/// ("Trying to access a behaviour for a task that in not in the registry") when a request
/// to a paused or killed process times out while its task completes.
enum HTTPProbe {
    /// An answer: status, header fields by lower-cased name, body.
    struct Answer: Sendable {
        var status: Int
        var headers: [String: String]
        var body: Data
        /// The body as a JSON value, nil when it is not JSON.
        var json: Any? { try? JSONSerialization.jsonObject(with: body) }
        /// A header field's value by name, any case.
        func value(forHTTPHeaderField name: String) -> String? { headers[name.lowercased()] }
    }

    /// Sends one request to `url` on a fresh connection; nil on a connection failure or
    /// when no answer came within `timeout` (default 5 s).
    static func send(_ method: String, _ url: URL, headers: [String: String] = [:], body: Data? = nil,
                     timeout: Duration = .seconds(5)) async -> Answer? {
        guard let host = url.host, let port = url.port else { return nil }
        var target = url.path.isEmpty ? "/" : url.path
        if let query = url.query { target += "?" + query }
        var fields = HTTPFields()
        for (name, value) in headers { if let n = HTTPField.Name(name) { fields[n] = value } }
        let request = TestClient.Request(target, method: HTTPRequest.Method(method) ?? .get, authority: "\(host):\(port)",
                                         headers: fields, body: body.map { ByteBuffer(bytes: $0) })
        return try? await TestClient.withClient(host: host, port: port, configuration: .init(timeout: timeout)) { client in
            let response = try await client.execute(request)
            var out: [String: String] = [:]
            for field in response.head.headerFields { out[field.name.canonicalName] = field.value }
            return Answer(status: response.head.status.code, headers: out, body: Data(response.body.map { Array($0.readableBytesView) } ?? []))
        }
    }
}
