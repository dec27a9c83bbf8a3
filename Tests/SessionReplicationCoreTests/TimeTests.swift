import Testing
@testable import SessionReplicationCore

struct TimeTests {
    /// Whole nanoseconds, truncated toward zero, on both sides of the 64-bit attosecond
    /// range (about 9.2 s) and clamped at the ends of `Int64`.
    @Test func nanosecondsAreTruncatedAndClampedOnEitherSideOfTheShortcut() {
        let cases: [(Duration, Int64)] = [
            (.zero, 0), (.nanoseconds(1), 1), (.nanoseconds(-1), -1), (.milliseconds(1500), 1_500_000_000),
            (.seconds(9), 9_000_000_000), (.seconds(10), 10_000_000_000), (.seconds(-3600), -3_600_000_000_000),
            (.seconds(1) / 3, 333_333_333), (.seconds(-10) / 3, -3_333_333_333), (.seconds(100) / 3, 33_333_333_333),
            (.seconds(Int64.max), .max), (.seconds(Int64.min), .min),
            (.nanoseconds(Int64.max), .max), (.nanoseconds(Int64.min), .min),
        ]
        for (d, expected) in cases {
            #expect(d.nanosecondsClamped == expected, "\(d)")
        }
        #expect(MonotonicInstant(nanoseconds: 5) + .seconds(20) == MonotonicInstant(nanoseconds: 20_000_000_005))
        #expect(MonotonicInstant(nanoseconds: 5) + .seconds(-20) == .zero)
        #expect(MonotonicInstant(nanoseconds: .max - 1) + .seconds(1) == MonotonicInstant(nanoseconds: .max))
    }
}
