import Foundation
import Testing

/// The `drs` commands' side of the security rules, against the real binary.
@Suite("drs keygen, check-config, cluster down and lb-config under the security rules")
struct SecurityProcessTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func temporary() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("drs-sec-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test("keygen writes a fresh 32-byte key readable by its owner only, and refuses to overwrite one", .timeLimit(.minutes(10)))
    func keygen() async throws {
        let dir = try Self.temporary()
        defer { try? FileManager.default.removeItem(at: dir) }
        let made = try await DRSBinary.run(["keygen", "--out", "k.key"], in: dir)
        #expect(made.status == 0, "\(made.output)")
        let path = dir.appendingPathComponent("k.key").path
        let text = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(Data(base64Encoded: text)?.count == 32)
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int == 0o600)
        let again = try await DRSBinary.run(["keygen", "--out", "k.key"], in: dir)
        #expect(again.status == 1 && again.output.contains("--force"))
        let printed = try await DRSBinary.run(["keygen"], in: dir)
        #expect(Data(base64Encoded: printed.output.trimmingCharacters(in: .whitespacesAndNewlines))?.count == 32)
        #expect(printed.output.trimmingCharacters(in: .whitespacesAndNewlines) != text)
    }

    @Test("check-config refuses a shipped configuration moved beyond loopback, and accepts it with a fresh key file", .timeLimit(.minutes(10)))
    func shippedCopyBeyondLoopback() async throws {
        let dir = try Self.temporary()
        defer { try? FileManager.default.removeItem(at: dir) }
        var yaml = try String(contentsOf: Self.root.appendingPathComponent("cluster-configs/local-3.yaml"), encoding: .utf8)
        yaml = yaml.replacingOccurrences(of: "127.0.0.1", with: "10.9.0.")
        yaml = yaml.replacingOccurrences(of: "\nhttp:\n", with: "\nhttp:\n  token: t0ken\n")
        try yaml.write(to: dir.appendingPathComponent("lan.yaml"), atomically: true, encoding: .utf8)
        // Before: accepted, with a warning, and the cluster ran unsealed (or under a published key).
        let refused = try await DRSBinary.run(["check-config", "--config", "lan.yaml"], in: dir)
        #expect(refused.status == 2, "\(refused.output)")
        #expect(refused.output.contains("cluster.insecure"))
        _ = try await DRSBinary.run(["keygen", "--out", "lan.key"], in: dir)
        try (yaml.replacingOccurrences(of: "insecure: true", with: "keyFile: lan.key")).write(to: dir.appendingPathComponent("lan.yaml"), atomically: true, encoding: .utf8)
        let accepted = try await DRSBinary.run(["check-config", "--config", "lan.yaml"], in: dir)
        #expect(accepted.status == 0, "\(accepted.output)")
    }

    @Test("cluster down signals only drs node processes: a pid file naming another program leaves it alone", .timeLimit(.minutes(10)))
    func clusterDownChecksThePid() async throws {
        let dir = try Self.temporary()
        defer { try? FileManager.default.removeItem(at: dir) }
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["120"]
        try sleeper.run()
        defer { if sleeper.isRunning { sleeper.terminate() } }
        let state = dir.appendingPathComponent("state")
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        try "\(sleeper.processIdentifier)\n".write(to: state.appendingPathComponent("n1.pid"), atomically: true, encoding: .utf8)
        let config = Self.root.appendingPathComponent("cluster-configs/local-3.yaml").path
        // Before: SIGTERM (then SIGKILL) to whatever the pid file named.
        let down = try await DRSBinary.run(["cluster", "down", "--config", config, "--state-dir", state.path], in: dir)
        #expect(down.status == 0, "\(down.output)")
        #expect(down.output.contains("nothing running"))
        #expect(sleeper.isRunning, "cluster down signalled a process that is not a drs node")
    }

    @Test("lb-config checks /readyz and, with TLS on the nodes, talks TLS to them", .timeLimit(.minutes(10)))
    func lbConfigWithTLS() async throws {
        let dir = try Self.temporary()
        defer { try? FileManager.default.removeItem(at: dir) }
        try "not checked by lb-config\n".write(to: dir.appendingPathComponent("cert.pem"), atomically: true, encoding: .utf8)
        try "not checked by lb-config\n".write(to: dir.appendingPathComponent("key.pem"), atomically: true, encoding: .utf8)
        let yaml = """
            cluster: {id: tls, insecure: true}
            nodes:
              - {name: n1, address: 127.0.0.11, httpPort: 8081}
              - {name: n2, address: 127.0.0.12, httpPort: 8082}
            http: {tls: {certificate: cert.pem, key: key.pem}}
            """
        try yaml.write(to: dir.appendingPathComponent("tls.yaml"), atomically: true, encoding: .utf8)
        let result = try await DRSBinary.run(["lb-config", "haproxy", "--config", "tls.yaml"], in: dir)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("option httpchk GET /readyz"))
        #expect(result.output.contains("server n1 127.0.0.11:8081 check inter 250ms fall 2 rise 2 ssl verify none"))
    }
}
