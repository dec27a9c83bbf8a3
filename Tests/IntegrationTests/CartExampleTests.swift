import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// The example application (Examples/Cart): Hummingbird's `SessionMiddleware` over
/// `DRSPersistDriver`, three processes each a node and a web server. A cart filled on one
/// process is found whole on another after the first is killed.
@Suite("The cart example survives the loss of the node that served it", .serialized, .oneClusterAtATime, .timeLimit(.minutes(10)))
struct CartExampleTests {
    static var binary: String {
        DRSBinary.debugDirectory.appendingPathComponent("drs-cart").path
    }

    @Test("items added through one process are read through another after SIGKILL of the first, and the cart keeps growing")
    func cartSurvivesKill() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("drs-cart-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let base = Int.random(in: 20_000...50_000)
        let addresses = ["127.0.0.81", "127.0.0.82", "127.0.0.83"]
        var yaml = "cluster: {id: cart, insecure: true}\nnodes:\n"
        for i in 0..<3 {
            yaml += "  - {name: n\(i + 1), address: \(addresses[i]), httpPort: \(base + i), replicationPort: \(base + 10 + i), membershipPort: \(base + 20 + i)}\n"
        }
        yaml += "replication: {mode: synchronous, replicas: 1}\n"
        let config = directory.appendingPathComponent("cart.yaml").path
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
        var processes: [Process] = []
        defer {
            for p in processes where p.isRunning { kill(p.processIdentifier, SIGKILL) }
            try? FileManager.default.removeItem(at: directory)
        }
        for i in 0..<3 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Self.binary)
            p.arguments = ["--config", config, "--name", "n\(i + 1)", "--port", "\(base + 30 + i)"]
            let log = directory.appendingPathComponent("n\(i + 1).log")
            FileManager.default.createFile(atPath: log.path, contents: nil)
            p.standardOutput = try FileHandle(forWritingTo: log)
            p.standardError = p.standardOutput
            try p.run()
            processes.append(p)
        }
        func cart(_ i: Int) -> String { "http://\(addresses[i]):\(base + 30 + i)/cart" }
        func call(_ method: String, _ url: String, cookie: String?) async -> (Int, [String: Any], String?) {
            guard let answer = await HTTPProbe.send(method, URL(string: url)!, headers: cookie.map { ["Cookie": $0] } ?? [:]) else { return (0, [:], nil) }
            return (answer.status, answer.json as? [String: Any] ?? [:], answer.headers["set-cookie"])
        }
        // Every node up, every member alive, leases granted.
        var ready = false
        for _ in 0..<300 where !ready {
            var all = true
            for i in 0..<3 {
                let status = await HTTPProbe.send("GET", URL(string: "http://\(addresses[i]):\(base + i)/readyz")!, timeout: .seconds(2))?.status
                if status != 200 { all = false }
            }
            ready = all
            if !ready { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(ready, "the three cart processes did not all become ready")

        let (created, first, setCookie) = await call("POST", cart(0) + "/items/apple", cookie: nil)
        #expect(created == 200, "\(first)")
        let cookie = try #require(setCookie?.split(separator: ";").first.map(String.init), "no SESSION_ID cookie")
        #expect(cookie.hasPrefix("SESSION_ID="))
        let (_, second, _) = await call("POST", cart(0) + "/items/pear", cookie: cookie)
        #expect(second["items"] as? [String] == ["apple", "pear"])
        #expect(second["servedBy"] as? String == "n1")

        kill(processes[0].processIdentifier, SIGKILL)
        // n2 finds the cart once n1's death is known and the backup promoted (the
        // middleware reads a session it cannot reach yet as no session: poll).
        var items: [String]?
        for _ in 0..<200 where items != ["apple", "pear"] {
            let (status, body, _) = await call("GET", cart(1), cookie: cookie)
            if status == 200 { items = body["items"] as? [String] }
            if items != ["apple", "pear"] { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(items == ["apple", "pear"], "the cart did not survive the loss of n1: \(items ?? [])")
        let (added, third, _) = await call("POST", cart(2) + "/items/plum", cookie: cookie)
        #expect(added == 200 && third["items"] as? [String] == ["apple", "pear", "plum"], "\(added) \(third)")
        #expect(third["servedBy"] as? String == "n3")
        let (_, last, _) = await call("GET", cart(1), cookie: cookie)
        #expect(last["items"] as? [String] == ["apple", "pear", "plum"])
    }
}
