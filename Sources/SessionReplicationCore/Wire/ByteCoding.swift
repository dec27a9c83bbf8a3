/// Why a buffer could not be decoded. Every case is dropped and counted by the node.
package enum DecodeError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The buffer ended before a field of `field` was complete.
    case truncated(field: String)
    /// A length or count exceeded its limit.
    case tooLarge(field: String, limit: Int, found: Int)
    /// A field held a value outside its domain.
    case invalid(field: String)
    /// The magic bytes did not match.
    case badMagic
    /// The protocol version is not one this node speaks.
    case unsupportedVersion(UInt8)
    /// Bytes were left over after the last field.
    case trailingBytes(Int)

    package var description: String {
        switch self {
        case .truncated(let f): return "truncated at \(f)"
        case .tooLarge(let f, let limit, let found): return "\(f) too large: \(found) > \(limit)"
        case .invalid(let f): return "invalid \(f)"
        case .badMagic: return "bad magic"
        case .unsupportedVersion(let v): return "unsupported protocol version \(v)"
        case .trailingBytes(let n): return "\(n) trailing bytes"
        }
    }

    /// A short stable label for metrics (`reason` dimension).
    /// Whether a count or size exceeded its limit.
    package var isTooLarge: Bool { if case .tooLarge = self { true } else { false } }

    package var reason: String {
        switch self {
        case .truncated: return "truncated"
        case .tooLarge: return "oversized"
        case .invalid: return "invalid"
        case .badMagic: return "bad-magic"
        case .unsupportedVersion: return "version"
        case .trailingBytes: return "trailing"
        }
    }
}

/// Appends little-endian fields to a byte array.
package struct ByteWriter: Sendable {
    /// The bytes written so far.
    package var bytes: [UInt8]

    /// Creates a writer, reserving `capacity` bytes.
    package init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Appends `value` little-endian.
    @inlinable package mutating func write<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// A string as a `UInt16` length and UTF-8 bytes.
    package mutating func writeShortString(_ s: String) {
        let utf8 = s.utf8
        write(UInt16(truncatingIfNeeded: utf8.count))
        bytes.append(contentsOf: utf8)
    }

    /// Bytes as a `UInt32` length and the bytes.
    package mutating func writeBlob(_ blob: [UInt8]) {
        write(UInt32(truncatingIfNeeded: blob.count))
        bytes.append(contentsOf: blob)
    }

    /// Raw bytes without a length.
    package mutating func writeRaw(_ raw: some Sequence<UInt8>) { bytes.append(contentsOf: raw) }

    /// Overwrites a `UInt32` at `offset` (for lengths known only afterwards).
    package mutating func patch(_ value: UInt32, at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { raw in
            for i in 0..<4 { bytes[offset + i] = raw[i] }
        }
    }
}

/// Reads little-endian fields from a byte buffer, checking every length against what is
/// left and against the caller's limits. Never traps on hostile input.
package struct ByteReader {
    @usableFromInline let bytes: UnsafeRawBufferPointer
    /// The read position.
    package private(set) var offset: Int

    /// Reads `bytes` from `offset`.
    package init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    /// Bytes not yet read.
    package var remaining: Int { bytes.count - offset }

    /// A little-endian integer; throws `truncated(field:)` when too few bytes remain.
    package mutating func read<T: FixedWidthInteger>(_: T.Type, _ field: String) throws(DecodeError) -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw .truncated(field: field) }
        var value: T = 0
        withUnsafeMutableBytes(of: &value) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + size]))
        }
        offset += size
        return T(littleEndian: value)
    }

    /// `count` raw bytes.
    package mutating func readBytes(_ count: Int, _ field: String) throws(DecodeError) -> [UInt8] {
        guard count >= 0, remaining >= count else { throw .truncated(field: field) }
        let out = [UInt8](UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count]))
        offset += count
        return out
    }

    /// A `UInt16`-length UTF-8 string of at most `maxBytes` bytes; invalid UTF-8 throws.
    package mutating func readShortString(_ field: String, maxBytes: Int) throws(DecodeError) -> String {
        let count = Int(try read(UInt16.self, field))
        guard count <= maxBytes else { throw .tooLarge(field: field, limit: maxBytes, found: count) }
        guard remaining >= count else { throw .truncated(field: field) }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count])
        guard let s = String(validating: slice, as: UTF8.self) else { throw .invalid(field: field) }
        offset += count
        return s
    }

    /// A `UInt32`-length blob of at most `maxBytes` bytes.
    package mutating func readBlob(_ field: String, maxBytes: Int) throws(DecodeError) -> [UInt8] {
        let count = Int(try read(UInt32.self, field))
        guard count <= maxBytes else { throw .tooLarge(field: field, limit: maxBytes, found: count) }
        return try readBytes(count, field)
    }

    /// A reader over the next `count` bytes alone (its offsets start at 0), moving this
    /// reader past them; throws `truncated(field:)` when fewer remain. A decoder that
    /// fails inside the returned reader leaves this one at the next field.
    package mutating func take(_ count: Int, _ field: String) throws(DecodeError) -> ByteReader {
        guard count >= 0, remaining >= count else { throw .truncated(field: field) }
        let sub = ByteReader(UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count]))
        offset += count
        return sub
    }

    /// Skips `count` bytes.
    package mutating func skip(_ count: Int, _ field: String) throws(DecodeError) {
        guard count >= 0, remaining >= count else { throw .truncated(field: field) }
        offset += count
    }
}
