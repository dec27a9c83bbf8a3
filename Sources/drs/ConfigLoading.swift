import ArgumentParser
import SessionReplication

#if canImport(Glibc)
import Glibc
#endif

/// Writes a line to standard error.
func printError(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { buf in _ = write(2, buf.baseAddress, buf.count) }
}

/// Loads and validates a configuration, or exits with code 2 naming file, field and
/// expectation. Warnings go to standard error.
func loadConfiguration(_ path: String) throws -> ClusterConfiguration {
    do {
        let config = try ClusterConfiguration.load(path: path)
        for warning in config.warnings { printError("warning: \(path): \(warning)") }
        return config
    } catch {
        printError("drs: invalid configuration: \(error)")
        throw ExitCode(2)
    }
}

/// `drs check-config --config FILE`: validates a configuration and prints a summary.
struct CheckConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check-config", abstract: "Validate a cluster configuration.")

    @Option(help: "Path of a cluster-configs/*.yaml file.")
    var config: String

    func run() async throws {
        let c = try loadConfiguration(config)
        let p = c.replication
        print("\(config): cluster \(c.clusterID), \(c.nodes.count) nodes, mode \(p.mode.rawValue) over \(p.effectiveTransport.rawValue), replicas \(p.replicas)")
    }
}
