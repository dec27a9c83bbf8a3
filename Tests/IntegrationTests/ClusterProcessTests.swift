import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// Runs the real `drs` binary: the debug build `swift test` makes beside the tests, or the
/// build named in `DRS_RELEASE_BINARY` (to run the process tests on the build that ships).
/// `make test` uses the debug build: a release `drs` from a clean checkout costs CI more
/// build time than its cheaper nodes save (the matrix beside them runs at nice 19).
struct DRSBinary {
    static var path: String {
        if let release = ProcessInfo.processInfo.environment["DRS_RELEASE_BINARY"], !release.isEmpty { return release }
        return debugDirectory.appendingPathComponent("drs").path
    }

    /// The folder of the executables `swift test` builds (the examples are only there).
    static var debugDirectory: URL {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug")
    }

    /// Runs `drs` with `arguments`; returns the exit code and the combined output. The
    /// process is killed after `timeout` seconds (exit status 9 then). The wait happens on
    /// a thread of its own: blocking one of the cooperative pool's two threads for a whole
    /// drill starved every async test beside it (a fresh-clone CI run: the PersistDriver
    /// tests' handover answers, sent from tasks, missed their 5 s timeout).
    @discardableResult
    static func run(_ arguments: [String], in directory: URL, timeout: Int = 300, binary: String? = nil) async throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary ?? path)
        process.arguments = arguments
        process.currentDirectoryURL = directory
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        // A hung binary fails its test instead of hanging the whole run.
        let pid = process.processIdentifier
        DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(timeout)) { if process.isRunning { kill(pid, SIGKILL) } }
        let reader = pipe.fileHandleForReading
        return await withCheckedContinuation { continuation in
            Thread {
                let data = reader.readDataToEndOfFile()
                process.waitUntilExit()
                continuation.resume(returning: (process.terminationStatus, String(decoding: data, as: UTF8.self)))
            }.start()
        }
    }
}

/// A cluster of three `drs node` processes on loopback addresses and random ports,
/// started with `drs cluster up --detach`; `cleanup()` kills whatever is left.
struct ProcessCluster {
    let directory: URL
    let config: String
    let addresses = ["127.0.0.61", "127.0.0.62", "127.0.0.63"]
    let httpPorts: [Int]

    /// A cluster whose `replication:` section is `replication` (YAML flow mapping).
    init(replication: String = "{mode: synchronous, replicas: 1}") throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("drs-it-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let base = Int.random(in: 20_000...50_000)
        httpPorts = [base, base + 1, base + 2]
        let key = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        var yaml = "cluster: {id: it-3, key: \"\(key)\"}\nnodes:\n"
        for i in 0..<3 {
            yaml += "  - {name: n\(i + 1), address: \(addresses[i]), httpPort: \(httpPorts[i]), replicationPort: \(base + 10 + i), membershipPort: \(base + 20 + i)}\n"
        }
        yaml += "replication: \(replication)\n"
        config = "it-3.yaml"
        try yaml.write(to: directory.appendingPathComponent(config), atomically: true, encoding: .utf8)
    }

