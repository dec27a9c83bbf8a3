/// The receiver side of one replication stream (one sender process, one lane): delivers
/// data messages in sequence order and drops duplicates. Out-of-order messages are held;
/// a gap that outlives the reorder window (`reorderFrames` frames or `reorderDelay`) is
/// reported to the sender (a receipt with the ranges held), which resends what is
/// missing. The receiver skips a gap only when the sender says it abandoned those
/// sequences (its low watermark), or when more than `maxHeld` messages wait (a bound
/// against a hostile sender).
package struct InboundStream: Sendable {
    /// Highest sequence delivered or skipped, contiguously.
    package private(set) var deliveredThrough: UInt64 = 0
    private var pending: [UInt64: ReplicationMessage] = [:]
    private var framesSinceGap = 0
    private var gapReportedAt: MonotonicInstant?
    private var gapSince: MonotonicInstant?
    /// Most out-of-order messages held before a gap is skipped. Default 65,536.
    package var maxHeld = 65_536
    private var unresolved: [SessionID: (sequence: UInt64, since: MonotonicInstant)] = [:]
    /// How long a resync request is repeated before it is given up. Default 30 s.
    package static let resyncPatience: Duration = .seconds(30)
    /// Most resync requests repeated at once. Default 1,024.
    package static let maxUnresolved = 1024

    /// Records that the message at `sequence` for `id` could not be applied: the request
    /// for the whole session is repeated with every receipt until `resolved(_:)`. A
    /// receipt without it could otherwise confirm a change this backup never applied.
    package mutating func needsResync(_ id: SessionID, sequence: UInt64, now: MonotonicInstant) {
        if unresolved[id] == nil, unresolved.count >= Self.maxUnresolved { return }
        unresolved[id] = (unresolved[id].map { max($0.sequence, sequence) } ?? sequence, unresolved[id]?.since ?? now)
    }

    /// A whole session or an invalidation for `id` was applied (or found stale).
    package mutating func resolved(_ id: SessionID) { unresolved[id] = nil }

    /// The resync requests to repeat now, oldest session first; forgets those older
    /// than `resyncPatience` (the owner no longer has them).
    package mutating func pendingResyncs(now: MonotonicInstant) -> [ResyncRequest.Entry] {
        guard !unresolved.isEmpty else { return [] }
        unresolved = unresolved.filter { now - $0.value.since < Self.resyncPatience }
        return unresolved.sorted { $0.key < $1.key }.map { .init(sequence: $0.value.sequence, id: $0.key) }
    }

    /// Creates a stream that expects sequence 1 next.
    package init() {}

    /// Out-of-order messages held.
    package var buffered: Int { pending.count }

    /// What accepting a frame produced.
    package struct Delivery: Sendable {
        /// Messages to apply, in order, with their sequences.
        package var messages: [(sequence: UInt64, message: ReplicationMessage)] = []
        /// Duplicate messages ignored.
        package var duplicates = 0
        /// Sequences skipped (abandoned by the sender, or beyond `maxHeld`).
        package var skipped: UInt64 = 0
        /// Whether a receipt with the held ranges should go out now (a gap verdict).
        package var reportGap = false
    }

    /// The held ranges above `deliveredThrough`, ascending, at most `limit`.
    package func heldRanges(limit: Int = Receipt.maxRanges) -> [ClosedRange<UInt64>] {
        var ranges: [ClosedRange<UInt64>] = []
        for seq in pending.keys.sorted() {
            if let last = ranges.last, last.upperBound + 1 == seq {
                ranges[ranges.count - 1] = last.lowerBound...seq
            } else {
                if ranges.count == limit { break }
                ranges.append(seq...seq)
            }
        }
        return ranges
    }

    /// Accepts the data messages of one frame (none for a bare watermark).
    package mutating func accept(firstSequence: UInt64, lowWatermark: UInt64, messages: [ReplicationMessage],
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
        drain(into: &d)
        if !pending.isEmpty {
            if gapSince == nil { gapSince = now }
            if stored { framesSinceGap += 1 }
            if framesSinceGap > reorderFrames || now - gapSince! >= reorderDelay { reportIfDue(&d, now: now, reorderDelay: reorderDelay) }
            if pending.count > maxHeld { skipGap(into: &d, now: now) }
        }
        return d
    }

    /// Reports a gap that has waited longer than `reorderDelay` (again every
    /// `reorderDelay` while it lasts).
    package mutating func tick(now: MonotonicInstant, reorderDelay: Duration) -> Delivery {
        var d = Delivery()
        if let since = gapSince, now - since >= reorderDelay { reportIfDue(&d, now: now, reorderDelay: reorderDelay) }
        return d
    }

    private mutating func reportIfDue(_ d: inout Delivery, now: MonotonicInstant, reorderDelay: Duration) {
        if let last = gapReportedAt, now - last < reorderDelay { return }
        gapReportedAt = now
        d.reportGap = true
    }

    private mutating func drain(into d: inout Delivery) {
        let before = deliveredThrough
        while let m = pending.removeValue(forKey: deliveredThrough + 1) {
            deliveredThrough += 1
            d.messages.append((deliveredThrough, m))
        }
        if pending.isEmpty {
            gapSince = nil
            gapReportedAt = nil
            framesSinceGap = 0
        } else if deliveredThrough != before {
            // Progress: the remaining gap is a new one.
            gapSince = nil
            framesSinceGap = 0
        }
    }

    private mutating func skipGap(into d: inout Delivery, now: MonotonicInstant) {
        guard let next = pending.keys.min() else { return }
        d.skipped += next - 1 - deliveredThrough
        deliveredThrough = next - 1
        drain(into: &d)
        if !pending.isEmpty { gapSince = now }
    }
}
