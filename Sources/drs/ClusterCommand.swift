import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SessionReplication

/// `drs cluster up|status|down`: every node of a configuration as its own process on this
/// machine, with pids and logs in a state folder (`.drs/<config name>/`).
struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster", abstract: "Run a local cluster: one process per node.",
        subcommands: [Up.self, Status.self, Down.self])

    struct Location: ParsableArguments {
        @Option(help: "Path of a cluster-configs/*.yaml file.")
        var config: String = "cluster-configs/local-3.yaml"

        @Option(help: "State folder (default .drs/<config name>/ under the current directory).")
        var stateDir: String?

        var folder: String {
            stateDir ?? ".drs/" + ((config as NSString).lastPathComponent as NSString).deletingPathExtension
        }
    }

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start every node of the configuration.")
        @OptionGroup var location: Location
        @Flag(help: "Return once the cluster is up instead of showing status until Ctrl-C.")
        var detach = false
        @Option(help: "How long to wait for every member to see every other (e.g. 30s).")
        var wait: String = "30s"

        func run() async throws {
            let config = try loadConfiguration(location.config)
            let cluster = LocalCluster(config: config, configPath: location.config, folder: location.folder)
            let running = cluster.runningNodes()
            if !running.isEmpty {
                printError("drs cluster up: already running in \(location.folder): \(running.map { "\($0.name) (pid \($0.pid))" }.joined(separator: ", ")); use `drs cluster down` first")
                throw ExitCode(1)
            }
            guard let waitFor = parseDuration(wait) else {
                printError("drs cluster up: --wait: expected a duration like 30s, found \"\(wait)\"")
                throw ExitCode(2)
            }
            try cluster.start()
            print("started \(config.nodes.count) nodes of \(config.clusterID); logs and pids in \(location.folder)/")
            let ok = await cluster.waitUntilAllSeeAll(timeout: waitFor)
            print(await cluster.statusTable())
            guard ok else {
                printError("drs cluster up: not every member saw every other within \(wait); see the logs in \(location.folder)/")
                throw ExitCode(1)
            }
            if detach { return }
            print("showing status every 2 s; Ctrl-C stops the cluster")
            let stop = SignalWaiter()
            while !stop.fired {
                try? await Task.sleep(for: .seconds(2))
                if stop.fired { break }
                print(await cluster.statusTable())
            }
            print("stopping")
            await cluster.stop()
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show every node's status.")
        @OptionGroup var location: Location
        @Flag(help: "Print JSON instead of a table.")
        var json = false

        func run() async throws {
            let config = try loadConfiguration(location.config)
            let cluster = LocalCluster(config: config, configPath: location.config, folder: location.folder)
            if json {
                print(await cluster.statusJSON())
            } else {
                print(await cluster.statusTable())
            }
        }
    }

    struct Down: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop every node gracefully (SIGTERM, then SIGKILL after 15 s).")
        @OptionGroup var location: Location

        func run() async throws {
            let config = try loadConfiguration(location.config)
            let cluster = LocalCluster(config: config, configPath: location.config, folder: location.folder)
            let stopped = await cluster.stop()
            print(stopped.isEmpty ? "nothing running in \(location.folder)" : "stopped \(stopped.joined(separator: ", "))")
        }
    }
}

/// Parses `500ms`, `30s`, `2m`.
func parseDuration(_ text: String) -> Duration? {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
        guard let value = Double(text.dropLast(suffix.count)), value >= 0 else { return nil }
        return .milliseconds(Int64(value * scale * 1000))
    }
    return nil
}

/// Sets `fired` on SIGINT or SIGTERM.
final class SignalWaiter: @unchecked Sendable {
    private let sources: [DispatchSourceSignal]
    private let lock = NSLock()
    private var _fired = false
    var fired: Bool { lock.withLock { _fired } }

    init() {
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            sources.append(source)
        }
        self.sources = sources
        for source in sources {
            source.setEventHandler { [weak self] in self?.lock.withLock { self?._fired = true } }
            source.resume()
        }
    }
}
