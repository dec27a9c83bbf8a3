/// A small deterministic random source (SplitMix64) for protocol decisions that need
/// randomness but no secrecy: probe order, relay choice, push-pull partner. The node
/// seeds it from the system generator; the simulator from its seed. Not
/// cryptographically secure: session ids never come from it.
package struct SplitMix64: RandomNumberGenerator, Hashable, Sendable {
    private var state: UInt64

    /// A generator whose whole sequence follows from `seed`.
    package init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
