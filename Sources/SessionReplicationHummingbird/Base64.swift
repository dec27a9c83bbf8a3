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
    static func decode(_ text: String) -> [UInt8]? {
        let input = Array(text.utf8)
        guard input.count % 4 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(input.count / 4 * 3)
        var start = 0
        while start < input.count {
            let isLast = start + 4 == input.count
            let quad = input[start..<start + 4]
            let padding = quad.reversed().prefix { $0 == UInt8(ascii: "=") }.count
            guard padding == 0 || (isLast && padding <= 2) else { return nil }
            var sextets: [UInt8] = []
            for byte in quad.dropLast(padding) {
                let value = values[Int(byte)]
                guard value != 0xFF else { return nil }
                sextets.append(value)
            }
            while sextets.count < 4 { sextets.append(0) }
            let bytes = [sextets[0] << 2 | sextets[1] >> 4, sextets[1] << 4 | sextets[2] >> 2, sextets[2] << 6 | sextets[3]]
            if padding == 2, sextets[1] & 0x0F != 0 { return nil }
            if padding == 1, sextets[2] & 0x03 != 0 { return nil }
            out += bytes.prefix(3 - padding)
            start += 4
        }
        return out
    }
}
