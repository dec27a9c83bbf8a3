import Hummingbird
import HummingbirdTesting
import SessionReplication
import SessionReplicationHummingbird
import Testing

@Suite("Prometheus export of the node's swift-metrics", .timeLimit(.minutes(10)))
struct PrometheusExportTests {
    @Test("GET /metrics answers Prometheus text with the drs_ names, the lag histogram's fine buckets, and counters that advance")
    func scrape() async throws {
        try await LiveCluster.with { cluster in
            let prometheus = PrometheusExport()
            let router = Router()
            prometheus.addRoute(to: router, publishing: NodeMetrics(node: cluster.n1, factory: prometheus.factory))
            let id = try #require(try await cluster.n1.createSession(attributes: ["a": [1]]).state?.id)
            _ = try await cluster.n1.sync(id)
            let app = Application(router: router)
            try await app.test(.router) { client in
                let first = try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
                #expect(first.contains(#"drs_sessions{role="owner"} 1"#), "\(first)")
                #expect(first.contains("drs_sessions_created_total 1"))
                #expect(first.contains(#"drs_replication_lag_seconds_bucket{peer="n2",le="0.0001"}"#))
                #expect(first.contains(#"drs_replication_lag_seconds_count{peer="n2"}"#))
                for line in first.split(separator: "\n") where !line.hasPrefix("#") {
                    #expect(line.hasPrefix("drs_"), "\(line)")
                }
                // Three different values (the first was [1]): setting the value a session
                // already holds changes nothing and commits nothing.
                for value in UInt8(2)...4 { _ = try await cluster.n1.withSession(id) { $0.set("a", [value]) } }
                let second = try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
                #expect(second.contains("drs_commits_total 3"), "\(second)")
                #expect(second.contains(#"drs_messages_sent_total{kind="delta",mode="acknowledged",transport="tcp"} 3"#))
            }
        }
    }
}
