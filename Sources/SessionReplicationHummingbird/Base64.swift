/// RFC 4648 base64 with padding (the standard alphabet), strict both ways.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    /// The padded encoding of `bytes`.
    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let b0 = bytes[index]
            let b1 = index + 1 < bytes.count ? bytes[index + 1] : 0
            let b2 = index + 2 < bytes.count ? bytes[index + 2] : 0
            out.append(alphabet[Int(b0 >> 2)])
            out.append(alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
            out.append(index + 1 < bytes.count ? alphabet[Int((b1 & 0x0F) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            out.append(index + 2 < bytes.count ? alphabet[Int(b2 & 0x3F)] : UInt8(ascii: "="))
            index += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes padded base64; `nil` for a length not a multiple of 4, a character outside
    /// the alphabet, misplaced padding, or non-zero bits in the padding (non-canonical).
    /// Hand-written because Foundation's decoder is lenient where the API is strict (it
    /// takes `AB=A` and the non-canonical `YR==`); one pass, one allocation.
    static func decode(_ text: String) -> [UInt8]? {
        var text = text
        return text.withUTF8 { input in values.withUnsafeBufferPointer { decode(input, table: $0) } }
    }

    private static func decode(_ input: UnsafeBufferPointer<UInt8>, table: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        let n = input.count
        guard n % 4 == 0 else { return nil }
        guard n > 0 else { return [] }
        let pad = UInt8(ascii: "=")
        let padding = input[n - 1] != pad ? 0 : input[n - 2] != pad ? 1 : 2
        let count = n / 4 * 3 - padding
        var valid = true
        let out = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var i = 0, o = 0
            // Whole quads; `=` is outside the table, so padding anywhere here is refused.
            let whole = padding == 0 ? n : n - 4
            while i < whole {
                let a = table[Int(input[i])], b = table[Int(input[i + 1])]
                let c = table[Int(input[i + 2])], d = table[Int(input[i + 3])]
                // Table values are below 64; 0xFF marks a byte outside the alphabet.
                guard (a | b | c | d) & 0xC0 == 0 else { valid = false; break }
                buffer[o] = a << 2 | b >> 4
                buffer[o + 1] = b << 4 | c >> 2
                buffer[o + 2] = c << 6 | d
                i += 4
                o += 3
            }
            if valid, padding > 0 {
                let a = table[Int(input[i])], b = table[Int(input[i + 1])]
                let c = padding == 1 ? table[Int(input[i + 2])] : 0
                // The bits the padding drops must be zero (one canonical encoding).
                let canonical = padding == 1 ? c & 0x03 == 0 : b & 0x0F == 0
                if (a | b | c) & 0xC0 != 0 || !canonical {
                    valid = false
                } else {
                    buffer[o] = a << 2 | b >> 4
                    if padding == 1 { buffer[o + 1] = b << 4 | c >> 2 }
                }
            }
            initialized = valid ? count : 0
        }
        return valid ? out : nil
    }
}
