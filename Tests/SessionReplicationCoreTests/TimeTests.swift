import Testing
@testable import SessionReplicationCore
import SessionReplicationTestKit

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
        // At the shortcut's edge (2^63 - 1 attoseconds, about 9.22 s) and just past it, and
        // negative non-whole values on the 128-bit path.
        let edge = Duration(secondsComponent: 9, attosecondsComponent: 223_372_036_854_775_807)
        #expect(edge.nanosecondsClamped == 9_223_372_036)
        #expect((.zero - edge).nanosecondsClamped == -9_223_372_036)
        #expect((edge + Duration(secondsComponent: 0, attosecondsComponent: 1)).nanosecondsClamped == 9_223_372_036)
        #expect((Duration.seconds(-100) / 3).nanosecondsClamped == -33_333_333_333)
        // Against the whole-seconds-and-attoseconds arithmetic, for values either side.
        var rng = SeededGenerator(seed: 42)
        for _ in 0..<10_000 {
            let d = Duration(secondsComponent: Int64.random(in: -30...30, using: &rng),
                             attosecondsComponent: Int64.random(in: -999_999_999_999_999_999...999_999_999_999_999_999, using: &rng))
            let (s, a) = d.components
            #expect(d.nanosecondsClamped == s * 1_000_000_000 + a / 1_000_000_000, "\(d)")
        }
        #expect(MonotonicInstant(nanoseconds: 5) + .seconds(20) == MonotonicInstant(nanoseconds: 20_000_000_005))
        #expect(MonotonicInstant(nanoseconds: 5) + .seconds(-20) == .zero)
        #expect(MonotonicInstant(nanoseconds: .max - 1) + .seconds(1) == MonotonicInstant(nanoseconds: .max))
    }
}
