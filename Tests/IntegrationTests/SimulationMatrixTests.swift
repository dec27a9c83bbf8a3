import Foundation
import Testing

/// The simulation matrix (`NodeCore` clusters under a simulated network, every scenario
/// family) run by an optimised binary, where it is fast: `make test` builds `drs-simulate`
/// in release and names it in `DRS_SIMULATOR_BINARY` (a release `drs` works as well: it
/// has the same `simulate-cluster` command). `DRS_SIM_CLUSTER_SEEDS` changes the seed count
/// (2,002 by default), `DRS_SIM_BASE` the first seed. A failing seed is printed with the
/// command that replays it.
@Suite("The simulation matrix", .serialized)
struct SimulationMatrixTests {
    static var binary: String? { ProcessInfo.processInfo.environment["DRS_SIMULATOR_BINARY"] }

    @Test("every seed of the matrix keeps every invariant, and the runs exercise failover and takeover")
    func matrix() async throws {
        let path = try #require(Self.binary, "DRS_SIMULATOR_BINARY is not set: run `make test`, which builds the release drs-simulate and names it")
        #expect(FileManager.default.isExecutableFile(atPath: path), "no simulator binary at \(path)")
        let env = ProcessInfo.processInfo.environment
        let seeds = env["DRS_SIM_CLUSTER_SEEDS"] ?? "2002"
        let base = env["DRS_SIM_BASE"] ?? "1000"
        let directory = FileManager.default.temporaryDirectory
        // At the lowest priority (nice 19): it runs for the whole test run on both cores,
        // and the socket tests beside it must not be starved into false deaths and
        // lapsed leases (a 2 s lease lapsed at the start of a run, answering `fenced`).
        let (status, output) = try await DRSBinary.run(["-n", "19", path, "simulate-cluster", "--seeds", seeds, "--base", base, "--jobs", "2"],
                                                        in: directory, timeout: 3_600, binary: "/usr/bin/nice")
        print(output)
        #expect(status == 0, "the matrix found failing seeds:\n\(output)")
        // The runs did what they are for.
        for family in ["standard", "two-backups", "mixed", "restarts", "cuts", "clocks", "lifecycle"] {
            #expect(output.contains("\(family) "), "no \(family) seeds ran")
        }
        let totals = try #require(output.split(separator: "\n").first { $0.hasPrefix("writes ") })
        let numbers = totals.split(separator: " ").compactMap { Int(String($0).trimmingCharacters(in: .punctuationCharacters)) }
        #expect(numbers.count >= 5 && numbers.prefix(4).allSatisfy { $0 > 0 }, "writes, replicated writes, promotions and takeovers all happen: \(totals)")
    }

    @Test("a seed replays exactly: the same trace digest twice")
    func replay() async throws {
        let path = try #require(Self.binary, "DRS_SIMULATOR_BINARY is not set: run `make test`")
        let directory = FileManager.default.temporaryDirectory
        let a = try await DRSBinary.run(["simulate-cluster", "--seed", "4242"], in: directory, binary: path)
        let b = try await DRSBinary.run(["simulate-cluster", "--seed", "4242"], in: directory, binary: path)
        let c = try await DRSBinary.run(["simulate-cluster", "--seed", "4243"], in: directory, binary: path)
        func digest(_ s: String) -> String? { s.split(separator: "\n").first { $0.hasPrefix("trace digest") }.map(String.init) }
        #expect(a.status == 0 && b.status == 0, "\(a.output)")
        #expect(digest(a.output) != nil && digest(a.output) == digest(b.output))
        #expect(digest(c.output) != digest(a.output))
        // A bad option is a usage error (2) naming the option, as in `drs`.
        let bad = try await DRSBinary.run(["--jobs", "0"], in: directory, binary: path)
        #expect(bad.status == 2 && bad.output.contains("--jobs"), "\(bad.status): \(bad.output)")
    }
}

