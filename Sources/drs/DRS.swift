import ArgumentParser
import Foundation
import SimulationCommand

/// `drs`: run session replication nodes, local clusters, demos and benchmarks.
/// Exit codes: 0 success; 1 the run failed; 2 bad usage or an invalid configuration.
@main
struct DRS: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drs",
        abstract: "Memory-to-memory session replication: nodes, demos and benchmarks.",
        subcommands: [NodeCommand.self, ClusterCommand.self, LBConfigCommand.self, DrillCommand.self, DemoCommand.self, BenchCommand.self, SimulateCommand.self, SimulateClusterCommand.self, SimulateMembershipCommand.self, CheckConfigCommand.self, KeygenCommand.self]
    )

    /// Runs the command, mapping ArgumentParser's usage exit code (64) to the
    /// contract's 2.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var async = command as? any AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch {
            exitMappingUsageToTwo(error)
        }
    }
}
