import ArgumentParser
import Foundation
import SessionReplicationCore
import SessionReplicationTestKit

/// `drs simulate-cluster` (also the whole of `drs-simulate`): the simulation matrix
/// (`ClusterScenario`): `--seeds N` seeds from `--base` (defaults 2,100 from 1,000),
/// spread over the scenario families and run on `--jobs` threads (default 2), or one
/// `--seed` replayed exactly (the same trace digest every time). Exits 1 when any seed
/// breaks an invariant or gets stuck, 2 (through the caller) on an option out of range.
public struct SimulateClusterCommand: ParsableCommand {
    /// Named `simulate-cluster` under `drs` and as `drs-simulate`'s default subcommand.
    public static let configuration = CommandConfiguration(
        commandName: "simulate-cluster",
        abstract: "Run the cluster simulation matrix (NodeCore under a simulated network), or replay one seed.")

    @Option(help: "Seeds to run, from --base.")
    var seeds = 2_100

    @Option(help: "The first seed.")
    var base: UInt64 = 1_000

    @Option(help: "Replay this one seed (prints its knobs, digest and outcome).")
    var seed: UInt64?

    @Option(help: "Threads running seeds at once.")
    var jobs = 2

    @Option(help: "Stop after this many failing seeds.")
    var maxFailures = 20

    @Flag(help: "Print every decision of the replayed seed (with --seed).")
    var trace = false

    @Flag(help: "Skip the serving check after every event (faster; the other invariants stay).")
    var noObserver = false

    /// Every option at its default.
    public init() {}

    /// Refuses a seed count outside 1...10,000,000 and a thread count outside 1...64.
    public func validate() throws {
        guard seeds >= 1, seeds <= 10_000_000 else { throw ValidationError("--seeds must be between 1 and 10000000") }
        guard (1...64).contains(jobs) else { throw ValidationError("--jobs must be between 1 and 64") }
    }

    /// Runs the matrix or the one seed; throws `ExitCode(1)` when any seed failed.
    public func run() throws {
        if let seed {
            if trace { setenv("DRS_SIM_TRACE", "1", 1) }
            let o = ClusterScenario.run(seed: seed, observe: !noObserver)
            print("seed \(seed): \(o.knobs)")
            print("trace digest \(o.digest); \(o.writes) writes, \(o.acked) acknowledged (\(o.replicated) replicated), \(o.promotions) promotions, \(o.takeovers) takeovers, \(o.rejoins) rejoins")
            print("requests: \(o.outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
            for f in o.failures { print("FAILURE: \(f)") }
            for s in o.stuck { print("STUCK: \(s)") }
            if !o.failures.isEmpty || !o.stuck.isEmpty { throw ExitCode(1) }
            return
        }
        let started = Date()
        let matrix = Matrix(base: base, count: seeds, jobs: jobs, observe: !noObserver, maxFailures: maxFailures)
        let r = matrix.run()
        let took = Date().timeIntervalSince(started)
        print("simulated \(r.run) seeds from \(base) in \(String(format: "%.0f", took)) s on \(jobs) threads")
        print("by family: " + r.families.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.run) (\($0.value.failed) failed)" }.joined(separator: ", "))
        print("writes \(r.writes), acknowledged replicated \(r.replicated), promotions \(r.promotions), takeovers \(r.takeovers), rejoins \(r.rejoins)")
        print("requests: " + r.outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        for (seed, o) in r.failed.sorted(by: { $0.0 < $1.0 }) {
            print("FAILED seed \(seed) [\(o.knobs)]: replay with `drs simulate-cluster --seed \(seed)`:")
            for f in (o.failures + o.stuck).prefix(6) { print("  \(f)") }
        }
        if !r.failed.isEmpty { throw ExitCode(1) }
    }
}

/// Seeds of the matrix run on several threads (each simulation is single-threaded and
/// deterministic; only their order of completion varies).
final class Matrix: @unchecked Sendable {
    struct Result {
        var run = 0
        var families: [String: (run: Int, failed: Int)] = [:]
        var writes = 0, replicated = 0, promotions = 0, takeovers = 0, rejoins = 0
        var outcomes: [String: Int] = [:]
        var failed: [(UInt64, ClusterScenario.Outcome)] = []
    }

    let base: UInt64, count: Int, jobs: Int, observe: Bool, maxFailures: Int
    private let lock = NSLock()
    private var next = 0
    private var result = Result()

    init(base: UInt64, count: Int, jobs: Int, observe: Bool, maxFailures: Int) {
        self.base = base
        self.count = count
        self.jobs = jobs
        self.observe = observe
        self.maxFailures = maxFailures
    }

    func run() -> Result {
        let group = DispatchGroup()
        for _ in 0..<jobs {
            group.enter()
            let thread = Thread { [self] in
                while let i = take() {
                    let seed = base &+ UInt64(i)
                    record(seed, ClusterScenario.run(seed: seed, observe: observe))
                }
                group.leave()
            }
            thread.stackSize = 16 << 20
            thread.start()
        }
        group.wait()
        return lock.withLock { result }
    }

    private func take() -> Int? {
        lock.withLock {
            guard next < count, result.failed.count < maxFailures else { return nil }
            defer { next += 1 }
            return next
        }
    }

    private func record(_ seed: UInt64, _ o: ClusterScenario.Outcome) {
        lock.withLock {
            result.run += 1
            let f = o.knobs.family.rawValue
            let bad = !o.failures.isEmpty || !o.stuck.isEmpty
            result.families[f, default: (0, 0)].run += 1
            if bad {
                result.families[f, default: (0, 0)].failed += 1
                result.failed.append((seed, o))
            }
            result.writes += o.writes
            result.replicated += o.replicated
            result.promotions += o.promotions
            result.takeovers += o.takeovers
            result.rejoins += o.rejoins
            result.outcomes.merge(o.outcomes, uniquingKeysWith: +)
        }
    }
}
