import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// The Vapor example application (Examples/VaporCart): Vapor's sessions over
/// `DRSSessionDriver`, three processes each a node and a Vapor web server. A cart written
/// through one process and read through another (which takes it over) is found whole
/// through a third after its owner is killed.
@Suite("The Vapor cart example survives the loss of the node that owns the cart", .serialized, .oneClusterAtATime, .timeLimit(.minutes(10)))
struct VaporCartExampleTests {
    static var binary: String {
        DRSBinary.debugDirectory.appendingPathComponent("drs-vapor-cart").path
    }

    /// One answer of a cart route.
    struct Answer {
        var status: Int
        var items: [String]?
        var servedBy: String?
        /// The `DRSSESSIONID` value the answer set, if any.
        var cookie: String?
    }

    @Test("a cart written through n1 and read through n2 is read whole through n3 after SIGKILL of its owner, and keeps growing")
    func cartSurvivesKillOfOwner() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("drs-vapor-cart-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let base = Int.random(in: 20_000...50_000)
        let addresses = ["127.0.0.91", "127.0.0.92", "127.0.0.93"]
        var yaml = "cluster: {id: vapor-cart, insecure: true}\nnodes:\n"
        for i in 0..<3 {
            yaml += "  - {name: n\(i + 1), address: \(addresses[i]), httpPort: \(base + i), replicationPort: \(base + 10 + i), membershipPort: \(base + 20 + i)}\n"
        }
        yaml += "replication: {mode: synchronous, replicas: 1}\n"
        let config = directory.appendingPathComponent("vapor-cart.yaml").path
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
        var processes: [Process] = []
        var passed = false
        defer {
            for p in processes where p.isRunning { kill(p.processIdentifier, SIGKILL) }
            for p in processes { p.waitUntilExit() }
            if !passed {
                for i in 0..<3 {
                    let log = (try? String(contentsOf: directory.appendingPathComponent("n\(i + 1).log"), encoding: .utf8)) ?? ""
                    print("--- n\(i + 1).log (last lines)\n" + log.split(separator: "\n").suffix(30).joined(separator: "\n"))
                }
            }
            try? FileManager.default.removeItem(at: directory)
        }
        for i in 0..<3 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Self.binary)
            p.arguments = ["--config", config, "--name", "n\(i + 1)", "--port", "\(base + 30 + i)"]
            let log = directory.appendingPathComponent("n\(i + 1).log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            p.standardOutput = try FileHandle(forWritingTo: log)
            p.standardError = p.standardOutput
            try p.run()
            processes.append(p)
        }
        func url(_ i: Int, _ path: String) -> URL { URL(string: "http://\(addresses[i]):\(base + 30 + i)\(path)")! }
        func call(_ method: String, _ i: Int, _ path: String, cookie: String?) async -> Answer {
            let headers = cookie.map { ["Cookie": "DRSSESSIONID=\($0)"] } ?? [:]
            guard let http = await HTTPProbe.send(method, url(i, path), headers: headers, timeout: .seconds(10)) else {
                return Answer(status: 0)
            }
            let body = http.json as? [String: Any] ?? [:]
            let setCookie = http.headers["set-cookie"]?.split(separator: ";").first
            let value = setCookie.flatMap { $0.hasPrefix("DRSSESSIONID=") ? String($0.dropFirst("DRSSESSIONID=".count)) : nil }
            return Answer(status: http.status, items: body["items"] as? [String], servedBy: body["servedBy"] as? String, cookie: value)
        }
        // Every process up and every member alive in every process's view.
        var ready = false
        for _ in 0..<600 where !ready {
            var all = true
            for i in 0..<3 {
                let members = await HTTPProbe.send("GET", url(i, "/cluster/members"), timeout: .seconds(2))?.json as? [[String: Any]] ?? []
                if members.count != 3 || !members.allSatisfy({ $0["state"] as? String == "alive" }) { all = false }
            }
            ready = all
            if !ready { try await Task.sleep(for: .milliseconds(100)) }
        }
        try #require(ready, "the three Vapor cart processes did not all see each other alive")

        // Written through n1 (retried while leases are first granted: 503 then).
        var created = Answer(status: 0)
        for _ in 0..<100 where created.status != 200 {
            created = await call("POST", 0, "/cart/items/apple", cookie: nil)
            if created.status != 200 { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(created.status == 200)
        let first = try #require(created.cookie, "no DRSSESSIONID cookie")
        #expect(first.wholeMatch(of: /[0-9a-f]{32}\.n1/) != nil, "\(first)")
        let id = String(first.prefix(32))
        let second = await call("POST", 0, "/cart/items/pear", cookie: first)
        #expect(second.status == 200 && second.items == ["apple", "pear"], "\(second)")

        // Read through n2, which takes the cart over: the cookie's route follows.
        let read = await call("GET", 1, "/cart", cookie: first)
        #expect(read.status == 200 && read.items == ["apple", "pear"] && read.servedBy == "n2", "\(read)")
        let moved = try #require(read.cookie, "n2 did not hand out the new route")
        #expect(moved == "\(id).n2")

        // SIGKILL the owner the cookie names.
        let owner = try #require(["n1", "n2", "n3"].firstIndex(of: String(moved.dropFirst(33))))
        kill(processes[owner].processIdentifier, SIGKILL)
        let survivors = (0..<3).filter { $0 != owner }

        // A survivor finds the cart once the death is known and the backup promoted; until
        // then it answers 503 (never an empty cart, never a new cookie).
        var after = Answer(status: 0)
        var answers: [Int: Int] = [:]
        for _ in 0..<300 where after.status != 200 {
            after = await call("GET", survivors[1], "/cart", cookie: moved)
            answers[after.status, default: 0] += 1
            if after.status != 200 { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(after.status == 200 && after.items == ["apple", "pear"], "the cart did not survive the loss of its owner: \(after), answers \(answers)")
        #expect(Set(answers.keys).isSubset(of: [200, 503]), "answers while failing over: \(answers)")
        #expect(after.cookie == "\(id).n\(survivors[1] + 1)")

        let grown = await call("POST", survivors[0], "/cart/items/plum", cookie: after.cookie ?? moved)
        #expect(grown.status == 200 && grown.items == ["apple", "pear", "plum"], "\(grown)")
        let last = await call("GET", survivors[1], "/cart", cookie: grown.cookie ?? moved)
        #expect(last.items == ["apple", "pear", "plum"], "\(last)")
        passed = true
    }
}
