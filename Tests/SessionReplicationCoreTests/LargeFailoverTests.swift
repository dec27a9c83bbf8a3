import Testing
@testable import SessionReplicationCore

/// What a failover of an owner with hundreds of thousands of sessions sends and keeps:
/// control messages in parts and frames a receiver accepts, and promotions queued by id
/// and taken a slice at a time.
struct LargeFailoverTests {
    func entries(_ n: Int) -> [PrepareRequest.Entry] {
        (0..<n).map { .init(id: SessionID(high: 9, low: UInt64($0)), stamp: Stamp(epoch: Epoch(counter: 1, owner: NodeID(1)), version: 1)) }
    }

    @Test func aPrepareAboutMoreSessionsThanAReceiverAcceptsGoesInPartsThatDecodeToTheSameEntries() throws {
        let all = entries(70_000)
        let whole = ReplicationMessage.prepare(PrepareRequest(oldOwner: "n1", oldOwnerID: NodeID(5), entries: all))
        // Whole, the receiver refuses it.
        #expect(throws: DecodeError.self) { try MessageCodec.decode(MessageCodec.encode(whole)) }
        let parts = whole.parts()
        #expect(parts.count == 9)
        var back: [PrepareRequest.Entry] = []
        for p in parts {
            guard case .prepare(let r) = try MessageCodec.decode(MessageCodec.encode(p)) else { Issue.record("not a prepare"); return }
            #expect(r.oldOwner == "n1" && r.oldOwnerID == NodeID(5) && r.entries.count <= ReplicationMessage.maxEntriesPerPart)
            back += r.entries
        }
        #expect(back == all)
        let release = ReplicationMessage.release(ReleaseRequest(entries: Array(all.prefix(10))))
        #expect(release.parts() == [release], "a short message stays whole")
    }

    @Test func promisesSplitByCountAndByTheSizeOfTheStatesTheyCarry() {
        let state = SessionState(id: SessionID(high: 1, low: 1), stamp: Stamp(epoch: Epoch(counter: 1, owner: NodeID(1)), version: 1),
                                 attributes: ["big": [UInt8](repeating: 1, count: 3 << 20)], createdAt: WallTime(milliseconds: 0),
                                 lastAccessedAt: WallTime(milliseconds: 0), maxInactiveInterval: .seconds(60))
        let fat = (0..<3).map { _ in PromiseReply.Entry(id: state.id, fresher: state) }
        let parts = ReplicationMessage.promise(PromiseReply(oldOwner: "n1", sinceGrantMs: 7, entries: fat)).parts()
        #expect(parts.count == 3, "one 3 MiB state per part under the 4 MiB budget")
        let thin = (0..<20_000).map { PromiseReply.Entry(id: SessionID(high: 2, low: UInt64($0)), fresher: nil) }
        let thinParts = ReplicationMessage.promise(PromiseReply(oldOwner: "n1", sinceGrantMs: 7, entries: thin)).parts()
        #expect(thinParts.count == 3)
        var count = 0
        for case .promise(let p) in thinParts { count += p.entries.count; #expect(p.sinceGrantMs == 7) }
        #expect(count == 20_000)
    }

    @Test func controlMessagesOfOneFlushShareFramesEachUnderTheFrameLimit() throws {
        let prepare = ReplicationMessage.prepare(PrepareRequest(oldOwner: "n1", entries: entries(500_000)))
        let t = Transmission(speaker: NodeID(1), control: prepare.parts())
        let frames = t.frames(datagram: false, maxDatagram: 1400)
        #expect(frames.count > 1)
        var decoded = 0
        for f in frames {
            #expect(f.body.count <= Transmission.maxControlFrameBytes + 400_000)
            let body = try f.body.withUnsafeBytes { raw in try FrameBody.decodeEach(raw, limits: WireLimits()) }
            #expect(body.refused.isEmpty)
            for c in body.control { if case .prepare(let r) = c.message { decoded += r.entries.count } }
        }
        #expect(decoded == 500_000)
    }

    @Test func promotionsAreTakenInOrderASliceAtATimeAndOnlyWhenDue() {
        var q = PromotionQueue()
        let t0 = MonotonicInstant(nanoseconds: 1_000_000_000)
        for i in 0..<10 { q.append(SessionID(high: 0, low: UInt64(i)), owner: "n1", after: t0) }
        q.append(SessionID(high: 0, low: 99), owner: "n1", after: t0 + .seconds(5))
        q.remove(SessionID(high: 0, low: 3))
        #expect(q.count == 10 && q.contains(SessionID(high: 0, low: 4)) && !q.contains(SessionID(high: 0, low: 3)))
        #expect(q.takeDue(now: MonotonicInstant(nanoseconds: 999_000_000), limit: 100).isEmpty, "nothing is due before its time")
        let first = q.takeDue(now: t0, limit: 4).map(\.id.low)
        #expect(first == [0, 1, 2, 4])
        let rest = q.takeDue(now: t0, limit: 100).map(\.id.low)
        #expect(rest == [5, 6, 7, 8, 9], "the rest, in order; 99 is not due")
        #expect(q.count == 1)
        #expect(q.takeDue(now: t0 + .seconds(1), limit: 100).isEmpty)
        q.append(SessionID(high: 0, low: 50), owner: "n2", after: t0)
        #expect(q.takeDue(now: t0 + .seconds(1), limit: 100).map(\.id.low) == [50], "a newly queued one that is due goes at once")
        #expect(q.takeDue(now: t0 + .seconds(5), limit: 100).map { "\($0.id.low) \($0.owner)" } == ["99 n1"])
        #expect(q.isEmpty)
    }
}
