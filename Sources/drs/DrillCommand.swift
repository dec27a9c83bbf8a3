import ArgumentParser
import Foundation
import NIOCore
import SessionReplication
import SessionReplicationCore
import SessionReplicationDrill
import Yams

/// `drs drill SCENARIO --config FILE`: starts every node of the configuration as its own
/// process, puts load on it through HAProxy (or straight to the nodes with `--direct`),
/// injects a fault, keeps the load running, heals, reads every session back and reports
/// exactly what was lost (docs/contracts.md). Exits 1 when the cluster broke a promise it
/// makes (see `DrillReport.violations`) or the drill could not run, 2 on bad usage.
struct DrillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drill",
        abstract: "Run a failover drill under load and count exactly what was lost.",
        discussion: """
        Scenarios: kill-primary (SIGKILL of the node owning most sessions, restarted at heal), hang (SIGSTOP, \
        SIGCONT at heal; then every session is read from the resumed node), graceful-leave (SIGTERM: drain and \
        leave, restarted at heal), rolling-restart (each node in turn: SIGTERM, restart, wait until serving), \
        packet-loss (nftables drops --loss percent of one node's replication packets until heal), partition \
        (nftables drops everything between one node and the others until heal), none (no fault: every request \
        of the load must answer 2xx). The fault comes at 30 % of --duration and heals at 60 %. packet-loss and partition need root and nft (Debian package nftables).
        """)

    @Argument(help: "kill-primary | hang | graceful-leave | rolling-restart | packet-loss | partition | none")
    var scenario: String

    @Option(help: "Path of a cluster-configs/*.yaml file.")
    var config: String = "cluster-configs/local-3.yaml"

    @Option(help: "Sessions the load uses.")
    var sessions: Int = 100

    @Option(help: "Requests per second over all sessions (writes, and every fourth request of a session a read).")
    var rate: Double = 200

    @Option(help: "Length of the load, e.g. 30s.")
    var duration: String = "30s"

    @Flag(help: "Send the load straight to the nodes (the drill follows routes itself) instead of through HAProxy.")
    var direct = false

    @Option(help: "Balancing: sticky (on the session's route, the default) or round-robin (no stickiness; the cluster forwards). With --direct the drill itself sends each request to the next node in turn.")
    var lb: String = "sticky"

    @Option(help: "Write the JSON report here and the SVG timeline beside it (same name, .svg).")
    var json: String?

    @Option(help: "Anti-entropy repair: on, or off (repairInterval set past the end of the drill).")
    var repair: String = "on"

    @Option(help: "packet-loss: percent of the node's replication packets dropped.")
    var loss: Int = 20

    @Option(help: ArgumentHelp("packet-loss: inject faults through the node's own transport instead of nftables, e.g. delay=20ms,jitter=5ms,duplicate=5%,reorder=10%,drop=5%.",
                               discussion: "The victim's outbound replication datagrams are dropped, delayed, duplicated and reordered as the spec says (TCP frames only delayed), from the fault until heal; --loss is then not used."))
    var inject: String?

    @Option(help: "State folder for the drill's cluster (default .drs/drill-<config name>/).")
    var stateDir: String?

    func validate() throws {
        guard DrillScenario(rawValue: scenario) != nil else {
            throw ValidationError("unknown scenario \"\(scenario)\" (expected one of: \(DrillScenario.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard sessions >= 1 && sessions <= 100_000 else { throw ValidationError("--sessions: expected 1...100000, found \(sessions)") }
        guard rate > 0 && rate <= 100_000 else { throw ValidationError("--rate: expected a number of requests per second in (0, 100000], found \(rate)") }
        guard let d = parseDuration(duration), d >= .seconds(3) else { throw ValidationError("--duration: expected a duration of at least 3s like 30s, found \"\(duration)\"") }
        guard lb == "sticky" || lb == "round-robin" else { throw ValidationError("--lb: expected sticky or round-robin, found \"\(lb)\"") }
        guard repair == "on" || repair == "off" else { throw ValidationError("--repair: expected on or off, found \"\(repair)\"") }
        guard (1...100).contains(loss) else { throw ValidationError("--loss: expected a percentage 1...100, found \(loss)") }
        if let inject {
            guard DrillScenario(rawValue: scenario) == .packetLoss else { throw ValidationError("--inject: only the packet-loss scenario injects faults through the transport") }
            do {
                guard try FaultSettings(spec: inject).isActive else { throw ValidationError("--inject: the spec \"\(inject)\" injects nothing") }
            } catch let error as FaultSpecError {
                throw ValidationError("--inject: \(error)")
            }
        }
    }

    func run() async throws {
        let scenario = DrillScenario(rawValue: scenario)!
        var configuration = try loadConfiguration(config)
        let name = ((config as NSString).lastPathComponent as NSString).deletingPathExtension
        let folder = stateDir ?? ".drs/drill-\(name)"
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var clusterConfigPath = config
        if repair == "off" {
            clusterConfigPath = "\(folder)/\(name)-repair-off.yaml"
            try Self.writeRepairOff(from: config, to: clusterConfigPath)
            configuration = try loadConfiguration(clusterConfigPath)
        }
        if scenario.needsNftables, inject == nil { try Self.checkNftables(scenario) }
        if scenario.needsNftables, inject == nil, let other = configuration.nodes.first(where: { (try? SocketAddress(ipAddress: $0.address, port: 0))?.protocol != .inet }) {
            // The nftables rules match IPv4 addresses; names and IPv6 stay out of the firewall.
            printError("drs drill \(scenario.rawValue): nftables rules need IPv4 literal addresses, but \(other.name)'s address is \(other.address); use --inject, or `make multihost-drill` for named hosts")
            throw ExitCode(1)
        }
        if scenario == .partition, Set(configuration.nodes.map(\.address)).count < configuration.nodes.count {
            printError("drs drill partition: every node needs its own address (127.0.0.11, 127.0.0.12, ...) to be cut off alone")
            throw ExitCode(1)
        }
        if !direct, Self.which("haproxy") == nil {
            printError("drs drill: haproxy not found; install it (apt-get install -y haproxy, or `make drill` does) or pass --direct")
            throw ExitCode(1)
        }
        let run = DrillRun(scenario: scenario, configuration: configuration, configPath: config, clusterConfigPath: clusterConfigPath,
                           folder: folder, sessionCount: sessions, rate: rate, duration: parseDuration(duration)!, direct: direct,
                           repair: repair == "on", roundRobin: lb == "round-robin", lossPercent: loss, inject: inject.map { try! FaultSettings(spec: $0) })
        // A drill that hangs (a wedged HTTP client, a node that never answers) must not
        // outlive its budget or leave processes behind: a watchdog outside Swift
        // concurrency kills the nodes and exits 1.
        let budget = Int(parseDuration(duration)!.components.seconds) + 180
        let pidFolder = folder, names = configuration.nodes.map(\.name)
        DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(budget)) {
            for name in names {
                if let text = try? String(contentsOfFile: "\(pidFolder)/\(name).pid", encoding: .utf8),
                   let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) { kill(pid, SIGCONT); kill(pid, SIGKILL) }
            }
            printError("drs drill: still running after \(budget) s; killed the cluster's processes (nftables rules, if any, stay: nft list tables)")
            Foundation.exit(1)
        }
        let report: DrillReport
        do {
            report = try await run.run()
        } catch {
            await run.cleanup()
            printError("drs drill: \(error)")
            throw ExitCode(1)
        }
        print(report.table)
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(report).write(to: URL(fileURLWithPath: json))
            let svg = ((json as NSString).deletingPathExtension) + ".svg"
            try report.svg.write(toFile: svg, atomically: true, encoding: .utf8)
            print("report: \(json), timeline: \(svg)")
        }
        if !report.violations.isEmpty { throw ExitCode(1) }
    }

    /// Writes a copy of the configuration at `from` with `replication.repairInterval` set
    /// to 24h (past the end of any drill), so no anti-entropy round runs.
    static func writeRepairOff(from: String, to: String) throws {
        let text = try String(contentsOfFile: from, encoding: .utf8)
        guard var root = try Yams.compose(yaml: text), case .mapping(var top) = root else {
            throw ValidationError("\(from): not a YAML mapping")
        }
        var replication: Node.Mapping = top["replication"]?.mapping ?? Node.Mapping([])
        replication["repairInterval"] = "24h"
        top["replication"] = .mapping(replication)
        root = .mapping(top)
        try ("# \(from) with repair off (written by drs drill --repair off)\n" + Yams.serialize(node: root)).write(toFile: to, atomically: true, encoding: .utf8)
    }

    /// Throws (exit 1) unless this process can change nftables rules.
    static func checkNftables(_ scenario: DrillScenario) throws {
        guard which("nft") != nil else {
            printError("drs drill \(scenario.rawValue): needs nft (Debian package nftables; `make drill` installs it)")
            throw ExitCode(1)
        }
        guard geteuid() == 0 else {
            printError("drs drill \(scenario.rawValue): changing nftables rules needs root")
            throw ExitCode(1)
        }
    }

    /// The path of `program` on `PATH` (and the sbin folders), or nil.
    static func which(_ program: String) -> String? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/sbin:/usr/local/sbin"
        for dir in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(dir)/\(program)") {
            return "\(dir)/\(program)"
        }
        return nil
    }
}

/// The drill scenarios of docs/contracts.md.
enum DrillScenario: String, CaseIterable, Sendable {
    case killPrimary = "kill-primary"
    case hang
    case gracefulLeave = "graceful-leave"
    case rollingRestart = "rolling-restart"
    case packetLoss = "packet-loss"
    case partition
    /// No fault: the load runs undisturbed (a baseline; any failed request is a violation).
    case none

    var needsNftables: Bool { self == .packetLoss || self == .partition }
}
