import Crypto

/// Cluster keys that must never seal a real cluster: every key this repository ever
/// shipped (in `cluster-configs/` and in tests), known to anyone who read it. Kept as
/// SHA-256 digests, never as keys. Off loopback a configuration naming one of them (or a
/// key of one repeated byte) is refused at load; on loopback it only warns.
enum KnownKeys {
    /// Hex SHA-256 digests of the published keys.
    static let digests: Set<String> = [
        "97042af1be9aa240ac25f58f5e96ecaba8fc0cb1d12b8ae5a6afc53b8f8c9ec1",
        "79154ed9ca461d938e254e8411cf01c6e55854470c8419c4723534a63af16fb2",
        "e310251b0603984a7e0809ae562bf35670d306c1000052f9ec9168b58847ab47",
        "7d0232bd94ec61f6e96652cb50d399212735abc0ec05dbb5ea8d15facddc47bc",
        // The fixed key of the loopback tests.
        "ab5f8b5cb9435354c7b58603592d5faf081e17ceb05f7a7c67f4b666f12ca457",
    ]

    /// Whether `key` is published (or trivially guessable: one byte repeated).
    static func isPublished(_ key: [UInt8]) -> Bool {
        if let first = key.first, key.allSatisfy({ $0 == first }) { return true }
        let hex = SHA256.hash(data: key).map { byte in
            let s = String(byte, radix: 16)
            return byte < 16 ? "0" + s : s
        }.joined()
        return digests.contains(hex)
    }
}
