import ArgumentParser
import Logging
import SessionReplication
import ServiceLifecycle
import Hummingbird
import HummingbirdCore
import SessionReplicationHummingbird
import SessionReplicationCore
import UnixSignals
import Foundation
import Metrics

/// `drs node --config FILE --name NAME`: one node in the foreground until SIGTERM/SIGINT.
struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "node", abstract: "Run one node of a cluster in the foreground.")

    @Option(help: "Path of a cluster-configs/*.yaml file.")
    var config: String

    @Option(help: "This node's name in the configuration (default: DRS_NODE_NAME).")
    var name: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(help: ArgumentHelp("Inject faults into this node's outbound replication traffic as FILE says (read at start and on SIGHUP).",
                               discussion: "FILE holds one spec such as drop=2%,delay=20ms,jitter=5ms,duplicate=5%,reorder=10%,hold=5ms; empty, missing or off injects nothing. Drills use it; a bad spec at start exits 2, on SIGHUP it is logged and the faults in force stay."))
    var faultsFile: String?

    func run() async throws {
        let configuration = try loadConfiguration(config)
        guard let name = name ?? ProcessInfo.processInfo.environment["DRS_NODE_NAME"] else {
            printError("drs node: --name: required (or DRS_NODE_NAME), expected one of \(configuration.nodes.map(\.name).joined(separator: ", "))")
            throw ExitCode(2)
        }
        guard configuration.node(named: name) != nil else {
            printError("drs: invalid configuration: \(config): nodes: no node named \"\(name)\" (have \(configuration.nodes.map(\.name).joined(separator: ", ")))")
            throw ExitCode(2)
        }
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        let prometheus = PrometheusExport()
        MetricsSystem.bootstrap(prometheus.factory)
        var logger = Logger(label: "drs")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let endpoint = configuration.node(named: name)!
        let node = try ReplicationNode(configuration: configuration, name: name, logger: logger)
        if let faultsFile {
            do {
                node.setFaults(try Self.readFaults(faultsFile))
            } catch {
                printError("drs: --faults-file \(faultsFile): \(error)")
                throw ExitCode(2)
            }
            if node.faults.isActive { logger.notice("injecting faults", metadata: ["drs.faults": "\(node.faults)"]) }
        }
        let router = Router(context: DRSRequestContext.self)
        let metrics = NodeMetrics(node: node)
        // Requests forwarded to a session's owner (affinity: none, takeoverCooldown), by outcome.
        let forwarded = ["ok", "failed"].map { Counter(label: "drs_http_forwarded_total", dimensions: [("result", $0)]) }
        let forwarder = SessionForwarder { ok in forwarded[ok ? 0 : 1].increment() }
        SessionAPI(backend: node, settings: .init(configuration: configuration), forwarder: forwarder).addRoutes(to: router)
        prometheus.addRoute(to: router, publishing: metrics)
        let server: HTTPServerBuilder
        do {
            server = try DRSHTTPServer.builder(configuration.http)
        } catch {
            printError("drs: invalid configuration: \(config): \(error)")
            throw ExitCode(2)
        }
        let http = Application(
            router: router,
            server: server,
            configuration: DRSHTTPServer.configuration(address: .hostname(endpoint.listenAddress, port: endpoint.httpPort),
                                                       serverName: "drs/\(name)", settings: configuration.http, logger: logger),
            logger: logger)
        // The node starts first and stops last: the API answers only while it runs.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: node), .init(service: metrics), .init(service: http)]
        if let faultsFile { services.append(.init(service: FaultFileWatcher(node: node, path: faultsFile, logger: logger))) }
        let group = ServiceGroup(configuration: .init(
            services: services,
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

    /// The fault spec in `path`: none when the file is missing or empty. Throws
    /// `FaultSpecError` for a bad spec.
    static func readFaults(_ path: String) throws -> FaultSettings {
        guard let data = FileManager.default.contents(atPath: path) else { return FaultSettings() }
        return try FaultSettings(spec: String(decoding: data, as: UTF8.self))
    }
}

/// Reads the faults file again on every SIGHUP and applies it; a bad spec is logged and
/// the faults in force stay.
struct FaultFileWatcher: Service {
    let node: ReplicationNode
    let path: String
    let logger: Logger

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in signals {
                do {
                    let faults = try NodeCommand.readFaults(path)
                    node.setFaults(faults)
                    logger.notice("faults now injected", metadata: ["drs.faults": "\(faults)"])
                } catch {
                    logger.error("faults file not applied; the faults in force stay", metadata: ["file": "\(path)", "error": "\(error)"])
                }
            }
        }
    }
}
