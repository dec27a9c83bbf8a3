// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "swift-session-replication",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "SessionReplicationCore", targets: ["SessionReplicationCore"]),
        .library(name: "SessionReplication", targets: ["SessionReplication"]),
        .library(name: "SessionReplicationTestKit", targets: ["SessionReplicationTestKit"]),
        .library(name: "SessionReplicationHummingbird", targets: ["SessionReplicationHummingbird"]),
        .library(name: "SessionReplicationVapor", targets: ["SessionReplicationVapor"]),
        .executable(name: "drs", targets: ["drs"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        // The major version is pinned on purpose: the sealing format depends on AES-GCM and HKDF APIs.
        .package(url: "https://github.com/apple/swift-crypto.git", .upToNextMajor(from: "4.5.2")),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        // The library reports through swift-metrics; `drs node` exports it to Prometheus.
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        // The HTTP client that forwards requests to a session's owner (affinity: none,
        // takeoverCooldown): connection pooling and HTTP/1.1 parsing not written here.
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        // Only for the example application (Examples/Cart): Hummingbird's SessionMiddleware.
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        // Only for `make docs` (swift package generate-documentation): no target depends on it.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
        // Only for SessionReplicationVapor (and its example and tests): Vapor's SessionDriver.
        .package(url: "https://github.com/vapor/vapor.git", from: "4.122.3"),
    ],
    targets: [
        .target(
            name: "SessionReplicationCore",
            dependencies: [
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        .target(
            name: "SessionReplication",
            dependencies: [
                "SessionReplicationCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .target(
            name: "SessionReplicationHummingbird",
            dependencies: [
                "SessionReplication",
                "SessionReplicationCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                // TLS for the HTTP API (`http.tls`): swift-nio-ssl through Hummingbird's own product.
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(
            name: "SessionReplicationVapor",
            dependencies: [
                "SessionReplication",
                "SessionReplicationCore",
                .product(name: "Vapor", package: "vapor"),
            ]
        ),
        .target(
            name: "SessionReplicationDrill",
            dependencies: []
        ),
        .target(
            name: "SessionReplicationTestKit",
            dependencies: [
                "SessionReplicationCore",
                .product(name: "HeapModule", package: "swift-collections"),
            ]
        ),
        // `drs simulate-cluster`, shared by `drs` and `drs-simulate`.
        .target(
            name: "SimulationCommand",
            dependencies: [
                "SessionReplicationCore",
                "SessionReplicationTestKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The simulation matrix alone: only the core, the simulator and ArgumentParser, so
        // `make test` builds it optimised in minutes instead of the whole `drs`.
        .executableTarget(
            name: "drs-simulate",
            dependencies: [
                "SimulationCommand",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "drs",
            dependencies: [
                "SimulationCommand",
                "SessionReplication",
                "SessionReplicationTestKit",
                "SessionReplicationHummingbird",
                "SessionReplicationDrill",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .executableTarget(
            name: "drs-cart",
            dependencies: [
                "SessionReplication",
                "SessionReplicationHummingbird",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdAuth", package: "hummingbird-auth"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Examples/Cart"
        ),
        .executableTarget(
            name: "drs-vapor-cart",
            dependencies: [
                "SessionReplication",
                "SessionReplicationVapor",
                .product(name: "Vapor", package: "vapor"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Examples/VaporCart",
            exclude: ["README.md"]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "drs", "drs-simulate", "drs-cart", "drs-vapor-cart", "SessionReplicationDrill",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        .testTarget(
            name: "SessionReplicationCoreTests",
            dependencies: ["SessionReplicationCore", "SessionReplicationTestKit"]
        ),
        .testTarget(
            name: "SessionReplicationHummingbirdTests",
            dependencies: [
                "SessionReplicationHummingbird",
                "SessionReplication",
                "SessionReplicationCore",
                "SessionReplicationTestKit",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .testTarget(
            name: "SessionReplicationVaporTests",
            dependencies: [
                "SessionReplicationVapor",
                "SessionReplication",
                "SessionReplicationCore",
                .product(name: "Vapor", package: "vapor"),
                .product(name: "VaporTesting", package: "vapor"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "SessionReplicationTests",
            dependencies: [
                "SessionReplication",
                "SessionReplicationTestKit",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)

// `make benchmarks` (DRS_BENCHMARKS=1): the ordo-one/benchmark suite in Benchmarks/, which
// counts allocations through that package's malloc interposer. Left out of the package
// otherwise, so neither `make test` nor a package that depends on this one resolves or
// builds it.
if Context.environment["DRS_BENCHMARKS"] != nil {
    package.dependencies.append(.package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]))
    package.targets.append(.executableTarget(
        name: "DRSBenchmarks",
        dependencies: [
            "SessionReplicationCore",
            "SessionReplication",
            "SessionReplicationHummingbird",
            .product(name: "Benchmark", package: "benchmark"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ],
        path: "Benchmarks/DRSBenchmarks",
        plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
    ))
}

// `make fuzz` and `make fuzz-corpus` (DRS_FUZZ=1): the libFuzzer targets in Fuzz/ for the
// frame, message and membership decoders and the configuration loader, and the writer of
// their seed corpus. Targets of this package, so they reach its `package` symbols; left
// out otherwise, since they only link with `-sanitize=fuzzer` (given on the command line,
// never as flags of a target).
if Context.environment["DRS_FUZZ"] != nil {
    let core: Target.Dependency = "SessionReplicationCore"
    package.targets += [
        // libFuzzer's entry for each executable (see FuzzEntry.h).
        .target(name: "FuzzEntry", path: "Fuzz/Sources/FuzzEntry"),
        .executableTarget(name: "FuzzFrame", dependencies: ["FuzzEntry", core], path: "Fuzz/Sources/FuzzFrame"),
        .executableTarget(name: "FuzzMessage", dependencies: ["FuzzEntry", core], path: "Fuzz/Sources/FuzzMessage"),
        .executableTarget(name: "FuzzMembership", dependencies: ["FuzzEntry", core], path: "Fuzz/Sources/FuzzMembership"),
        .executableTarget(name: "FuzzConfig", dependencies: ["FuzzEntry", "SessionReplication"], path: "Fuzz/Sources/FuzzConfig"),
        .executableTarget(name: "FuzzCorpus", dependencies: [core], path: "Fuzz/Sources/FuzzCorpus"),
    ]
}
