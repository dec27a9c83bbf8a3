/// A session identifier: 128 bits from a cryptographically secure random source,
/// written as 32 lowercase hexadecimal characters.
///
/// The cookie form is `<id>.<route>`, where the route names the owner; only the hex part
/// identifies the session. Parsing never trusts its input: anything but exactly 32
/// lowercase hex digits (optionally followed by `.` and a valid route) is rejected.
public struct SessionID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The high 64 bits.
    public var high: UInt64
    /// The low 64 bits.
    public var low: UInt64

    /// Creates an identifier from its two halves.
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// A fresh identifier drawn from `generator`. The node passes
    /// `SystemRandomNumberGenerator` (the kernel's CSPRNG); tests pass a seeded one.
    public static func random<G: RandomNumberGenerator>(using generator: inout G) -> SessionID {
        SessionID(high: generator.next(), low: generator.next())
    }

    /// Parses `<32 hex>` or `<32 hex>.<route>`; returns `nil` for anything else.
    public init?(cookieValue: some StringProtocol) {
        let utf8 = Array(cookieValue.utf8)
        guard utf8.count >= 32 else { return nil }
        if utf8.count > 32 {
            guard utf8[32] == UInt8(ascii: "."), NodeName.isValid(utf8[33...], maxLength: 32) else { return nil }
        }
        guard let high = Self.parseHex(utf8[0..<16]), let low = Self.parseHex(utf8[16..<32]) else { return nil }
        self.init(high: high, low: low)
    }

    private static func parseHex(_ bytes: ArraySlice<UInt8>) -> UInt64? {
        var value: UInt64 = 0
        for byte in bytes {
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            default: return nil
            }
            value = value << 4 | UInt64(digit)
        }
        return value
    }

    /// The 32-character lowercase hex form.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8](repeating: 0, count: 32)
        for i in 0..<16 {
            out[i] = digits[Int((high >> UInt64(60 - 4 * i)) & 0xF)]
            out[16 + i] = digits[Int((low >> UInt64(60 - 4 * i)) & 0xF)]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The cookie value `<id>.<route>`.
    public func cookieValue(route: String) -> String { "\(hex).\(route)" }

    public var description: String { hex }

    public static func < (lhs: Self, rhs: Self) -> Bool { (lhs.high, lhs.low) < (rhs.high, rhs.low) }

    /// A well-mixed 64-bit hash that does not depend on the process's hashing seed, used
    /// for shard selection, placement and digests so that every node agrees.
    public var stableHash: UInt64 { mix64(high ^ mix64(low)) }
}

/// SplitMix64 finaliser: a cheap, well-distributed 64-bit mixing function.
@inlinable
public func mix64(_ value: UInt64) -> UInt64 {
    var z = value &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// Node names: `[a-z0-9][a-z0-9-]{0,31}`, as configured; a node's name is its route.
public enum NodeName {
    /// Whether `name` is a valid node name.
    public static func isValid(_ name: String) -> Bool { isValid(Array(name.utf8)[...], maxLength: 32) }

    static func isValid(_ bytes: ArraySlice<UInt8>, maxLength: Int) -> Bool {
        guard let first = bytes.first, bytes.count <= maxLength else { return false }
        guard isLowerAlnum(first) else { return false }
        return bytes.allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: "-") }
    }

    private static func isLowerAlnum(_ b: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b)
    }

    /// A stable 64-bit hash of a name (FNV-1a then mixed), the same on every node.
    public static func stableHash(_ name: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in name.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return mix64(h)
    }
}

/// The per-process identity of a node, fresh at every start so that a restarted node is a
/// new member and never inherits promises made by its predecessor: 128 bits, an ordered
/// part (`start`: the start time in milliseconds, raised by one at each rejoin) and 64
/// random bits (`nonce`), so a later process of a node has a larger id and replaces the
/// earlier one in every member's view, while nobody can guess a live process's id.
/// Ordered by `start`, then `nonce` (two starts within one millisecond order at random).
/// On the wire: `start` then `nonce`, 16 bytes little-endian.
public struct NodeID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The ordered part: the process's start in milliseconds since the epoch (raised by
    /// one at every rejoin). `0` with a `nonce` of `0` is `none`.
    public var start: UInt64
    /// 64 random bits.
    public var nonce: UInt64
    /// An id of `start` and `nonce` (default 0: tests and the `none` placeholder).
    public init(_ start: UInt64, nonce: UInt64 = 0) {
        self.start = start
        self.nonce = nonce
    }
    /// "No process": the placeholder where a message names no process.
    public static let none = NodeID(0)
    public static func < (lhs: Self, rhs: Self) -> Bool { (lhs.start, lhs.nonce) < (rhs.start, rhs.nonce) }
    /// 32 lowercase hex digits: `start`, then `nonce`, each 16 digits.
    public var description: String { Self.hex16(start) + Self.hex16(nonce) }

    /// Parses `description`'s form (exactly 32 hex digits); `nil` otherwise.
    public init?(hex text: some StringProtocol) {
        let utf8 = Array(text.utf8)
        guard utf8.count == 32, utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }),
              let s = UInt64(String(decoding: utf8[0..<16], as: UTF8.self), radix: 16),
              let n = UInt64(String(decoding: utf8[16..<32], as: UTF8.self), radix: 16) else { return nil }
        self.init(s, nonce: n)
    }

    static func hex16(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// A fresh id for a process starting at wall time `start`, its nonce from `random`.
    public static func fresh(start: WallTime, random: UInt64) -> NodeID {
        NodeID(UInt64(max(0, start.milliseconds)), nonce: random)
    }

    /// The id a process takes when it rejoins: ordered above `old`, `floor` (when given)
    /// and `fresh`, with `fresh`'s nonce.
    public static func rejoining(after old: NodeID, above floor: NodeID?, fresh: NodeID) -> NodeID {
        let start = max(old.start &+ 1, fresh.start, (floor?.start ?? 0) &+ 1)
        return NodeID(start, nonce: fresh.nonce)
    }
}

extension ByteWriter {
    /// A node id: `start` then `nonce`.
    @inlinable public mutating func write(_ id: NodeID) {
        write(id.start)
        write(id.nonce)
    }
}

extension ByteReader {
    /// A node id written by `ByteWriter.write(_:)`.
    public mutating func readNodeID(_ field: String) throws(DecodeError) -> NodeID {
        let start = try read(UInt64.self, field)
        return NodeID(start, nonce: try read(UInt64.self, field))
    }
}
