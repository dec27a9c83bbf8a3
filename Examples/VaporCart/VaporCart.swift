import ArgumentParser
import Foundation
import Logging
import SessionReplication
import SessionReplicationVapor
import Vapor

/// A shopping cart kept in Vapor's sessions, whose storage is the replicated cluster
/// (`DRSSessionDriver`): each process is one node of the cluster and one Vapor web server.
/// Kill the process that owns a cart and the next request, on any other process, finds
/// the same cart.
///
///     drs-vapor-cart --config cluster-configs/sync-3.yaml --name n1 --port 9201
///
/// Routes: `POST /cart/items/{item}` adds an item (creating the cart and its
/// `DRSSESSIONID=<id>.<owner>` cookie), `GET /cart` shows it, `DELETE /cart` ends the
/// session; `GET /readyz` (200 while the node serves, else 503) and `GET /cluster/members`
/// for load balancers and tests. Without `--port` the app listens on the node's
/// `httpPort`, where `drs lb-config haproxy` sends traffic.
@main
struct VaporCartExample: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "drs-vapor-cart", abstract: "A Vapor cart that survives the loss of its server.")

    @ArgumentParser.Option(help: "Path of a cluster-configs/*.yaml file.")
    var config: String

    @ArgumentParser.Option(help: "This node's name in the configuration.")
    var name: String

    @ArgumentParser.Option(help: "Port of the web server (default: the node's httpPort).")
    var port: Int?

    func run() async throws {
        let configuration: ClusterConfiguration
        do {
            configuration = try ClusterConfiguration.load(path: config)
        } catch {
            FileHandle.standardError.write(Data("drs-vapor-cart: invalid configuration: \(error)\n".utf8))
            throw ExitCode(2)
        }
        guard let endpoint = configuration.node(named: name) else {
            FileHandle.standardError.write(Data("drs-vapor-cart: \(config): no node named \"\(name)\"\n".utf8))
            throw ExitCode(2)
        }
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        var logger = Logger(label: "drs-vapor-cart")
        logger.logLevel = .info
        let node = try ReplicationNode(configuration: configuration, name: name, logger: logger)
        // Vapor's own command line is not this one: it runs its default `serve` command.
        let app = try await Application.make(Environment(name: "production", arguments: ["drs-vapor-cart"]))
        app.logger = logger
        app.http.server.configuration.hostname = endpoint.address
        app.http.server.configuration.port = port ?? endpoint.httpPort
        app.http.server.configuration.serverName = "drs-vapor-cart/\(name)"
        // The node starts with the application and drains when it stops (SIGTERM, SIGINT).
        app.sessions.use(.drs(node))
        app.middleware.use(app.sessions.middleware)
        CartRoutes(node: node).register(on: app)
        do {
            try await app.execute()
        } catch {
            try? await app.asyncShutdown()
            throw error
        }
        try await app.asyncShutdown()
    }
}
