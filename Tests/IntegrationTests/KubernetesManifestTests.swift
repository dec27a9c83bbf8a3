import Foundation
import Testing

/// The Kubernetes manifests, checked offline (`scripts/check-k8s.sh`, which `make
/// k8s-validate` runs with the schema check too): they render, decode, name every pod in
/// the node list and the HAProxy example, and their cluster.yaml passes `drs check-config`.
@Suite("deploy/kubernetes", .oneClusterAtATime)
struct KubernetesManifestTests {
    @Test("the manifests render and decode offline, and their cluster.yaml is accepted by drs check-config",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/kubectl") || FileManager.default.isExecutableFile(atPath: "/usr/local/bin/kubectl"),
                   "needs kubectl"), .timeLimit(.minutes(5)))
    func validatesOffline() async throws {
        // The schema check installs a validator from PyPI: `make k8s-validate` does it, a
        // test must not need the network.
        let (status, output) = await MultiHostProcessTests.run(
            "/bin/bash", [MultiHostProcessTests.root.appendingPathComponent("scripts/check-k8s.sh").path],
            environment: ["K8S_SCHEMA": "off", "DRS": DRSBinary.path], timeout: 240)
        #expect(status == 0, "\(output)")
        #expect(output.contains("ok: drs check-config") && output.contains("all checks passed"), "\(output)")
    }
}
