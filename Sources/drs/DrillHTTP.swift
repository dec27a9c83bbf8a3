import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The drill's HTTP client: one `URLSession` without cookie storage, caches or redirects
/// (the drill sends and reads `DRSSESSIONID` itself), and a classification of failures
/// into "not sent" (nothing can have been applied) and "maybe sent".
final class DrillHTTP: NSObject, URLSessionTaskDelegate, @unchecked Sendable {
    /// An answer, or why there was none.
    struct Answer: Sendable {
        /// The HTTP status; `nil` when no answer arrived.
        var status: Int?
        /// Response headers we use, lower-cased names.
        var owner: String?
        var etag: String?
        var durability: String?
        var setCookie: String?
        var body: Data = Data()
        /// When `status` is nil: true if the request cannot have reached a server
        /// (connection refused, host unreachable).
        var notSent = false
        /// When `status` is nil: what happened.
        var failure: String?
    }

    private var session: URLSession!
    let token: String?

    /// A client whose requests time out after `timeout`.
    init(timeout: TimeInterval, token: String?) {
        self.token = token
        super.init()
        let c = URLSessionConfiguration.ephemeral
        c.timeoutIntervalForRequest = timeout
        c.timeoutIntervalForResource = timeout
        c.httpShouldSetCookies = false
        c.httpCookieAcceptPolicy = .never
        c.urlCache = nil
        c.requestCachePolicy = .reloadIgnoringLocalCacheData
        c.httpMaximumConnectionsPerHost = 256
        session = URLSession(configuration: c, delegate: self, delegateQueue: nil)
    }

    /// Refuses redirects: the API never sends one, and following one would hide it.
    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest) async -> URLRequest? { nil }

    /// Sends one request; never throws.
    func send(_ method: String, _ url: String, body: Data? = nil, cookie: String? = nil, contentType: String? = nil) async -> Answer {
        guard let u = URL(string: url) else { return Answer(status: nil, notSent: true, failure: "bad url \(url)") }
        var request = URLRequest(url: u)
        request.httpMethod = method
        request.httpBody = body
        if let cookie { request.setValue(cookie, forHTTPHeaderField: "Cookie") }
        if let contentType { request.setValue(contentType, forHTTPHeaderField: "Content-Type") }
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        do {
            let (data, response) = try await session.data(for: request)
            guard let http = response as? HTTPURLResponse else { return Answer(status: nil, failure: "not an HTTP answer") }
            return Answer(status: http.statusCode, owner: http.value(forHTTPHeaderField: "X-DRS-Owner"),
                          etag: http.value(forHTTPHeaderField: "ETag"), durability: http.value(forHTTPHeaderField: "X-DRS-Durability"),
                          setCookie: http.value(forHTTPHeaderField: "Set-Cookie"), body: data)
        } catch let error as URLError {
            let notSent = [.cannotConnectToHost, .cannotFindHost, .dnsLookupFailed, .notConnectedToInternet].contains(error.code)
            return Answer(status: nil, notSent: notSent, failure: "\(error.code == .timedOut ? "timeout" : notSent ? "refused" : "connection lost") (\(error.code.rawValue))")
        } catch {
            return Answer(status: nil, failure: "\(error)")
        }
    }

    /// GETs `url` and decodes a JSON object; `nil` on any failure.
    func json(_ url: String) async -> Any? {
        let a = await send("GET", url)
        guard a.status == 200 else { return nil }
        return try? JSONSerialization.jsonObject(with: a.body)
    }
}

/// The `<route>` of a `Set-Cookie: NAME=<id>.<route>; ...` header for cookie `name`.
func routeOf(setCookie: String?, name: String) -> String? {
    guard let setCookie, let first = setCookie.split(separator: ";").first else { return nil }
    let pair = first.split(separator: "=", maxSplits: 1)
    guard pair.count == 2, pair[0].trimmingCharacters(in: .whitespaces) == name else { return nil }
    let value = pair[1]
    guard let dot = value.firstIndex(of: ".") else { return nil }
    return String(value[value.index(after: dot)...])
}
