/// One frame as the shell hands it over: opened, authenticated and decoded.
package struct InboundFrame: Hashable, Sendable {
    /// The sender's configured name.
    package var senderName: String
    /// The sender's process id.
    package var sender: NodeID
    /// The sender's lane (stream) the data belongs to.
    package var lane: UInt16
    /// Sequence of the first data message.
    package var firstSequence: UInt64
    /// The sender's low watermark: everything below was receipted or abandoned.
    package var lowWatermark: UInt64
    /// Sequenced data messages (sessions' changes), in order.
    package var data: [ReplicationMessage]
    /// Control messages.
    package var control: [ReplicationMessage]
    /// A membership message carried over the stream connection instead.
    package var membership: MembershipMessage?
    /// Offsets (from `firstSequence`) of data messages that did not decode: refused one by
    /// one (their place in `data` holds a stand-in), never the frame around them.
    package var refusedData: [Int] = []

    /// Creates a frame.
    package init(senderName: String, sender: NodeID, lane: UInt16 = 0, firstSequence: UInt64 = 0, lowWatermark: UInt64 = 0,
                data: [ReplicationMessage] = [], control: [ReplicationMessage] = [], membership: MembershipMessage? = nil) {
        self.senderName = senderName
        self.sender = sender
        self.lane = lane
        self.firstSequence = firstSequence
        self.lowWatermark = lowWatermark
        self.data = data
        self.control = control
        self.membership = membership
    }

    /// A frame from a body decoded message by message: each data message that did not
    /// decode keeps its sequence (a stand-in in `data`) and is listed in `refusedData`;
    /// control messages that did not decode are left out.
    package init(senderName: String, sender: NodeID, lane: UInt16, firstSequence: UInt64, lowWatermark: UInt64,
                decoded: FrameBody.Decoded) {
        var data: [ReplicationMessage] = []
        var refused: [Int] = []
        var iterator = decoded.data.makeIterator()
        var next = iterator.next()
        let count = (decoded.data.last?.index ?? -1) + 1
        let bad = Set(decoded.refused.filter(\.sequenced).map(\.index))
        let total = max(count, (bad.max() ?? -1) + 1)
        for i in 0..<total {
            if let n = next, n.index == i {
                data.append(n.message)
                next = iterator.next()
            } else {
                data.append(Self.standIn)
                refused.append(i)
            }
        }
        self.init(senderName: senderName, sender: sender, lane: lane, firstSequence: firstSequence, lowWatermark: lowWatermark,
                  data: data, control: decoded.control.map(\.message))
        refusedData = refused
    }

    /// Holds the place of a data message that did not decode (it names no session, so
    /// nothing applies it).
    static let standIn = ReplicationMessage.release(ReleaseRequest(entries: []))
}

