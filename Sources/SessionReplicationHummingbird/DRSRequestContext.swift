import Hummingbird
import NIOCore

/// A request context that knows the client's address, so the API can keep each client to
/// its share of lookups of unknown sessions (`SessionAPI.Settings.maxLookupsPerClient`).
/// Use it for the router that serves the API: `Router(context: DRSRequestContext.self)`.
/// With another context the API still works; every client then shares one allowance.
public struct DRSRequestContext: RequestContext, RemoteAddressRequestContext {
    /// Hummingbird's per-request storage.
    public var coreContext: CoreRequestContextStorage
    /// The connected client (`nil` when the channel has none, as in tests).
    public let remoteAddress: SocketAddress?

    /// Creates the context for a request arriving on `source.channel`.
    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }
}
