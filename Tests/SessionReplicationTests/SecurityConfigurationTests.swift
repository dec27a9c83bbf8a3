import Foundation
import SessionReplicationCore
import Testing
@testable import SessionReplication

/// Keys, exposure and wire limits at load time.
@Suite("Security rules of the configuration")
struct SecurityConfigurationTests {
    static let nodesOnLAN = """
        nodes:
          - {name: n1, address: 10.1.0.1}
          - {name: n2, address: 10.1.0.2}
        http: {token: secret}
        """
    static let nodesOnLoopback = """
        nodes:
          - {name: n1, address: 127.0.0.1, replicationPort: 7101}
          - {name: n2, address: 127.0.0.2, replicationPort: 7102}
        """
    /// A key this repository once shipped in cluster-configs/local-3.yaml (published: refused beyond loopback).
    static let shippedKey = "oMJzceE+LI4YQ6++8eFIBDCGN0axE3/1sJwK8VZeXnU="

    func error(_ yaml: String, environment: [String: String] = [:], directory: String = ".") -> ConfigurationError? {
        do { _ = try ClusterConfiguration.parse(yaml: yaml, file: "t.yaml", environment: environment, directory: directory); return nil } catch { return error }
    }

    static func tempDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "drs-keys-\(UInt64.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test("beyond loopback, insecure: true and published keys are refused at load, naming the field")
    func exposedClustersNeedAFreshKey() throws {
        // Before: accepted with a warning (insecure) or silently (a copy of a shipped file).
        let insecure = error("cluster: {id: c, insecure: true}\n" + Self.nodesOnLAN)
        #expect(insecure?.field == "cluster.insecure")
        #expect(insecure?.message.contains("beyond loopback") == true)
        #expect(error("cluster: {id: c, key: \"\(Self.shippedKey)\"}\n" + Self.nodesOnLAN)?.field == "cluster.key")
        let fresh = Data(ClusterKeys.generateKey()).base64EncodedString()
        #expect(error("cluster: {id: c, key: \"\(fresh)\", keyring: [\"\(Self.shippedKey)\"]}\n" + Self.nodesOnLAN)?.field == "cluster.keyring[0]")
        let repeated = Data(repeating: 7, count: 32).base64EncodedString()
        #expect(error("cluster: {id: c, key: \"\(repeated)\"}\n" + Self.nodesOnLAN)?.field == "cluster.key")
        #expect(error("cluster: {id: c, key: \"\(fresh)\"}\n" + Self.nodesOnLAN) == nil)
        // On loopback both load (with a warning for the published key).
        #expect(error("cluster: {id: c, insecure: true}\n" + Self.nodesOnLoopback) == nil)
        let local = try ClusterConfiguration.parse(yaml: "cluster: {id: c, key: \"\(Self.shippedKey)\"}\n" + Self.nodesOnLoopback)
        #expect(local.warnings.contains { $0.hasPrefix("cluster.key: this key is published") })
    }

    @Test("keygen's file is read by cluster.keyFile (relative to the configuration), the environment wins over the file, and bad key files name the field")
    func keyFilesAndEnvironment() throws {
        let dir = try Self.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = ClusterKeys.generateKey()
        try ClusterKeys.writeKeyFile(key, to: dir + "/cluster.key")
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/cluster.key")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(throws: KeyFileError.self) { try ClusterKeys.writeKeyFile(key, to: dir + "/cluster.key") }
        let yaml = "cluster: {id: c, keyFile: cluster.key}\n" + Self.nodesOnLAN
        let config = try ClusterConfiguration.parse(yaml: yaml, directory: dir)
        #expect(config.keys.current == key && config.keys.keyFile == dir + "/cluster.key")
        #expect(error("cluster: {id: c, keyFile: missing.key}\n" + Self.nodesOnLAN, directory: dir)?.field == "cluster.keyFile")
        #expect(error("cluster: {id: c, keyFile: /dev/zero}\n" + Self.nodesOnLAN)?.field == "cluster.keyFile")
        #expect(error("cluster: {id: c, keyFile: cluster.key, key: \"\(Self.shippedKey)\"}\n" + Self.nodesOnLAN, directory: dir)?.field == "cluster.keyFile")
        // The environment's key replaces the file's key sources, insecure included.
        let other = ClusterKeys.generateKey()
        let fromEnvironment = try ClusterConfiguration.parse(yaml: "cluster: {id: c, insecure: true}\n" + Self.nodesOnLoopback,
                                                             environment: ["DRS_CLUSTER_KEY": Data(other).base64EncodedString()])
        #expect(fromEnvironment.keys.current == other && !fromEnvironment.keys.insecure)
        let viaFile = try ClusterConfiguration.parse(yaml: "cluster: {id: c, insecure: true}\n" + Self.nodesOnLoopback,
                                                     environment: ["DRS_CLUSTER_KEY_FILE": dir + "/cluster.key"])
        #expect(viaFile.keys.current == key)
        let tuned = try ClusterConfiguration.parse(yaml: "cluster: {id: c, insecure: true}\n" + Self.nodesOnLoopback,
                                                   environment: ["DRS_REPLICATION_MODE": "synchronous", "DRS_SESSIONS_MAX_ATTRIBUTES": "10"])
        #expect(tuned.replication.mode == .synchronous && tuned.sessions.maxAttributes == 10)
        #expect(error("cluster: {id: c, insecure: true}\n" + Self.nodesOnLoopback, environment: ["DRS_SESSIONS_MAX_BYTES": "lots"])?.field == "sessions.maxBytes")
    }

    @Test("size limits a replication frame cannot carry are refused at load, naming the field")
    func wireLimitsAtLoad() {
        let head = "cluster: {id: c, insecure: true}\n" + Self.nodesOnLoopback + "\n"
        // Before: all three loaded, and sessions they allowed were refused whole by every backup.
        #expect(error(head + "sessions: {maxAttributeBytes: 5MiB, maxSessionBytes: 8MiB}")?.field == "sessions.maxAttributeBytes")
        #expect(error(head + "sessions: {maxSessionBytes: 16MiB}")?.field == "sessions.maxSessionBytes")
        #expect(error(head + "sessions: {maxAttributes: 70000}")?.field == "sessions.maxAttributes")
        #expect(error(head + "sessions: {maxBytes: 1MiB}")?.field == "sessions.maxBytes")
        #expect(error(head + "sessions: {maxAttributeBytes: 4MiB, maxSessionBytes: 12MiB, maxAttributes: 1000, maxBytes: 2GiB}") == nil)
        #expect(error(head + "sessions: {maxBytes: null}") == nil)
    }

    @Test("http idle timeout, connection cap and TLS files are read and checked")
    func httpKeys() throws {
        let head = "cluster: {id: c, insecure: true}\n" + Self.nodesOnLoopback + "\n"
        let config = try ClusterConfiguration.parse(yaml: head + "http: {idleTimeout: 5s, maxConnections: 10}")
        #expect(config.http.idleTimeout == .seconds(5) && config.http.maxConnections == 10 && config.http.tls == nil)
        #expect(HTTPSettings().idleTimeout == .seconds(30) && HTTPSettings().maxConnections == 1024)
        #expect(error(head + "http: {maxConnections: 0}")?.field == "http.maxConnections")
        #expect(error(head + "http: {tls: {certificate: /nonexistent.pem, key: /nonexistent.key}}")?.field == "http.tls.certificate")
        #expect(error(head + "http: {tls: {certificate: /etc/hostname}}")?.field == "http.tls.key")
    }
}