/// Inbound frames, outbound flushes, connections and time.
extension NodeCore {
    /// A frame from a peer. Frames of a process that a later one of the same name
    /// replaced, or of one with a smaller id than the current one, are refused; the first
    /// frame of a new process with a larger id retires the old one (its streams end, and
    /// every session it backed is sent whole again).
    package mutating func receiveFrame(_ frame: InboundFrame, now: MonotonicInstant, wall: WallTime) -> [NodeAction] {
        begin(now, wall)
        guard !stopped else { return [] }
        let name = frame.senderName
        guard peers[name] != nil else { emit(.refused(.unknownSender)); return takeActions() }
        // A process with a smaller id than the current one of that name is an earlier one:
        // a frame it sent before it was replaced, arriving late, or one whose wall clock
        // stepped back at start (membership ignores it until it takes a larger id). It
        // must not retire the current process.
        let earlier = peers[name]!.current.map { frame.sender < $0 } ?? false
        if peers[name]!.refuses(frame.sender) || earlier {
            // Its membership messages still reach membership, which tells a process it
            // holds dead to rejoin (both sides of a healed partition find each other
            // this way); anything else it sends is refused.
            if let m = frame.membership {
                handleMembership(m, from: name, id: frame.sender, reliable: true)
            } else {
                emit(.refused(.retiredProcess))
            }
            return takeActions()
        }
        if let previous = peers[name]!.current, previous != frame.sender {
            // The peer restarted: its old streams are gone for good, and frames of the old
            // process are refused from now on.
            for key in inbound.keys where key.sender == previous { inbound[key] = nil }
            // Receipts queued for the old process's streams would confirm the new one's.
            peers[name]!.receipts = peers[name]!.receipts.filter { $0.value.stream != previous }
            peers[name]!.retired.insert(previous)
            log(.info, "peer restarted; re-sending the sessions it backs", ["drs.peer": name])
            for l in lanes.indices { lanes[l].peerRestarted(name) }
        }
        peers[name]!.current = frame.sender
        nodeCounters.framesReceived += 1
        // A process membership holds dead or left speaks for a process whose sessions failed
        // over: what it sends is refused (its membership messages still reach membership,
        // which tells it to rejoin).
        if frame.membership == nil, let m = membership.member(name), m.id == frame.sender, !m.status.isLive {
            emit(.refused(.deadProcess))
            return takeActions()
        }
        if let m = frame.membership {
            handleMembership(m, from: name, id: frame.sender, reliable: true)
            return takeActions()
        }
        for message in frame.control { handleControl(message, from: name, process: frame.sender) }
        // A frame without data may still move the sender's low watermark (after drops).
        if !frame.data.isEmpty || frame.lowWatermark > 1 {
            let key = StreamKey(sender: frame.sender, lane: frame.lane)
            var lane = inbound.removeValue(forKey: key) ?? InboundLane(senderName: name, lastHeard: now)
            lane.lastHeard = now
            if !frame.refusedData.isEmpty {
                // Each message that did not decode is refused alone: the sender learns it from
                // the receipt and stops resending it; the messages behind it go on.
                nodeCounters.messagesRefused += frame.refusedData.count
                let seqs = frame.refusedData.map { frame.firstSequence + UInt64($0) }.filter { $0 > lane.stream.deliveredThrough }
                lane.refused = Array(Set(lane.refused + seqs)).sorted()
            }
            let d = lane.stream.accept(firstSequence: frame.firstSequence, lowWatermark: frame.lowWatermark, messages: frame.data,
                                       now: now, reorderFrames: settings.policy.reorderFrames, reorderDelay: settings.policy.reorderDelay)
            // Refusals below the sender's low watermark reached it: it moved past them.
            if !lane.refused.isEmpty, frame.lowWatermark > 0 { lane.refused.removeAll { $0 < frame.lowWatermark } }
            deliver(d, into: &lane, key: key)
            inbound[key] = lane
        }
        return takeActions()
    }

    mutating func handleControl(_ message: ReplicationMessage, from name: String, process: NodeID) {
        switch message {
        case .receipt(let r) where Int(r.lane) < lanes.count:
            // A receipt about another process's stream (this node's predecessor's, queued
            // while it restarted) confirms nothing here.
            guard r.stream == id else { nodeCounters.foreignReceipts += 1; return }
            let l = Int(r.lane)
            let o = lanes[l].onReceipt(from: name, r, now: now, datagram: settings.datagram)
            completeWaits(lane: l, o.completed)
            if !o.givenUp.isEmpty {
                log(.warning, "a backup keeps refusing sessions' changes: no longer resent to it; the sessions are under-replicated",
                    ["drs.peer": name, "drs.sessions": o.givenUp.prefix(5).map { "\($0)" }.joined(separator: ","), "drs.count": "\(o.givenUp.count)"])
            }
            if !o.resend.isEmpty {
                emit(.send(peer: name, Transmission(speaker: id, batches: o.resend.map { LaneBatch(lane: r.lane, batch: $0) })))
            }
            recheckParked()
        case .resync(let r) where Int(r.lane) < lanes.count:
            lanes[Int(r.lane)].onResync(from: name, entries: r.entries, now: now)
            flushPending(lane: Int(r.lane))
        case .prepare(let p):
            // Only a taker held alive: a dead process's takeover is void.
            if isAlive(name, process: process) {
                nodeCounters.prepareEntriesIn += p.entries.count
                onPrepare(p, from: name, process: process)
            } else {
                nodeCounters.prepareEntriesIgnored += p.entries.count
            }
        case .promise(let p):
            nodeCounters.promiseEntriesIn += p.entries.count
            onPromise(p, from: name, process: process)
        case .nominate(let p):
            // Only a holder held alive: a dead process's nomination is void.
            if isAlive(name, process: process) { onNominate(p, from: name) }
        case .handover(let h):
            onHandover(h, from: name, process: process)
        case .handoverReply(let h):
            onHandoverReply(h, from: name, process: process)
        case .digest(let d):
            onDigest(d, from: name)
        case .digestReply(let d) where Int(d.lane) < lanes.count:
            let l = Int(d.lane)
            let release = lanes[l].onDigestReply(from: name, d, now: now)
            flushPending(lane: l)
            if !release.isEmpty { sendControl(.release(ReleaseRequest(entries: release)), to: name) }
        case .release(let r):
            var byLane: [Int: [DigestReply.Entry]] = [:]
            for e in r.entries { byLane[lane(of: e.id), default: []].append(e) }
            for (l, part) in byLane.sorted(by: { $0.key < $1.key }) { lanes[l].release(part, from: name) }
        default:
            emit(.refused(.malformed))
        }
    }

