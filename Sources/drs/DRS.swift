import ArgumentParser

/// `drs`: run session replication nodes, local clusters, demos and benchmarks.
/// Exit codes: 0 success; 1 the run failed; 2 bad usage or an invalid configuration.
@main
struct DRS: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drs",
        abstract: "Memory-to-memory session replication: nodes, demos and benchmarks.",
        subcommands: [NodeCommand.self, ClusterCommand.self, DemoCommand.self, BenchCommand.self, CheckConfigCommand.self]
    )
}
