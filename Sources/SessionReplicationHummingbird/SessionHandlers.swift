import HTTPTypes
import Hummingbird
import SessionReplication
import SessionReplicationCore

/// The handlers of the API's routes over one backend. Each handler re-validates its path
/// segments (the gate already did, but a handler never relies on it).
struct SessionHandlers: Sendable {
    let backend: any SessionBackend
    let settings: SessionAPI.Settings
    let forwarder: SessionForwarder?
    /// Each client's share of lookups of unknown sessions.
    var lookups = ClientLookupLimiter(perClient: 64)

    /// Answers `request` on `route`; a request this node may not serve (`421 misdirected`
    /// naming the owner) goes to the owner when a forwarder is set, the forwarder allows
    /// the hop (the owner is not on the request's path, fewer than `maxHops` forwards), and
    /// the owner's HTTP endpoint is known.
    func respond(_ route: APIRoute, _ request: Request, _ context: some RequestContext) async throws -> Response {
        do {
            return try await answer(route, request, context)
        } catch let error as APIError where error.status == .misdirectedRequest {
            let path = SessionForwarder.path(request.headers[.drsForwardedBy])
            guard let forwarder, let owner = error.headers[.drsOwner],
                  forwarder.mayForward(path: path, by: backend.nodeName, to: owner),
                  let (host, port) = backend.httpEndpoint(of: owner)
            else { throw error }
            // The body is read here, within the limit the owner would apply, and sent as
            // one buffer: the client may retry on another connection (replaying it), and
            // the server's body stream may be iterated once only, by the handler's task.
            let body: [UInt8]
            switch try await BoundedBody.read(request, limit: settings.maxAttributeBytes) {
            case .complete(let bytes): body = bytes
            case .tooLarge(let rest): return BoundedBody.refusal(rest, limit: settings.maxAttributeBytes, drainLimit: settings.maxDrainBytes)
            }
            if let response = await forwarder.forward(request, body: body, to: host, port: port, by: backend.nodeName, after: path) {
                return response
            }
            // No answer from the owner: it may have died and not be declared dead yet.
            // A request that may be repeated (GET, HEAD, PUT, DELETE: the owner may have
            // applied it before going silent) is tried here once more, taking the session
            // over despite the cooldown; failover then decides, and the client gets the
            // answer (or `503 session-unavailable`) instead of `421`.
            guard Self.repeatable.contains(request.method) else { throw error }
            var again = request
            again.body = RequestBody(buffer: ByteBuffer(bytes: body))
            return try await Self.$ownerUnreachable.withValue(true) { try await answer(route, again, context) }
        }
    }

    /// Methods HTTP defines as idempotent, which a node may run after a failed forward.
    static let repeatable: Set<HTTPRequest.Method> = [.get, .head, .put, .delete]

    /// Set while a request is run again here after its forward got no answer: the
    /// takeover then ignores `takeoverCooldown`. False otherwise.
    @TaskLocal static var ownerUnreachable = false

    private func answer(_ route: APIRoute, _ request: Request, _ context: some RequestContext) async throws -> Response {
        switch (route, request.method) {
        case (.sessions, .post): return try await create(request)
        case (.session, .get): return try await read(request, context)
        case (.session, .delete): return try await delete(request, context)
        case (.attribute, .get): return try await readAttribute(request, context)
        case (.attribute, .put): return try await putAttribute(request, context)
        case (.attribute, .delete): return try await deleteAttribute(request, context)
        case (.rotate, .post): return try await rotate(request, context)
        case (.sync, .post): return try await sync(request, context)
        case (.members, .get): return APIResponse.json(SessionBodies.members(backend.members()))
        case (.status, .get): return APIResponse.json(SessionBodies.status(backend.status()))
        case (.clusterSession, .get): return try clusterCopy(context)
        case (.healthz, .get): return APIResponse.json(.object([("status", .string("ok"))]))
        case (.readyz, .get):
            guard backend.isReady else { throw APIError.notReady }
            return APIResponse.json(.object([("status", .string("ready"))]))
        default: throw APIError.methodNotAllowed(route.methods)
        }
    }

    // MARK: - Sessions

    private func create(_ request: Request) async throws -> Response {
        let body: [UInt8]
        switch try await BoundedBody.read(request, limit: settings.maxCreateBodyBytes) {
        case .complete(let bytes): body = bytes
        case .tooLarge(let rest): return BoundedBody.refusal(rest, limit: settings.maxCreateBodyBytes, drainLimit: settings.maxDrainBytes)
        }
        let parsed = try CreateSessionRequest(body: body)
        let result = try await backend.createSession(attributes: parsed.attributes, maxInactiveInterval: parsed.maxInactiveInterval)
        guard let state = result.state else { throw APIError.internalError }
        var headers = sessionHeaders(state, requestRoute: nil, durability: result.durability, forceCookie: true)
        headers[.location] = "/sessions/\(state.id.hex)"
        return APIResponse.json(.object(SessionBodies.creation(state, owner: backend.nodeName)), status: .created, headers: headers)
    }

