import ArgumentParser
import Foundation
import SessionReplicationCore
import SessionReplicationTestKit

/// `drs simulate`: failure detection measured on a simulated cluster (virtual time, so
/// the numbers do not depend on this machine's load).
struct SimulateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Measure failure detection on a simulated cluster of membership machines.")

    @Option(help: "Members in the simulated cluster.")
    var members = 5

    @Option(help: "Crashes to measure, one after another.")
    var trials = 10

    @Option(help: "Datagram loss rate (0 to 0.5).")
    var loss = 0.0

    @Option(help: "Seed of the run (the same seed gives the same numbers).")
    var seed: UInt64 = 1

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        guard (3...5_000).contains(members) else { throw ValidationError("--members must be between 3 and 5000") }
        guard (1...1_000).contains(trials) else { throw ValidationError("--trials must be between 1 and 1000") }
        guard (0...0.5).contains(loss) else { throw ValidationError("--loss must be between 0 and 0.5") }
    }

    func run() throws {
        let r = MembershipExperiment.run(members: members, trials: trials, seed: seed, loss: loss)
        func pct(_ values: [Double], _ p: Double) -> Double {
            guard !values.isEmpty else { return .nan }
            let sorted = values.sorted()
            return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
        }
        let out: [String: Any] = [
            "members": r.members, "trials": trials, "loss": loss, "seed": seed,
            "joinSeconds": r.joinSeconds ?? -1,
            "detectionMs": ["p50": pct(r.detectionsMs, 0.5), "p99": pct(r.detectionsMs, 0.99), "max": r.detectionsMs.max() ?? -1],
            "firstDeclaredMs": ["p50": pct(r.firstMs, 0.5)], "lastDeclaredMs": ["p50": pct(r.lastMs, 0.5), "max": r.lastMs.max() ?? -1],
            "messagesPerMemberPerSecond": r.messagesPerMemberPerSecond, "falseDeaths": r.falseDeaths,
        ]
        if json {
            let data = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("simulated \(r.members) members, \(trials) crashes, loss \(loss), seed \(seed) (virtual time)")
        print(String(format: "  join: every member saw every other alive after %.1f s", r.joinSeconds ?? -1))
        print(String(format: "  crash -> dead on each survivor: p50 %.0f ms, p99 %.0f ms, max %.0f ms", pct(r.detectionsMs, 0.5), pct(r.detectionsMs, 0.99), r.detectionsMs.max() ?? -1))
        print(String(format: "  first survivor to declare: p50 %.0f ms; last survivor: p50 %.0f ms, max %.0f ms", pct(r.firstMs, 0.5), pct(r.lastMs, 0.5), r.lastMs.max() ?? -1))
        print(String(format: "  messages per member per second (quiet): %.1f; false deaths: %d", r.messagesPerMemberPerSecond, r.falseDeaths))
    }
}
