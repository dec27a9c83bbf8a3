import ArgumentParser
import Foundation
import SessionReplicationCore
import SessionReplicationTestKit

/// `drs simulate-membership` (also `drs-simulate simulate-membership`): seeds of the
/// membership scenario (`MembershipScenario`: `--members` nodes, default 3, 32 virtual
/// seconds with one crash and restart, pause or cut, loss and duplication, then healing).
/// `--seeds N` (default 1,000) seeds drawn from `--base` (default 2026), or one `--seed`
/// replayed. Each seed checks that every process ends seeing every other alive at its
/// current id, that nobody a fault did not touch was declared dead, and that every crashed
/// process was declared dead by every process that stayed up. Exits 1 when a seed fails,
/// 2 (through the caller) on an option out of range.
public struct SimulateMembershipCommand: ParsableCommand {
    /// Named `simulate-membership` under `drs` and `drs-simulate`.
    public static let configuration = CommandConfiguration(
        commandName: "simulate-membership",
        abstract: "Run seeds of the membership simulation scenario, or replay one seed.")

    @Option(help: "Seeds to run, drawn from --base.")
    var seeds = 1_000

    @Option(help: "What the seeds are drawn from.")
    var base: UInt64 = 2026

    @Option(help: "Replay this one seed.")
    var seed: UInt64?

    @Option(help: "Members of the simulated cluster (3 to 9).")
    var members = 3

    /// Every option at its default.
    public init() {}

    /// Refuses a seed count outside 1...10,000,000 and a member count outside 3...9.
    public func validate() throws {
        guard seeds >= 1, seeds <= 10_000_000 else { throw ValidationError("--seeds must be between 1 and 10000000") }
        guard (3...9).contains(members) else { throw ValidationError("--members must be between 3 and 9") }
    }

    /// Runs the seeds (or the one seed); throws `ExitCode(1)` when any failed.
    public func run() throws {
        let list = seed.map { [$0] } ?? MembershipScenario.seeds(base: base, count: seeds)
        var failed = 0, detections = 0
        for s in list {
            let o = MembershipScenario.run(seed: s, members: members)
            detections += o.detections.count
            guard !o.failures.isEmpty else { continue }
            failed += 1
            print("FAILED seed \(s) (\(members) members): replay with `drs simulate-membership --members \(members) --seed \(s)`:")
            for f in o.failures.prefix(5) { print("  \(f)") }
            if failed >= 5 { break }
        }
        print("simulated \(list.count) membership seeds of \(members) members: \(failed) failed, \(detections) crashes detected")
        if failed > 0 { throw ExitCode(1) }
    }
}
