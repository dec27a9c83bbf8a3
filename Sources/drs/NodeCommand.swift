import ArgumentParser
import Logging
import SessionReplication
import ServiceLifecycle
import Hummingbird
import SessionReplicationHummingbird

/// `drs node --config FILE --name NAME`: one node in the foreground until SIGTERM/SIGINT.
struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "node", abstract: "Run one node of a cluster in the foreground.")

    @Option(help: "Path of a cluster-configs/*.yaml file.")
    var config: String

    @Option(help: "This node's name in the configuration.")
    var name: String

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func run() async throws {
        let configuration = try loadConfiguration(config)
        guard configuration.node(named: name) != nil else {
            printError("drs: invalid configuration: \(config): nodes: no node named \"\(name)\" (have \(configuration.nodes.map(\.name).joined(separator: ", ")))")
            throw ExitCode(2)
        }
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        var logger = Logger(label: "drs")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let endpoint = configuration.node(named: name)!
        let node = try ReplicationNode(configuration: configuration, name: name, logger: logger)
        let router = Router()
        let metrics = NodeMetrics(node: node)
        let registry = metrics.registry
        let forwarder = SessionForwarder { ok in
            registry.makeCounter(name: "drs_http_forwarded_total", labels: [("result", ok ? "ok" : "failed")],
                                 help: "Requests forwarded to a session's owner (affinity: none, takeoverCooldown), by outcome.").increment()
        }
        SessionAPI(backend: node, settings: .init(configuration: configuration), forwarder: forwarder).addRoutes(to: router)
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: metrics.render())))
        }
        let http = Application(
            router: router,
            configuration: .init(address: .hostname(endpoint.address, port: endpoint.httpPort), serverName: "drs/\(name)"),
            logger: logger)
        // The node starts first and stops last: the API answers only while it runs.
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: node), .init(service: http)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do {
            try await group.run()
        } catch {
            await forwarder.shutdown()
            throw error
        }
        await forwarder.shutdown()
    }
}
