import NIOConcurrencyHelpers
import NIOCore
import SessionReplicationCore

/// Handover requests a node is waiting on: answers collected per request id.
struct HandoverWaits {
    var nextID: UInt64 = 1
    var pending: [UInt64: Pending] = [:]

    struct Pending {
        var expected: Set<String>
        var answers: [String: HandoverReply.Answer] = [:]
        var continuation: CheckedContinuation<[String: HandoverReply.Answer], Never>
    }
}

extension ReplicationNode {
    /// Makes this node the owner of `id` when another node owns it (docs/design.md (Membership and failover),
    /// takeover on request and handover): asks the owner named by this node's backup
    /// copy, or every live member when it holds nothing, follows referrals to the
    /// owner, and adopts the whole state the owner hands over (under a higher epoch).
    /// Returns at once when this node owns `id`.
    ///
    /// Throws `session-not-found` when authoritative (a tombstone here or at a member,
    /// or every live member answered that it holds nothing while none is suspect and
    /// every other configured member is known dead or left);
    /// `misdirected` naming the owner when this node may not take it (`affinity: none`,
    /// a `server` node, or it handed the session away less than `takeoverCooldown`
    /// ago); `session-unavailable` (naming the owner when known) when no owner handed it
    /// over within `handoverTimeout` (the owner is suspect and failover is under way, or
    /// it is fenced); `not-ready` while stopping.
    ///
    /// This is `SessionBackend.takeOver`, which every HTTP session route calls.
    public func takeOver(_ id: SessionID) async throws {
        try await takeOver(id, ignoringCooldown: false)
    }

    /// `takeOver(_:)`; with `ignoringCooldown` it takes the session back even when this
    /// node handed it away less than `takeoverCooldown` ago: for callers that cannot send
    /// the client to the owner (the `PersistDriver` inside an application), where the
    /// cooldown, which stops a load balancer's alternating routes from bouncing a session,
    /// would only turn a write into an error. Throws as `takeOver(_:)`.
    ///
    /// A lookup of an id this node holds nothing of asks every live member; at most
    /// `SearchSlots.limit` (256) such lookups run at once, beyond which it throws
    /// `overloaded` (retry), so a client sending random ids costs the cluster a bounded
    /// number of rounds at a time.
    public func takeOver(_ id: SessionID, ignoringCooldown: Bool) async throws {
        guard copy(of: id) == nil else { return try await search(id, ignoringCooldown: ignoringCooldown) }
        if let limit = searchSlots.withLockedValue({ $0.acquire() }) {
            throw SessionError(.overloaded, "\(limit) lookups of sessions this node holds nothing of are in flight; retry")
        }
        defer { searchSlots.withLockedValue { $0.release() } }
        try await search(id, ignoringCooldown: ignoringCooldown)
    }

    /// The search behind `takeOver(_:ignoringCooldown:)`: carries out the steps of the
    /// core's `TakeoverSearch` (which decides whom to ask, when to wait and when an answer
    /// is final) until it ends.
    private func search(_ id: SessionID, ignoringCooldown: Bool) async throws {
        let policy = configuration.replication
        let settings = TakeoverSearch.Settings(policy: policy, ignoringCooldown: ignoringCooldown)
        var search = TakeoverSearch(id: id, selfName: endpoint.name, settings: settings, handoverTimeout: policy.handoverTimeout, now: now)
        let peers = Array(links.keys)
        var step: TakeoverSearch.Step? = nil
        while true {
            try checkRunning()
            try Task.checkCancellation()
            if step == nil {
                let box = shard(for: id)
                let t = now
                let (held, cooled) = box.withCore { c in
                    (c.searchHeld(id), c.handedAwayRecently(id, now: t, cooldown: policy.takeoverCooldown))
                }
                let hint = held == .nothing && !settings.mayTakeOver ? ownerHints.withLockedValue { $0.owner(of: id, now: t) } : nil
                step = search.next(held: held, handedAwayRecently: cooled, statuses: peerStatuses(), hint: hint, now: t)
            }
            switch step! {
            case .done:
                return
            case .fail(let error):
                if let owner = search.learnedOwner {
                    let t = now
                    ownerHints.withLockedValue { $0.remember(id, owner: owner, now: t) }
                }
                throw error
            case .wait(let pause):
                try await Task.sleep(for: pause)
                step = nil
            case .ask(let targets, let timeout):
                let answers = await askHandover(id, of: targets, timeout: timeout)
                // A handed-over session was adopted as its answer arrived.
                let owns = if case .owner? = copy(of: id) { true } else { false }
                step = search.answered(answers, ownsNow: owns, configuredPeers: peers, now: now)
            }
        }
    }

