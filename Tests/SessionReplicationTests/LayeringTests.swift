import Foundation
import Testing

@Test("SessionReplicationCore imports no NIO and no Foundation networking")
func coreImportsNoNIO() throws {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let core = root.appendingPathComponent("Sources/SessionReplicationCore")
    let files = FileManager.default.enumerator(at: core, includingPropertiesForKeys: nil)!.compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" }
    #expect(files.count > 5)
    for file in files {
        let text = try String(contentsOf: file, encoding: .utf8)
        for line in text.split(separator: "\n") where line.hasPrefix("import ") {
            #expect(!line.contains("NIO"), "\(file.lastPathComponent): \(line)")
            #expect(!line.contains("Foundation"), "\(file.lastPathComponent): \(line)")
        }
    }
}
