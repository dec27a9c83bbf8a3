import SessionReplicationCore
import Testing

@Suite("The fault plan: what a node does to its outbound replication traffic")
struct FaultPlanTests {
    func plan(_ configure: (inout FaultSettings) -> Void) -> FaultPlan<SplitMix64> {
        var settings = FaultSettings()
        configure(&settings)
        return FaultPlan(settings: settings, random: SplitMix64(seed: 42))
    }

    @Test("no faults: every datagram leaves at once, once, and nothing is counted")
    func off() {
        var p = plan { _ in }
        #expect(!p.settings.isActive && p.settings.description == "off")
        for _ in 0..<100 { #expect(p.datagram() == [.zero]) }
        #expect(p.frame() == .zero)
        #expect(p.counts == .init())
    }

    @Test("drop, duplicate and reorder at 100 % do what they say to every datagram")
    func certainties() {
        var drop = plan { $0.drop = 1 }
        #expect((0..<50).allSatisfy { _ in drop.datagram().isEmpty } && drop.counts.dropped == 50)
        var twice = plan { $0.duplicate = 1; $0.delay = .milliseconds(20) }
        #expect((0..<50).allSatisfy { _ in twice.datagram() == [.milliseconds(20), .milliseconds(21)] })
        #expect(twice.counts.duplicated == 50 && twice.counts.delayed == 50)
        var held = plan { $0.reorder = 1; $0.reorderHold = .milliseconds(7) }
        #expect((0..<50).allSatisfy { _ in held.datagram() == [.milliseconds(7)] } && held.counts.reordered == 50)
        #expect(held.frame() == .zero, "TCP frames are never held back or reordered")
    }

    @Test("shares and jitter come out near what was asked, and a seed replays the same decisions")
    func sharesAndJitter() {
        let configure: (inout FaultSettings) -> Void = { $0.drop = 0.1; $0.duplicate = 0.05; $0.delay = .milliseconds(10); $0.jitter = .milliseconds(4) }
        var a = plan(configure), b = plan(configure)
        var dropped = 0, duplicated = 0
        for _ in 0..<10_000 {
            let waits = a.datagram()
            #expect(waits == b.datagram())
            if waits.isEmpty { dropped += 1 }
            if waits.count == 2 { duplicated += 1 }
            #expect(waits.allSatisfy { $0 >= .milliseconds(10) && $0 <= .milliseconds(15) })
        }
        #expect((800...1200).contains(dropped), "\(dropped)")
        #expect((300...600).contains(duplicated), "\(duplicated)")
        #expect(a.frame() == .milliseconds(10))
        #expect(a.settings.description == "drop=10.0%,delay=10.0ms,jitter=4.0ms,duplicate=5.0%")
    }
}
