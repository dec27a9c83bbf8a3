import HTTPTypes
import Hummingbird

extension HTTPField.Name {
    /// `X-DRS-Owner`: the node owning the session after the request.
    static let drsOwner = HTTPField.Name("X-DRS-Owner")!
    /// `X-DRS-Durability`: `local` or `replicated`, on writes.
    static let drsDurability = HTTPField.Name("X-DRS-Durability")!
    /// `X-DRS-Forwarded-By`: the node that forwarded the request (never forwarded again).
    static let drsForwardedBy = HTTPField.Name(SessionForwarder.forwardedByHeader)!
}

/// Builders for the API's answers.
enum APIResponse {
    /// `application/json; charset=utf-8`, the contract's JSON media type.
    static let jsonContentType = "application/json; charset=utf-8"

    /// A JSON answer.
    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = jsonContentType
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: value.bytes)))
    }

    /// The body `{"error": code, "message": message}`.
    static func errorBody(_ error: APIError) -> JSONValue {
        .object([("error", .string(error.code)), ("message", .string(error.message))])
    }

    /// The JSON error answer for `error`, with its extra headers.
    static func error(_ error: APIError) -> Response {
        json(errorBody(error), status: error.status, headers: error.headers)
    }
}
