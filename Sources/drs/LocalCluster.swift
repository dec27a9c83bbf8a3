import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SessionReplication

/// The processes of a local cluster: one `drs node` per configured node, each writing its
/// log to `<folder>/<name>.log` and its pid to `<folder>/<name>.pid`.
struct LocalCluster {
    let config: ClusterConfiguration
    let configPath: String
    let folder: String
    /// Whether nodes start with `--faults-file <folder>/<name>.faults` (drills that inject
    /// faults through the transport). Default `false`.
    var faultFiles = false

    /// The faults file of node `name` (see `faultFiles`).
    func faultsFile(_ name: String) -> String { "\(folder)/\(name).faults" }

    struct Running {
        var name: String
        var pid: Int32
    }

    func pidFile(_ name: String) -> String { "\(folder)/\(name).pid" }

    /// The cluster key its nodes seal with: a fresh one per `start()`, readable by its
    /// owner only, handed to each node as DRS_CLUSTER_KEY_FILE (which wins over the
    /// configuration's own key, `keyFile` or `insecure`). Not used when the environment
    /// already names a key.
    var keyFile: String { "\(folder)/cluster.key" }

    /// Nodes whose pid file names a live `drs` process (a pid reused by another program
    /// since is not ours: it is never signalled).
    func runningNodes() -> [Running] {
        config.nodes.compactMap { node in
            guard let text = try? String(contentsOfFile: pidFile(node.name), encoding: .utf8),
                  let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0, kill(pid, 0) == 0,
                  Self.isDRSNode(pid: pid, name: node.name) else { return nil }
            return Running(name: node.name, pid: pid)
        }
    }

    /// This very program, as `start` launches it (a copy under another name, say
    /// `drs-1.2`, launches and finds its nodes too).
    static let ownExecutable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path

    /// Whether process `pid` is a `drs node --name <name>` (its /proc/<pid>/cmdline): the
    /// program is named `drs` or is this program, and its arguments start with `node` and
    /// name `name`.
    static func isDRSNode(pid: Int32, name: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        let args = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard let program = args.first, (program as NSString).lastPathComponent == "drs" || program == ownExecutable,
              args.dropFirst().first == "node" else { return false }
        guard let i = args.firstIndex(of: "--name"), i + 1 < args.count else { return false }
        return args[i + 1] == name
    }

