import HTTPTypes
import Hummingbird
import NIOHTTP1
import SessionReplicationCore

/// A non-2xx answer of the API: status, contract error code, message and extra headers.
/// Rendered as `{"error": code, "message": message}` by `APIResponse.error`.
struct APIError: Error, Sendable {
    var status: HTTPResponse.Status
    var code: String
    var message: String
    var headers: HTTPFields = [:]

    static func invalidSessionID(_ segment: some StringProtocol) -> APIError {
        APIError(status: .badRequest, code: "invalid-session-id",
                 message: "a session id is 32 lowercase hex digits, optionally followed by .<route> (got \(segment.utf8.count) bytes)")
    }

    static let invalidAttributeName = APIError(
        status: .badRequest, code: "invalid-attribute-name",
        message: "an attribute name is 1-256 bytes of percent-encoded UTF-8 without control characters")

    static func badRequest(_ message: String) -> APIError {
        APIError(status: .badRequest, code: "bad-request", message: message)
    }

    static let sessionNotFound = APIError(status: .notFound, code: "session-not-found", message: "no such session")
    static let attributeNotFound = APIError(status: .notFound, code: "attribute-not-found", message: "no such attribute")
    static let notFound = APIError(status: .notFound, code: "not-found", message: "no such route")
    static let notReady = APIError(status: .serviceUnavailable, code: "not-ready", message: "this node is not ready")
    static let preconditionFailed = APIError(status: .preconditionFailed, code: "precondition-failed",
                                             message: "If-Match does not match the session's current ETag")

    static let unauthorized: APIError = {
        var error = APIError(status: .unauthorized, code: "unauthorized", message: "a valid bearer token is required")
        error.headers[.wwwAuthenticate] = "Bearer"
        return error
    }()

    static func methodNotAllowed(_ allowed: [HTTPRequest.Method]) -> APIError {
        var error = APIError(status: .methodNotAllowed, code: "method-not-allowed",
                             message: "this path accepts \(allowed.map(\.rawValue).joined(separator: ", "))")
        error.headers[.allow] = allowed.map(\.rawValue).joined(separator: ", ")
        return error
    }

    static func payloadTooLarge(limit: Int) -> APIError {
        APIError(status: .contentTooLarge, code: "payload-too-large", message: "the body exceeds \(limit) bytes")
    }

    /// `503 session-unavailable` with `Retry-After: 1`, naming the owner when known.
    static func sessionUnavailable(owner: String?) -> APIError {
        var error = APIError(status: .serviceUnavailable, code: "session-unavailable",
                             message: "this node does not serve the session now; retry")
        error.headers[.retryAfter] = "1"
        if let owner { error.headers[.drsOwner] = owner }
        return error
    }

    static let internalError = APIError(status: .internalServerError, code: "internal", message: "internal error")
}

extension APIError {
    /// The contract's answer for any error: `APIError` as is, `SessionError` by code,
    /// Hummingbird's `HTTPError` by status, a malformed request (NIO's `HTTPParserError`)
    /// `400 bad-request`, anything else `500 internal` with a fixed
    /// message (internals never leak).
    init(_ error: any Error) {
        switch error {
        case let error as APIError: self = error
        case let error as SessionError: self.init(sessionError: error)
        case let error as HTTPError: self.init(httpError: error)
        // The request itself was malformed (a bad chunk size, a broken header): the
        // client's fault, not the node's.
        case is HTTPParserError: self = .badRequest("malformed HTTP request")
        default: self = .internalError
        }
    }

    /// Maps a `SessionError` by its code; unknown codes become `500 internal`.
    init(sessionError error: SessionError) {
        let code = error.code.description
        let status: HTTPResponse.Status
        switch code {
        case "session-not-found", "attribute-not-found": status = .notFound
        case "precondition-failed": status = .preconditionFailed
        case "payload-too-large": status = .contentTooLarge
        case "invalid-attribute-name", "invalid-session-id", "bad-request": status = .badRequest
        case "sync-timeout": status = .gatewayTimeout
        case "misdirected": status = .misdirectedRequest
        case "insufficient-replicas", "overloaded", "fenced", "no-quorum", "session-unavailable", "capacity", "not-ready":
            status = .serviceUnavailable
        default:
            self = .internalError
            return
        }
        self.init(status: status, code: code, message: error.message)
        if code == "session-unavailable" || code == "overloaded" || code == "not-ready" { headers[.retryAfter] = "1" }
        if let owner = error.owner { headers[.drsOwner] = owner }
    }

    /// Maps Hummingbird's own errors (its not-found fallback, other routes' errors).
    init(httpError error: HTTPError) {
        switch error.status.code {
        case 404: self = .notFound
        case 405: self = APIError(status: .methodNotAllowed, code: "method-not-allowed", message: "method not allowed")
        case 401: self = .unauthorized
        case 413: self = APIError(status: .contentTooLarge, code: "payload-too-large", message: "the body is too large")
        case 400..<500: self = APIError(status: error.status, code: "bad-request", message: error.body ?? "bad request")
        default: self = .internalError
        }
    }
}
