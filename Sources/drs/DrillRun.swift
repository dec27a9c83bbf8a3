import Foundation
import SessionReplication
import SessionReplicationCore
import SessionReplicationDrill

/// One drill: the cluster's processes, the load, the fault and the bookkeeping. Every
/// answer goes into a `DrillLedger`; the report is built from it and from what the
/// monitor saw on the survivors' `/cluster/status` and `/cluster/members`.
actor DrillRun {
    let scenario: DrillScenario
    let configuration: ClusterConfiguration
    let configPath: String
    let cluster: LocalCluster
    let sessionCount: Int
    let rate: Double
    let duration: Double
    let direct: Bool
    /// Requests go to the nodes in turn, ignoring routes (through HAProxy's round robin,
    /// or the drill's own with `direct`); the cluster forwards to owners.
    let roundRobin: Bool
    /// The direct round robin's next node.
    var turn = 0
    let repair: Bool
    let lossPercent: Int
    let http: DrillHTTP
    let monitorHTTP: DrillHTTP
    let readyHTTP: DrillHTTP
    let cookieName: String
    let origin = ContinuousClock.now
    let startedAt = Date()

    /// Per-session state of the load.
    struct Slot {
        var id: String
        var route: String
        var nextSeq = 1
        var ops = 0
        var busy = false
        /// A new route was handed out; the next answer shows whether the LB followed it.
        var awaitingRoute: String?
        /// When that route was handed out (drill time).
        var routeAt = 0.0
    }

    var ledger = DrillLedger()
    var slots: [Slot] = []
    var cursor = 0
    var skipped = 0
    var inFlight = 0
    var routing = DrillReport.Routing()
    /// When the fault touched each node (a route to it then is not checked).
    var faultWindows = FaultWindows()
    /// When each node answered `/readyz` with anything but 200 (or not at all): the
    /// balancer's health check takes such a node out, so a route to it then is not
    /// checked either (a survivor fenced until the cut-off node is declared dead, say).
    var notReady = FaultWindows()
    var readinessStop = false
    /// Nodes the direct-mode client avoids until the given time (refused or timed out).
    var avoid: [String: Double] = [:]
    var events: [DrillReport.Event] = []
    var faultAt: Double?
    var detectedAt: Double?
    var promotedAt: Double?
    var fullAt: Double?
    var victim = "-"
    var mechanism = "-"
    var lagAtFault: Double?
    var system: [Int: (steal: Double, runQueue: Int)] = [:]
    var haproxy: Process?
    var lbURL: String?
    var nftTable: String?
    var stoppedVictim: Int32?
    /// packet-loss through the node's own fault injection instead of nftables.
    let inject: FaultSettings?

    init(scenario: DrillScenario, configuration: ClusterConfiguration, configPath: String, clusterConfigPath: String, folder: String,
         sessionCount: Int, rate: Double, duration: Duration, direct: Bool, repair: Bool, roundRobin: Bool = false, lossPercent: Int,
         inject: FaultSettings? = nil) {
        self.scenario = scenario
        self.configuration = configuration
        self.configPath = configPath
        var cluster = LocalCluster(config: configuration, configPath: clusterConfigPath, folder: folder)
        cluster.faultFiles = inject != nil
        self.cluster = cluster
        self.inject = inject
        self.sessionCount = sessionCount
        self.rate = rate
        self.duration = duration.seconds
        self.direct = direct
        self.roundRobin = roundRobin
        self.repair = repair
        self.lossPercent = lossPercent
        self.http = DrillHTTP(timeout: 3, token: configuration.http.token)
        // Polls may be slow on a starved host (a debug build beside other work): a poll
        // that times out counts as no answer, and promotion is only seen in a round in
        // which every survivor answered.
        self.monitorHTTP = DrillHTTP(timeout: 3, token: configuration.http.token)
        // The balancer's health check gives a node 250 ms; so does the readiness watch.
        self.readyHTTP = DrillHTTP(timeout: 0.25, token: configuration.http.token)
        self.cookieName = configuration.http.cookieName
    }

    /// Seconds since the drill started.
    nonisolated func now() -> Double { (ContinuousClock.now - origin).seconds }

    func note(_ what: String, _ detail: String, at t: Double? = nil) {
        let t = t ?? now()
        events.append(DrillReport.Event(t: t, what: what, detail: detail))
        printError(String(format: "drill %6.2f s  ", t) + what + (detail.isEmpty ? "" : ": " + detail))
    }

    func url(_ node: NodeEndpoint, _ path: String) -> String { "http://\(node.authority(port: node.httpPort))\(path)" }
    func node(_ name: String) -> NodeEndpoint? { configuration.nodes.first { $0.name == name } }

    // MARK: - The whole drill

    func run() async throws -> DrillReport {
        for node in configuration.nodes where await monitorHTTP.send("GET", url(node, "/healthz")).status != nil {
            throw DrillError("something already answers on \(node.address):\(node.httpPort) (node \(node.name)); stop that cluster first (drs cluster down)")
        }
        try cluster.start()
        do {
            return try await runStarted()
        } catch {
            // Whatever failed, the nodes (own process groups, detached) and HAProxy are
            // stopped, and the load stops starting requests.
            loadEnd = 0
            monitorStop = true
            readinessStop = true
            await cleanup()
            throw error
        }
    }

    /// The drill once the nodes are started; `run` cleans up when it throws.
    func runStarted() async throws -> DrillReport {
        note("cluster", "\(configuration.nodes.count) drs node processes started; logs in \(cluster.folder)/")
        guard await cluster.waitUntilAllSeeAll(timeout: .seconds(60)) else {
            throw DrillError("not every member saw every other within 60 s; see \(cluster.folder)/*.log")
        }
        if !direct { try await startHAProxy() }
        let sampler = Task { await self.sampleSystem() }
        try await createSessions()
        let loadStart = now()
        let faultTime = loadStart + duration * 0.3, healTime = loadStart + duration * 0.6
        loadEnd = loadStart + duration
        let pacer = Task { await self.pace() }
        // Only where routes are checked: through the balancer, with cookie routing.
        let readiness = direct || roundRobin ? [] : configuration.nodes.map { node in Task { await self.watchReadiness(node) } }
        try await sleep(until: faultTime)
        // No fault (`none`): no monitor either; the load runs to its end.
        var monitor: Task<Void, Never>?
        if scenario == .none {
            mechanism = "no fault"
            note("fault", "none: the load runs undisturbed")
        } else {
            try await injectFault()
            monitor = Task { await self.monitor() }
            if scenario != .rollingRestart {
                try await sleep(until: healTime)
                try await heal()
            } else {
                note("healed", "every node restarted")
                loadEnd = max(loadEnd, now() + 2)
            }
        }
        await pacer.value
        while inFlight > 0 { try await Task.sleep(for: .milliseconds(20)) }
        if let monitor {
            // Give the monitor until full replication (or 15 s) before reading back.
            let monitorDeadline = now() + 15
            while fullAt == nil, now() < monitorDeadline, scenario != .packetLoss { try await Task.sleep(for: .milliseconds(50)) }
            // Stopped by a flag, never by cancellation: cancelling a task inside a URLSession
            // call deadlocks FoundationNetworking on Linux (seen here: the cancel handler's
            // `sync` onto the session queue against the continuation's resume).
            monitorStop = true
            await monitor.value
        }
        // (Stopped by a flag too, for the reason above.)
        readinessStop = true
        for task in readiness { await task.value }
        await finalReads()
        sampler.cancel()
        let total = now()
        await cleanup()
        return buildReport(total: total)
    }

    /// When the pacer stops starting requests (drill time); a rolling restart extends it.
    var loadEnd: Double = .infinity
    var monitorStop = false
    /// The victim's process id as a survivor listed it just before the fault.
    var victimID: String?

    func sleep(until t: Double) async throws {
        let wait = t - now()
        if wait > 0 { try await Task.sleep(for: .milliseconds(Int(wait * 1000))) }
    }

    // MARK: - Load

    /// Runs `work(i)` for every `i` in `0..<count`, at most `width` at once, and hands
    /// each result to `done` on this actor as it completes.
    func forEachIndex<T: Sendable>(_ count: Int, width: Int, _ work: @escaping @Sendable (Int) async -> T, done: (Int, T) -> Void) async {
        await withTaskGroup(of: (Int, T).self) { group in
            var next = 0
            func add() {
                let i = next
                next += 1
                group.addTask { (i, await work(i)) }
            }
            for _ in 0..<min(width, count) { add() }
            while let (i, result) = await group.next() {
                done(i, result)
                if next < count { add() }
            }
        }
    }

    /// The base URL requests for `slot` go to: the load balancer, or (direct) the node its
    /// route names unless that node recently refused or timed out; (direct, round robin)
    /// the next node in turn, whatever the route.
    func target(route: String) -> (base: String, node: String?) {
        if let lbURL { return (lbURL, nil) }
        let t = now()
        let names = configuration.nodes.map(\.name)
        var name = route
        if roundRobin {
            name = names[turn % names.count]
            turn &+= 1
        }
        if (avoid[name] ?? 0) > t || node(name) == nil {
            let start = (names.firstIndex(of: route) ?? 0) + 1
            name = (0..<names.count).map { names[(start + $0) % names.count] }.first { (avoid[$0] ?? 0) <= t } ?? names[start % names.count]
        }
        let n = node(name)!
        return ("http://\(n.authority(port: n.httpPort))", name)
    }

    func createSessions() async throws {
        let names = configuration.nodes.map(\.name)
        await forEachIndex(sessionCount, width: 32, { i in await self.create(i, route: names[i % names.count]) }, done: { _, _ in })
        guard slots.count == sessionCount else {
            throw DrillError("only \(slots.count) of \(sessionCount) sessions could be created; see \(cluster.folder)/*.log")
        }
        note("load", "\(sessionCount) sessions created; \(Int(rate)) requests/s for \(Int(duration)) s\(direct ? " straight to the nodes" : " through HAProxy at \(lbURL!)")")
    }

    func create(_ index: Int, route: String) async {
        let value = Data("drill write 0 of session \(index)".utf8).base64EncodedString()
        let body = Data("{\"attributes\": {\"w0\": \"\(value)\"}}".utf8)
        for _ in 0..<20 {
            let (base, _) = target(route: route)
            let sent = now()
            let a = await http.send("POST", base + "/sessions", body: body, contentType: "application/json")
            if a.status == 201, let object = try? JSONSerialization.jsonObject(with: a.body) as? [String: Any], let id = object["id"] as? String {
                let i = ledger.addSession(id)
                slots.append(Slot(id: id, route: routeOf(setCookie: a.setCookie, name: cookieName) ?? a.owner ?? route))
                ledger.record(DrillLedger.Write(session: i, seq: 0, sentAt: sent, completedAt: now(), servedBy: a.owner,
                                                outcome: .acknowledged(etag: a.etag ?? "", replicated: a.durability == "replicated")))
                return
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Starts `rate` requests per second, each on the next idle session, until `loadEnd`.
    func pace() async {
        let start = now()
        var issued = 0
        while now() < loadEnd {
            let due = Int((now() - start) * rate) - issued
            for _ in 0..<max(0, due) {
                issued += 1
                guard let i = nextIdle() else { skipped += 1; continue }
                slots[i].busy = true
                inFlight += 1
                Task { await self.operate(i) }
            }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    func nextIdle() -> Int? {
        for k in 0..<slots.count {
            let i = (cursor + k) % slots.count
            if !slots[i].busy { cursor = i + 1; return i }
        }
        return nil
    }

    /// One request on session `i`: every fourth a read, the others a write of a new attribute.
    func operate(_ i: Int) async {
        defer { slots[i].busy = false; inFlight -= 1 }
        slots[i].ops += 1
        let slot = slots[i]
        let (base, node) = target(route: slot.route)
        let cookie = "\(cookieName)=\(slot.id).\(slot.route)"
        let sent = now()
        if slot.ops % 4 == 0 {
            let a = await http.send("GET", base + "/sessions/\(slot.id)", cookie: cookie)
            ledger.record(DrillLedger.Read(session: i, sentAt: sent, completedAt: now(), servedBy: a.owner, result: Self.readResult(a)))
            after(i, a, node: node)
        } else {
            let seq = slot.nextSeq
            slots[i].nextSeq += 1
            let body = Data("drill write \(seq) of session \(i)".utf8)
            let a = await http.send("PUT", base + "/sessions/\(slot.id)/attributes/w\(seq)", body: body, cookie: cookie,
                                    contentType: "application/octet-stream")
            let outcome: DrillLedger.WriteOutcome
            switch a.status {
            case .some(let s) where (200..<300).contains(s):
                outcome = .acknowledged(etag: a.etag ?? "", replicated: a.durability == "replicated")
            case .some(let s) where s == 504 || s == 502:
                outcome = .indeterminate("\(s) \(Self.errorCode(a))")
            case .some(let s):
                outcome = .failed("\(s) \(Self.errorCode(a))")
            case nil:
                outcome = a.notSent ? .failed(a.failure ?? "not sent") : .indeterminate(a.failure ?? "no answer")
            }
            ledger.record(DrillLedger.Write(session: i, seq: seq, sentAt: sent, completedAt: now(), servedBy: a.owner, outcome: outcome))
            after(i, a, node: node)
        }
    }

    /// Follows the route an answer hands out, checks the load balancer followed the last
    /// one, and (direct) avoids a node that refused or timed out for a second.
    func after(_ i: Int, _ a: DrillHTTP.Answer, node: String?) {
        if let status = a.status, (200..<300).contains(status), let owner = a.owner {
            if let expected = slots[i].awaitingRoute, !direct, !roundRobin {
                if owner == expected {
                    routing.followed += 1
                } else if faultWindows.touched(expected, from: slots[i].routeAt, to: now())
                            || notReady.touched(expected, from: slots[i].routeAt, to: now()) {
                    routing.excused += 1
                } else {
                    routing.notFollowed += 1
                    if routing.notFollowed <= 10 {
                        note("route not followed", String(format: "session %d: route %@ handed out %.2f s before, answered by %@",
                                                          i, expected, now() - slots[i].routeAt, owner))
                    }
                }
                slots[i].awaitingRoute = nil
            }
        }
        if let route = routeOf(setCookie: a.setCookie, name: cookieName), route != slots[i].route {
            slots[i].route = route
            routing.newRoutes += 1
            slots[i].awaitingRoute = route
            slots[i].routeAt = now()
        } else if a.status == 421, let owner = a.owner {
            slots[i].route = owner
        }
        if a.status == nil, let node { avoid[node] = now() + 1 }
    }

    static func errorCode(_ a: DrillHTTP.Answer) -> String {
        ((try? JSONSerialization.jsonObject(with: a.body)) as? [String: Any])?["error"] as? String ?? ""
    }

    static func readResult(_ a: DrillHTTP.Answer) -> DrillLedger.ReadResult {
        switch a.status {
        case 200:
            guard let object = try? JSONSerialization.jsonObject(with: a.body) as? [String: Any],
                  let attributes = object["attributes"] as? [String: Any] else { return .failed("200 without attributes") }
            return .state(Set(attributes.keys.compactMap { $0.hasPrefix("w") ? Int($0.dropFirst()) : nil }))
        case 404 where errorCode(a) == "session-not-found":
            return .notFound
        case .some(let s):
            return .failed("\(s) \(errorCode(a))")
        case nil:
            return .failed(a.failure ?? "no answer")
        }
    }

    // MARK: - Faults

    func status(_ node: NodeEndpoint) async -> [String: Any]? {
        await monitorHTTP.json(url(node, "/cluster/status")) as? [String: Any]
    }

    /// The node owning the most sessions.
    func busiestNode() async -> NodeEndpoint {
        var best = configuration.nodes[0], most = -1
        for node in configuration.nodes {
            let primaries = await status(node)?["primaries"] as? Int ?? 0
            if primaries > most { best = node; most = primaries }
        }
        return best
    }

    func pid(_ name: String) -> Int32? { cluster.runningNodes().first { $0.name == name }?.pid }

    /// Sends `signal` to `node`'s process; returns when (drill time). Throws when the
    /// node has no running process.
    func signal(_ node: NodeEndpoint, _ signal: Int32) throws -> Double {
        guard let p = pid(node.name) else { throw DrillError("no process for \(node.name)") }
        let t = now()
        kill(p, signal)
        return t
    }

    func injectFault() async throws {
        let target = await busiestNode()
        victim = target.name
        if let other = configuration.nodes.first(where: { $0.name != target.name }) { victimID = await member(target.name, on: other)?.id }
        if let s = await status(target), let lags = s["lagMsP99"] as? [String: Double] { lagAtFault = lags.values.max() }
        let t: Double
        switch scenario {
        case .killPrimary:
            t = try signal(target, SIGKILL)
            mechanism = "SIGKILL of the drs node process; restarted at heal"
        case .hang:
            t = try signal(target, SIGSTOP)
            stoppedVictim = pid(target.name)
            mechanism = "SIGSTOP of the drs node process; SIGCONT at heal, then every session read from it"
        case .gracefulLeave:
            t = try signal(target, SIGTERM)
            mechanism = "SIGTERM (the node drains its sessions to their backups, then leaves); restarted at heal"
        case .rollingRestart:
            victim = configuration.nodes.map(\.name).joined(separator: ",")
            mechanism = "each node in turn: SIGTERM (drain, leave), restart, wait until serving"
            t = now()
            faultAt = t
            note("fault", mechanism, at: t)
            for node in configuration.nodes {
                guard let p = pid(node.name) else { throw DrillError("no process for \(node.name)") }
                kill(p, SIGTERM)
                faultWindows.open(node.name, at: now())
                note("restart", "\(node.name): SIGTERM")
                let deadline = now() + 20
                let watcher = configuration.nodes.first { $0.name != node.name }!
                while kill(p, 0) == 0 || detectedAt == nil, now() < deadline {
                    if detectedAt == nil, await memberState(node.name, on: watcher).map({ $0 == "left" || $0 == "dead" }) == true {
                        detectedAt = now()
                        note("detected", "\(watcher.name) lists \(node.name) as left")
                    }
                    try await Task.sleep(for: .milliseconds(20))
                }
                if kill(p, 0) == 0 { kill(p, SIGKILL) }
                try cluster.start(node.name)
                guard await waitServing(node, timeout: 30) else { throw DrillError("\(node.name) did not serve again within 30 s") }
                faultWindows.close(node.name, at: now())
                note("restart", "\(node.name): serving again")
            }
            return
        case .packetLoss where inject != nil:
            let faults = inject!
            t = now()
            try setFaults(faults, on: target)
            mechanism = "drs fault injection (the node's transport, --faults-file and SIGHUP): \(faults) on \(target.name)'s outbound replication traffic (datagrams; TCP frames delayed only) until heal"
        case .packetLoss:
            let ports = Set(configuration.nodes.map(\.replicationPort)).sorted().map(String.init).joined(separator: ", ")
            let rules = ["saddr", "daddr"].flatMap { dir in ["sport", "dport"].map { port in
                "ip \(dir) \(target.address) meta l4proto { tcp, udp } th \(port) { \(ports) } numgen random mod 100 < \(lossPercent) drop"
            } }
            t = now()
            try nft(rules)
            mechanism = "nftables: \(lossPercent) % of \(target.name)'s replication packets (tcp and udp, ports \(ports)) dropped at random until heal"
        case .partition:
            let others = configuration.nodes.filter { $0.name != target.name }.map(\.address).joined(separator: ", ")
            t = now()
            try nft(["ip saddr \(target.address) ip daddr { \(others) } drop", "ip saddr { \(others) } ip daddr \(target.address) drop"])
            mechanism = "nftables: every packet between \(target.name) (\(target.address)) and the other nodes dropped until heal"
        case .none:
            // `run()` injects nothing for this scenario and never gets here.
            return
        }
        faultAt = t
        faultWindows.open(target.name, at: t)
        note("fault", "\(scenario.rawValue) on \(victim): \(mechanism)", at: t)
    }

    /// Writes `faults` to `node`'s faults file and signals it (SIGHUP) to apply them.
    func setFaults(_ faults: FaultSettings, on node: NodeEndpoint) throws {
        guard let p = pid(node.name) else { throw DrillError("\(node.name) has no process to inject faults into") }
        try "\(faults)\n".write(toFile: cluster.faultsFile(node.name), atomically: true, encoding: .utf8)
        kill(p, SIGHUP)
    }

    /// What `node` says it injected (`drs_faults_injected_total`), as one phrase.
    func injectedCounts(_ node: NodeEndpoint) async -> String {
        guard let data = await cluster.get(node, "/metrics") else { return "counts unavailable" }
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").filter { $0.hasPrefix("drs_faults_injected_total{") }
        var counts: [String: String] = [:]
        for line in lines {
            guard let kind = line.split(separator: "\"").dropFirst().first, let value = line.split(separator: " ").last else { continue }
            counts[String(kind)] = String(value)
        }
        // A kind never injected has no series yet (the metrics backend publishes a counter
        // once it moved): it reads 0.
        let kinds = ["delayed", "dropped", "duplicated", "reordered"]
        let parts = (kinds + counts.keys.sorted().filter { !kinds.contains($0) }).map { "\($0) \(counts[$0] ?? "0")" }
        return data.isEmpty ? "counts unavailable" : "injected: " + parts.joined(separator: ", ")
    }

    /// Installs `rules` in a table of their own (`inet drs_drill_<pid>`), on the output hook
    /// (loopback packets pass it once).
    func nft(_ rules: [String]) throws {
        let table = "drs_drill_\(getpid())"
        var script = "add table inet \(table)\nadd chain inet \(table) out { type filter hook output priority 0; policy accept; }\n"
        for rule in rules { script += "add rule inet \(table) out \(rule)\n" }
        nftTable = table
        try runNft(["-f", "-"], input: script)
    }

    func runNft(_ arguments: [String], input: String?) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: DrillCommand.which("nft") ?? "/usr/sbin/nft")
        process.arguments = arguments
        let inPipe = Pipe(), errPipe = Pipe()
        process.standardInput = inPipe
        process.standardError = errPipe
        try process.run()
        if let input { inPipe.fileHandleForWriting.write(Data(input.utf8)) }
        try inPipe.fileHandleForWriting.close()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw DrillError("nft \(arguments.joined(separator: " ")) failed: \(String(decoding: errPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))")
        }
    }

    func heal() async throws {
        guard let target = node(victim) else { return }
        switch scenario {
        case .killPrimary, .gracefulLeave:
            if let p = pid(target.name) {
                let deadline = now() + 15
                while kill(p, 0) == 0, now() < deadline { try await Task.sleep(for: .milliseconds(20)) }
            }
            try cluster.start(target.name)
            note("healed", "\(target.name) restarted")
            if await waitServing(target, timeout: 30) { note("rejoined", "\(target.name) serving") }
        case .hang:
            if let p = stoppedVictim { kill(p, SIGCONT); stoppedVictim = nil }
            note("healed", "\(target.name) resumed (SIGCONT)")
            await probe(target)
        case .packetLoss where inject != nil:
            try setFaults(FaultSettings(), on: target)
            note("healed", "fault injection off (\(await injectedCounts(target)))")
        case .packetLoss, .partition:
            removeNft()
            note("healed", "nftables rules removed")
            if scenario == .partition { await probe(target) }
        case .rollingRestart, .none:
            break
        }
        faultWindows.close(target.name, at: now())
    }

    /// Reads every session from `node` right after it resumed: fencing says none of these
    /// may be stale.
    func probe(_ node: NodeEndpoint) async {
        let base = "http://\(node.authority(port: node.httpPort))"
        let slotsNow = slots, cookie = cookieName
        await forEachIndex(slotsNow.count, width: 16, { i in
            let sent = self.now()
            return (sent, await self.http.send("GET", base + "/sessions/\(slotsNow[i].id)", cookie: "\(cookie)=\(slotsNow[i].id).\(node.name)"))
        }, done: { i, answer in
            let read = DrillLedger.Read(session: i, sentAt: answer.0, completedAt: now(), servedBy: answer.1.owner,
                                        result: Self.readResult(answer.1), probe: true)
            // Refusals (503 fenced, not-ready) are what fencing asks for; only answers are judged.
            if case .failed = read.result {} else { ledger.record(read) }
        })
        let stale = ledger.staleReads.filter(\.probe).count
        note("probed", "every session read from \(node.name) right after it resumed: \(stale) stale")
    }

    func removeNft() {
        guard let table = nftTable else { return }
        try? runNft(["delete", "table", "inet", table], input: nil)
        nftTable = nil
    }

    /// Polls `node`'s `/readyz` every 100 ms, as the balancer's health check does, until
    /// `readinessStop`, recording when it was not ready.
    func watchReadiness(_ node: NodeEndpoint) async {
        while !readinessStop {
            let ready = await readyHTTP.send("GET", url(node, "/readyz")).status == 200
            if ready { notReady.close(node.name, at: now()) } else { notReady.open(node.name, at: now()) }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    func waitServing(_ node: NodeEndpoint, timeout: Double) async -> Bool {
        let deadline = now() + timeout
        while now() < deadline {
            if await status(node)?["state"] as? String == "serving" { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    // MARK: - Monitor

    /// The state `on` lists member `name` in (`/cluster/members`), or nil.
    func memberState(_ name: String, on node: NodeEndpoint) async -> String? {
        await member(name, on: node)?.state
    }

    /// The state and process id `on` lists member `name` with, or nil.
    func member(_ name: String, on node: NodeEndpoint) async -> (state: String, id: String)? {
        guard let members = await monitorHTTP.json(url(node, "/cluster/members")) as? [[String: Any]],
              let m = members.first(where: { $0["name"] as? String == name }),
              let state = m["state"] as? String, let id = m["id"] as? String else { return nil }
        return (state, id)
    }

    /// From the fault on, polls the survivors every 50 ms for detection (the victim listed
    /// dead or left), promotion (the survivors own every session) and full replication
    /// (after promotion, none under-replicated, no transfer pending, every queue to a
    /// backup empty). Under constant load a queue is rarely empty at the instant of a
    /// poll, so full replication is reported at the first poll that finds them so.
    func monitor() async {
        // Rolling restarts drain rather than promote; the monitor starts after the last
        // restart and waits for full replication only.
        let rolling = scenario == .rollingRestart
        let survivors = configuration.nodes.filter { $0.name != victim }
        while !monitorStop {
            var primaries = 0, settled = true, answered = 0
            for node in survivors {
                // Dead or left; or already listed under a new process id (restarted at a
                // heal before a poll of a starved monitor saw the old one dead).
                if detectedAt == nil, !rolling, let m = await member(victim, on: node),
                   m.state == "dead" || m.state == "left" || (victimID.map { $0 != m.id } ?? false) {
                    detectedAt = now()
                    note("detected", m.state == "dead" || m.state == "left"
                         ? "\(node.name) lists \(victim) as \(m.state)" : "\(node.name) lists \(victim) under a new process id")
                }
                guard let s = await status(node) else { settled = false; continue }
                answered += 1
                primaries += s["primaries"] as? Int ?? 0
                let pending = (s["stateTransfer"] as? [String: Any])?["pending"] as? Int ?? 0
                // Settled: no session short of live backups, no transfer pending, and
                // every message sent to a backup receipted (queues empty).
                let queued = (s["queues"] as? [String: Int])?.values.reduce(0, +) ?? 0
                if (s["underReplicated"] as? Int ?? 0) > 0 || pending > 0 || queued > 0 { settled = false }
            }
            if promotedAt == nil, !rolling, answered == survivors.count, primaries >= slots.count {
                promotedAt = now()
                note("promoted", "the survivors own all \(slots.count) sessions")
            }
            if fullAt == nil, promotedAt != nil || rolling, settled, answered == survivors.count {
                fullAt = now()
                note("fully-replicated", "no survivor reports an under-replicated session, a pending transfer or an unreceipted message")
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Samples CPU steal (`/proc/stat`) and the run queue (`/proc/loadavg`) every second.
    func sampleSystem() async {
        var last = Self.cpuTicks()
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            let ticks = Self.cpuTicks()
            let total = ticks.total - last.total
            let steal = total > 0 ? Double(ticks.steal - last.steal) / Double(total) * 100 : 0
            last = ticks
            system[Int(now().rounded(.down)) - 1] = (steal, Self.runQueue())
        }
    }

    static func cpuTicks() -> (total: Int, steal: Int) {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return (0, 0) }
        let values = line.split(separator: " ").dropFirst().compactMap { Int($0) }
        return (values.reduce(0, +), values.count > 7 ? values[7] : 0)
    }

    static func runQueue() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 3, let running = fields[3].split(separator: "/").first else { return 0 }
        return Int(running) ?? 0
    }

    // MARK: - Final reads

    /// Reads every session back from the survivors (retrying `503`, `421` and failures
    /// for up to 15 s each).
    func finalReads() async {
        let survivors = configuration.nodes.filter { $0.name != victim || scenario == .rollingRestart }.map(\.name)
        let slotsNow = slots
        await forEachIndex(slotsNow.count, width: 16, { i in await self.finalRead(i, slotsNow[i], survivors: survivors) },
                           done: { _, read in ledger.recordFinal(read) })
        note("read back", "every session read from the survivors")
    }

    func finalRead(_ i: Int, _ slot: Slot, survivors: [String]) async -> DrillLedger.Read {
        var route = survivors.contains(slot.route) ? slot.route : survivors[i % survivors.count]
        let deadline = now() + 15
        while true {
            let base = lbURL ?? url(node(route)!, "")
            let sent = now()
            let a = await http.send("GET", base + "/sessions/\(slot.id)", cookie: "\(cookieName)=\(slot.id).\(route)")
            let result = Self.readResult(a)
            if case .failed = result, now() < deadline {
                if a.status == 421, let owner = a.owner, survivors.contains(owner) {
                    route = owner
                } else if lbURL == nil {
                    route = survivors[((survivors.firstIndex(of: route) ?? 0) + 1) % survivors.count]
                }
                try? await Task.sleep(for: .milliseconds(100))
                continue
            }
            var final = result
            if case .failed(let reason) = result { final = .failed(reason + " (route \(route))") }
            return DrillLedger.Read(session: i, sentAt: sent, completedAt: now(), servedBy: a.owner, result: final)
        }
    }

    // MARK: - HAProxy

    func startHAProxy() async throws {
        let port = try Self.freePort()
        let bind = "127.0.0.1:\(port)"
        let path = "\(cluster.folder)/haproxy.cfg"
        // The drill's copy also logs every request (with HAProxy's timers) to haproxy.log.
        let text = LBConfigCommand.haproxy(configuration, configPath: configPath, bind: bind, routing: !roundRobin)
            .replacingOccurrences(of: "global\n", with: "global\n    log stdout format raw local0\n")
            .replacingOccurrences(of: "defaults\n", with: "defaults\n    log global\n    option httplog\n")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: DrillCommand.which("haproxy")!)
        process.arguments = ["-f", path, "-db"]
        let log = "\(cluster.folder)/haproxy.log"
        guard FileManager.default.createFile(atPath: log, contents: nil) else { throw DrillError("cannot create \(log)") }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        haproxy = process
        lbURL = "http://\(bind)"
        let deadline = now() + 10
        while now() < deadline {
            if await monitorHTTP.send("GET", lbURL! + "/readyz").status == 200 {
                note("haproxy", "listening on \(bind) (\(path)); " + (roundRobin ? "round robin, no stickiness" : "stickiness on the \(cookieName) cookie's route"))
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw DrillError("haproxy did not answer on \(bind) within 10 s; see \(log)")
    }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw DrillError("socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0 else { throw DrillError("bind() failed") }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    // MARK: - Cleanup and report

    /// Resumes a stopped node, removes nftables rules, kills every node and HAProxy.
    func cleanup() async {
        if let p = stoppedVictim { kill(p, SIGCONT); stoppedVictim = nil }
        removeNft()
        for node in cluster.runningNodes() { kill(node.pid, SIGKILL) }
        for node in configuration.nodes { try? FileManager.default.removeItem(atPath: cluster.pidFile(node.name)) }
        if let haproxy, haproxy.isRunning { haproxy.terminate(); haproxy.waitUntilExit() }
        haproxy = nil
    }

    func buildReport(total: Double) -> DrillReport {
        let fault = faultAt ?? 0
        func ms(_ t: Double?) -> Double? { t.map { (($0 - fault) * 1000).rounded() } }
        let lost = ledger.lostWrites.map {
            DrillReport.LostWrite(session: $0.session, etag: $0.etag, ageAtFaultMs: ((fault - $0.acknowledgedAt) * 1000 * 10).rounded() / 10, replicated: $0.replicated)
        }
        let stale = ledger.staleReads
        let seconds = ledger.perSecond.map { s in
            var s = s
            s.p50Ms = (s.p50Ms * 100).rounded() / 100
            s.p99Ms = (s.p99Ms * 100).rounded() / 100
            s.stealPct = system[s.t].map { ($0.steal * 10).rounded() / 10 }
            s.runQueue = system[s.t]?.runQueue
            return s
        }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var expect = DrillReport.Expectations()
        expect.resumedNodeNeverStale = scenario != .partition || configuration.membership.promotion == .majority
        if !expect.resumedNodeNeverStale, ledger.staleReads.contains(where: \.probe) {
            events.append(.init(t: total, what: "note", detail: "promotion: any lets the cut-off node serve alone during a partition (docs/design.md (Membership and failover)): its stale answers are counted, not judged; promotion: majority forbids them"))
        }
        var violations = DrillReport.violations(of: ledger, expecting: expect)
        if skipped > 0 { events.append(.init(t: total, what: "note", detail: "\(skipped) requests not sent: every session had one in flight")) }
        if scenario == .none, ledger.requestsFailed > 0 {
            violations.append("with no fault, \(ledger.requestsFailed) request(s) of the load did not answer 2xx (\(DrillReport.summary(of: ledger.failedAnswers)))")
        }
        if !direct, routing.notFollowed > 0 {
            violations.append("the load balancer sent \(routing.notFollowed) request(s) elsewhere than the new route the cluster handed out")
        }
        let p = configuration.replication
        return DrillReport(
            scenario: scenario.rawValue, config: configPath, mechanism: mechanism, startedAt: formatter.string(from: startedAt),
            durationS: (total * 10).rounded() / 10, sessions: slots.count, writes: ledger.writeCounts,
            acknowledgedWritesLost: lost.count, sessionsLost: ledger.lostSessions.count, staleReads: stale.count,
            requestsFailed: ledger.requestsFailed, timeToDetectMs: ms(detectedAt), timeToPromoteMs: ms(promotedAt),
            timeToFullReplicationMs: ms(fullAt), lostWrites: lost, perSecond: seconds, mode: p.mode.rawValue,
            transport: p.effectiveTransport.rawValue, repair: repair, loadBalancer: (direct ? "direct" : "haproxy") + (roundRobin ? " round-robin" : ""), victim: victim,
            rate: rate, lagMsP99AtFault: lagAtFault, sessionsUnreadable: ledger.unreadableSessions.count, events: events,
            staleReadDetails: stale.prefix(50).map { .init(session: $0.session, t: ($0.sentAt * 1000).rounded() / 1000, servedBy: $0.servedBy, missing: $0.missing, probe: $0.probe) },
            routing: routing, violations: violations, failedAnswers: ledger.failedAnswers)
    }
}

/// A drill that could not run, with the reason.
struct DrillError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
