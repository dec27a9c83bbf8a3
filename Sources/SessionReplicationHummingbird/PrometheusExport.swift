import CoreMetrics
import Hummingbird
import Prometheus
import SessionReplication

/// A Prometheus registry and the swift-metrics factory that feeds it, with the buckets of
/// `drs_replication_lag_seconds` set from 100 µs to 1 s (the default buckets start at
/// 5 ms, too coarse for loopback and LAN lag). `drs node` bootstraps `factory` and serves
/// `text()` at `/metrics`; an application can do the same or use its own backend.
public struct PrometheusExport: Sendable {
    /// The registry every metric made through `factory` lands in.
    public let registry: PrometheusCollectorRegistry
    /// The factory to pass to `MetricsSystem.bootstrap` or `NodeMetrics(node:factory:)`.
    public let factory: PrometheusMetricsFactory

    /// Lag buckets, in order: 100 µs … 1 s.
    public static let lagBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1),
    ]

    /// A fresh registry and its factory. Never fails.
    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[NodeMetrics.replicationLag] = Self.lagBuckets
        self.registry = registry
        self.factory = factory
    }

    /// Every metric of the registry in Prometheus text format (version 0.0.4).
    public func text() -> String {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }

    /// Adds `GET /metrics` to `router`: publishes `metrics` (brings them up to date), then
    /// answers `text()`. It passes through the router's middleware like any route (in `drs
    /// node`, the API token).
    public func addRoute<Context: RequestContext>(to router: Router<Context>, publishing metrics: NodeMetrics) {
        router.get("/metrics") { _, _ in
            metrics.publish()
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: self.text())))
        }
    }
}
