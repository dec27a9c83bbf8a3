import Foundation
import Testing

/// Short drills with the real binary (docs/design.md (Testing): CI drills use `--direct`): a
/// synchronous three-node cluster loses no acknowledged write when its busiest node is
/// killed, and a paused node never serves a stale session once resumed.
@Suite("drs drill on three processes", .serialized, .oneClusterAtATime, .timeLimit(.minutes(10)))
struct DrillProcessTests {
    /// Processes whose command line mentions `text` (the drill's nodes carry the test's
    /// own folder in their `--config` path).
    static func processes(mentioning text: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard pid != getpid(), let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            return String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(text)
        }
    }

    /// Runs a drill on a fresh synchronous cluster, kills whatever it left behind (and
    /// records that as a failure), and returns the exit status, output and JSON report.
    func drill(_ scenario: String, _ extra: [String] = [], replication: String = "{mode: synchronous, replicas: 1}",
               renamed: Bool = false) async throws -> (status: Int32, output: String, report: [String: Any]?, folder: URL) {
        let cluster = try ProcessCluster(replication: replication)
        // A copy of the binary under another name (an installed `drs-1.2`, say).
        let binary = cluster.directory.appendingPathComponent("drs-renamed").path
        if renamed { try FileManager.default.copyItem(atPath: DRSBinary.path, toPath: binary) }
        let config = cluster.directory.appendingPathComponent(cluster.config).path
        let json = cluster.directory.appendingPathComponent("\(scenario).json").path
        defer {
            let left = Self.processes(mentioning: cluster.directory.path)
            #expect(left.isEmpty, "the drill left processes behind: \(left)")
            for pid in left { kill(pid, SIGCONT); kill(pid, SIGKILL) }
        }
        let run = try await DRSBinary.run(["drill", scenario, "--config", config, "--direct", "--sessions", "20", "--rate", "60",
                                     "--duration", "6s", "--json", json, "--state-dir", cluster.directory.appendingPathComponent("st").path] + extra,
                                    in: cluster.directory, binary: renamed ? binary : nil)
        let report = FileManager.default.contents(atPath: json).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
        return (run.status, run.output, report, cluster.directory)
    }

    func expectNothingLost(_ r: (status: Int32, output: String, report: [String: Any]?, folder: URL)) throws {
        #expect(r.status == 0, "\(r.output)")
        let report = try #require(r.report, "no JSON report: \(r.output)")
        let writes = try #require(report["writes"] as? [String: Int])
        // 60 writes/s for 6 s is 360 on a quiet machine; a CI run starved by the
        // simulations beside it managed 97. More than one per session still judges.
        #expect((writes["acknowledged"] ?? 0) > 30, "too little load to judge: \(writes)")
        #expect(writes["acknowledgedReplicated"] == writes["acknowledged"], "synchronous mode acknowledges only replicated writes")
        #expect(report["acknowledgedWritesLost"] as? Int == 0, "\(r.output)")
        #expect(report["sessionsLost"] as? Int == 0)
        #expect(report["staleReads"] as? Int == 0, "\(r.output)")
        #expect(report["sessionsUnreadable"] as? Int == 0)
        #expect(report["timeToDetectMs"] is Double, "the survivors never listed the victim dead: \(r.output)")
        #expect(report["timeToPromoteMs"] is Double, "the survivors were never seen owning every session: \(r.output)")
        #expect((report["violations"] as? [String])?.isEmpty == true)
        #expect((report["perSecond"] as? [[String: Any]])?.isEmpty == false)
        let svg = r.folder.appendingPathComponent("\((report["scenario"] as? String) ?? "").svg").path
        #expect(FileManager.default.contents(atPath: svg).map { String(decoding: $0, as: UTF8.self).hasPrefix("<svg") } == true)
    }

    @Test("a drs binary under another name finds the nodes it started: it signals them, and leaves none behind")
    func renamedBinary() async throws {
        // Before, only a program named `drs` counted as a node: the renamed copy found no
        // process to pause, failed, and left its three nodes running.
        let r = try await drill("hang", renamed: true)
        try expectNothingLost(r)
    }

    @Test("kill-primary: SIGKILL of the busiest node loses no write acknowledged in synchronous mode")
    func killPrimary() async throws {
        let r = try await drill("kill-primary")
        try expectNothingLost(r)
        #expect(r.report?["mechanism"] as? String == "SIGKILL of the drs node process; restarted at heal")
        #expect(r.report?["repair"] as? Bool == true)
    }

    @Test("hang: a node paused with SIGSTOP and resumed serves no stale session; --repair off runs with repair off")
    func hang() async throws {
        let r = try await drill("hang", ["--repair", "off"])
        try expectNothingLost(r)
        let events = (r.report?["events"] as? [[String: Any]])?.compactMap { $0["what"] as? String } ?? []
        #expect(events.contains("probed"), "the resumed node was not probed: \(events)")
        #expect(r.report?["repair"] as? Bool == false)
        let derived = try String(contentsOf: r.folder.appendingPathComponent("st/it-3-repair-off.yaml"), encoding: .utf8)
        #expect(derived.contains("repairInterval: 24h"))
    }

    @Test("packet-loss --inject delays, duplicates and reorders the victim's datagrams through its own transport, and no write is lost")
    func injectedFaults() async throws {
        let r = try await drill("packet-loss", ["--inject", "delay=20ms,jitter=10ms,duplicate=30%,reorder=30%"],
                                replication: "{mode: best-effort, replicas: 1, transport: udp}")
        #expect(r.status == 0, "\(r.output)")
        let report = try #require(r.report, "no JSON report: \(r.output)")
        #expect((report["mechanism"] as? String)?.hasPrefix("drs fault injection") == true, "\(report["mechanism"] ?? "-")")
        #expect(report["acknowledgedWritesLost"] as? Int == 0, "\(r.output)")
        #expect(report["staleReads"] as? Int == 0, "\(r.output)")
        let healed = (report["events"] as? [[String: Any]])?.first { $0["what"] as? String == "healed" }?["detail"] as? String ?? ""
        // "fault injection off (injected: delayed N, dropped 0, duplicated N, reordered N)"
        let counts = Dictionary(uniqueKeysWithValues: healed.split(separator: ",").compactMap { part -> (String, Int)? in
            let words = part.split(separator: " ")
            guard words.count >= 2, let n = Int(words.last!.trimmingCharacters(in: CharacterSet(charactersIn: ")"))) else { return nil }
            return (String(words[words.count - 2]), n)
        })
        #expect((counts["duplicated"] ?? 0) > 0 && (counts["reordered"] ?? 0) > 0 && (counts["delayed"] ?? 0) > 0, "\(healed)")
        #expect(counts["dropped"] == 0, "\(healed)")
    }

    @Test("round robin (--lb round-robin): with no fault every request answers 2xx; SIGKILL of the busiest node loses no acknowledged write")
    func roundRobin() async throws {
        // Acknowledged and sticky, as local-3: any node may get any request; the cluster
        // forwards to the owner or moves the session, and nothing may fail.
        let calm = try await drill("none", ["--lb", "round-robin"], replication: "{mode: acknowledged, replicas: 1}")
        #expect(calm.status == 0, "\(calm.output)")
        let report = try #require(calm.report, "no JSON report: \(calm.output)")
        #expect(report["requestsFailed"] as? Int == 0, "\(calm.output)")
        #expect((report["failedAnswers"] as? [String: Int])?.isEmpty == true, "\(calm.output)")
        #expect((report["violations"] as? [String])?.isEmpty == true, "\(calm.output)")
        #expect(report["loadBalancer"] as? String == "direct round-robin")
        #expect(((report["writes"] as? [String: Int])?["acknowledged"] ?? 0) > 30, "too little load to judge: \(calm.output)")
        try expectNothingLost(try await drill("kill-primary", ["--lb", "round-robin"]))
    }

    @Test("bad drill arguments exit 2 naming the problem, starting nothing")
    func badArguments() async throws {
        let directory = FileManager.default.temporaryDirectory
        let unknown = try await DRSBinary.run(["drill", "meteor-strike", "--config", "x.yaml"], in: directory)
        #expect(unknown.status == 2 && unknown.output.contains("unknown scenario \"meteor-strike\""), "\(unknown.output)")
        let sessions = try await DRSBinary.run(["drill", "hang", "--sessions", "0"], in: directory)
        #expect(sessions.status == 2 && sessions.output.contains("--sessions"), "\(sessions.output)")
        let inject = try await DRSBinary.run(["drill", "packet-loss", "--inject", "jitter=5"], in: directory)
        #expect(inject.status == 2 && inject.output.contains("jitter=5"), "\(inject.output)")
        let injectHang = try await DRSBinary.run(["drill", "hang", "--inject", "delay=5ms"], in: directory)
        #expect(injectHang.status == 2 && injectHang.output.contains("--inject"), "\(injectHang.output)")
        let lb = try await DRSBinary.run(["drill", "hang", "--lb", "random"], in: directory)
        #expect(lb.status == 2 && lb.output.contains("--lb") && lb.output.contains("random"), "\(lb.output)")
        let duration = try await DRSBinary.run(["drill", "hang", "--duration", "soon"], in: directory)
        #expect(duration.status == 2 && duration.output.contains("--duration"), "\(duration.output)")
    }
}
