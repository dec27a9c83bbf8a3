import SessionReplicationCore
import Vapor

extension DRSSessionDriver {
    /// The Vapor error a cluster error becomes, so that a fault answers the client with a
    /// status (through Vapor's `ErrorMiddleware`) and never takes the process down:
    ///
    /// | cluster error | answer |
    /// |---|---|
    /// | `session-unavailable`, `overloaded`, `not-ready`, `fenced`, `no-quorum`, `insufficient-replicas`, `capacity`, `misdirected` | `503`, `Retry-After` (`retryAfter`), `X-DRS-Owner` when the owner is known |
    /// | `sync-timeout` | `504`: the change is applied on the owner, its durability unknown |
    /// | `invalid-attribute-name`, `payload-too-large`, `bad-request` | `500`: the application's session data breaks a cluster limit, which the client cannot fix |
    /// | anything else | `500` |
    ///
    /// The `Abort`'s `identifier` is the cluster's error code and its `reason` the code and
    /// message (never attribute values).
    public static func abort(for error: SessionError, retryAfter: Int = 1) -> Abort {
        let code = error.code.description
        var headers = HTTPHeaders()
        let status: HTTPResponseStatus
        switch code {
        case "session-unavailable", "overloaded", "not-ready", "fenced", "no-quorum", "insufficient-replicas", "capacity", "misdirected":
            status = .serviceUnavailable
            headers.replaceOrAdd(name: .retryAfter, value: String(max(0, retryAfter)))
        case "sync-timeout":
            status = .gatewayTimeout
        default:
            status = .internalServerError
        }
        if let owner = error.owner { headers.replaceOrAdd(name: "X-DRS-Owner", value: owner) }
        return Abort(status, headers: headers, reason: "\(code): \(error.message)", identifier: code)
    }

    /// Runs `body`, turning a `SessionError` into its `Abort` (see `abort(for:retryAfter:)`).
    func mappingErrors<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as SessionError {
            throw Self.abort(for: error, retryAfter: configuration.retryAfter)
        }
    }
}