/// The membership scenario (`Membership` machines alone: a crash and restart, a pause or a
/// cut per seed) run optimised, where 1,000 seeds take seconds instead of the debug
/// build's minutes.
@Suite("The membership simulation seeds")
struct MembershipSeedTests {
    @Test("1,000 seeds of three members and 60 of five: everyone converges, nobody untouched is declared dead, every crash is detected")
    func seeds() async throws {
        let path = try #require(SimulationMatrixTests.binary, "DRS_SIMULATOR_BINARY is not set: run `make test`")
        let directory = FileManager.default.temporaryDirectory
        for (members, seeds, base) in [(3, 1_000, 2026), (5, 60, 5)] {
            let (status, output) = try await DRSBinary.run(["simulate-membership", "--members", "\(members)", "--seeds", "\(seeds)", "--base", "\(base)"],
                                                            in: directory, timeout: 1_800, binary: path)
            #expect(status == 0, "\(members) members:\n\(output)")
            #expect(output.contains("simulated \(seeds) membership seeds of \(members) members: 0 failed"), "\(output)")
            let detected = output.split(separator: ",").last.flatMap { Int($0.split(separator: " ").first ?? "") } ?? 0
            #expect(detected > 0, "no crash was detected: \(output)")
        }
        let bad = try await DRSBinary.run(["simulate-membership", "--members", "2"], in: directory, binary: path)
        #expect(bad.status == 2 && bad.output.contains("--members"), "\(bad.output)")
    }
}

/// Seeds that found a hole in the node's protocol, each replayed in the release binary. They
/// failed on the code before the fix named beside them, and must keep every invariant.
@Suite("Simulator seeds that found holes", .serialized)
struct RegressionSeedTests {
    static let seeds: [(UInt64, String)] = [
        (17, "a handover giver's stray copy promoted beside the live owner when the owner its copy named died"),
        (14, "two takers cancelling each other's takeover: the session left without an owner"),
        (5008, "a restart faster than detection: the name held departed, its new process not asked in the prepare round"),
        (5050, "a copy promised to a taker reported as the owner's: every taker yielded"),
        (5072, "a lost handover answer re-sent after the session moved on: two owners (the adopted handover is now confirmed first)"),
        (5175, "a handover refused because of an earlier promise to a taker that had yielded: no owner"),
        (5074, "replicated answered with fewer backups than minSyncReplicas"),
        (9017, "concurrent takers deciding by copies that changed between two answers: both yielded"),
        (9028, "a hint's first holder named as the owner in promises: the taker yielded to a non-owner"),
        (19, "a paused VM whose monotonic clock stopped served on its old leases"),
        (1691, "a process held dead across a healed partition never heard it (its membership messages were refused): two sides never rejoined"),
        (1046, "a giver that handed a session away kept its own takeover of it pending: its prepare answer said owned here, the taker yielded, nobody owned it"),
        (1243, "a handover answer to the process before a rejoin adopted by the new one: a stale copy served and an acknowledged write lost"),
        (5000657, "a stale handover answer adopted while the session's newer adopter was still confirming: each answered the other owned, both yielded, nobody owned it"),
        (7003608, "a late frame of a restarted node's short-lived process (wall clock stepped back) retired its current process everywhere it arrived: no session could move to or from that node"),
        (7011749, "a copyless nominee that a promise gave a copy ranked itself by name against a taker with a copy: each answered the other owned, both yielded, nobody owned the session"),
        (7012855, "a copyless taker's resent prepare carried the copy a promise had brought it: the taker with a copy ranked it as its equal and yielded by name, while the copyless one yielded to that taker's earlier answer; nobody owned the session"),
        (7110455, "under majority two of three nodes crashed for good: the judge wanted an owner and a full replica set where no quorum is left (now it checks that the survivor stays fenced)"),
        (7113696, "a taker yielded to the owner named by one holder's stray older copy while that owner, asked in the same round, had handed the session on: nobody owned it"),
        (7117182, "a cut between two of three nodes alone: each declared the other dead and saw a majority, neither yielded, and each held the other dead for good"),
        (7188120, "receipts read by an owner resumed after a 2 s stop completed a synchronous write as replicated, though a promoted older copy without it had replaced it (the answer now waits for the serving check)"),
        (7199488, "a member declared dead while this node saw no majority came back under a new process before the majority did: its old process's failover stayed deferred, and a session it owned had no owner"),
        (7118682, "a stale handover's confirmation re-pointed the holders' copies to the adopter, which then yielded: the owner's changes were refused, and when it died nobody took the session over"),
    ]

    @Test("each seed keeps every invariant", arguments: seeds.map(\.0))
    func seed(_ seed: UInt64) async throws {
        let path = try #require(SimulationMatrixTests.binary, "DRS_SIMULATOR_BINARY is not set: run `make test`")
        let (status, output) = try await DRSBinary.run(["simulate-cluster", "--seed", "\(seed)"], in: FileManager.default.temporaryDirectory, binary: path)
        let what = Self.seeds.first { $0.0 == seed }?.1 ?? ""
        #expect(status == 0, "seed \(seed) (\(what)):\n\(output)")
    }
}