    /// Applies delivered messages and queues the receipt (and resync requests) for the
    /// sender, in stream order.
    mutating func deliver(_ d: InboundStream.Delivery, into lane: inout InboundLane, key: StreamKey) {
        let streamLane = key.lane
        var newResyncs = 0
        for (seq, message) in d.messages {
            guard let sid = message.sessionID else { continue }
            let l = self.lane(of: sid)
            let wasOwner = verbose && lanes[l].ownership(of: sid) != nil
            let outcome = lanes[l].apply(message, from: lane.senderName, process: key.sender, now: now)
            if wasOwner, lanes[l].ownership(of: sid) == nil { debug("\(sid) passivated by \(lane.senderName)/\(key.sender) seq \(seq): \(message)".prefix(300).description) }
            if outcome == .fenced { lane.refused.append(seq) }
            switch (outcome, message) {
            case (.needsResync, _):
                lane.stream.needsResync(sid, sequence: seq, now: now)
                newResyncs += 1
            case (_, .full), (_, .invalidate):
                lane.stream.resolved(sid)
            default:
                break
            }
            if reportsBackupApplies, outcome == .applied, case .backup(let s)? = lanes[l].copy(of: sid) { emit(.backupApplied(s)) }
        }
        if newResyncs > 0 { lanes[0].noteResyncRequested(newResyncs) }
        let resync = lane.stream.pendingResyncs(now: now)
        nodeCounters.duplicateMessages += d.duplicates
        nodeCounters.skippedSequences += Int(d.skipped)
        let peer = lane.senderName
        guard peers[peer] != nil else { return }
        let held = lane.stream.buffered > 0 ? lane.stream.heldRanges() : []
        let through = lane.stream.deliveredThrough
        addReceipt(to: peer, Receipt(lane: streamLane, through: through, received: held,
                                     refused: Array(lane.refused.filter { $0 <= through }.suffix(Receipt.maxRefused)), stream: key.sender),
                   resync: resync)
        if settings.datagram && resync.isEmpty && !d.reportGap {
            // Over UDP a receipt waits up to 1 ms so that one covers many datagrams. Over
            // TCP it goes at once: synchronous writes wait on it.
            emit(.flush(peer: peer, delay: .milliseconds(1)))
        } else {
            requestFlush(peer)
        }
    }

    /// Keeps the newest receipt per lane for `peer`, with its resyncs.
    mutating func addReceipt(to peer: String, _ receipt: Receipt, resync: [ResyncRequest.Entry]) {
        let lane = receipt.lane
        if let old = peers[peer]!.receipts[lane], old.stream == receipt.stream, old.through > receipt.through { return }
        peers[peer]!.receipts[lane] = receipt
        peers[peer]!.resyncs[lane] = resync.isEmpty ? nil : resync
    }

    /// The shell may send to `peer` now: every never-sent data batch of every lane and,
    /// when the stream connection is up (or the transport is UDP), the queued control
    /// messages (which otherwise wait for a connection rather than being lost).
    package mutating func flush(_ peer: String, now: MonotonicInstant, wall: WallTime, streamConnected: Bool) -> [NodeAction] {
        begin(now, wall)
        guard !stopped, peers[peer] != nil else { return [] }
        var t = Transmission(speaker: id)
        for l in lanes.indices {
            for b in lanes[l].takeBatches(for: peer, now: now, datagram: settings.datagram) {
                t.batches.append(LaneBatch(lane: UInt16(l), batch: b))
            }
        }
        if settings.datagram || streamConnected {
            t.control = takeControl(peer)
        } else if peers[peer]!.hasControl {
            nodeCounters.flushesWithoutConnection += 1
        }
        if !t.isEmpty { emit(.send(peer: peer, t)) }
        return takeActions()
    }

