import Foundation
import Testing
import SessionReplication

/// Configuration texts kept in `Fuzz/regressions/config/`: each must load or be refused
/// with a `ConfigurationError`, never trap.
struct FuzzConfigRegressionTests {
    @Test("configuration regressions load or are refused, never crash")
    func configurations() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fuzz/regressions/config")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { !$0.hasPrefix(".") }.sorted()
        #expect(!names.isEmpty)
        for name in names {
            let text = String(decoding: try Data(contentsOf: dir.appendingPathComponent(name)), as: UTF8.self)
            do { _ = try ClusterConfiguration.parse(yaml: text, file: name) } catch {
                #expect(!error.description.isEmpty)
            }
        }
    }
}
