import HTTPTypes
import Hummingbird

/// The middleware in front of every route of the API (and of routes added to the router
/// after it): checks the bearer token (not on `/healthz` and `/readyz`), notes the client's
/// address for the handlers, answers `404 not-found` / `405 method-not-allowed`
/// by the route table, rejects bad `{id}` and `{name}` segments before any handler runs,
/// and turns every error into the contract's JSON error body.
struct APIGate<Context: RequestContext>: RouterMiddleware {
    let settings: SessionAPI.Settings

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let response = await answer(request, context: context, next: next)
        // A HEAD answer carries no body; its status and headers stay as they are.
        return request.method == .head ? Response(status: response.status, headers: response.headers) : response
    }

    private func answer(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async -> Response {
        do {
            let path = Substring(request.uri.path)
            // The load balancer's health checks carry no token.
            if path != "/healthz" && path != "/readyz" { try authorize(request) }
            if let match = RouteMatch(path: path) {
                guard match.route.methods.contains(request.method) else { throw APIError.methodNotAllowed(match.route.methods) }
                if let id = match.id, SessionPathID(segment: id) == nil { throw APIError.invalidSessionID(id) }
                if let name = match.name, AttributePathName.decode(name) == nil { throw APIError.invalidAttributeName }
            } else if RouteMatch.isIrregular(path) {
                throw APIError.notFound
            }
            let client = (context as? any RemoteAddressRequestContext)?.remoteAddress?.ipAddress
            return try await RequestClient.$address.withValue(client) { try await next(request, context) }
        } catch {
            return APIResponse.error(APIError(error))
        }
    }

    /// Throws `401 unauthorized` unless the request carries the configured bearer token.
    private func authorize(_ request: Request) throws {
        guard let token = settings.requiredToken else { return }
        let presented = request.headers[values: .authorization].compactMap(Self.bearerCredential)
        guard presented.count == 1, Self.constantTimeEqual(Array(presented[0].utf8), Array(token.utf8)) else {
            throw APIError.unauthorized
        }
    }

    /// The credential of `Bearer <credential>` (scheme case-insensitive), else `nil`.
    private static func bearerCredential(_ header: String) -> Substring? {
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let credential = parts[1].drop { $0 == " " }
        return credential.isEmpty ? nil : credential
    }

    /// Compares without an early exit on the first differing byte.
    private static func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: lhs.count ^ rhs.count)
        for index in 0..<max(lhs.count, rhs.count) {
            let left = index < lhs.count ? lhs[index] : 0
            let right = index < rhs.count ? rhs[index] : 0
            difference |= left ^ right
        }
        return difference == 0 && lhs.count == rhs.count
    }
}
