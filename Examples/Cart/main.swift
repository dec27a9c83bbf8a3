import ArgumentParser
import Foundation
import Hummingbird
import HummingbirdAuth
import Logging
import ServiceLifecycle
import SessionReplication
import SessionReplicationHummingbird

/// A shopping cart kept in Hummingbird's `SessionMiddleware`, whose storage is the
/// replicated cluster (`DRSPersistDriver`): each process is one node of the cluster and
/// one web server. Kill the process that served a cart and the next request, on any other
/// process, finds the same cart.
///
///     drs-cart --config cluster-configs/local-3.yaml --name n1 --port 9081
///
/// Routes: `POST /cart/items/{item}` adds an item (creating the cart and its
/// `SESSION_ID` cookie), `GET /cart` shows it, `DELETE /cart` empties it; `PUT /bare`
/// reads a body and answers its size, touching no session (a benchmark's reference). The node's own
/// HTTP API (`/sessions`, `/cluster/...`, with the `DRSSESSIONID` route rewrite) is served
/// on its configured `httpPort`, so both kinds of stickiness can be tried: the load
/// balancer's own cookie for the cart, the cluster's route for the API.
@main
struct CartExample: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "drs-cart", abstract: "A cart that survives the loss of its server.")

    @Option(help: "Path of a cluster-configs/*.yaml file.")
    var config: String

    @Option(help: "This node's name in the configuration.")
    var name: String

    @Option(help: "Port of the cart's web server (the node's httpPort is not used).")
    var port: Int

    @Option(help: ArgumentHelp("Where carts are kept: drs (the replicated cluster) or memory (Hummingbird's MemoryPersistDriver, this process only).",
                               discussion: "memory starts no node: it is the reference `make bench-embedded` compares the cluster with."))
    var storage: Storage = .drs

    /// Where carts are kept.
    enum Storage: String, ExpressibleByArgument, Sendable {
        /// The replicated cluster (`DRSPersistDriver`): the point of the example.
        case drs
        /// Hummingbird's in-memory driver: nothing survives the process.
        case memory
    }

    /// The session's content: what Hummingbird's middleware stores under the cookie's key.
    struct Cart: Codable, Sendable {
        var items: [String] = []
    }

    typealias Context = BasicSessionRequestContext<Cart, String>

    /// What every cart route answers.
    struct CartView: ResponseEncodable {
        var servedBy: String
        var items: [String]
    }

    func run() async throws {
        let configuration: ClusterConfiguration
        do {
            configuration = try ClusterConfiguration.load(path: config)
        } catch {
            FileHandle.standardError.write(Data("drs-cart: invalid configuration: \(error)\n".utf8))
            throw ExitCode(2)
        }
        guard let endpoint = configuration.node(named: name) else {
            FileHandle.standardError.write(Data("drs-cart: \(config): no node named \"\(name)\"\n".utf8))
            throw ExitCode(2)
        }
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        var logger = Logger(label: "drs-cart")
        logger.logLevel = .info
        let router = Router(context: Context.self)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        switch storage {
        case .drs:
            let node = try ReplicationNode(configuration: configuration, name: name, logger: logger)
            let driver = DRSPersistDriver(node: node)
            router.add(middleware: SessionMiddleware(storage: driver))
            // The node's own HTTP API on its configured httpPort, as `drs node` serves it,
            // for clients that follow the DRSSESSIONID route (`drs lb-config haproxy`).
            let apiRouter = Router()
            SessionAPI(backend: node, settings: .init(configuration: configuration)).addRoutes(to: apiRouter)
            let api = Application(router: apiRouter,
                                  configuration: .init(address: .hostname(endpoint.listenAddress, port: endpoint.httpPort), serverName: "drs/\(name)"),
                                  logger: logger)
            services = [.init(service: node), .init(service: driver), .init(service: api)]
        case .memory:
            let driver = MemoryPersistDriver(.continuous)
            router.add(middleware: SessionMiddleware(storage: driver))
            services = [.init(service: driver)]
        }
        let me = name
        router.get("/cart") { _, context in
            CartView(servedBy: me, items: context.sessions.session?.items ?? [])
        }
        router.post("/cart/items/:item") { _, context in
            let item = try context.parameters.require("item")
            var cart = context.sessions.session ?? Cart()
            cart.items.append(item)
            if context.sessions.session == nil {
                context.sessions.createSession(cart, expiresIn: .seconds(30 * 60))
            } else {
                _ = context.sessions.updateSession(cart)
            }
            return CartView(servedBy: me, items: cart.items)
        }
        router.delete("/cart") { _, context in
            context.sessions.clearSession()
            return CartView(servedBy: me, items: [])
        }
        // No session: the reference `make bench-compare` measures the HTTP API's PUT
        // against (a Hummingbird route that reads a body of up to 1 MiB and answers its size).
        router.put("/bare") { request, _ -> String in
            let body = try await request.body.collect(upTo: 1 << 20)
            return "\(body.readableBytes)"
        }
        let http = Application(router: router,
                               configuration: .init(address: .hostname(endpoint.listenAddress, port: port), serverName: "drs-cart/\(name)"),
                               logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: services + [.init(service: http)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
