import SessionReplication
import Vapor

extension Application.Sessions.Provider {
    /// Keeps the application's sessions in `node`'s cluster (`DRSSessionDriver`):
    ///
    ///     app.sessions.use(.drs(node))
    ///     app.middleware.use(app.sessions.middleware)
    ///
    /// Besides the driver it sets `app.sessions.configuration` to `.drs(node)` (the
    /// cluster's cookie, `DRSSESSIONID=<id>.<owner>`; assign the configuration after this
    /// call to change it) and, with `managesNode` (the default), registers a
    /// `DRSNodeLifecycle` that starts the node at boot and drains and stops it at shutdown.
    /// Pass `managesNode: false` when the node runs elsewhere (a `ServiceGroup`, a test).
    public static func drs(_ node: ReplicationNode, configuration: DRSSessionDriver.Configuration = .init(),
                           managesNode: Bool = true) -> Self {
        .init { app in
            if managesNode { app.lifecycle.use(DRSNodeLifecycle(node: node)) }
            app.sessions.configuration = .drs(node)
            let driver = DRSSessionDriver(node: node, configuration: configuration)
            app.sessions.use { _ in driver }
        }
    }
}

extension SessionsConfiguration {
    /// The cluster's session cookie, as its HTTP API hands it out: named by the
    /// configuration's `http.cookieName` (default `DRSSESSIONID`), the value
    /// `<id>.<owner>`, `Path=/; HttpOnly; SameSite=Lax`, `Secure` when `http.secureCookie`
    /// (default false), no expiry (the session's idle limit ends it, not the browser).
    public static func drs(_ node: ReplicationNode) -> SessionsConfiguration {
        let http = node.configuration.http
        return SessionsConfiguration(cookieName: http.cookieName) { id in
            HTTPCookies.Value(string: id.string, expires: nil, maxAge: nil, domain: nil, path: "/",
                              isSecure: http.secureCookie, isHTTPOnly: true, sameSite: .lax)
        }
    }
}
