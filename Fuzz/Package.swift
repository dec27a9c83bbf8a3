// swift-tools-version:6.1
import PackageDescription

// libFuzzer targets for the decoders and the configuration loader (`make fuzz`). A package
// of its own, depending on the main one, so that the sanitizer flags stay on the command
// line (`-sanitize=fuzzer,address -parse-as-library`, see the Makefile) and out of any
// product's targets. Each fuzz target is one file defining `LLVMFuzzerTestOneInput`;
// `fuzz-corpus` writes the seed corpus (valid encodings) into `corpus/<target>/`.
let package = Package(
    name: "swift-session-replication-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "swift-session-replication", path: "..")],
    targets: [
        // libFuzzer's entry for each executable (see FuzzEntry.h).
        .target(name: "FuzzEntry"),
        .executableTarget(name: "FuzzFrame", dependencies: ["FuzzEntry", .product(name: "SessionReplicationCore", package: "swift-session-replication")]),
        .executableTarget(name: "FuzzMessage", dependencies: ["FuzzEntry", .product(name: "SessionReplicationCore", package: "swift-session-replication")]),
        .executableTarget(name: "FuzzMembership", dependencies: ["FuzzEntry", .product(name: "SessionReplicationCore", package: "swift-session-replication")]),
        .executableTarget(name: "FuzzConfig", dependencies: ["FuzzEntry", .product(name: "SessionReplication", package: "swift-session-replication")]),
        .executableTarget(name: "FuzzCorpus", dependencies: [.product(name: "SessionReplicationCore", package: "swift-session-replication")]),
    ]
)
