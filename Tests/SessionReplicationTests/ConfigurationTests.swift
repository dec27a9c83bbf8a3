import Foundation
import SessionReplicationCore
import Testing
@testable import SessionReplication

/// Three insecure loopback nodes; each case appends or replaces a section.
private let nodes3 = """
    nodes:
      - {name: n1, address: 127.0.0.1, httpPort: 8081, replicationPort: 7101, membershipPort: 7201}
      - {name: n2, address: 127.0.0.2, httpPort: 8082, replicationPort: 7102, membershipPort: 7202}
      - {name: n3, address: 127.0.0.3, httpPort: 8083, replicationPort: 7103, membershipPort: 7203}
    """
private let base = "cluster: {id: test, insecure: true}\n" + nodes3

private func parse(_ yaml: String) throws(ConfigurationError) -> ClusterConfiguration {
    try ClusterConfiguration.parse(yaml: yaml, file: "test.yaml")
}

/// The field of the error `yaml` produces, or nil when it loads.
private func failingField(_ yaml: String) -> String? {
    do { _ = try parse(yaml); return nil } catch { return error.field }
}

private let configDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("cluster-configs")

/// (file, field of the error) for broken `cluster` and `nodes` sections.
private let clusterCases: [(String, String)] = {
    let key16 = Data(count: 16).base64EncodedString(), key31 = Data(count: 31).base64EncodedString()
    let key32 = Data(count: 32).base64EncodedString()
    let insecure = "cluster: {id: t, insecure: true}\n"
    return [
        (nodes3, "cluster.id"),
        ("cluster: {insecure: true}\n" + nodes3, "cluster.id"),
        ("cluster: {id: t, insecure: true}", "nodes"),
        (insecure + "nodes: []", "nodes"),
        (insecure + "nodes: n1", "nodes"),
        (insecure + "nodes: [{address: 127.0.0.1}]", "nodes[0].name"),
        ("cluster: {id: t}\n" + nodes3, "cluster.key"),
        ("cluster: {id: t, insecure: false}\n" + nodes3, "cluster.key"),
        ("cluster: {id: t, key: \"\(key16)\"}\n" + nodes3, "cluster.key"),
        ("cluster: {id: t, key: not-base64!}\n" + nodes3, "cluster.key"),
        ("cluster: {id: t, key: \"\(key32)\", insecure: true}\n" + nodes3, "cluster.insecure"),
        ("cluster: {id: t, insecure: true, keyring: [\"\(key31)\"]}\n" + nodes3, "cluster.keyring[0]"),
        ("cluster: {id: \"has space\", insecure: true}\n" + nodes3, "cluster.id"),
        ("", "cluster.id"),
        ("- just\n- a list", ""),
        ("cluster: {id: [unclosed", ""),
    ]
}()

