import SessionReplicationCore

/// A validated `{id}` path segment: `<32 lowercase hex>` optionally followed by
/// `.<route>` with a route of 1 to 32 characters from `[a-z0-9-]`.
///
/// The segment is matched as sent, never percent-decoded: `%61` is not `a`.
struct SessionPathID: Hashable, Sendable {
    /// The session the segment names.
    var id: SessionID
    /// The `.route` suffix, when present.
    var route: String?

    /// Parses `segment`; `nil` for anything that does not match
    /// `^[0-9a-f]{32}(\.[a-z0-9-]{1,32})?$`.
    init?(segment: some StringProtocol) {
        let bytes = Array(segment.utf8)
        guard bytes.count >= 32, bytes[..<32].allSatisfy(Self.isLowerHex) else { return nil }
        var route: String?
        if bytes.count > 32 {
            let suffix = bytes[33...]
            guard bytes[32] == UInt8(ascii: "."), (1...32).contains(suffix.count),
                  suffix.allSatisfy(Self.isRouteByte) else { return nil }
            route = String(decoding: suffix, as: UTF8.self)
        }
        guard let id = SessionID(cookieValue: String(decoding: bytes[..<32], as: UTF8.self)) else { return nil }
        self.id = id
        self.route = route
    }

    private static func isLowerHex(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
    }

    private static func isRouteByte(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
            || byte == UInt8(ascii: "-")
    }
}

/// Attribute names as they appear in a path segment.
enum AttributePathName {
    /// Percent-decodes `segment` into a valid attribute name (1 to 256 bytes of UTF-8, no
    /// control characters); `nil` when the encoding is broken (`%` not followed by two hex
    /// digits), the bytes are not UTF-8, the name is invalid, or the raw segment is a dot
    /// segment (`.` or `..`, which conforming clients remove; send `%2E%2E` for the name `..`).
    static func decode(_ segment: some StringProtocol) -> String? {
        if segment == "." || segment == ".." { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(segment.utf8.count)
        var iterator = segment.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else { return nil }
            bytes.append(high << 4 | low)
        }
        guard let name = String(validating: bytes, as: UTF8.self), AttributeName.isValid(name) else { return nil }
        return name
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
