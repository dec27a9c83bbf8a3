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

/// The per-process identity of a node: a fresh random 64-bit value at every start, so a
/// restarted node is a new member and never inherits promises made by its predecessor.
public struct NodeID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The raw value.
    public var rawValue: UInt64
    /// Wraps a raw value.
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { String(rawValue, radix: 16) }

    /// A fresh id for a process starting at wall time `start`: the start in milliseconds
    /// in the high bits and 20 random bits below, so a later start of a node has a larger
    /// id and replaces the earlier one in every member's view (two starts within one
    /// millisecond are ordered at random).
    public static func fresh(start: WallTime, random: UInt64) -> NodeID {
        NodeID(UInt64(max(0, start.milliseconds)) << 20 | (random & 0xF_FFFF) | 1)
    }
}