@Suite("Configuration files")
struct ConfigurationTests {
    @Test("every shipped file in cluster-configs loads and validates, carries no key, and binds loopback only")
    func shippedFilesLoad() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: configDirectory.path).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(Set(files).isSuperset(of: ["drs-defaults.yaml", "local-3.yaml", "local-5-two-backups.yaml", "sync-3.yaml"]))
        for file in files {
            let config = try ClusterConfiguration.load(path: configDirectory.appendingPathComponent(file).path, environment: [:])
            #expect(config.clusterID + ".yaml" == file)
            // Before: each carried a fixed key, published with the repository.
            #expect(config.keys.current == nil && config.keys.insecure, "\(file) must carry no key")
            #expect(config.nodes.allSatisfy { $0.address.hasPrefix("127.") }, "\(file) must stay on loopback")
            #expect(config.warnings.allSatisfy { $0.hasPrefix("cluster.insecure:") }, "\(file): \(config.warnings)")
            let text = try String(contentsOf: configDirectory.appendingPathComponent(file), encoding: .utf8)
            #expect(text.range(of: #"key:\s*[A-Za-z0-9+/]{43}="#, options: .regularExpression) == nil,
                    "\(file) holds something that looks like a key")
        }
    }

    @Test("the shipped files say what their names promise")
    func shippedFilesContent() throws {
        func load(_ name: String) throws -> ClusterConfiguration {
            try ClusterConfiguration.load(path: configDirectory.appendingPathComponent(name).path, environment: [:])
        }
        let local3 = try load("local-3.yaml")
        #expect(local3.nodes.map(\.name) == ["n1", "n2", "n3"])
        #expect(local3.nodes.map(\.address) == ["127.0.0.11", "127.0.0.12", "127.0.0.13"])
        #expect(local3.nodes.map(\.httpPort) == [8081, 8082, 8083])
        #expect(local3.node(named: "n3")?.membershipPort == 7203)
        #expect(local3.replication.mode == .acknowledged && local3.replication.replicas == .count(1))

        let drs = try load("drs-defaults.yaml")
        #expect(drs.replication.mode == .bestEffort && drs.replication.effectiveTransport == .udp)
        #expect(drs.replication.writeFrequency == .timeBased && drs.replication.writeInterval == .seconds(10))
        #expect(drs.replication.retryCount == 3 && drs.replication.retryInterval == .milliseconds(200))

        let sync = try load("sync-3.yaml")
        #expect(sync.replication.mode == .synchronous && sync.replication.minSyncReplicas == 1)

        let five = try load("local-5-two-backups.yaml")
        #expect(five.nodes.count == 5 && five.replication.replicas == .count(2))
        #expect(five.nodes.last?.replicationPort == 7135)
    }

    @Test("a minimal file gets every documented default")
    func defaults() throws {
        let config = try parse(base)
        #expect(config.replication == ReplicationPolicy())
        #expect(config.membership == MembershipSettings())
        #expect(config.sessions == SessionPolicy())
        #expect(config.http == HTTPSettings())
        #expect(config.keys == .insecure)
        #expect(try parse("cluster: {id: x, insecure: true}\nnodes: [{name: a}]").nodes == [NodeEndpoint(name: "a")])
    }

    @Test("every knob round-trips into the struct")
    func knobsRoundTrip() throws {
        let key = Data((0..<32).map { UInt8($0) }).base64EncodedString()
        let old = Data(repeating: 7, count: 32).base64EncodedString()
        let config = try parse("""
            cluster: {id: knobs, key: "\(key)", keyring: ["\(old)"]}
            \(nodes3)
            replication: {replicas: all, role: server, mode: best-effort, minSyncReplicas: 2, transport: udp,
                          writeFrequency: manual, writeInterval: 1.5s, writeContents: all-attributes,
                          retryCount: 7, retryInterval: 50ms, syncTimeout: 2s, onSyncTimeout: degrade,
                          repairInterval: 1m, affinity: none, maxQueueBytes: 8MiB, udpMaxPayload: 9000,
                          udpWindow: 16, udpRate: 500, reorderFrames: 8, reorderDelay: 5ms,
                          takeoverCooldown: 0s, handoverTimeout: 250ms, drainTimeout: 3s}
            membership: {probeInterval: 100ms, lease: 1s, promotion: majority, tombstoneTTL: 2m}
            sessions: {maxInactiveInterval: 1h, backupGrace: 0s, transientAttributes: ["tmp.*", csrf],
                       maxAttributeBytes: 64KiB, maxSessionBytes: 1_000_000, maxSessions: 500,
                       accessReplicationInterval: 2s}
            http: {cookieName: SID, secureCookie: true, token: s3cret}
            """)
        #expect(config.clusterID == "knobs")
        #expect(config.keys == ClusterKeys(current: Array(0..<32), keyring: [[UInt8](repeating: 7, count: 32)]))
        let r = config.replication
        #expect(r.replicas == .all && r.role == .server && r.mode == .bestEffort && r.minSyncReplicas == 2)
        #expect(r.transport == .udp && r.writeFrequency == .manual && r.writeInterval == .milliseconds(1500))
        #expect(r.writeContents == .allAttributes && r.retryCount == 7 && r.retryInterval == .milliseconds(50))
        #expect(r.syncTimeout == .seconds(2) && r.onSyncTimeout == .degrade && r.repairInterval == .seconds(60))
        #expect(r.affinity == .none && r.maxQueueBytes == 8 << 20 && r.udpMaxPayload == 9000)
        #expect(r.udpWindow == 16 && r.udpRate == 500 && r.reorderFrames == 8 && r.reorderDelay == .milliseconds(5))
        #expect(r.takeoverCooldown == .zero && r.handoverTimeout == .milliseconds(250) && r.drainTimeout == .seconds(3))
        #expect(config.membership.probeInterval == .milliseconds(100) && config.membership.lease == .seconds(1))
        #expect(config.membership.promotion == .majority && config.membership.tombstoneTTL == .seconds(120))
        let s = config.sessions
        #expect(s.maxInactiveInterval == .seconds(3600) && s.backupGrace == .zero && s.transientAttributes == ["tmp.*", "csrf"])
        #expect(s.maxAttributeBytes == 65536 && s.maxSessionBytes == 1_000_000 && s.maxSessions == 500)
        #expect(s.accessReplicationInterval == .seconds(2))
        #expect(config.http.cookieName == "SID" && config.http.secureCookie && config.http.token == "s3cret")
    }

    @Test("durations take ms, s, m and h, fractions too, and nothing else", arguments: [
        ("200ms", Duration.milliseconds(200)), ("10s", .seconds(10)), ("1.5s", .milliseconds(1500)),
        ("30m", .seconds(1800)), ("2h", .seconds(7200)), ("0s", .zero), ("0.25ms", .microseconds(250)),
    ])
    func durations(text: String, expected: Duration) {
        #expect(ConfigSyntax.duration(text) == expected)
    }

    @Test("malformed durations are rejected", arguments: ["200", "1.s", ".5s", "-1s", "1e3ms", "10 s", "5d", "s", "1.2.3s", "1_0s"])
    func badDurations(text: String) {
        #expect(ConfigSyntax.duration(text) == nil)
    }

    @Test("sizes take B, KiB, MiB, GiB or plain bytes", arguments: [
        ("4096", 4096), ("512B", 512), ("64KiB", 65536), ("1MiB", 1 << 20), ("2GiB", 2 << 30), ("4 MiB", 4 << 20),
    ])
    func sizes(text: String, expected: Int) {
        #expect(ConfigSyntax.size(text) == expected)
    }

    @Test("malformed sizes are rejected", arguments: ["1MB", "1.5MiB", "-1", "KiB", "1kib", "99999999999999999999GiB"])
    func badSizes(text: String) {
        #expect(ConfigSyntax.size(text) == nil)
    }

    @Test("durations and sizes print in their largest exact unit")
    func formatValues() {
        #expect(ConfigSyntax.format(size: 4 << 20) == "4MiB")
        #expect(ConfigSyntax.format(size: 1000) == "1000B")
        #expect(ConfigSyntax.format(.milliseconds(200)) == "200ms")
        #expect(ConfigSyntax.format(.seconds(90)) == "90s")
        #expect(ConfigSyntax.format(.seconds(1800)) == "30m")
        #expect(ConfigSyntax.format(.zero) == "0s")
        #expect(ConfigSyntax.format(.microseconds(1500)) == "1.5ms")
    }

    @Test("errors name the file, the field, what was expected and what was found")
    func errorDescription() {
        let error = #expect(throws: ConfigurationError.self) {
            try ClusterConfiguration.parse(yaml: base + "\nreplication: {retryCount: abc}", file: "cluster-configs/x.yaml")
        }
        #expect(error?.description == #"cluster-configs/x.yaml: replication.retryCount: expected a whole number >= 0, found "abc""#)
    }

    @Test("YAML syntax errors and duplicate keys are one line with a position")
    func yamlErrors() {
        for yaml in ["cluster: {id: [unclosed", base + "\nnodes: []"] {
            let error = #expect(throws: ConfigurationError.self) { try parse(yaml) }
            #expect(error?.field == "")
            #expect(error?.message.hasPrefix("not valid YAML: line ") == true && error?.message.contains("\n") == false, "\(error?.message ?? "")")
        }
    }

    @Test("unknown keys are rejected at every level, naming the key", arguments: [
        ("replication: {retrycount: 3}", "replication.retrycount"),
        ("bogus: 1", "bogus"),
        ("membership: {leases: 1s}", "membership.leases"),
        ("sessions: {maxSessionSize: 1MiB}", "sessions.maxSessionSize"),
        ("http: {cookie: X}", "http.cookie"),
    ])
    func unknownKeys(section: String, field: String) {
        let error = #expect(throws: ConfigurationError.self) { try parse(base + "\n" + section) }
        #expect(error?.field == field)
        #expect(error?.message.contains("unknown key `\(field)`; expected one of") == true)
    }

    @Test("unknown keys in cluster and nodes are rejected too")
    func unknownKeysInClusterAndNodes() {
        #expect(failingField("cluster: {id: t, insecure: true, kee: x}\n" + nodes3) == "cluster.kee")
        #expect(failingField("cluster: {id: t, insecure: true}\nnodes: [{name: a}, {name: b, port: 1}]") == "nodes[1].port")
    }

    @Test("wrong types name the field and the expected type", arguments: [
        ("replication: {retryCount: abc}", "replication.retryCount", "a whole number >= 0"),
        ("replication: {retryCount: -1}", "replication.retryCount", "a whole number >= 0"),
        ("replication: {retryInterval: 200}", "replication.retryInterval", "a duration"),
        ("replication: {replicas: some}", "replication.replicas", "`all`"),
        ("replication: {mode: sync}", "replication.mode", "one of best-effort, acknowledged, synchronous"),
        ("replication: {writeFrequency: always}", "replication.writeFrequency", "one of end-of-service, manual, time-based"),
        ("replication: {udpMaxPayload: 70000}", "replication.udpMaxPayload", "from 512 to 65000"),
        ("replication: {udpWindow: 0}", "replication.udpWindow", ">= 1"),
        ("replication: {maxQueueBytes: 1MB}", "replication.maxQueueBytes", "a size"),
        ("replication: 3", "replication", "a mapping"),
        ("membership: {promotion: most}", "membership.promotion", "one of any, majority"),
        ("sessions: {transientAttributes: [a, {b: c}]}", "sessions.transientAttributes[1]", "a string"),
        ("sessions: {transientAttributes: csrf}", "sessions.transientAttributes", "a list"),
        ("sessions: {maxSessions: 1.5}", "sessions.maxSessions", "a whole number"),
        ("http: {secureCookie: yes}", "http.secureCookie", "true or false"),
        ("http: {cookieName: }", "http.cookieName", "a string"),
    ])
    func wrongTypes(section: String, field: String, expected: String) {
        let error = #expect(throws: ConfigurationError.self) { try parse(base + "\n" + section) }
        #expect(error?.field == field)
        #expect(error?.message.contains(expected) == true, "\(error?.message ?? "")")
    }

    @Test("missing or malformed cluster and nodes sections are reported", arguments: clusterCases)
    func clusterAndNodes(yaml: String, field: String) {
        #expect(failingField(yaml) == field)
    }

    @Test("key errors never echo the key")
    func keysNotEchoed() {
        let short = Data(repeating: 0xAB, count: 16).base64EncodedString()
        let error = #expect(throws: ConfigurationError.self) { try parse("cluster: {id: t, key: \"\(short)\"}\n" + nodes3) }
        #expect(error?.message.contains("found 16 bytes") == true)
        #expect(error?.description.contains(short) == false)
    }

    @Test("node names, addresses and ports are checked", arguments: [
        ("{name: N1}", "nodes[0].name"),
        ("{name: -n}", "nodes[0].name"),
        ("{name: \(String(repeating: "a", count: 33))}", "nodes[0].name"),
        ("{name: n1}, {name: n1, address: 127.0.0.2}", "nodes[1].name"),
        ("{name: n1, address: bad_name}", "nodes[0].address"),
        ("{name: n1, address: \"a..b\"}", "nodes[0].address"),
        ("{name: n1, address: -a.example}", "nodes[0].address"),
        ("{name: n1, address: 10.0.0.256}", "nodes[0].address"),
        ("{name: n1, address: n1.example, bind: n1.example}", "nodes[0].bind"),
        ("{name: n1, bind: \"\"}", "nodes[0].bind"),
        ("{name: n1, address: 127.1}", "nodes[0].address"),
        ("{name: n1, httpPort: 65536}", "nodes[0].httpPort"),
        ("{name: n1, membershipPort: -1}", "nodes[0].membershipPort"),
        ("{name: n1, replicationPort: http}", "nodes[0].replicationPort"),
    ])
    func nodeFields(list: String, field: String) {
        #expect(failingField("cluster: {id: t, insecure: true}\nnodes: [\(list)]") == field)
    }

    @Test("two sockets on one address and port are a port clash naming both fields", arguments: [
        // Across nodes, any pair of kinds.
        ("{name: a, address: 127.0.0.1, httpPort: 8081}, {name: b, address: 127.0.0.1, httpPort: 8081, replicationPort: 7101, membershipPort: 7201}",
         "nodes[1].httpPort", "nodes[0].httpPort"),
        ("{name: a, address: 127.0.0.1}, {name: b, address: 127.0.0.1, httpPort: 7100, replicationPort: 7101, membershipPort: 7201}",
         "nodes[1].httpPort", "nodes[0].replicationPort"),
        // Within one node: replicationPort is TCP and UDP, so membershipPort may not share it.
        ("{name: a, httpPort: 9000, replicationPort: 9000}", "nodes[0].replicationPort", "nodes[0].httpPort"),
        ("{name: a, replicationPort: 9000, membershipPort: 9000}", "nodes[0].membershipPort", "nodes[0].replicationPort"),
        // The same address written two ways, and the wildcard address.
        ("{name: a, address: \"::1\"}, {name: b, address: \"0:0:0:0:0:0:0:1\", httpPort: 8081, replicationPort: 7101}",
         "nodes[1].membershipPort", "nodes[0].membershipPort"),
        ("{name: a, address: 0.0.0.0}, {name: b, address: 127.0.0.5, httpPort: 8081, replicationPort: 7101}",
         "nodes[1].membershipPort", "nodes[0].membershipPort"),
    ])
    func portClash(list: String, field: String, other: String) {
        let error = #expect(throws: ConfigurationError.self) {
            try parse("cluster: {id: t, insecure: true}\nhttp: {token: t}\nnodes: [\(list)]")
        }
        #expect(error?.field == field)
        #expect(error?.message.contains("port clash") == true && error?.message.contains(other) == true, "\(error?.message ?? "")")
    }

    @Test("port 0 never clashes, and equal ports on different addresses are fine")
    func noClash() throws {
        let config = try parse("""
            cluster: {id: t, insecure: true}
            nodes: [{name: a, httpPort: 0, replicationPort: 0, membershipPort: 0},
                    {name: b, httpPort: 0, replicationPort: 0, membershipPort: 0},
                    {name: c, address: 127.0.0.2}, {name: d, address: 127.0.0.3}]
            """)
        #expect(config.nodes.count == 4)
    }

    @Test("replication rules of docs/design.md (Replication) are enforced", arguments: [
        ("replication: {mode: synchronous, writeFrequency: time-based}", "replication.writeFrequency"),
        ("replication: {mode: synchronous, writeFrequency: manual}", "replication.writeFrequency"),
        ("replication: {mode: synchronous, replicas: 0}", "replication.replicas"),
        ("replication: {replicas: 1, minSyncReplicas: 2}", "replication.minSyncReplicas"),
        ("replication: {minSyncReplicas: 0}", "replication.minSyncReplicas"),
        ("replication: {replicas: -1}", "replication.replicas"),
        ("replication: {retryInterval: 0ms}", "replication.retryInterval"),
        ("replication: {syncTimeout: 0s}", "replication.syncTimeout"),
        ("replication: {writeInterval: 0s}", "replication.writeInterval"),
        ("replication: {repairInterval: 0m}", "replication.repairInterval"),
        ("replication: {handoverTimeout: 0s}", "replication.handoverTimeout"),
        ("replication: {takeoverCooldown: -1s}", "replication.takeoverCooldown"),
        ("membership: {lease: 0ms}", "membership.lease"),
        ("membership: {probeInterval: 0ms}", "membership.probeInterval"),
        ("sessions: {maxInactiveInterval: 0s}", "sessions.maxInactiveInterval"),
        ("sessions: {maxAttributeBytes: 8MiB}", "sessions.maxAttributeBytes"),
        ("sessions: {accessReplicationInterval: 0s}", "sessions.accessReplicationInterval"),
    ])
    func sectionFiveRules(section: String, field: String) {
        #expect(failingField(base + "\n" + section) == field)
    }

    @Test("rules that must not reject: replicas above the node count, all, retryCount 0")
    func permitted() throws {
        #expect(try parse(base + "\nreplication: {replicas: 5}").replication.replicas == .count(5))
        #expect(try parse(base + "\nreplication: {mode: synchronous, replicas: all, minSyncReplicas: 4}").replication.minSyncReplicas == 4)
        #expect(try parse(base + "\nreplication: {retryCount: 0, minSyncReplicas: null}").replication.retryCount == 0)
        #expect(try parse(base + "\nmembership: {promotion: majority}").membership.promotion == .majority)
    }

    @Test("promotion: majority needs at least 3 nodes")
    func majorityNeedsThree() {
        #expect(failingField("cluster: {id: t, insecure: true}\nnodes: [{name: a}, {name: b, address: 127.0.0.2}]\nmembership: {promotion: majority}") == "membership.promotion")
    }

    @Test("addresses may be host names and listen apart from where peers reach them (bind); ports clash only on one machine")
    func hostNamesAndBind() throws {
        let key = Data(ClusterKeys.generateKey()).base64EncodedString()
        let named = """
            cluster: {id: t, key: "\(key)"}
            http: {token: secret}
            nodes:
              - {name: n1, address: n1.drs.example, bind: 0.0.0.0}
              - {name: n2, address: N2.drs.example., bind: "::"}
              - {name: n3, address: n3.drs.example}
            """
        let config = try parse(named)
        #expect(config.nodes.map(\.address) == ["n1.drs.example", "N2.drs.example.", "n3.drs.example"])
        #expect(config.nodes.map(\.bind) == ["0.0.0.0", "::", nil])
        // The same ports on three hosts are no clash; two nodes at one name are.
        #expect(config.nodes.map(\.listenAddress) == ["0.0.0.0", "::", "n3.drs.example"])
        let twice = named.replacingOccurrences(of: "n3.drs.example", with: "n1.drs.example")
        let error = #expect(throws: ConfigurationError.self) { try parse(twice) }
        #expect(error?.field == "nodes[2].httpPort" && error?.message.contains("nodes[0].httpPort") == true, "\(error?.message ?? "")")
        // A name beyond loopback is exposed: no insecure frames, a token required.
        #expect(failingField(named.replacingOccurrences(of: "key: \"\(key)\"", with: "insecure: true")) == "cluster.insecure")
        #expect(failingField(named.replacingOccurrences(of: "http: {token: secret}\n", with: "")) == "http.token")
        // localhost is loopback; a loopback address listening on every address is not.
        #expect(try parse("cluster: {id: t, insecure: true}\nnodes: [{name: a, address: localhost}]").nodes[0].listenAddress == "localhost")
        let wide = #expect(throws: ConfigurationError.self) {
            try parse("cluster: {id: t, insecure: true}\nnodes: [{name: a, address: 127.0.0.1, bind: 0.0.0.0}]")
        }
        #expect(wide?.field == "http.token" && wide?.message.contains("nodes[0].bind 0.0.0.0 is") == true, "\(wide?.message ?? "")")
    }

    @Test("an HTTP API beyond loopback needs http.token")
    func tokenBeyondLoopback() throws {
        let key = Data(ClusterKeys.generateKey()).base64EncodedString()
        let exposed = "cluster: {id: t, key: \"\(key)\"}\nnodes: [{name: a, address: 10.1.2.3}]"
        #expect(failingField(exposed) == "http.token")
        #expect(try parse(exposed + "\nhttp: {token: secret}").http.token == "secret")
    }

    @Test("validate checks hand-built configurations with the same field paths")
    func validateHandBuilt() {
        var config = ClusterConfiguration(clusterID: "t", keys: .insecure, nodes: [NodeEndpoint(name: "n1")])
        config.replication.retryCount = -1
        let error = #expect(throws: ConfigurationError.self) { try config.validate() }
        #expect(error?.field == "replication.retryCount" && error?.file == "<config>")

        config.replication.retryCount = 3
        config.membership.lease = .zero
        #expect(throws: ConfigurationError.self) { try config.validate(file: "x") }
        config.membership.lease = .milliseconds(500)
        config.keys = ClusterKeys(current: [1, 2, 3])
        let keyError = #expect(throws: ConfigurationError.self) { try config.validate() }
        #expect(keyError?.field == "cluster.key")
        config.keys = ClusterKeys(current: [UInt8](repeating: 1, count: 32))
        #expect(throws: Never.self) { try config.validate() }
    }

    @Test("warnings flag settings that are ignored")
    func warnings() throws {
        let udp = try parse(base + "\nreplication: {transport: udp}")
        #expect(udp.warnings.contains("replication.transport: udp is ignored in acknowledged mode; deltas travel over TCP"))
        #expect(try parse(base + "\nreplication: {transport: udp, mode: best-effort}").warnings == ["cluster.insecure: frames travel unsealed and unauthenticated; use only for local experiments"])
        #expect(try parse(base + "\nreplication: {replicas: 3}").warnings.contains { $0.hasPrefix("replication.replicas:") })
        #expect(try parse(base + "\nreplication: {minSyncReplicas: 1}").warnings.contains { $0.hasPrefix("replication.minSyncReplicas:") })
    }

    @Test("load names the path when the file is missing")
    func missingFile() {
        let error = #expect(throws: ConfigurationError.self) { try ClusterConfiguration.load(path: "/nonexistent/drs.yaml") }
        #expect(error?.file == "/nonexistent/drs.yaml" && error?.field == "")
    }
}
