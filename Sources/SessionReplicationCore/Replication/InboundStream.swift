/// The receiver side of one replication stream (one sender process, one lane): delivers
/// data messages in sequence order, buffers out-of-order frames for a reorder window
/// (`reorderFrames` frames or `reorderDelay`), then skips the gap; duplicates are
/// dropped. Messages of a skipped gap are lost to this stream; the sessions involved
/// recover through resync (their next delta does not apply) and repair.
public struct InboundStream: Sendable {
    /// Highest sequence delivered or skipped, contiguously.
    public private(set) var deliveredThrough: UInt64 = 0
    private var pending: [UInt64: ReplicationMessage] = [:]
    private var pendingFrames = 0
    private var gapSince: MonotonicInstant?

    /// Creates a stream that expects sequence 1 next.
    public init() {}

    /// Out-of-order messages held.
    public var buffered: Int { pending.count }

    /// What accepting a frame produced.
    public struct Delivery: Sendable {
        /// Messages to apply, in order, with their sequences.
        public var messages: [(sequence: UInt64, message: ReplicationMessage)] = []
        /// Duplicate messages ignored.
        public var duplicates = 0
        /// Sequences skipped as a gap.
        public var skipped: UInt64 = 0
    }

    /// Accepts the data messages of one frame.
    public mutating func accept(firstSequence: UInt64, lowWatermark: UInt64, messages: [ReplicationMessage],
                                now: MonotonicInstant, reorderFrames: Int, reorderDelay: Duration) -> Delivery {
        var d = Delivery()
        // The sender abandoned everything below lowWatermark: stop waiting for it.
        if lowWatermark > 0, lowWatermark - 1 > deliveredThrough {
            d.skipped += lowWatermark - 1 - deliveredThrough
            deliveredThrough = lowWatermark - 1
            pending = pending.filter { $0.key > deliveredThrough }
        }
        var stored = false
        for (i, m) in messages.enumerated() {
            let seq = firstSequence + UInt64(i)
            if seq <= deliveredThrough || pending[seq] != nil { d.duplicates += 1; continue }
            pending[seq] = m
            stored = true
        }
        if stored, !pending.isEmpty, pending[deliveredThrough + 1] == nil { pendingFrames += 1 }
        drain(into: &d)
        if !pending.isEmpty {
            if gapSince == nil { gapSince = now }
            if pendingFrames > reorderFrames { skipGap(into: &d, now: now) }
        }
        return d
    }

    /// Skips a gap that has waited longer than `reorderDelay`.
    public mutating func tick(now: MonotonicInstant, reorderDelay: Duration) -> Delivery {
        var d = Delivery()
        if let since = gapSince, now - since >= reorderDelay { skipGap(into: &d, now: now) }
        return d
    }

    private mutating func drain(into d: inout Delivery) {
        while let m = pending.removeValue(forKey: deliveredThrough + 1) {
            deliveredThrough += 1
            d.messages.append((deliveredThrough, m))
        }
        if pending.isEmpty { gapSince = nil; pendingFrames = 0 }
    }

    private mutating func skipGap(into d: inout Delivery, now: MonotonicInstant) {
        guard let next = pending.keys.min() else { return }
        d.skipped += next - 1 - deliveredThrough
        deliveredThrough = next - 1
        pendingFrames = 0
        gapSince = nil
        drain(into: &d)
        if !pending.isEmpty { gapSince = now }
    }
}
