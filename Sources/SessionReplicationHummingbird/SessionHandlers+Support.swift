import HTTPTypes
import Hummingbird
import SessionReplication
import SessionReplicationCore

extension SessionHandlers {
    /// The `{id}` segment, or `400 invalid-session-id`.
    func pathID(_ context: some RequestContext) throws -> SessionPathID {
        let segment = context.parameters.get("id") ?? ""
        guard let target = SessionPathID(segment: segment) else { throw APIError.invalidSessionID(segment) }
        return target
    }

    /// The `{id}` and decoded `{name}` segments, or `400 invalid-session-id` /
    /// `400 invalid-attribute-name`.
    func attributePath(_ context: some RequestContext) throws -> (SessionPathID, String) {
        let target = try pathID(context)
        guard let name = AttributePathName.decode(context.parameters.get("name") ?? "") else { throw APIError.invalidAttributeName }
        return (target, name)
    }

    /// Makes this node the owner of `id` (takeover on request, see
    /// `SessionBackend.takeOver`), or throws the contract's answer: `404
    /// session-not-found` when authoritative, `421 misdirected` or `503
    /// session-unavailable` naming the owner when known.
    /// A lookup of an id this node holds nothing of takes one of the client's lookups
    /// (`503 overloaded` with `Retry-After` when it has none free).
    /// While a forward to the owner went unanswered (`SessionHandlers.ownerUnreachable`)
    /// the takeover ignores the cooldown.
    func ensureOwned(_ id: SessionID) async throws {
        let held = backend.lookup(id)
        if case .owned = held { return }
        let insist = SessionHandlers.ownerUnreachable
        do {
            if case .unknown = held {
                try await lookups.withLookup(client: RequestClient.address) { try await backend.takeOver(id, ignoringCooldown: insist) }
            } else {
                try await backend.takeOver(id, ignoringCooldown: insist)
            }
        } catch {
            throw APIError(error)
        }
    }

    /// Why `id` cannot be served here after all (it moved away meanwhile): `503
    /// session-unavailable` naming the owner when only a backup is held, `404
    /// session-not-found` when it ended or is unknown.
    func unavailability(_ id: SessionID) -> APIError {
        switch backend.lookup(id) {
        case .backup(_, let owner): .sessionUnavailable(owner: owner)
        case .owned: .sessionUnavailable(owner: backend.nodeName)
        case .ended, .unknown: .sessionNotFound
        }
    }

    /// Runs `operation` on a session this node owns (taking it over first when another
    /// node owns it), turning any error into the contract's answer. When the session
    /// moved away between the takeover and the operation, it is taken over once more.
    /// Errors about a session still owned here carry `X-DRS-Owner` and its current `ETag`.
    func owned<T>(_ target: SessionPathID, _ operation: () async throws -> T) async throws -> T {
        var attempts = 0
        while true {
            attempts += 1
            try await ensureOwned(target.id)
            do {
                return try await operation()
            } catch let error as SessionError where error.code == .notOwner && attempts < 2 {
                continue
            } catch {
                var answer = APIError(error)
                if let error = error as? SessionError, error.code == .notOwner { answer = unavailability(target.id) }
                if answer.status != .notFound, answer.headers[.drsOwner] == nil, case .owned(let state) = backend.lookup(target.id) {
                    answer.headers[.drsOwner] = backend.nodeName
                    answer.headers[.eTag] = Self.quotedETag(state.stamp)
                }
                throw answer
            }
        }
    }

    /// The stamp a write must match: `nil` without `If-Match` or with `*`. Throws
    /// `412 precondition-failed` when no listed tag is one this API issues. Of several
    /// tags, the one equal to the current stamp (if any) is used.
    func ifMatch(_ request: Request, _ id: SessionID) throws -> Stamp? {
        let tags = request.headers[values: .ifMatch].flatMap { $0.split(separator: ",") }.map(Self.trimmed)
        if tags.isEmpty || tags.contains("*") { return nil }
        let stamps = tags.compactMap { Stamp(etag: $0) }
        guard let first = stamps.first else { throw APIError.preconditionFailed }
        if stamps.count > 1, case .owned(let state) = backend.lookup(id), stamps.contains(state.stamp) { return state.stamp }
        return first
    }

    /// The route the request came with: the path's `.route` suffix, else the cookie's.
    func requestRoute(_ target: SessionPathID, _ request: Request) -> String? {
        target.route ?? SessionCookie.route(in: request, name: settings.cookieName).map(String.init)
    }

    /// `X-DRS-Owner`, `ETag`, `X-DRS-Durability` (writes) and `Set-Cookie` (when forced or
    /// when `requestRoute` is not the owner, including when the request had no route).
    func sessionHeaders(_ state: SessionState, requestRoute: String?, durability: Durability?, forceCookie: Bool = false) -> HTTPFields {
        var headers = HTTPFields()
        headers[.drsOwner] = backend.nodeName
        headers[.eTag] = Self.quotedETag(state.stamp)
        if let durability {
            headers[.drsDurability] = if case .replicated = durability { "replicated" } else { "local" }
        }
        if forceCookie || requestRoute != backend.nodeName {
            headers[.setCookie] = SessionCookie.setCookie(id: state.id, owner: backend.nodeName, settings: settings)
        }
        return headers
    }

    private static func trimmed(_ text: Substring) -> String {
        let start = text.firstIndex { !$0.isWhitespace } ?? text.endIndex
        let end = text.lastIndex { !$0.isWhitespace }.map(text.index(after:)) ?? start
        return String(text[start..<max(start, end)])
    }

    static func quotedETag(_ stamp: Stamp) -> String { "\"\(stamp.etag)\"" }
}
