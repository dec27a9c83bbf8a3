import Foundation
import SessionReplicationCore
@testable import SessionReplicationHummingbird
import SessionReplicationTestKit
import Testing

@Suite("Formats: timestamps, base64, JSON, path segments")
struct FormatTests {
    @Test("RFC 3339 timestamps are UTC with milliseconds and clamp to years 0000-9999", .timeLimit(.minutes(10)))
    func timestamps() {
        let cases: [(Int64, String)] = [
            (0, "1970-01-01T00:00:00.000Z"), (1_795_321_800_123, "2026-11-22T04:30:00.123Z"), (-1, "1969-12-31T23:59:59.999Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"), (1_709_210_096_789, "2024-02-29T12:34:56.789Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"), (.max, "9999-12-31T23:59:59.999Z"), (.min, "0000-01-01T00:00:00.000Z"),
        ]
        for (milliseconds, expected) in cases {
            #expect(RFC3339.string(WallTime(milliseconds: milliseconds)) == expected)
        }
    }

    @Test("Base64 matches Foundation's padded encoding and round-trips random bytes", .timeLimit(.minutes(10)))
    func base64() {
        var random = SeededGenerator(seed: 42)
        for length in 0..<200 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            let encoded = Base64.encode(bytes)
            #expect(encoded == Data(bytes).base64EncodedString())
            #expect(Base64.decode(encoded) == bytes)
        }
        for bad in ["=", "==", "A===", "AB=A", "YR==", "YWI=YQ==", "YW\nI=", "YWJ-", "Y_I=", "====", "A=B=", "YWI", "YWJj=", "YWÍ=", "YWJjYW\u{0}j", "YWJjZB==", "YWJjZGF="] {
            #expect(Base64.decode(bad) == nil, "\(bad)")
        }
    }

    @Test("JSON strings escape quotes, backslashes and control characters", .timeLimit(.minutes(10)))
    func jsonEscaping() {
        let value = JSONValue.object([("k\"", .string("a\\b\n\u{01}\u{7F}é")), ("n", .null), ("d", .double(.nan)), ("u", .uint(.max))])
        #expect(String(decoding: value.bytes, as: UTF8.self) == #"{"k\"":"a\\b\n\u0001\u007fé","n":null,"d":null,"u":18446744073709551615}"#)
    }

    @Test("Session id segments follow ^[0-9a-f]{32}(\\.[a-z0-9-]{1,32})?$ exactly", .timeLimit(.minutes(10)))
    func sessionIDs() {
        let hex = "0123456789abcdef0123456789abcdef"
        #expect(SessionPathID(segment: hex)?.route == nil)
        #expect(SessionPathID(segment: hex + ".n-1")?.route == "n-1")
        #expect(SessionPathID(segment: hex + ".-")?.route == "-")
        #expect(SessionPathID(segment: hex)?.id.hex == hex)
        for bad in [hex.uppercased(), String(hex.dropLast()), hex + "0", hex + ".", hex + ".A", hex + "." + String(repeating: "a", count: 33), ""] {
            #expect(SessionPathID(segment: bad) == nil, "\(bad)")
        }
    }

    @Test("Attribute names percent-decode to valid UTF-8 names or are refused", .timeLimit(.minutes(10)))
    func attributeNames() {
        #expect(AttributePathName.decode("a%2Fb") == "a/b")
        #expect(AttributePathName.decode("%e2%82%ac") == "€")
        #expect(AttributePathName.decode("a+b") == "a+b")
        #expect(AttributePathName.decode("%2E") == ".")
        for bad in ["", ".", "..", "%", "%G0", "%C3", "%0D", String(repeating: "x", count: 257)] {
            #expect(AttributePathName.decode(bad) == nil, "\(bad)")
        }
    }
}