    private func read(_ request: Request, _ context: some RequestContext) async throws -> Response {
        let target = try pathID(context)
        guard let state = try await owned(target, { try await backend.session(target.id) }) else { throw unavailability(target.id) }
        let headers = sessionHeaders(state, requestRoute: requestRoute(target, request), durability: nil)
        return APIResponse.json(SessionBodies.session(state, owner: backend.nodeName), headers: headers)
    }

    private func delete(_ request: Request, _ context: some RequestContext) async throws -> Response {
        let target = try pathID(context)
        try await owned(target) {
            if let stamp = try ifMatch(request, target.id) {
                _ = try await backend.withSession(target.id, ifMatch: stamp) { $0.invalidate() }
            } else {
                try await backend.invalidate(target.id)
            }
        }
        var response = Response(status: .noContent)
        response.headers[.contentLength] = nil  // a 204 has no body and no length (RFC 9110 8.6)
        response.headers[.drsOwner] = backend.nodeName
        return response
    }

    private func rotate(_ request: Request, _ context: some RequestContext) async throws -> Response {
        let target = try pathID(context)
        let result = try await owned(target) {
            if let stamp = try ifMatch(request, target.id), case .owned(let current) = backend.lookup(target.id), current.stamp != stamp {
                throw APIError.preconditionFailed
            }
            return try await backend.rotate(target.id)
        }
        guard let state = result.state else { throw APIError.internalError }
        let headers = sessionHeaders(state, requestRoute: nil, durability: result.durability, forceCookie: true)
        return APIResponse.json(.object(SessionBodies.creation(state, owner: backend.nodeName)), headers: headers)
    }

    private func sync(_ request: Request, _ context: some RequestContext) async throws -> Response {
        let target = try pathID(context)
        let result = try await owned(target) { try await backend.sync(target.id) }
        guard let state = result.state else { throw APIError.sessionNotFound }
        let headers = sessionHeaders(state, requestRoute: requestRoute(target, request), durability: result.durability)
        return APIResponse.json(SessionBodies.sync(state.stamp, durability: result.durability), headers: headers)
    }

    private func clusterCopy(_ context: some RequestContext) throws -> Response {
        let target = try pathID(context)
        let lookup = backend.lookup(target.id)
        var headers = HTTPFields()
        switch lookup {
        case .owned(let state):
            headers[.drsOwner] = backend.nodeName
            headers[.eTag] = "\"\(state.stamp.etag)\""
        case .backup(let state, let owner):
            headers[.drsOwner] = owner
            headers[.eTag] = "\"\(state.stamp.etag)\""
        case .ended, .unknown:
            break
        }
        return APIResponse.json(SessionBodies.copy(lookup, selfName: backend.nodeName), headers: headers)
    }

    // MARK: - Attributes

    private func readAttribute(_ request: Request, _ context: some RequestContext) async throws -> Response {
        let (target, name) = try attributePath(context)
        guard let state = try await owned(target, { try await backend.session(target.id) }) else { throw unavailability(target.id) }
        var headers = sessionHeaders(state, requestRoute: requestRoute(target, request), durability: nil)
        guard let value = state.attributes[name] else {
            var error = APIError.attributeNotFound
            error.headers.append(contentsOf: headers)
            throw error
        }
        headers[.contentType] = "application/octet-stream"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: value)))
    }

    private func putAttribute(_ request: Request, _ context: some RequestContext) async throws -> Response {
        let (target, name) = try attributePath(context)
        try await ensureOwned(target.id)
        let value: [UInt8]
        switch try await BoundedBody.read(request, limit: settings.maxAttributeBytes) {
        case .complete(let bytes): value = bytes
        case .tooLarge(let rest): return BoundedBody.refusal(rest, limit: settings.maxAttributeBytes, drainLimit: settings.maxDrainBytes)
        }
        return try await write(target, request, set: [name: value], remove: [])
    }

    private func deleteAttribute(_ request: Request, _ context: some RequestContext) async throws -> Response {
        let (target, name) = try attributePath(context)
        return try await write(target, request, set: [:], remove: [name])
    }

    /// A write honouring `If-Match`, answering `200 {"epoch","version","etag"}`.
    private func write(_ target: SessionPathID, _ request: Request, set: [String: [UInt8]], remove: Set<String>) async throws -> Response {
        let result = try await owned(target) {
            try await backend.write(target.id, ifMatch: try ifMatch(request, target.id), set: set, remove: remove)
        }
        guard let state = result.state else { throw APIError.sessionNotFound }
        let headers = sessionHeaders(state, requestRoute: requestRoute(target, request), durability: result.durability)
        return APIResponse.json(.object(SessionBodies.write(state.stamp)), headers: headers)
    }
}
