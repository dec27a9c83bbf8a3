import DequeModule

/// One data message queued on a replication stream.
package struct OutboundEntry: Sendable {
    /// Its stream sequence number.
    package var sequence: UInt64
    /// The encoded message.
    package var bytes: [UInt8]
    /// The session it is about.
    package var session: SessionID
    /// Whether it must be receipted in every mode (invalidations): never dropped after
    /// `retryCount`.
    package var mustDeliver: Bool
    /// When it was last transmitted; `nil` before the first transmission.
    package var sentAt: MonotonicInstant?
    /// When it was first transmitted; `nil` before.
    package var firstSentAt: MonotonicInstant?
    /// Whether the receiver reported holding it (out of order).
    package var held = false
    /// Transmissions so far.
    package var attempts: Int
}

/// A batch of consecutive data messages ready to be framed and sent.
package struct OutboundBatch: Hashable, Sendable {
    /// Sequence of the first message.
    package var firstSequence: UInt64
    /// Every sequence below this is receipted or abandoned.
    package var lowWatermark: UInt64
    /// The encoded messages, in sequence order.
    package var messages: [[UInt8]]
    /// Their total size.
    package var byteCount: Int
}

/// The sender side of one replication stream (this node to one peer, one lane):
/// sequence numbers, the unreceipted tail, retries and the bounded queue.
///
/// Overflow policy: when queued bytes exceed the limit, best-effort drops the oldest
/// droppable message (its session is marked for repair; writers wait on a smaller
/// backlog first, `ReplicaShard.checkBacklog`); in the other modes the shard
/// refuses new writes while `queuedBytes` is over the limit (the writer waits, then fails
/// with `overloaded`, nothing applied).
package struct OutboundStream: Sendable {
    /// Unreceipted messages in sequence order; the first `sentCount` were transmitted.
    package private(set) var entries: Deque<OutboundEntry> = []
    private(set) var sentCount = 0
    /// The next sequence number to assign.
    package private(set) var nextSequence: UInt64 = 1
    /// The highest cumulative receipt.
    package private(set) var receiptedThrough: UInt64 = 0
    /// Bytes of queued messages.
    package private(set) var queuedBytes = 0
    private var tokens: Double = 0
    private var tokensAt: MonotonicInstant?
    /// No transmitted entry was sent before this (a lower bound), so a retry pass can
    /// return at once until `retryInterval` after it.
    private var earliestSent: MonotonicInstant?
    private var lastProbe: MonotonicInstant?
    private var lastProgress: MonotonicInstant?
    private var latencies: [Duration] = []
    private var latencyNext = 0
    /// Send-to-receipt samples kept for `receiptLatencyP99`. Default 512.
    package static let latencySamples = 512
    private var heldCount = 0

    /// Creates an empty stream.
    package init() {}

    /// Creates an empty stream whose first sequence is `first` (at least 1): a stream that
    /// replaces an earlier one to the same peer continues its numbering, so a receiver
    /// that still holds the earlier stream's position never takes the new messages for
    /// duplicates (the first frame's low watermark moves it past the old ones).
    package init(startingAt first: UInt64) {
        nextSequence = max(1, first)
        receiptedThrough = nextSequence - 1
    }

    /// Every sequence below this is receipted or abandoned.
    package var lowWatermark: UInt64 { entries.first?.sequence ?? nextSequence }

    /// Messages transmitted and not yet receipted.
    package var inFlight: Int { sentCount }

    /// Messages queued and never transmitted.
    package var unsent: Int { entries.count - sentCount }

    /// Appends a message and returns its sequence.
    package mutating func enqueue(_ bytes: [UInt8], session: SessionID, mustDeliver: Bool) -> UInt64 {
        let seq = nextSequence
        nextSequence += 1
        entries.append(OutboundEntry(sequence: seq, bytes: bytes, session: session, mustDeliver: mustDeliver, sentAt: nil, firstSentAt: nil, attempts: 0))
        queuedBytes += bytes.count
        return seq
    }

    private var unreported: [Duration] = []

    /// Send-to-receipt samples since the last call (at most 4,096), for a histogram.
    package mutating func takeLatencySamples() -> [Duration] {
        defer { unreported.removeAll(keepingCapacity: true) }
        return unreported
    }

    private mutating func recordLatency(_ d: Duration) {
        if unreported.count < 4096 { unreported.append(d) }
        if latencies.count < Self.latencySamples {
            latencies.append(d)
        } else {
            latencies[latencyNext] = d
            latencyNext = (latencyNext + 1) % Self.latencySamples
        }
    }

    /// The 99th percentile of the last `latencySamples` send-to-receipt times; `nil`
    /// before the first receipt.
    package var receiptLatencyP99: Duration? {
        guard !latencies.isEmpty else { return nil }
        let sorted = latencies.sorted()
        return sorted[min(sorted.count - 1, sorted.count * 99 / 100)]
    }

    /// Forgets everything the receiver reported holding (it restarted): in-flight
    /// messages become eligible for retransmission again.
    package mutating func receiverRestarted() {
        for j in 0..<sentCount { entries[j].held = false }
        heldCount = 0
        lastProbe = nil
    }

    /// Drops the oldest droppable messages while over `limit` bytes; returns the sessions
    /// whose messages were dropped.
    package mutating func shed(toFit limit: Int) -> [SessionID] {
        var dropped: [SessionID] = []
        var i = 0
        while queuedBytes > limit, i < entries.count {
            if entries[i].mustDeliver { i += 1; continue }
            dropped.append(remove(at: i).session)
        }
        return dropped
    }

    /// Removes the entry at `index`, keeping `sentCount` consistent.
    mutating func remove(at index: Int) -> OutboundEntry {
        let e = entries.remove(at: index)
        queuedBytes -= e.bytes.count
        if index < sentCount { sentCount -= 1 }
        return e
    }

    /// Takes never-sent messages as batches of at most `maxBatchBytes` each (one message
    /// may exceed it alone), limited to `window` messages in flight and by a token
    /// bucket of `rate` messages per second (`nil`: unpaced).
    package mutating func takeUnsent(now: MonotonicInstant, maxBatchBytes: Int, window: Int?, rate: Int?) -> [OutboundBatch] {
        var budget = unsent
        if let window { budget = min(budget, max(0, window - sentCount)) }
        if let rate {
            let last = tokensAt ?? now
            tokens = min(Double(rate) / 50, tokens + Double(rate) * Double((now - last).nanosecondsClamped) / 1e9)
            if tokensAt == nil { tokens = Double(rate) / 50 }
            tokensAt = now
            budget = min(budget, Int(tokens))
        }
        guard budget > 0 else { return [] }
        let batches = makeBatches(from: sentCount, count: budget, maxBatchBytes: maxBatchBytes, sentAt: now, countAttempt: true)
        sentCount += budget
        if rate != nil { tokens -= Double(budget) }
        return batches
    }

    /// What a retry pass did.
    package struct RetryOutcome: Sendable {
        /// Batches to transmit again.
        package var batches: [OutboundBatch] = []
        /// Messages resent.
        package var resent = 0
        /// Sessions whose message was dropped after its last retry.
        package var dropped: [SessionID] = []
        /// Whether the low watermark moved (drops): the receiver must be told even if no
        /// data follows.
        package var watermarkMoved = false
    }

    /// The retransmission timer. Like TCP's, it resends only the oldest unreceipted
    /// message when `retryInterval` passed without a receipt for it (resending the whole
    /// window would flood a receiver that is merely slow), plus messages the receiver
    /// reported missing (`held` messages after them) that were not resent within
    /// `retryInterval`. With a `retryLimit` (best-effort), a message still unreceipted
    /// `retryInterval x (retryLimit + 1)` after its first transmission is dropped (the
    /// oldest has then been resent `retryLimit` times); `mustDeliver` messages never are.
    package mutating func retry(now: MonotonicInstant, retryInterval: Duration, retryLimit: Int?, maxBatchBytes: Int) -> RetryOutcome {
        var outcome = RetryOutcome()
        guard let earliest = earliestSent, now - earliest >= retryInterval else { return outcome }
        if let retryLimit {
            let lifetime = retryInterval * (retryLimit + 1)
            let lowBefore = lowWatermark
            var i = 0
            while i < sentCount {
                let e = entries[i]
                if !e.mustDeliver, !e.held, let first = e.firstSentAt, now - first >= lifetime {
                    outcome.dropped.append(remove(at: i).session)
                } else {
                    i += 1
                }
            }
            outcome.watermarkMoved = lowWatermark != lowBefore
        }
        var due: [Int] = []
        let lastHeld = entries.prefix(sentCount).lastIndex { $0.held }
        let head = entries.prefix(sentCount).firstIndex { !$0.held }
        for j in 0..<sentCount where !entries[j].held && (j == head || (lastHeld.map { j < $0 } ?? false)) {
            if let sentAt = entries[j].sentAt, now - sentAt >= retryInterval { due.append(j) }
        }
        outcome.batches = resend(due, now: now, maxBatchBytes: maxBatchBytes)
        outcome.resent = due.count
        recomputeEarliest()
        return outcome
    }

    /// Applies a receipt: removes what it covers cumulatively, marks the ranges the
    /// receiver holds, and returns the missing messages between them (sent at least
    /// `holeDelay` ago and not resent since) to resend at once.
    package mutating func receipt(through: UInt64, held: [ClosedRange<UInt64>], now: MonotonicInstant,
                                 holeDelay: Duration, maxBatchBytes: Int) -> (covered: Int, resend: [OutboundBatch], resent: Int) {
        // Sample the send-to-receipt time of the newest message this receipt covers.
        if through > receiptedThrough, sentCount > 0 {
            var newest: MonotonicInstant?
            for j in 0..<sentCount {
                guard entries[j].sequence <= through else { break }
                newest = entries[j].sentAt ?? newest
            }
            if let sentAt = newest { recordLatency(now - sentAt) }
        }
        let covered = receipt(through: through)
        if covered > 0 { lastProgress = now }
        guard let highest = held.last?.upperBound else {
            // No gap at the receiver: nothing is held there (it may also have restarted).
            if heldCount > 0 { for j in 0..<sentCount { entries[j].held = false }; heldCount = 0 }
            return (covered, [], 0)
        }
        // `held` is soft state: each ranged receipt replaces it.
        var due: [Int] = []
        var r = 0
        heldCount = 0
        for j in 0..<sentCount {
            let seq = entries[j].sequence
            while r < held.count, held[r].upperBound < seq { r += 1 }
            entries[j].held = r < held.count && held[r].contains(seq)
            if entries[j].held {
                heldCount += 1
            } else if seq < highest, let sentAt = entries[j].sentAt, now - sentAt >= holeDelay {
                due.append(j)
            }
        }
        let batches = resend(due, now: now, maxBatchBytes: maxBatchBytes)
        return (covered, batches, due.count)
    }

    private mutating func resend(_ indices: [Int], now: MonotonicInstant, maxBatchBytes: Int) -> [OutboundBatch] {
        var batches: [OutboundBatch] = []
        var k = 0
        while k < indices.count {
            var end = k
            while end + 1 < indices.count, indices[end + 1] == indices[end] + 1 { end += 1 }
            batches += makeBatches(from: indices[k], count: end - k + 1, maxBatchBytes: maxBatchBytes, sentAt: now, countAttempt: true)
            k = end + 1
        }
        return batches
    }

    private mutating func recomputeEarliest() {
        earliestSent = nil
        for j in 0..<sentCount where !entries[j].held {
            if let t = entries[j].sentAt { earliestSent = min(earliestSent ?? t, t) }
        }
    }

    /// On a reliable ordered connection nothing is resent by time; but a receipt can be
    /// lost with a connection in the other direction. When nothing was receipted for
    /// `retryInterval`, this returns the last in-flight message once per interval as a
    /// probe: the receiver ignores the duplicate and repeats its cumulative receipt.
    package mutating func probe(now: MonotonicInstant, retryInterval: Duration) -> OutboundBatch? {
        guard sentCount > 0, let earliest = earliestSent, now - earliest >= retryInterval else { return nil }
        if let last = lastProbe, now - last < retryInterval { return nil }
        if let progress = lastProgress, now - progress < retryInterval { return nil }
        lastProbe = now
        let e = entries[sentCount - 1]
        return OutboundBatch(firstSequence: e.sequence, lowWatermark: lowWatermark, messages: [e.bytes], byteCount: e.bytes.count)
    }

    /// Marks every transmitted message as due now (after a reconnect).
    package mutating func resendAllNow(now: MonotonicInstant, maxBatchBytes: Int) -> [OutboundBatch] {
        guard sentCount > 0 else { return [] }
        return makeBatches(from: 0, count: sentCount, maxBatchBytes: maxBatchBytes, sentAt: now, countAttempt: false)
    }

    /// Applies a cumulative receipt; returns how many messages it newly covered.
    @discardableResult
    package mutating func receipt(through: UInt64) -> Int {
        guard through > receiptedThrough else { return 0 }
        receiptedThrough = min(through, nextSequence - 1)
        lastProbe = nil
        var n = 0
        while let first = entries.first, first.sequence <= receiptedThrough {
            _ = remove(at: 0)
            n += 1
        }
        // `earliestSent` stays a lower bound: recomputing it here would scan everything in
        // flight on every receipt (tens of thousands of messages over TCP).
        return n
    }

    private mutating func makeBatches(from start: Int, count: Int, maxBatchBytes: Int, sentAt: MonotonicInstant, countAttempt: Bool) -> [OutboundBatch] {
        earliestSent = min(earliestSent ?? sentAt, sentAt)
        var batches: [OutboundBatch] = []
        var current: OutboundBatch?
        let low = lowWatermark
        for i in start..<(start + count) {
            entries[i].sentAt = sentAt
            if entries[i].firstSentAt == nil { entries[i].firstSentAt = sentAt }
            if countAttempt { entries[i].attempts += 1 }
            let e = entries[i]
            if var c = current, c.byteCount + e.bytes.count <= maxBatchBytes, c.messages.count < Int(UInt16.max),
               c.firstSequence + UInt64(c.messages.count) == e.sequence {
                c.messages.append(e.bytes)
                c.byteCount += e.bytes.count
                current = c
            } else {
                if let c = current { batches.append(c) }
                current = OutboundBatch(firstSequence: e.sequence, lowWatermark: low, messages: [e.bytes], byteCount: e.bytes.count)
            }
        }
        if let c = current { batches.append(c) }
        return batches
    }
}
