import Hummingbird

/// Reads a request body up to a limit. A body over the limit is refused as soon as that
/// is known (a declared `Content-Length` over it, or the first chunk that passes it); the
/// answer is then written first and the rest of the body drained after it.
enum BoundedBody {
    /// What reading found.
    enum Outcome {
        /// The whole body, within the limit.
        case complete([UInt8])
        /// Over the limit: `refusal(limit:drainLimit:)` builds the `413`.
        case tooLarge(RemainingBody)
    }

    /// Reads `request`'s body, up to `limit` bytes.
    static func read(_ request: Request, limit: Int) async throws -> Outcome {
        let remaining = RemainingBody(request.body.makeAsyncIterator())
        if let declared = request.headers[.contentLength].flatMap({ Int($0) }), declared > limit {
            return .tooLarge(remaining)
        }
        var bytes: [UInt8] = []
        while let chunk = try await remaining.next() {
            guard bytes.count + chunk.readableBytes <= limit else { return .tooLarge(remaining) }
            bytes.append(contentsOf: chunk.readableBytesView)
        }
        return .complete(bytes)
    }

    /// `413 payload-too-large` whose body, once written, drains what is left of the request
    /// so the client can read the answer. If more than `drainLimit` bytes arrive in total
    /// the writer throws, which makes the server close the connection.
    static func refusal(_ remaining: RemainingBody, limit: Int, drainLimit: Int) -> Response {
        let error = APIError.payloadTooLarge(limit: limit)
        let bytes = APIResponse.errorBody(error).bytes
        var headers = error.headers
        headers[.contentType] = APIResponse.jsonContentType
        return Response(status: error.status, headers: headers, body: ResponseBody(contentLength: bytes.count) { writer in
            try await writer.write(ByteBuffer(bytes: bytes))
            try await writer.finish(nil)
            guard try await remaining.drain(upTo: drainLimit) else { throw DrainLimitReached() }
        })
    }

    /// Thrown after the answer when a refused body goes on past the drain limit.
    struct DrainLimitReached: Error {}
}

/// The unread rest of a request body, handed from the handler that refused it to the
/// answer's body writer. Used by one task at a time: the handler stops touching it when it
/// returns the answer, and the server runs the writer after that.
final class RemainingBody: @unchecked Sendable {
    private var iterator: RequestBody.AsyncIterator
    /// Bytes read so far.
    private(set) var consumed = 0

    init(_ iterator: RequestBody.AsyncIterator) {
        self.iterator = iterator
    }

    /// The next chunk, or `nil` at the end.
    func next() async throws -> ByteBuffer? {
        let chunk = try await iterator.next()
        consumed += chunk?.readableBytes ?? 0
        return chunk
    }

    /// Reads and discards until the end; `false` if more than `limit` bytes (in total,
    /// counting what was read before) arrived first.
    func drain(upTo limit: Int) async throws -> Bool {
        while consumed <= limit {
            guard try await next() != nil else { return true }
        }
        return false
    }
}
