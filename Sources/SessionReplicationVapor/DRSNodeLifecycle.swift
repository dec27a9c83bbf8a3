import NIOCore
import SessionReplication
import Vapor

/// Ties a `ReplicationNode` to a Vapor application's lifecycle: the node starts when the
/// application boots (before it serves) and, when the application shuts down, hands its
/// sessions over and leaves the cluster before its sockets close.
///
///     app.lifecycle.use(DRSNodeLifecycle(node: node))
///
/// `app.sessions.use(.drs(node))` registers one by default. Use it only for a node nothing
/// else runs: a node run as a swift-service-lifecycle `Service` (`run()`) stops with its
/// `ServiceGroup`.
///
/// - **Boot** (`willBootAsync`): `ReplicationNode.start()`; a socket that cannot be bound
///   fails the boot with the node's error. Vapor's synchronous `boot()` (which
///   `app.testing()` calls when the application was not booted) cannot wait for the node
///   and fails with a message asking for `try await app.asyncBoot()` first.
/// - **Shutdown** (`shutdownAsync`, after Vapor's server stopped): with `drainsOnShutdown`
///   (the default) every owned session is handed to a live backup (`drain()`, at most the
///   cluster's `drainTimeout`), the leave is announced and given two probe periods to
///   spread, so the other members take over at once whatever was not handed over; then
///   the node stops (`shutdown()`). Without it the node stops at once and its sessions
///   fail over when the others declare it dead. Shutting down never throws. Vapor's
///   synchronous `shutdown()` blocks its thread until the same steps end.
public struct DRSNodeLifecycle: LifecycleHandler {
    /// The node started and stopped with the application.
    public let node: ReplicationNode
    /// Whether shutdown hands sessions over and leaves the cluster first. Default true.
    public var drainsOnShutdown: Bool

    /// A handler for `node`; `drainsOnShutdown` defaults to true.
    public init(node: ReplicationNode, drainsOnShutdown: Bool = true) {
        self.node = node
        self.drainsOnShutdown = drainsOnShutdown
    }

    /// Starts the node; throws what `ReplicationNode.start()` throws.
    public func willBootAsync(_ application: Application) async throws {
        try await node.start()
        application.logger.info("replication node started with the application", metadata: ["drs.node": "\(node.nodeName)"])
    }

    /// Drains (by default), leaves the cluster and stops the node.
    public func shutdownAsync(_ application: Application) async {
        if drainsOnShutdown && node.isReady {
            let handed = await node.drain()
            application.logger.info("replication node drained", metadata: ["drs.node": "\(node.nodeName)", "drs.handedOver": "\(handed)"])
            node.leaveCluster()
            try? await Task.sleep(for: node.configuration.membership.probeInterval * 2)
        }
        await node.shutdown()
    }

    /// Fails: the node can only be started from Vapor's asynchronous boot.
    public func willBoot(_ application: Application) throws {
        throw LifecycleError(message: "the replication node \(node.nodeName) starts in Vapor's asynchronous boot: call `try await app.asyncBoot()` (or `app.execute()`) before `app.testing()` or `app.boot()`")
    }

    /// Runs `shutdownAsync` and blocks the calling thread until it ends (Vapor's
    /// synchronous shutdown blocks the same way on its event loop group).
    public func shutdown(_ application: Application) {
        let handler = self
        try? application.eventLoopGroup.any().makeFutureWithTask { await handler.shutdownAsync(application) }.wait()
    }

    struct LifecycleError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }
}
