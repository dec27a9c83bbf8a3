import NIOConcurrencyHelpers
import NIOCore
import SessionReplication
import SessionReplicationCore

/// The client a request came from, as `DRSRequestContext` (or any
/// `RemoteAddressRequestContext`) reports it; set by the API's gate for the handlers.
enum RequestClient {
    @TaskLocal static var address: String?
}

/// At most `perClient` lookups at once, per client address, of sessions this node holds
/// nothing of (each asks every live member, and the node runs at most 256 of them): one
/// client sending random ids cannot take the node's whole allowance. Beyond it the request
/// answers `503 overloaded` with `Retry-After`. Requests whose client is unknown share
/// one allowance.
final class ClientLookupLimiter: Sendable {
    let perClient: Int
    private let inFlight = NIOLockedValueBox<[String: Int]>([:])

    init(perClient: Int) { self.perClient = perClient }

    /// Runs `body` holding one of `client`'s lookups; throws `overloaded` when none is free.
    func withLookup<T>(client: String?, _ body: () async throws -> T) async throws -> T {
        let key = client ?? "-"
        let admitted = inFlight.withLockedValue { map in
            guard map[key, default: 0] < perClient else { return false }
            map[key, default: 0] += 1
            return true
        }
        guard admitted else {
            throw SessionError(.overloaded, "\(perClient) lookups of unknown sessions from this client are in flight; retry")
        }
        defer {
            inFlight.withLockedValue { map in
                let n = map[key, default: 1] - 1
                map[key] = n == 0 ? nil : n
            }
        }
        return try await body()
    }

    /// Lookups in flight for `client` (tests).
    func count(_ client: String?) -> Int { inFlight.withLockedValue { $0[client ?? "-"] ?? 0 } }
}
