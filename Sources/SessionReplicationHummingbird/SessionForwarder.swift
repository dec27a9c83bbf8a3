import AsyncHTTPClient
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1

/// Forwards a request for a session this node may not serve to the node that owns it
/// (docs/design.md (Membership and failover): with `affinity: none` a live owner keeps its sessions and the other
/// nodes forward; a node that handed a session away less than `takeoverCooldown` ago
/// forwards instead of taking it back), over a pooled HTTP/1.1 client (AsyncHTTPClient).
///
/// The owner's answer goes back to the client unchanged (status, body, `X-DRS-Owner`,
/// `Set-Cookie` naming the owner, so a sticky load balancer follows it), minus hop-by-hop
/// headers. The request body is read whole first (within the API's attribute limit)
/// and sent as one buffer. A forwarded request carries `X-DRS-Forwarded-By`, the nodes
/// that forwarded it so far in order (`n1, n2`). A node that received a forwarded request
/// and does not own the session either (the owner moved on: its hint was one move behind)
/// follows its own hint, adding itself to the path, unless the owner it names is already
/// on the path or `maxHops` forwards were made: loops are impossible and a chain is
/// bounded. When the owner cannot be reached within `timeout`, or no hop may be made, the
/// request answers `421 misdirected` with `X-DRS-Owner`, as the contract says ("only when
/// forwarding fails").
///
/// Call `shutdown()` once no request uses it any more (the client's connections close).
public final class SessionForwarder: Sendable {
    /// The header marking a forwarded request; its value is the forwarding node's name.
    public static let forwardedByHeader = "X-DRS-Forwarded-By"

    /// Longest wait for the owner's whole answer, connecting included. Default 10 s.
    public let timeout: Duration
    /// The most forwards one request may take in all, counted along its path. Default 8.
    /// No node appears twice on a path, so a chain ends within the cluster's size anyway;
    /// this only caps what one request can cost. At least 1 (smaller values are raised to 1).
    public let maxHops: Int
    /// Largest answer body taken from the owner; a longer one fails the forward (`421`).
    /// Default 16 MiB (a 4 MiB session is about 5.4 MiB of JSON).
    public let maxResponseBytes: Int
    private let client: HTTPClient
    private let onForward: @Sendable (_ succeeded: Bool) -> Void

    /// Creates a forwarder with its own connection pool on `eventLoopGroup` (default
    /// NIO's singleton group), keeping up to `connectionsPerOwner` connections to each
    /// owner (default 64; AsyncHTTPClient's own default of 8 capped forwarding at about
    /// 5,600 requests/s here, 8 requests in flight). `onForward` is told the outcome of
    /// every forward (`drs node` counts them in `drs_http_forwarded_total`).
    public init(timeout: Duration = .seconds(10), maxHops: Int = 8, maxResponseBytes: Int = 16 << 20, connectionsPerOwner: Int = 64,
                eventLoopGroup: any EventLoopGroup = HTTPClient.defaultEventLoopGroup,
                onForward: @escaping @Sendable (_ succeeded: Bool) -> Void = { _ in }) {
        self.timeout = timeout
        self.maxHops = max(1, maxHops)
        self.maxResponseBytes = maxResponseBytes
        self.onForward = onForward
        var pool = HTTPClient.Configuration.ConnectionPool(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: connectionsPerOwner)
        // A refused connection fails the forward at once (the owner's process is gone),
        // rather than being retried until `timeout`: the node then serves the request
        // itself, or answers, while failover runs.
        pool.retryConnectionEstablishment = false
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(1)), connectionPool: pool)
        configuration.httpVersion = .http1Only
        configuration.decompression = .disabled
        self.client = HTTPClient(eventLoopGroup: eventLoopGroup, configuration: configuration)
    }

    /// Closes the pool's connections. Requests forwarded afterwards fail (`421`).
    public func shutdown() async {
        try? await client.shutdown()
    }

    /// Headers that belong to one connection, never forwarded in either direction.
    static let hopByHop: Set<String> = ["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
                                        "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length"]

    /// The nodes that forwarded a request so far, from its `X-DRS-Forwarded-By` value
    /// (comma-separated names, blanks ignored); empty when the request came from a client.
    static func path(_ header: String?) -> [String] {
        guard let header else { return [] }
        return header.split(separator: ",").map { String($0.filter { $0 != " " && $0 != "\t" }) }.filter { !$0.isEmpty }
    }

    /// Whether a request that came along `path` may be forwarded by `node` to `owner`:
    /// neither is on the path already and fewer than `maxHops` forwards were made.
    func mayForward(path: [String], by node: String, to owner: String) -> Bool {
        owner != node && path.count < maxHops && !path.contains(owner) && !path.contains(node)
    }

    /// Sends `request` with `body` (read by the caller) to `host:port` as `node`
    /// forwarding it, after the nodes on `path`; returns the owner's answer, or `nil` when
    /// it could not be had (connection refused, timeout, an answer over `maxResponseBytes`).
    func forward(_ request: Request, body: [UInt8], to host: String, port: Int, by node: String, after path: [String] = []) async -> Response? {
        let target = "http://\(host.contains(":") ? "[\(host)]" : host):\(port)\(request.uri.string)"
        var outbound = HTTPClientRequest(url: target)
        outbound.method = HTTPMethod(rawValue: request.method.rawValue)
        for field in request.headers where !Self.hopByHop.contains(field.name.canonicalName) {
            outbound.headers.add(name: field.name.rawName, value: field.value)
        }
        outbound.headers.replaceOrAdd(name: Self.forwardedByHeader, value: (path + [node]).joined(separator: ", "))
        if !body.isEmpty || request.method == .put || request.method == .post { outbound.body = .bytes(ByteBuffer(bytes: body)) }
        do {
            let answer = try await client.execute(outbound, deadline: .now() + TimeAmount(timeout))
            let body = try await answer.body.collect(upTo: maxResponseBytes)
            var headers = HTTPFields()
            for (name, value) in answer.headers where !Self.hopByHop.contains(name.lowercased()) {
                if let field = HTTPField.Name(name) { headers.append(HTTPField(name: field, value: value)) }
            }
            onForward(true)
            let status = HTTPResponse.Status(code: Int(answer.status.code))
            // A 204 has neither body nor length (RFC 9110 8.6).
            if status == .noContent {
                var response = Response(status: status, headers: headers)
                response.headers[.contentLength] = nil
                return response
            }
            return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: body))
        } catch {
            onForward(false)
            return nil
        }
    }
}
