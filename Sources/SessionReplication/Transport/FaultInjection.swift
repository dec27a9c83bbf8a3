import NIOConcurrencyHelpers
import NIOCore
import SessionReplicationCore

/// A bad fault spec: which part, and what is expected.
public struct FaultSpecError: Error, CustomStringConvertible, Sendable {
    /// The problem, naming the offending part of the spec.
    public let description: String
}

extension FaultSettings {
    /// Parses `drop=2%,delay=20ms,jitter=5ms,duplicate=5%,reorder=10%,hold=5ms` (any
    /// subset, any order; shares as `N%` from 0 to 100, durations with a unit as in the
    /// config files, up to 10 s). An empty spec or `off` is no faults. Throws
    /// `FaultSpecError` naming the first bad part; a key given twice is an error too.
    public init(spec: String) throws(FaultSpecError) {
        self.init()
        let text = spec.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.isEmpty || text == "off" { return }
        var seen: Set<String> = []
        for part in text.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2, !pair[1].isEmpty else {
                throw FaultSpecError(description: "fault spec: \"\(part)\" is not key=value (keys: drop, delay, jitter, duplicate, reorder, hold)")
            }
            let (key, value) = (pair[0], pair[1])
            guard seen.insert(key).inserted else { throw FaultSpecError(description: "fault spec: \(key) given twice") }
            func share() throws(FaultSpecError) -> Double {
                guard value.hasSuffix("%"), let v = Double(value.dropLast()), (0...100).contains(v) else {
                    throw FaultSpecError(description: "fault spec: \(key)=\(value): expected a share from 0% to 100%")
                }
                return v / 100
            }
            func duration() throws(FaultSpecError) -> Duration {
                guard let d = ConfigSyntax.duration(value), d <= .seconds(10) else {
                    throw FaultSpecError(description: "fault spec: \(key)=\(value): expected a duration with a unit (20ms, 1s), at most 10s")
                }
                return d
            }
            switch key {
            case "drop": drop = try share()
            case "delay": delay = try duration()
            case "jitter": jitter = try duration()
            case "duplicate": duplicate = try share()
            case "reorder": reorder = try share()
            case "hold": reorderHold = try duration()
            default: throw FaultSpecError(description: "fault spec: unknown key \"\(key)\" (keys: drop, delay, jitter, duplicate, reorder, hold)")
            }
        }
    }
}

extension ReplicationNode {
    /// Injects `faults` into this node's outbound replication traffic from now on
    /// (`FaultSettings()` stops injecting); used by `drs node --faults-file` and the
    /// drills. Membership traffic is never touched. Counted in `faultCounts`.
    public func setFaults(_ faults: FaultSettings) {
        faultPlan.withLockedValue { $0.settings = faults }
    }

    /// What is injected now.
    public var faults: FaultSettings { faultPlan.withLockedValue { $0.settings } }

    /// Datagrams dropped, sends delayed, datagrams duplicated and reordered since start.
    public var faultCounts: FaultPlan<SystemRandomNumberGenerator>.Counts { faultPlan.withLockedValue { $0.counts } }

    /// Sends `datagrams` to `address` on `channel`, through the fault plan when one is
    /// active: each datagram leaves after its own delay (or not, or twice).
    func sendDatagrams(_ datagrams: [ByteBuffer], to address: SocketAddress, on channel: any Channel) {
        let planned: [[Duration]]? = faultPlan.withLockedValue { plan in
            guard plan.settings.isActive else { return nil }
            return datagrams.map { _ in plan.datagram() }
        }
        // One hop to the channel's loop for the whole batch (one sendmmsg), not one per
        // datagram. Called on the link's loop, so a peer's datagrams keep their order.
        guard let planned else {
            channel.eventLoop.execute {
                for d in datagrams { channel.write(AddressedEnvelope(remoteAddress: address, data: d), promise: nil) }
                channel.flush()
            }
            return
        }
        for (d, waits) in zip(datagrams, planned) {
            for wait in waits {
                channel.eventLoop.scheduleTask(in: .nanoseconds(wait.nanosecondsClamped)) {
                    channel.writeAndFlush(AddressedEnvelope(remoteAddress: address, data: d), promise: nil)
                }
            }
        }
    }

    /// Writes `stream` on `channel`, after the fault plan's frame delay when one is set.
    func sendStream(_ stream: ByteBuffer, on channel: any Channel) {
        let wait = faultPlan.withLockedValue { $0.settings.isActive ? $0.frame() : .zero }
        guard wait > .zero else { channel.writeAndFlush(stream, promise: nil); return }
        channel.eventLoop.scheduleTask(in: .nanoseconds(wait.nanosecondsClamped)) {
            channel.writeAndFlush(stream, promise: nil)
        }
    }
}