    mutating func takeControl(_ peer: String) -> [ReplicationMessage] {
        var p = peers[peer]!
        var out = p.control
        p.control = []
        for lane in p.resyncs.keys.sorted() { out.append(.resync(ResyncRequest(lane: lane, entries: p.resyncs[lane]!))) }
        for lane in p.receipts.keys.sorted() { out.append(.receipt(p.receipts[lane]!)) }
        p.receipts = [:]
        p.resyncs = [:]
        peers[peer] = p
        return out
    }

    /// The stream connection to `peer` came up or went down. Over TCP, what was in
    /// flight on a lost connection is resent at once when a new one is up.
    package mutating func connectionChanged(_ peer: String, connected up: Bool, now: MonotonicInstant, wall: WallTime) -> [NodeAction] {
        begin(now, wall)
        guard !stopped, peers[peer] != nil else { return [] }
        if up { connected.insert(peer) } else { connected.remove(peer) }
        if up { nodeCounters.connectionsUp += 1 } else { nodeCounters.connectionsDown += 1 }
        refreshReachability(peer)
        if up {
            var t = Transmission(speaker: id)
            if !settings.datagram {
                for l in lanes.indices {
                    for b in lanes[l].resendInFlight(to: peer, now: now, datagram: false) { t.batches.append(LaneBatch(lane: UInt16(l), batch: b)) }
                }
            }
            if !t.isEmpty { emit(.send(peer: peer, t)) }
            requestFlush(peer)
        }
        return takeActions()
    }

    /// The earliest instant `tick` has work.
    package var nextDeadline: MonotonicInstant {
        var d = min(membership.nextDeadline, leases.nextDeadline, nextShardTick)
        for until in parked.values { d = min(d, until) }
        for r in searching {
            if let i = requests.index(forKey: r), let t = requests.values[i].searchTimes { d = min(d, t.roundEnds ?? t.resumeAt ?? d) }
        }
        return d
    }

    /// Runs due timers: membership probes, lease requests, the shards' retries, waits,
    /// expiry and repair, gap reports, takeover searches, requests waiting on leases, and
    /// a drain in progress. `tickInterval` is how often the shards' timers run.
    package mutating func tick(now: MonotonicInstant, wall: WallTime, tickInterval: Duration = NodeCore.shardTick) -> [NodeAction] {
        begin(now, wall)
        guard !stopped else { return [] }
        if now >= membership.nextDeadline {
            membership.tick(now: now)
            performMembershipOutput()
        }
        checkAbsence()
        // (The live names are listed only when requests are due: listing them sorted every
        // tick cost the simulator about 2 % of its time.)
        if now >= leases.nextDeadline {
            for r in leases.requests(to: membership.liveNames, now: now) {
                emit(.sendMembership(MembershipOutgoing(to: r.peer, message: .leaseRequest(sequence: r.sequence), reliable: false), speaker: id))
            }
        }
        if now >= nextShardTick {
            nextShardTick = now + tickInterval
            tickShards()
        }
        tickSearches()
        recheckParked()
        // Only drains run here, found without copying every pending request.
        for r in drainRequests.sorted() {
            if requests[r] == nil { drainRequests.remove(r) } else { runDrain(r) }
        }
        drainAgain()
        return takeActions()
    }