    /// Whether membership holds `name` alive or suspect under process id `process`
    /// (never dead, left, or an earlier process of that name).
    func isAlive(_ name: String, process: NodeID) -> Bool {
        membership.withLockedValue { m in m.member(name).map { $0.status.isLive && $0.id == process } ?? false }
    }

    /// Each peer's membership status (never this node).
    func peerStatuses() -> [String: MemberStatus] {
        let names = Array(links.keys)
        return membership.withLockedValue { m in
            var out: [String: MemberStatus] = [:]
            for n in names { if let s = m.member(n)?.status { out[n] = s } }
            return out
        }
    }

    /// Sends a `HandoverRequest` for `id` to each of `targets` and returns the answers
    /// that arrived within `timeout` (or as soon as all did).
    func askHandover(_ id: SessionID, of targets: [String], timeout: Duration) async -> [String: HandoverReply.Answer] {
        guard !targets.isEmpty else { return [:] }
        return await withCheckedContinuation { continuation in
            let request = handoverWaits.withLockedValue { w -> UInt64 in
                let r = w.nextID
                w.nextID += 1
                w.pending[r] = HandoverWaits.Pending(expected: Set(targets), continuation: continuation)
                return r
            }
            for peer in targets {
                links[peer]?.addControl(.handover(HandoverRequest(requestID: request, id: id)))
                scheduleFlush(peer)
            }
            group.next().scheduleTask(in: .nanoseconds(timeout.nanosecondsClamped)) { [self] in
                finishHandoverWait(request)
            }
        }
    }

    func finishHandoverWait(_ request: UInt64) {
        guard let p = handoverWaits.withLockedValue({ $0.pending.removeValue(forKey: request) }) else { return }
        p.continuation.resume(returning: p.answers)
    }

    /// Another node asks for a session: the owner waits for the change in progress on
    /// it, checks that it may still serve it (leases), and hands it over; any other
    /// node says what it holds.
    func onHandover(_ request: HandoverRequest, from requester: String, process: NodeID) {
        Task { [self] in
            let id = request.id
            let box = shard(for: id)
            let answer: HandoverReply.Answer
            if case .owner? = copy(of: id) {
                await box.acquireScope(id)
                var may = false
                if case .owner(let s)? = copy(of: id) { may = mayHandOver(to: requester, process: process) && mayServe(s) }
                let t = now
                answer = box.withCore { $0.answerHandover(id, to: requester, requesterID: process, now: t, mayHandOver: may) }
                box.releaseScope(id)
                if case .transferred = answer {
                    logger.debug("handed a session over", metadata: ["drs.peer": "\(requester)", "drs.session": "\(id)"])
                }
            } else {
                // A copy this node handed to the asker and never heard of since is handed
                // again (its first answer was lost), under the same checks.
                let may = mayHandOver(to: requester, process: process)
                let t = now
                answer = box.withCore { $0.answerHandover(id, to: requester, requesterID: process, now: t, mayHandOver: may) }
                if case .transferred = answer {
                    logger.info("handed a session over again: the taker asked once more", metadata: ["drs.peer": "\(requester)", "drs.session": "\(id)"])
                }
            }
            links[requester]?.addControl(.handoverReply(HandoverReply(requestID: request.requestID, id: id, answer: answer)))
            scheduleFlush(requester)
        }
    }

    /// Whether this node may hand a session to `requester` at all: it runs, is not
    /// draining or held dead, and membership holds the requester alive under `process`.
    /// Never to a process membership holds dead (or does not know): one held dead rejoins
    /// and drops what it holds, and its sessions were failed over.
    func mayHandOver(to requester: String, process: NodeID) -> Bool {
        !isStopped && !isDraining && !isDeclaredDead && isAlive(requester, process: process)
    }

