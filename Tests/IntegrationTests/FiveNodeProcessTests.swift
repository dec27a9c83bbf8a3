import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// Five `drs node` processes started one by one, so that the test decides which run.
final class NodeProcesses: @unchecked Sendable {
    let directory: URL
    let names = ["n1", "n2", "n3", "n4", "n5"]
    let addresses = (1...5).map { "127.0.0.7\($0)" }
    let httpPorts: [Int]
    var processes: [String: Process] = [:]

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("drs-five-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let base = Int.random(in: 20_000...50_000)
        httpPorts = (0..<5).map { base + $0 }
        let key = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        var yaml = "cluster: {id: five, key: \"\(key)\"}\nnodes:\n"
        for i in 0..<5 {
            yaml += "  - {name: n\(i + 1), address: \(addresses[i]), httpPort: \(httpPorts[i]), replicationPort: \(base + 10 + i), membershipPort: \(base + 20 + i)}\n"
        }
        yaml += "replication: {mode: synchronous, replicas: 1}\n"
        try yaml.write(to: directory.appendingPathComponent("five.yaml"), atomically: true, encoding: .utf8)
    }

    func index(_ name: String) -> Int { names.firstIndex(of: name)! }

    func start(_ name: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: DRSBinary.path)
        p.arguments = ["node", "--config", "five.yaml", "--name", name]
        p.currentDirectoryURL = directory
        let log = directory.appendingPathComponent("\(name).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        processes[name] = p
    }

    func signal(_ name: String, _ sig: Int32) { if let p = processes[name] { kill(p.processIdentifier, sig) } }

    func cleanup() {
        for p in processes.values where p.isRunning {
            kill(p.processIdentifier, SIGCONT)
            kill(p.processIdentifier, SIGKILL)
        }
        try? FileManager.default.removeItem(at: directory)
    }

    func request(_ method: String, _ name: String, _ path: String, body: Data? = nil) async -> (Int, [String: Any]?) {
        let url = URL(string: "http://\(addresses[index(name)]):\(httpPorts[index(name)])\(path)")!
        guard let answer = await HTTPProbe.send(method, url, body: body) else { return (0, nil) }
        return (answer.status, answer.json as? [String: Any])
    }

    func members(seenBy name: String) async -> [String: String] {
        let url = URL(string: "http://\(addresses[index(name)]):\(httpPorts[index(name)])/cluster/members")!
        guard let list = await HTTPProbe.send("GET", url)?.json as? [[String: Any]] else { return [:] }
        var out: [String: String] = [:]
        for m in list { if let n = m["name"] as? String, let s = m["state"] as? String { out[n] = s } }
        return out
    }

    /// Polls `condition` every 100 ms for up to `seconds`.
    func until(_ seconds: Double, _ condition: () async -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if await condition() { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return await condition()
    }
}

@Suite("Five drs processes: crash, pause, leave and join", .serialized, .oneClusterAtATime, .timeLimit(.minutes(5)))
struct FiveNodeProcessTests {
    /// The owner of `id` among `live`, with its etag and replica set.
    func owner(_ c: NodeProcesses, _ id: String, among live: [String]) async -> (name: String, etag: String, replicaSet: [String])? {
        for n in live {
            let (status, info) = await c.request("GET", n, "/cluster/sessions/\(id)")
            if status == 200, info?["role"] as? String == "owner", let etag = info?["etag"] as? String {
                return (n, etag, info?["replicaSet"] as? [String] ?? [])
            }
        }
        return nil
    }

    /// Every session has one owner among `live` and a backup at the owner's etag.
    func settled(_ c: NodeProcesses, _ ids: [String], among live: [String]) async -> Bool {
        for id in ids {
            guard let o = await owner(c, id, among: live), let b = o.replicaSet.first, live.contains(b) else { return false }
            let (status, info) = await c.request("GET", b, "/cluster/sessions/\(id)")
            guard status == 200, info?["role"] as? String == "backup", info?["etag"] as? String == o.etag else { return false }
        }
        return true
    }

    /// Writes `value` to every session on its owner (retrying a refusal for up to 10 s).
    func writeAll(_ c: NodeProcesses, _ ids: [String], _ value: String, among live: [String]) async -> Bool {
        for id in ids {
            var done = false
            for _ in 0..<100 where !done {
                if let o = await owner(c, id, among: live) {
                    done = await c.request("PUT", o.name, "/sessions/\(id)/attributes/v", body: Data(value.utf8)).0 == 200
                }
                if !done { try? await Task.sleep(for: .milliseconds(100)) }
            }
            if !done { return false }
        }
        return true
    }

    @Test("every session stays readable with its last acknowledged value through a crash, a pause, a leave and a join")
    func crashPauseLeaveJoin() async throws {
        let c = try NodeProcesses()
        defer { c.cleanup() }
        for n in ["n1", "n2", "n3", "n4"] { try c.start(n) }
        var live = ["n1", "n2", "n3", "n4"]
        let joined = await c.until(60) {
            for n in live { let m = await c.members(seenBy: n); if !live.allSatisfy({ m[$0] == "alive" }) { return false } }
            return true
        }
        #expect(joined)
        var ids: [String] = []
        for (i, n) in live.enumerated() {
            for _ in 0..<8 {
                let (status, body) = await c.request("POST", n, "/sessions", body: Data(#"{"attributes":{"v":"MA=="}}"#.utf8))
                #expect(status == 201, "create on n\(i + 1)")
                if let id = body?["id"] as? String { ids.append(id) }
            }
        }
        #expect(await writeAll(c, ids, "1", among: live))

        // 1. A crash.
        c.signal("n1", SIGKILL)
        live.removeAll { $0 == "n1" }
        #expect(await c.until(90) { await settled(c, ids, among: live) }, "after n1 crashed")
        #expect(await writeAll(c, ids, "2", among: live))

        // 2. A pause long enough to be declared dead, then resumed.
        c.signal("n2", SIGSTOP)
        try await Task.sleep(for: .seconds(3))
        c.signal("n2", SIGCONT)
        #expect(await c.until(90) { await settled(c, ids, among: live) }, "after n2 was paused and resumed")
        #expect(await writeAll(c, ids, "3", among: live))

        // 3. A graceful leave (SIGTERM).
        c.signal("n3", SIGTERM)
        let left = await c.until(90) { await c.members(seenBy: "n4")["n3"] == "left" }
        #expect(left, "n4 lists n3 as left")
        live.removeAll { $0 == "n3" }
        #expect(await c.until(90) { await settled(c, ids, among: live) }, "after n3 left")
        #expect(await writeAll(c, ids, "4", among: live))

        // 4. A join.
        try c.start("n5")
        live.append("n5")
        #expect(await c.until(90) { await c.members(seenBy: "n2")["n5"] == "alive" && c.processes["n5"]!.isRunning })
        #expect(await c.until(90) { await settled(c, ids, among: live) }, "after n5 joined")
        var readable = 0
        for id in ids {
            guard let o = await owner(c, id, among: live) else { continue }
            let (status, body) = await c.request("GET", o.name, "/sessions/\(id)")
            if status == 200, (body?["attributes"] as? [String: String])?["v"] == "NA==" { readable += 1 }
        }
        #expect(readable == ids.count, "\(readable) of \(ids.count) sessions read back with their last value")
    }
}