    /// Live peers that granted this node no lease for `4 x lease` are cut off from it:
    /// its sessions are placed elsewhere rather than fenced while the cut lasts.
    mutating func checkCutOff() {
        // Runs every shard tick: no sorting or set building while every lease is current
        // (each entry is set on its own, so the order of the walks does not matter).
        for peer in livePeers {
            if let until = leases.grantedUntil[peer], until > now {
                if leaseLostAt[peer] != nil { leaseLostAt[peer] = nil }
            } else if leaseLostAt[peer] == nil {
                leaseLostAt[peer] = now
            }
        }
        guard !leaseLostAt.isEmpty || !cutOff.isEmpty else { return }
        for peer in Array(leaseLostAt.keys) where !livePeers.contains(peer) { leaseLostAt[peer] = nil }
        let cut = Set(leaseLostAt.filter { now - $0.value >= settings.lease * 4 }.keys)
        guard cut != cutOff else { return }
        let newly = cut.subtracting(cutOff)
        cutOff = cut
        guard !newly.isEmpty else { return }
        var moved = 0
        for l in lanes.indices {
            moved += lanes[l].replaceCutOff(cut, now: now)
            flushPending(lane: l)
        }
        log(.warning, "members alive but granting no lease (a cut link?): their sessions placed elsewhere",
            ["drs.peers": cut.sorted().joined(separator: ","), "drs.moved": "\(moved)"])
    }

    mutating func tickShards() {
        checkCutOff()
        // Peers with a live connection get no timed resends over TCP: it delivers in
        // order, and everything in flight is resent when a connection is re-established.
        let reliable: Set<String> = settings.datagram ? [] : connected
        var resend: [String: [LaneBatch]] = [:]
        for l in lanes.indices {
            let o = lanes[l].tick(now: now, wall: wall, datagram: settings.datagram, reliable: reliable)
            for (peer, batches) in o.resend { resend[peer, default: []] += batches.map { LaneBatch(lane: UInt16(l), batch: $0) } }
            completeWaits(lane: l, o.completed)
            flushPending(lane: l)
            if verbose, !o.promoted.isEmpty {
                let lane = lanes[l]
                debug("promoted \(o.promoted.map { "\($0) as \(lane.copy(of: $0).map { "\($0)" } ?? "-")" })")
            }
            for (peer, request) in o.digests { sendControl(.digest(request), to: peer) }
            for (peer, request) in o.prepares { sendControl(.prepare(request), to: peer) }
            for (peer, taker, reply) in o.handovers where isAlive(peer, process: taker) { sendControl(.handoverReply(reply), to: peer) }
        }
        for (peer, batches) in resend.sorted(by: { $0.key < $1.key }) {
            emit(.send(peer: peer, Transmission(speaker: id, batches: batches)))
        }
        // Streams of senders silent for a minute are forgotten (a peer that never came
        // back); should it return, its next frame's low watermark starts a new one.
        let idle = now + (.zero - .seconds(60))
        if idle > .zero { for (key, lane) in inbound where lane.lastHeard < idle { inbound[key] = nil } }
        // Gaps that waited out the reorder delay.
        for key in inbound.keys.sorted(by: { ($0.sender, $0.lane) < ($1.sender, $1.lane) }) {
            var lane = inbound[key]!
            let d = lane.stream.tick(now: now, reorderDelay: settings.policy.reorderDelay)
            if d.reportGap { deliver(d, into: &lane, key: key) }
            inbound[key] = lane
        }
    }

    /// An owner's anti-entropy digests for one of its lanes: this node computes the same
    /// digests over the copies it holds of that owner's sessions and, when buckets
    /// differ, answers with them and what it holds there.
    mutating func onDigest(_ request: DigestRequest, from owner: String) {
        var mine = [UInt64](repeating: 0, count: DigestRequest.bucketCount)
        let count = Int(request.lanes), l = Int(request.lane)
        if count == lanes.count, lanes.indices.contains(l) {
            // The owner's lane `l` is this node's shard `l`, whose digests are kept.
            mine = lanes[l].backupDigests(of: owner)
        } else {
            for i in lanes.indices { lanes[i].addDigests(owner: owner, lanes: count, lane: l, into: &mine) }
        }
        let differing = (0..<DigestRequest.bucketCount).filter { mine[$0] != request.buckets[$0] }
        guard !differing.isEmpty else { return }
        let buckets = Set(differing)
        var held: [DigestReply.Entry] = []
        for i in lanes.indices { held += lanes[i].heldEntries(owner: owner, lanes: count, lane: l, buckets: buckets) }
        sendControl(.digestReply(DigestReply(round: request.round, lane: request.lane, buckets: differing.map { UInt16($0) }, held: held)), to: owner)
    }
}
