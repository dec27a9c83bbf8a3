import SessionReplication

extension SessionAPI {
    /// How the HTTP API presents itself: cookie, authentication and body limits.
    public struct Settings: Sendable, Hashable {
        /// Name of the session cookie. Default `DRSSESSIONID` (`http.cookieName`). Must be
        /// an RFC 6265 token (see `isValidCookieName`); `SessionAPI.init` traps otherwise.
        public var cookieName: String
        /// Whether `Set-Cookie` carries `; Secure`. Default `false` (`http.secureCookie`).
        public var secureCookie: Bool
        /// When set (and not empty), every request except `/healthz` and `/readyz` needs
        /// `Authorization: Bearer <token>`, else `401 unauthorized`. Default `nil` (`http.token`).
        public var bearerToken: String?
        /// Largest attribute value a `PUT` accepts, in bytes; a longer body answers
        /// `413 payload-too-large` as soon as the limit is passed. Default 1 MiB
        /// (`sessions.maxAttributeBytes`).
        public var maxAttributeBytes: Int
        /// Largest `POST /sessions` body, in bytes (the JSON with base64 values), beyond
        /// which it answers `413 payload-too-large`. Default 8 MiB, enough for a 4 MiB
        /// session in base64.
        public var maxCreateBodyBytes: Int
        /// How much of a refused body is read and discarded (counting what was read
        /// before) so the client can read the `413`; beyond it the connection is closed.
        /// Default 64 MiB.
        public var maxDrainBytes: Int
        /// Lookups of sessions this node holds nothing of that one client (by address, see
        /// `DRSRequestContext`) may have in flight; beyond it a request answers
        /// `503 overloaded` with `Retry-After`. Default 64 (the node runs at most 256).
        public var maxLookupsPerClient: Int = 64

        /// Creates settings; every parameter has the default documented on its property.
        public init(cookieName: String = "DRSSESSIONID", secureCookie: Bool = false, bearerToken: String? = nil,
                    maxAttributeBytes: Int = 1 << 20, maxCreateBodyBytes: Int = 8 << 20, maxDrainBytes: Int = 64 << 20) {
            self.cookieName = cookieName
            self.secureCookie = secureCookie
            self.bearerToken = bearerToken
            self.maxAttributeBytes = maxAttributeBytes
            self.maxCreateBodyBytes = maxCreateBodyBytes
            self.maxDrainBytes = maxDrainBytes
        }

        /// The settings a node's configuration asks for: `http.cookieName`,
        /// `http.secureCookie`, `http.token` and `sessions.maxAttributeBytes`; the body
        /// limits keep their defaults.
        public init(configuration: ClusterConfiguration) {
            self.init(cookieName: configuration.http.cookieName, secureCookie: configuration.http.secureCookie,
                      bearerToken: configuration.http.token, maxAttributeBytes: configuration.sessions.maxAttributeBytes)
        }

        /// Whether `name` is a valid cookie name: a non-empty RFC 7230 token (visible
        /// ASCII without separators such as `=`, `;`, `,`, space or quotes).
        public static func isValidCookieName(_ name: String) -> Bool {
            let separators = Set("()<>@,;:\\\"/[]?={} \t".utf8)
            return !name.isEmpty && name.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && !separators.contains($0) }
        }

        /// The token when authentication is on.
        var requiredToken: String? {
            guard let bearerToken, !bearerToken.isEmpty else { return nil }
            return bearerToken
        }
    }
}