    var pids: [Int32] {
        let state = directory.appendingPathComponent(".drs/it-3")
        return ((try? FileManager.default.contentsOfDirectory(atPath: state.path)) ?? []).filter { $0.hasSuffix(".pid") }.compactMap {
            (try? String(contentsOf: state.appendingPathComponent($0), encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
    }

    /// The pid of node `name` from its pid file.
    func pid(of name: String) -> Int32? {
        let file = directory.appendingPathComponent(".drs/it-3/\(name).pid")
        return (try? String(contentsOf: file, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// `GET /cluster/sessions/{id}` on `node` as JSON (nil on any failure).
    func held(_ node: Int, _ id: String) async -> [String: Any]? {
        guard let (status, data, _) = try? await request("GET", node, "/cluster/sessions/\(id)"), status == 200 else { return nil }
        return try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    }

    func cleanup(_ pids: [Int32]) {
        for pid in pids where kill(pid, 0) == 0 { kill(pid, SIGCONT); kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(at: directory)
    }

    func url(_ node: Int, _ path: String) -> URL { URL(string: "http://\(addresses[node]):\(httpPorts[node])\(path)")! }

    func request(_ method: String, _ node: Int, _ path: String, body: Data? = nil) async throws -> (Int, Data, HTTPProbe.Answer) {
        guard let answer = await HTTPProbe.send(method, url(node, path), body: body, timeout: .seconds(10)) else {
            throw URLError(.cannotConnectToHost)
        }
        return (answer.status, answer.body, answer)
    }
}

@Suite("The drs binary: a local cluster of processes", .serialized, .oneClusterAtATime, .timeLimit(.minutes(10)))
struct ClusterProcessTests {
    @Test("cluster up --detach starts three processes that replicate; status shows them; down stops every one")
    func upStatusDown() async throws {
        let cluster = try ProcessCluster()
        var started: [Int32] = []
        defer { cluster.cleanup(started) }
        let up = try await DRSBinary.run(["cluster", "up", "--config", cluster.config, "--detach", "--wait", "60s"], in: cluster.directory)
        started = cluster.pids
        #expect(up.status == 0, "\(up.output)")
        #expect(started.count == 3)
        // A second up says so instead of starting duplicates.
        let again = try await DRSBinary.run(["cluster", "up", "--config", cluster.config, "--detach"], in: cluster.directory)
        #expect(again.status == 1 && again.output.contains("already running"), "\(again.output)")
        #expect(cluster.pids.sorted() == started.sorted())

        let (created, body, response) = try await cluster.request("POST", 0, "/sessions", body: Data(#"{"attributes":{"cart":"YXBwbGVz"}}"#.utf8))
        #expect(created == 201)
        #expect(response.value(forHTTPHeaderField: "X-DRS-Durability") == "replicated")
        let json = try JSONSerialization.jsonObject(with: body) as! [String: Any]
        let id = try #require(json["id"] as? String)
        let (put, _, _) = try await cluster.request("PUT", 0, "/sessions/\(id)/attributes/user", body: Data("ada".utf8))
        #expect(put == 200)
        // Synchronous mode: the backup applied it before the answer. Find it on another node.
        var backups = 0
        for node in 1...2 {
            let (status, data, _) = try await cluster.request("GET", node, "/cluster/sessions/\(id)")
            #expect(status == 200)
            let info = try JSONSerialization.jsonObject(with: data) as! [String: Any]
            if info["role"] as? String == "backup" {
                backups += 1
                #expect(info["version"] as? Int == 2)
                #expect(info["owner"] as? String == "n1")
            }
        }
        #expect(backups == 1)
        let (read, readBody, _) = try await cluster.request("GET", 0, "/sessions/\(id)")
        #expect(read == 200)
        let attributes = (try JSONSerialization.jsonObject(with: readBody) as! [String: Any])["attributes"] as? [String: String]
        #expect(attributes == ["cart": "YXBwbGVz", "user": "YWRh"])

        let (metricsStatus, metricsBody, _) = try await cluster.request("GET", 0, "/metrics")
        #expect(metricsStatus == 200)
        #expect(String(decoding: metricsBody, as: UTF8.self).contains("drs_commits_total 1"))

        let status = try await DRSBinary.run(["cluster", "status", "--config", cluster.config, "--json"], in: cluster.directory)
        #expect(status.status == 0)
        let rows = try JSONSerialization.jsonObject(with: Data(status.output.utf8)) as? [[String: Any]]
        #expect(rows?.map { $0["state"] as? String } == ["serving", "serving", "serving"])
        #expect(rows?.compactMap { $0["primaries"] as? Int }.reduce(0, +) == 1)

        let down = try await DRSBinary.run(["cluster", "down", "--config", cluster.config], in: cluster.directory)
        #expect(down.status == 0, "\(down.output)")
        #expect(started.allSatisfy { kill($0, 0) != 0 }, "a node process survived `down`")
    }

    @Test("with affinity none, requests on any node are forwarded to the owner, which keeps the session")
    func affinityNoneForwards() async throws {
        let cluster = try ProcessCluster(replication: "{mode: synchronous, replicas: 1, affinity: none}")
        var started: [Int32] = []
        defer { cluster.cleanup(started) }
        let up = try await DRSBinary.run(["cluster", "up", "--config", cluster.config, "--detach", "--wait", "60s"], in: cluster.directory)
        started = cluster.pids
        #expect(up.status == 0, "\(up.output)")
        let (created, body, _) = try await cluster.request("POST", 0, "/sessions", body: Data(#"{"attributes":{"cart":"YXBwbGVz"}}"#.utf8))
        #expect(created == 201)
        let id = try #require((try JSONSerialization.jsonObject(with: body) as? [String: Any])?["id"] as? String)
        // Every node answers for n1's session, with n1 named as the owner.
        for (round, node) in [1, 2, 1, 2].enumerated() {
            let (put, putBody, response) = try await cluster.request("PUT", node, "/sessions/\(id)/attributes/n\(node + 1)", body: Data("x\(round)".utf8))
            #expect(put == 200, "\(String(decoding: putBody, as: UTF8.self))")
            #expect(response.value(forHTTPHeaderField: "X-DRS-Owner") == "n1")
            #expect(response.value(forHTTPHeaderField: "X-DRS-Durability") == "replicated")
        }
        let (read, readBody, readResponse) = try await cluster.request("GET", 2, "/sessions/\(id)")
        #expect(read == 200 && readResponse.value(forHTTPHeaderField: "X-DRS-Owner") == "n1")
        let attributes = (try JSONSerialization.jsonObject(with: readBody) as? [String: Any])?["attributes"] as? [String: String]
        #expect(attributes == ["cart": "YXBwbGVz", "n2": "eDI=", "n3": "eDM="])
        // Ownership never moved: n1 owns it, under its first epoch.
        let info = await cluster.held(0, id)
        #expect(info?["role"] as? String == "owner" && info?["epoch"] as? Int == 1, "\(String(describing: info))")
        let (_, metrics, _) = try await cluster.request("GET", 1, "/metrics")
        #expect(String(decoding: metrics, as: UTF8.self).contains(#"drs_http_forwarded_total{result="ok"} 2"#),
                "\(String(decoding: metrics, as: UTF8.self).split(separator: "\n").filter { $0.contains("forwarded") })")
        let down = try await DRSBinary.run(["cluster", "down", "--config", cluster.config], in: cluster.directory)
        #expect(down.status == 0, "\(down.output)")
    }

    @Test("a round-robin client is answered 2xx every time: twelve PUTs on one session through n2, n3, n1, ..., and a DELETE through the creator after reads through the others",
          arguments: ["sticky", "none"])
    func roundRobinNeverMisdirected(_ affinity: String) async throws {
        let cluster = try ProcessCluster(replication: "{mode: acknowledged, replicas: 1, affinity: \(affinity)}")
        var started: [Int32] = []
        defer { cluster.cleanup(started) }
        let up = try await DRSBinary.run(["cluster", "up", "--config", cluster.config, "--detach", "--wait", "60s"], in: cluster.directory)
        started = cluster.pids
        #expect(up.status == 0, "\(up.output)")
        func create(on node: Int) async throws -> String {
            let (status, body, _) = try await cluster.request("POST", node, "/sessions", body: Data("{}".utf8))
            #expect(status == 201, "\(String(decoding: body, as: UTF8.self))")
            return try #require((try JSONSerialization.jsonObject(with: body) as? [String: Any])?["id"] as? String)
        }
        // Each PUT adds its own attribute, so none can hide behind a later one.
        let id = try await create(on: 0)
        var answers: [String] = []
        for i in 0..<12 {
            let node = (i + 1) % 3
            let (status, body, _) = try await cluster.request("PUT", node, "/sessions/\(id)/attributes/w\(i)", body: Data("\(i)".utf8))
            answers.append("n\(node + 1):\(status)")
            #expect(status == 200, "PUT \(i) through n\(node + 1): \(status) \(String(decoding: body, as: UTF8.self))")
        }
        let (read, readBody, _) = try await cluster.request("GET", 0, "/sessions/\(id)")
        let attributes = (try? JSONSerialization.jsonObject(with: readBody) as? [String: Any])?["attributes"] as? [String: String]
        #expect(read == 200 && attributes?.count == 12, "\(answers): \(String(decoding: readBody, as: UTF8.self))")
        // Created on n1, read through n2 and n3 (under sticky each read moves it), then
        // deleted through n1, which handed it away moments ago.
        let other = try await create(on: 0)
        for node in [1, 2] {
            let (status, body, _) = try await cluster.request("GET", node, "/sessions/\(other)")
            #expect(status == 200, "GET through n\(node + 1): \(status) \(String(decoding: body, as: UTF8.self))")
        }
        let (deleted, deleteBody, _) = try await cluster.request("DELETE", 0, "/sessions/\(other)")
        #expect(deleted == 204, "\(deleted) \(String(decoding: deleteBody, as: UTF8.self))")
        for node in 0..<3 {
            let (status, _, _) = try await cluster.request("GET", node, "/sessions/\(other)")
            #expect(status == 404, "GET through n\(node + 1) after the DELETE")
        }
        let down = try await DRSBinary.run(["cluster", "down", "--config", cluster.config], in: cluster.directory)
        #expect(down.status == 0, "\(down.output)")
    }

    @Test("an owner paused with SIGSTOP is failed over, and once resumed never serves the stale session")
    func pausedOwnerNeverServesStale() async throws {
        let cluster = try ProcessCluster()
        var started: [Int32] = []
        defer { cluster.cleanup(started) }
        let up = try await DRSBinary.run(["cluster", "up", "--config", cluster.config, "--detach", "--wait", "60s"], in: cluster.directory)
        started = cluster.pids
        #expect(up.status == 0, "\(up.output)")
        let (created, body, _) = try await cluster.request("POST", 0, "/sessions", body: Data(#"{"attributes":{"cart":"djE="}}"#.utf8))
        #expect(created == 201)
        let id = try #require((try JSONSerialization.jsonObject(with: body) as? [String: Any])?["id"] as? String)
        var backupNode: Int?
        for node in 1...2 where await cluster.held(node, id)?["role"] as? String == "backup" { backupNode = node }
        let taker = try #require(backupNode)
        let n1 = try #require(cluster.pid(of: "n1"))
        kill(n1, SIGSTOP)
        // The backup is promoted once n1 is declared dead.
        var promoted = false
        for _ in 0..<400 where !promoted {
            promoted = await cluster.held(taker, id)?["role"] as? String == "owner"
            if !promoted { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(promoted, "the backup did not take over within 20 s")
        let (put, _, _) = try await cluster.request("PUT", taker, "/sessions/\(id)/attributes/cart", body: Data("v2".utf8))
        #expect(put == 200)
        kill(n1, SIGCONT)
        // From the moment it resumes, n1 must never answer with the old cart.
        var answers: [Int] = []
        for _ in 0..<20 {
            if let (status, data, _) = try? await cluster.request("GET", 0, "/sessions/\(id)") {
                answers.append(status)
                if status == 200 {
                    let attributes = (try JSONSerialization.jsonObject(with: data) as? [String: Any])?["attributes"] as? [String: String]
                    #expect(attributes?["cart"] != "djE=", "n1 served the stale session after resuming")
                }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(!answers.isEmpty, "n1 never answered after resuming")
        // The write survives. A GET on n1 after it resumed may have taken the session
        // over (sticky ownership follows requests); the taker then refers to n1 with
        // 421 and X-DRS-Owner during takeoverCooldown.
        var (read, readBody, response) = try await cluster.request("GET", taker, "/sessions/\(id)")
        if read == 421 {
            #expect(response.value(forHTTPHeaderField: "X-DRS-Owner") == "n1")
            (read, readBody, response) = try await cluster.request("GET", 0, "/sessions/\(id)")
        }
        #expect(read == 200)
        let attributes = (try JSONSerialization.jsonObject(with: readBody) as? [String: Any])?["attributes"] as? [String: String]
        #expect(attributes?["cart"] == "djI=")
        _ = try await DRSBinary.run(["cluster", "down", "--config", cluster.config], in: cluster.directory)
    }

    @Test("an invalid configuration exits 2 naming the file and the field")
    func invalidConfig() async throws {
        let cluster = try ProcessCluster()
        defer { cluster.cleanup([]) }
        try "cluster: {id: x, insecure: true}\nnodes:\n  - {name: N1}\n".write(to: cluster.directory.appendingPathComponent("bad.yaml"), atomically: true, encoding: .utf8)
        let result = try await DRSBinary.run(["node", "--config", "bad.yaml", "--name", "N1"], in: cluster.directory)
        #expect(result.status == 2)
        #expect(result.output.contains("bad.yaml") && result.output.contains("nodes[0].name"), "\(result.output)")
    }
}

@Suite("drs simulate")
struct SimulateCommandTests {
    @Test("measures detection on a simulated cluster, the same numbers for the same seed, and refuses bad options")
    func simulate() async throws {
        let dir = FileManager.default.temporaryDirectory
        let a = try await DRSBinary.run(["simulate", "--members", "5", "--trials", "3", "--json"], in: dir)
        #expect(a.status == 0, "\(a.output)")
        let json = try JSONSerialization.jsonObject(with: Data(a.output.utf8)) as? [String: Any]
        let detection = json?["detectionMs"] as? [String: Double]
        #expect((detection?["p50"] ?? 0) > 0)
        #expect(json?["falseDeaths"] as? Int == 0)
        let b = try await DRSBinary.run(["simulate", "--members", "5", "--trials", "3", "--json"], in: dir)
        #expect(a.output == b.output)
        let bad = try await DRSBinary.run(["simulate", "--members", "1"], in: dir)
        #expect(bad.status == 2, "\(bad.output)")
        #expect(bad.output.contains("--members"))
    }
}

@Suite("drs lb-config")
struct LBConfigCommandTests {
    @Test("haproxy: one server per node with /readyz checks, routing on the cookie's and the path's route, redispatch; unknown balancers exit 2")
    func haproxy() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let result = try await DRSBinary.run(["lb-config", "haproxy", "--config", "cluster-configs/local-3.yaml", "--bind", "127.0.0.1:9000"], in: root)
        #expect(result.status == 0, "\(result.output)")
        let text = result.output
        for (name, address) in [("n1", "127.0.0.11:8081"), ("n2", "127.0.0.12:8082"), ("n3", "127.0.0.13:8083")] {
            #expect(text.contains("server \(name) \(address) check"), "\(name)")
            #expect(text.contains("use-server \(name) if { req.cook(DRSSESSIONID),field(2,.) -m str \(name) }"))
            #expect(text.contains("use-server \(name) if { path_reg ^/sessions/[0-9a-f]{32}\\.\(name)(/|$) }"))
        }
        #expect(text.contains("option httpchk GET /readyz"))
        #expect(text.contains("option redispatch"))
        #expect(text.contains("bind 127.0.0.1:9000"))
        let plain = try await DRSBinary.run(["lb-config", "haproxy", "--config", "cluster-configs/local-3.yaml", "--round-robin"], in: root)
        #expect(plain.status == 0, "\(plain.output)")
        #expect(plain.output.contains("balance roundrobin") && plain.output.contains("server n2 127.0.0.12:8082 check"))
        #expect(!plain.output.contains("use-server"), "round robin routes on nothing: \(plain.output)")
        let bad = try await DRSBinary.run(["lb-config", "nginx", "--config", "cluster-configs/local-3.yaml"], in: root)
        #expect(bad.status == 2)
        #expect(bad.output.contains("nginx"))
    }

    @Test("haproxy: nodes reached by DNS name get resolvers, so HAProxy starts before they resolve and follows a new IP")
    func haproxyNamedNodes() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("drs-lb-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let key = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        try """
            cluster: {id: named, key: "\(key)"}
            http: {token: t}
            nodes: [{name: n1, address: n1.drs.test, bind: 0.0.0.0}, {name: n2, address: n2.drs.test, bind: 0.0.0.0}]
            """.write(to: dir.appendingPathComponent("named.yaml"), atomically: true, encoding: .utf8)
        let result = try await DRSBinary.run(["lb-config", "haproxy", "--config", "named.yaml"], in: dir)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("resolvers system\n    parse-resolv-conf"), "\(result.output)")
        #expect(result.output.contains("server n1 n1.drs.test:8080 check inter 250ms fall 2 rise 2 resolvers system init-addr last,libc,none"), "\(result.output)")
        // Literal addresses need no resolver.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let literal = try await DRSBinary.run(["lb-config", "haproxy", "--config", "cluster-configs/local-3.yaml"], in: root)
        #expect(!literal.output.contains("resolvers"), "\(literal.output)")
    }
}
