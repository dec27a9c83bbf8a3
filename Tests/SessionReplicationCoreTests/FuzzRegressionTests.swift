import Foundation
import Testing
import SessionReplicationCore

/// Inputs kept in `Fuzz/regressions/<target>/` (crashers `make fuzz` found, and the hostile
/// inputs of attacks found before), run through the decoders as the fuzz targets run them: each
/// must decode or throw `DecodeError`, and what decodes must round-trip.
struct FuzzRegressionTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/regressions")

    static func inputs(_ target: String) throws -> [(String, [UInt8])] {
        let dir = root.appendingPathComponent(target)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { !$0.hasPrefix(".") }.sorted()
        return try names.map { ($0, [UInt8](try Data(contentsOf: dir.appendingPathComponent($0)))) }
    }

    @Test("frame regressions decode or are refused, never crash")
    func frames() throws {
        let inputs = try Self.inputs("frame")
        #expect(!inputs.isEmpty)
        for (_, bytes) in inputs {
            bytes.withUnsafeBytes { raw in
                var r = ByteReader(raw)
                if (try? FrameHeader.decode(&r, maxBodyBytes: WireLimits().maxFrameBytes)) != nil {
                    _ = try? FrameBody.decodeEach(UnsafeRawBufferPointer(rebasing: raw[r.offset...]), limits: WireLimits())
                }
                if let each = try? FrameBody.decodeEach(raw, limits: WireLimits()) {
                    for m in each.data + each.control { #expect((try? MessageCodec.decode(MessageCodec.encode(m.message))) == m.message) }
                }
            }
        }
    }

    @Test("message regressions decode or are refused, never crash")
    func messages() throws {
        let inputs = try Self.inputs("message")
        #expect(!inputs.isEmpty)
        for (name, bytes) in inputs {
            if let m = try? MessageCodec.decode(bytes) { #expect((try? MessageCodec.decode(MessageCodec.encode(m))) == m, "\(name)") }
        }
    }

    @Test("membership regressions decode or are refused, never crash")
    func membership() throws {
        let inputs = try Self.inputs("membership")
        #expect(!inputs.isEmpty)
        for (name, bytes) in inputs {
            if let m = try? MembershipCodec.decode(bytes) { #expect((try? MembershipCodec.decode(MembershipCodec.encode(m))) == m, "\(name)") }
        }
    }

    @Test("the hand-made hostile inputs still reach the value they attack (kept in step with the wire format)")
    func handMadeInputsReachTheirField() throws {
        // Each carries a number at the top of its range; written for 64-bit node ids they
        // ended in a truncated read before reaching it, testing nothing.
        let membership = Dictionary(uniqueKeysWithValues: try Self.inputs("membership"))
        let update = try #require(membership["incarnation-max"])
        #expect(throws: DecodeError.invalid(field: "update.incarnation")) { try MembershipCodec.decode(update) }
        let messages = Dictionary(uniqueKeysWithValues: try Self.inputs("message"))
        for file in ["full-version-max", "delta-epoch-max"] {
            let bytes = try #require(messages[file])
            let outcome = Self.describeDecoding(bytes)
            #expect(!outcome.contains("truncated") && (outcome.contains("version") || outcome.contains("epoch")), "\(file): \(outcome)")
        }
    }

    /// What decoding `bytes` as a replication message gives, as text.
    static func describeDecoding(_ bytes: [UInt8]) -> String {
        do {
            return "decoded \(try MessageCodec.decode(bytes))"
        } catch {
            return "\(error)"
        }
    }
}