    /// Starts every node as `drs node` in its own process group, detached from this one,
    /// each with a new log.
    func start() throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        if !Self.environmentNamesKey {
            do { try ClusterKeys.writeKeyFile(ClusterKeys.generateKey(), to: keyFile, replace: true) } catch {
                throw DrillError("\(error)")
            }
        }
        for node in config.nodes {
            guard FileManager.default.createFile(atPath: "\(folder)/\(node.name).log", contents: nil) else {
                throw DrillError("cannot create \(folder)/\(node.name).log")
            }
            try start(node.name)
        }
    }

    /// Starts node `name` as `drs node`, appending to its log; returns its pid. Throws
    /// when the folder cannot be written or the process cannot be started.
    @discardableResult
    func start(_ name: String) throws -> Int32 {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let executable = URL(fileURLWithPath: Self.ownExecutable)
        let log = "\(folder)/\(name).log"
        if !FileManager.default.fileExists(atPath: log), !FileManager.default.createFile(atPath: log, contents: nil) {
            throw DrillError("cannot create \(log)")
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        let process = Process()
        process.executableURL = executable
        process.arguments = ["node", "--config", configPath, "--name", name] + (faultFiles ? ["--faults-file", faultsFile(name)] : [])
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        if !Self.environmentNamesKey, FileManager.default.fileExists(atPath: keyFile) {
            var environment = ProcessInfo.processInfo.environment
            environment["DRS_CLUSTER_KEY_FILE"] = URL(fileURLWithPath: keyFile).standardizedFileURL.path
            process.environment = environment
        }
        try process.run()
        try "\(process.processIdentifier)\n".write(toFile: pidFile(name), atomically: true, encoding: .utf8)
        return process.processIdentifier
    }

    /// Stops every running node: SIGTERM, then SIGKILL after 15 s. Returns their names.
    @discardableResult
    func stop() async -> [String] {
        let running = runningNodes()
        for node in running { kill(node.pid, SIGTERM) }
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline, running.contains(where: { kill($0.pid, 0) == 0 }) {
            try? await Task.sleep(for: .milliseconds(50))
        }
        for node in running where kill(node.pid, 0) == 0 { kill(node.pid, SIGKILL) }
        for node in config.nodes { try? FileManager.default.removeItem(atPath: pidFile(node.name)) }
        return running.map(\.name)
    }

    /// Whether this process's environment already gives the nodes a key.
    static var environmentNamesKey: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["DRS_CLUSTER_KEY"] != nil || env["DRS_CLUSTER_KEY_FILE"] != nil
    }

    func baseURL(_ node: NodeEndpoint) -> String { "\(config.http.tls == nil ? "http" : "https")://\(node.authority(port: node.httpPort))" }

    /// GETs `path` on `node`; `nil` on any failure.
    func get(_ node: NodeEndpoint, _ path: String) async -> Data? {
        guard let url = URL(string: baseURL(node) + path) else { return nil }
        var request = URLRequest(url: url, timeoutInterval: 2)
        if let token = config.http.token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        guard let (data, response) = try? await URLSession.shared.data(for: request),
              (response as? HTTPURLResponse)?.statusCode == 200 else { return nil }
        return data
    }

    /// Waits until every node answers, lists every member as alive and reports itself
    /// `serving` (joined, with current leases).
    func waitUntilAllSeeAll(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var all = true
            for node in config.nodes {
                guard let data = await get(node, "/cluster/members"),
                      let members = try? JSONDecoder().decode([MemberInfo].self, from: data),
                      members.count == config.nodes.count, members.allSatisfy({ $0.state == "alive" }),
                      let status = await get(node, "/cluster/status"),
                      let object = try? JSONSerialization.jsonObject(with: status) as? [String: Any],
                      object["state"] as? String == "serving" else { all = false; break }
            }
            if all { return true }
            try? await Task.sleep(for: .milliseconds(200))
        }
        return false
    }

    struct StatusRow: Codable {
        var node: String
        var pid: Int32?
        var state: String
        var primaries: Int?
        var backups: Int?
        var queued: Int?
        var lagMsP99: Double?
    }

    func rows() async -> [StatusRow] {
        let pids = Dictionary(uniqueKeysWithValues: runningNodes().map { ($0.name, $0.pid) })
        var rows: [StatusRow] = []
        for node in config.nodes {
            var row = StatusRow(node: node.name, pid: pids[node.name], state: pids[node.name] == nil ? "stopped" : "unreachable")
            if let data = await get(node, "/cluster/status"),
               let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
                row.state = object["state"] as? String ?? "?"
                row.primaries = object["primaries"] as? Int
                row.backups = object["backups"] as? Int
                row.queued = (object["queues"] as? [String: Int])?.values.reduce(0, +)
                row.lagMsP99 = (object["lagMsP99"] as? [String: Double])?.values.max()
            }
            rows.append(row)
        }
        return rows
    }

    func statusTable() async -> String {
        var lines = ["node         pid      state        primaries  backups  queued  lag p99 ms"]
        for r in await rows() {
            func cell(_ v: Int?) -> String { v.map(String.init) ?? "-" }
            lines.append(r.node.padding(toLength: 12, withPad: " ", startingAt: 0) + " "
                + (r.pid.map(String.init) ?? "-").padding(toLength: 8, withPad: " ", startingAt: 0) + " "
                + r.state.padding(toLength: 12, withPad: " ", startingAt: 0) + " "
                + cell(r.primaries).padding(toLength: 10, withPad: " ", startingAt: 0) + " "
                + cell(r.backups).padding(toLength: 8, withPad: " ", startingAt: 0) + " "
                + cell(r.queued).padding(toLength: 7, withPad: " ", startingAt: 0) + " "
                + (r.lagMsP99.map { String(format: "%.2f", $0) } ?? "-"))
        }
        return lines.joined(separator: "\n")
    }

    func statusJSON() async -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return (try? encoder.encode(await rows())).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
    }
}