    /// An answer to a handover request (or a draining owner's handover): a whole
    /// session is adopted at once, whether or not anyone still waits for it, so a late
    /// answer never leaves a session without an owner.
    func onHandoverReply(_ reply: HandoverReply, from giver: String, process: NodeID) {
        // Not from a process held dead (or unknown) here: its sessions are failed over by their
        // holders, and adopting as well would make two owners.
        if case .transferred(let state) = reply.answer, state.id == reply.id, !isStopped, !isDeclaredDead,
           isAlive(giver, process: process) {
            let box = shard(for: reply.id)
            let t = now
            let adopted = box.withCore { $0.adoptHandover(state, from: giver, giverStays: reply.requestID != 0, now: t) }
            if adopted { flushPending(box) }
        }
        guard reply.requestID != 0 else { return }
        let done: HandoverWaits.Pending? = handoverWaits.withLockedValue { w in
            guard var p = w.pending[reply.requestID], p.expected.contains(giver) else { return nil }
            p.answers[giver] = reply.answer
            if p.answers.count == p.expected.count {
                w.pending[reply.requestID] = nil
                return p
            }
            w.pending[reply.requestID] = p
            return nil
        }
        done?.continuation.resume(returning: done!.answers)
    }

    /// Hands every owned session to the first live member of its replica set, which
    /// already holds its copy (an epoch change, no data transfer beyond the last
    /// changes), one session scope at a time, for at most `drainTimeout`; requests
    /// answer `503 not-ready` with `Retry-After` meanwhile. Returns how many sessions
    /// were handed over. Sessions without a live backup stay (failover or loss).
    public func drain() async -> Int {
        setDraining()
        let deadline = ContinuousClock.now + configuration.replication.drainTimeout
        var handed = 0
        for box in shards {
            while ContinuousClock.now < deadline {
                let live = livePeers.withLockedValue { $0 }
                let notLive = Set(links.keys).subtracting(live)
                // Only owned sessions are named, and each one handed over (or gone
                // meanwhile) is owned no more, so every pass makes progress.
                let batch = box.withCore { $0.drainTargets(limit: 256, excluding: notLive) }
                if batch.isEmpty { break }
                var takers: Set<String> = []
                for (id, taker) in batch {
                    await box.acquireScope(id)
                    let t = now
                    let state: SessionState? = box.withCore { c in
                        guard case .owner? = c.copy(of: id) else { return nil }
                        return c.handOff(id, to: taker, now: t)
                    }
                    box.releaseScope(id)
                    if let state {
                        links[taker]?.addControl(.handoverReply(HandoverReply(requestID: 0, id: id, answer: .transferred(state))))
                        takers.insert(taker)
                        handed += 1
                    }
                }
                for taker in takers.sorted() { scheduleFlush(taker) }
            }
        }
        // Let the last handovers leave before the leave announcement overtakes them.
        try? await Task.sleep(for: .milliseconds(50))
        return handed
    }
}

extension ReplicationNode {
    /// An owner's anti-entropy digests for one of its lanes: this node computes the same
    /// digests over the copies it holds of that owner's sessions and, when buckets
    /// differ, answers with them and what it holds there.
    func onDigest(_ request: DigestRequest, from owner: String) {
        var mine = [UInt64](repeating: 0, count: DigestRequest.bucketCount)
        let lanes = Int(request.lanes), lane = Int(request.lane)
        for shard in shards { shard.withCore { $0.addDigests(owner: owner, lanes: lanes, lane: lane, into: &mine) } }
        let differing = (0..<DigestRequest.bucketCount).filter { mine[$0] != request.buckets[$0] }
        guard !differing.isEmpty else { return }
        let buckets = Set(differing)
        var held: [DigestReply.Entry] = []
        for shard in shards { held += shard.withCore { $0.heldEntries(owner: owner, lanes: lanes, lane: lane, buckets: buckets) } }
        let reply = DigestReply(round: request.round, lane: request.lane, buckets: differing.map { UInt16($0) }, held: held)
        links[owner]?.addControl(.digestReply(reply))
        scheduleFlush(owner)
    }
}
