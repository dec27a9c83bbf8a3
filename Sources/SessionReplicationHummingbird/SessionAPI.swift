import Hummingbird
import SessionReplication

/// The HTTP API of a node (docs/contracts.md) as Hummingbird routes over a `SessionBackend`.
///
/// ```swift
/// let router = Router()
/// SessionAPI(backend: node, settings: .init(bearerToken: token)).addRoutes(to: router)
/// let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 8081)))
/// try await app.runService()
/// ```
///
/// Every non-2xx answer is `{"error": code, "message": text}` as
/// `application/json; charset=utf-8`: unknown paths `404 not-found`, a known path with
/// another method `405 method-not-allowed` with `Allow`, a malformed `{id}` segment
/// `400 invalid-session-id` and a malformed attribute name `400 invalid-attribute-name`
/// before any lookup, a missing or wrong bearer token `401 unauthorized` (when
/// configured), backend failures by their `SessionError` code, and anything unexpected
/// `500 internal` without details. `GET /metrics` is not part of this type.
public struct SessionAPI: Sendable {
    /// The node the routes serve.
    public let backend: any SessionBackend
    /// Cookie, authentication and body-limit settings.
    public let settings: Settings
    /// Sends requests this node may not serve (`misdirected`: `affinity: none`, or within
    /// `takeoverCooldown`) to the session's owner, at `backend.httpEndpoint(of:)`. Default
    /// `nil`: such requests answer `421 misdirected` with `X-DRS-Owner`, as they also do
    /// when forwarding fails.
    public let forwarder: SessionForwarder?
    /// Each client's share of lookups of unknown sessions.
    let lookups: ClientLookupLimiter

    /// Creates the API over `backend`, forwarding with `forwarder` when given. Traps if
    /// `settings.cookieName` is not a valid cookie name (check with
    /// `Settings.isValidCookieName` when it comes from a config).
    public init(backend: any SessionBackend, settings: Settings = Settings(), forwarder: SessionForwarder? = nil) {
        precondition(Settings.isValidCookieName(settings.cookieName), "invalid cookie name \(settings.cookieName)")
        self.backend = backend
        self.settings = settings
        self.forwarder = forwarder
        self.lookups = ClientLookupLimiter(perClient: max(1, settings.maxLookupsPerClient))
    }

    /// Adds the API's gate middleware and every route of the contract to `router`.
    ///
    /// Call it before adding other routes to the same router: the gate (bearer token,
    /// JSON errors, `404`/`405`) covers routes added after it, such as `/metrics`, and
    /// Hummingbird's not-found fallback, but not routes added before. Routes added later
    /// must not reuse the API's paths (Hummingbird traps on a duplicate method and path).
    /// Paths with empty or dot segments (`//`, `/./`, `/../`) outside the API's shapes
    /// answer `404 not-found`.
    public func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.add(middleware: APIGate<Context>(settings: settings))
        let handlers = SessionHandlers(backend: backend, settings: settings, forwarder: forwarder, lookups: lookups)
        for route in APIRoute.allCases {
            for method in route.methods {
                router.on(route.routerPath, method: method) { request, context in
                    try await handlers.respond(route, request, context)
                }
            }
        }
    }
}
