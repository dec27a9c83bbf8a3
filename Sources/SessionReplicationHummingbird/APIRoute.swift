import Hummingbird

/// The routes of the HTTP API contract (docs/contracts.md), one case per path shape.
/// This table drives both registration on the `Router` and the gate's `404`/`405`
/// decisions, so the two cannot disagree.
enum APIRoute: CaseIterable, Sendable {
    case sessions
    case session
    case attribute
    case rotate
    case sync
    case members
    case status
    case clusterSession
    case healthz
    case readyz

    /// One segment of a route's path.
    enum Segment: Equatable {
        case literal(String)
        case id
        case name
    }

    /// The segments after the leading `/`.
    var segments: [Segment] {
        switch self {
        case .sessions: [.literal("sessions")]
        case .session: [.literal("sessions"), .id]
        case .attribute: [.literal("sessions"), .id, .literal("attributes"), .name]
        case .rotate: [.literal("sessions"), .id, .literal("rotate")]
        case .sync: [.literal("sessions"), .id, .literal("sync")]
        case .members: [.literal("cluster"), .literal("members")]
        case .status: [.literal("cluster"), .literal("status")]
        case .clusterSession: [.literal("cluster"), .literal("sessions"), .id]
        case .healthz: [.literal("healthz")]
        case .readyz: [.literal("readyz")]
        }
    }

    /// The methods the contract defines on this path, in `Allow` order.
    var methods: [HTTPRequest.Method] {
        switch self {
        case .sessions, .rotate, .sync: [.post]
        case .session: [.get, .delete]
        case .attribute: [.get, .put, .delete]
        case .members, .status, .clusterSession, .healthz, .readyz: [.get]
        }
    }

    /// The path in Hummingbird's router syntax (`/sessions/{id}`).
    var routerPath: RouterPath {
        let parts = segments.map { segment in
            switch segment {
            case .literal(let text): text
            case .id: "{id}"
            case .name: "{name}"
            }
        }
        return RouterPath("/" + parts.joined(separator: "/"))
    }
}

/// A request path matched against the route table, with its raw (undecoded) captures.
struct RouteMatch: Sendable {
    /// The route whose shape the path has.
    var route: APIRoute
    /// The raw `{id}` segment, when the route has one.
    var id: Substring?
    /// The raw `{name}` segment, when the route has one.
    var name: Substring?

    /// Matches `path` (without query) segment by segment. Empty segments are kept, so
    /// `/sessions/` has the shape of `/sessions/{id}` with an empty id. `nil` when no
    /// route has the path's shape.
    init?(path: Substring) {
        guard path.first == "/" else { return nil }
        let parts = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        for route in APIRoute.allCases where route.segments.count == parts.count {
            var id: Substring?
            var name: Substring?
            let matches = zip(route.segments, parts).allSatisfy { segment, part in
                switch segment {
                case .literal(let text): return part == text
                case .id: id = part; return true
                case .name: name = part; return true
                }
            }
            if matches {
                self.route = route
                self.id = id
                self.name = name
                return
            }
        }
        return nil
    }

    /// Whether `path` is one a strict router would refuse: not starting with `/`, or with
    /// an empty or dot segment anywhere but as the root itself.
    static func isIrregular(_ path: Substring) -> Bool {
        guard path.first == "/" else { return true }
        if path == "/" { return false }
        return path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
            .contains { $0.isEmpty || $0 == "." || $0 == ".." }
    }
}
