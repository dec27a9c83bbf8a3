import ArgumentParser
import SimulationCommand

/// `drs-simulate`: the simulation matrix alone, the same command as `drs simulate-cluster`
/// (`drs-simulate --seeds 2000`, `drs-simulate --seed 4242 --trace`), and the membership
/// scenario's seeds (`drs-simulate simulate-membership`). It links only the
/// core and the simulator, so an optimised build of it takes a few minutes where the whole
/// `drs` (NIO, Hummingbird, the HTTP client) takes far longer from a clean checkout:
/// `make test` builds this one in release for the matrix. Exit codes as `drs`: 0 every
/// seed kept every invariant, 1 some seed failed, 2 bad usage.
@main
struct DRSSimulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drs-simulate",
        abstract: "The cluster simulation matrix (NodeCore under a simulated network) alone.",
        subcommands: [SimulateClusterCommand.self, SimulateMembershipCommand.self],
        defaultSubcommand: SimulateClusterCommand.self)

    /// Runs the command, mapping ArgumentParser's usage exit code (64) to 2, as `drs` does.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exitMappingUsageToTwo(error)
        }
    }
}
