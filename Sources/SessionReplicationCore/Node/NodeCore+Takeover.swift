/// Takeover on request, handover from a live owner, and drain.
extension NodeCore {
    /// Makes this node the owner of `id` when another node owns it: asks the owner named
    /// by this node's backup copy, or every live member when it holds nothing, follows
    /// referrals, and adopts the whole state the owner hands over (the decisions are
    /// `TakeoverSearch`'s). Completes with `tookOver` at once when this node owns `id`.
    /// With `ignoringCooldown` it takes a session back even within `takeoverCooldown` of
    /// handing it away (for callers that cannot send their client to the owner).
    ///
    /// Fails `session-not-found` when authoritative; `misdirected` naming the owner when
    /// this node may not take it (`affinity: none`, a `server` node, the cooldown);
    /// `session-unavailable` when no owner handed it over within `handoverTimeout`;
    /// `overloaded` when 256 lookups of ids this node holds nothing of are in flight;
    /// `not-ready` while stopping or draining.
    package mutating func takeOver(_ r: RequestID, _ id: SessionID, ignoringCooldown: Bool, now: MonotonicInstant, wall: WallTime) -> [NodeAction] {
        begin(now, wall)
        if let e = unavailableError { complete(r, .failed(e)); return takeActions() }
        var holdsSlot = false
        if copy(of: id) == nil {
            if let limit = searchSlots.acquire() {
                complete(r, .failed(SessionError(.overloaded, "\(limit) lookups of sessions this node holds nothing of are in flight; retry")))
                return takeActions()
            }
            holdsSlot = true
        }
        let alone = !self.settings.members.contains { $0 != self.settings.name }
        let settings = TakeoverSearch.Settings(policy: self.settings.policy, ignoringCooldown: ignoringCooldown, alone: alone)
        var p = PendingRequest(kind: .takeOver(id))
        p.stage = .working
        p.search = SearchState(search: TakeoverSearch(id: id, selfName: self.settings.name, settings: settings,
                                                      handoverTimeout: self.settings.policy.handoverTimeout, now: now),
                               holdsSlot: holdsSlot)
        requests[r] = p
        searching.insert(r)
        advanceSearch(r)
        return takeActions()
    }

    /// Starts the next step of the search `r`.
    mutating func advanceSearch(_ r: RequestID) {
        guard var s = requests[r]?.search, case .takeOver(let id)? = requests[r]?.kind else { return }
        if let e = unavailableError { complete(r, .failed(e)); return }
        let l = lane(of: id)
        let held = lanes[l].searchHeld(id)
        let cooled = lanes[l].handedAwayRecently(id, now: now, cooldown: settings.policy.takeoverCooldown)
        let hint = held == .nothing && !s.search.settings.mayTakeOver ? ownerHints.owner(of: id, now: now) : nil
        let step = s.search.next(held: held, handedAwayRecently: cooled, statuses: peerStatuses(), hint: hint, now: now)
        // Referred because of the cooldown: it lasts while requests keep coming, so under
        // a round-robin balancer a session settles instead of moving every few seconds.
        if cooled, case .fail(let e) = step, e.code == .notOwner { lanes[l].renewCooldown(id, now: now) }
        perform(step, r, &s)
    }

    mutating func perform(_ step: TakeoverSearch.Step, _ r: RequestID, _ s: inout SearchState) {
        guard case .takeOver(let id)? = requests[r]?.kind else { return }
        if s.handoverID != 0 { handoverRounds[s.handoverID] = nil }
        s.handoverID = 0
        s.roundEnds = nil
        s.resumeAt = nil
        switch step {
        case .done:
            requests[r]!.search = s
            complete(r, .tookOver)
        case .fail(let error):
            if let owner = s.search.learnedOwner { ownerHints.remember(id, owner: owner, now: now) }
            requests[r]!.search = s
            complete(r, .failed(error))
        case .wait(let pause):
            s.resumeAt = now + pause
            requests[r]!.search = s
        case .ask(let targets, let timeout):
            let h = nextHandoverRequest
            nextHandoverRequest += 1
            s.handoverID = h
            s.expected = Set(targets)
            s.answers = [:]
            s.roundEnds = now + timeout
            requests[r]!.search = s
            handoverRounds[h] = r
            for t in targets { sendControl(.handover(HandoverRequest(requestID: h, id: id)), to: t) }
        }
    }

    /// Ends the round of asking of search `r` (every answer in, or its time up).
    mutating func endSearchRound(_ r: RequestID) {
        guard var s = requests[r]?.search, case .takeOver(let id)? = requests[r]?.kind else { return }
        let owns = if case .owner? = copy(of: id) { true } else { false }
        let configured = settings.members.filter { $0 != settings.name && !absent.contains($0) }
        if let step = s.search.answered(s.answers, ownsNow: owns, configuredPeers: configured, now: now) {
            perform(step, r, &s)
        } else {
            if s.handoverID != 0 { handoverRounds[s.handoverID] = nil }
            s.handoverID = 0
            s.roundEnds = nil
            requests[r]!.search = s
            advanceSearch(r)
        }
    }

    /// Runs the searches whose round ended or whose pause is over.
    mutating func tickSearches() {
        guard !searching.isEmpty else { return }
        for r in searching.sorted() {
            guard let i = requests.index(forKey: r), let t = requests.values[i].searchTimes else { searching.remove(r); continue }
            if let end = t.roundEnds, now >= end {
                endSearchRound(r)
            } else if let resume = t.resumeAt, now >= resume {
                advanceSearch(r)
            }
        }
    }

    /// Another node asks for a session: an owner answers once the session's scope is
    /// free (no change in flight), handing it over when it may; any other node says what
    /// it holds (or hands a copy again to the very taker whose first answer was lost).
    mutating func onHandover(_ h: HandoverRequest, from requester: String, process: NodeID) {
        let l = lane(of: h.id)
        if case .owner? = lanes[l].copy(of: h.id) {
            let r = RequestID(nextInternalRequest)
            nextInternalRequest += 1
            requests[r] = PendingRequest(kind: .handoverAnswer(h.id, requester: requester, process: process, requestID: h.requestID))
            enqueueScope(r)
            return
        }
        let may = mayHandOver(to: requester, process: process)
        let answer = lanes[l].answerHandover(h.id, to: requester, requesterID: process, requestID: h.requestID, now: now, mayHandOver: may)
        if case .transferred = answer {
            log(.info, "handed a session over again: the taker asked once more", ["drs.peer": requester, "drs.session": "\(h.id)"])
        }
        sendControl(.handoverReply(HandoverReply(requestID: h.requestID, id: h.id, answer: answer)), to: requester)
    }

    /// The internal request `r` holds the scope of owned session `id`: answer the handover.
    mutating func answerOwnedHandover(_ r: RequestID, _ id: SessionID, requester: String, process: NodeID, requestID: UInt64) {
        let l = lane(of: id)
        var may = mayHandOver(to: requester, process: process)
        if let ok = servable(id, now: now) { may = may && ok }
        let answer = lanes[l].answerHandover(id, to: requester, requesterID: process, requestID: requestID, now: now, mayHandOver: may)
        if case .transferred = answer {
            log(.debug, "handed a session over", ["drs.peer": requester, "drs.session": "\(id)"])
        }
        sendControl(.handoverReply(HandoverReply(requestID: requestID, id: id, answer: answer)), to: requester)
        complete(r, .tookOver)
    }

    /// Whether this node may hand a session to `requester` at all: it runs, is not
    /// draining or held dead, and membership holds the requester alive under `process`
    /// (never a process held dead: it rejoins and drops what it holds, and its sessions
    /// were failed over).
    func mayHandOver(to requester: String, process: NodeID) -> Bool {
        !stopped && !draining && !declaredDead && isAlive(requester, process: process)
    }

    /// An answer to a handover request (or a draining owner's handover): a whole session
    /// is adopted at once, whether or not anyone still waits for it, so a late answer
    /// never leaves a session without an owner; then the search that asked hears it.
    mutating func onHandoverReply(_ reply: HandoverReply, from giver: String, process: NodeID) {
        // Not from a process held dead (or unknown) here: its sessions are failed over by
        // their holders, and adopting as well would make two owners.
        // Only an answer to a request this process made (or a draining owner's, id 0).
        let ours = reply.requestID == 0 || (reply.requestID >= firstHandoverRequest && reply.requestID < nextHandoverRequest)
        if reply.requestID == 0, isAlive(giver, process: process), leavingPeers[giver] != process {
            // The giver drains: no lane places a copy on it any more (a later failover
            // or refill would otherwise pick it again).
            leavingPeers[giver] = process
            for l in lanes.indices { lanes[l].setLeaving(giver, true) }
        }
        if case .transferred(let state) = reply.answer, state.id == reply.id, !stopped, !declaredDead, ours,
           isAlive(giver, process: process) {
            let l = lane(of: reply.id)
            if lanes[l].adoptHandover(state, from: giver, giverStays: reply.requestID != 0, now: now) {
                // It serves only once every live member confirmed nobody else owns it.
                for (member, entries) in lanes[l].startConfirming(reply.id, giver: giver, now: now).sorted(by: { $0.key < $1.key }) {
                    sendControl(.prepare(PrepareRequest(oldOwner: giver, entries: entries)), to: member)
                }
                let copy = lanes[l].copy(of: reply.id)
                debug("adopted \(reply.id) from \(giver): \(copy.map { "\($0)" } ?? "-")")
                flushPending(lane: l)
            } else if verbose {
                let held = lanes[l].copy(of: reply.id).map { "\($0)" } ?? "-"
                debug("refused a handover of \(reply.id) from \(giver): holds \(held)")
            }
        } else if verbose, case .transferred = reply.answer {
            let why = "ours \(ours), giver alive \(isAlive(giver, process: process)), dead \(declaredDead)"
            debug("ignored a handover of \(reply.id) from \(giver): \(why)")
        }
        if case .ended(let stamp) = reply.answer { lanes[lane(of: reply.id)].learnTombstone(reply.id, stamp, now: now) }
        guard reply.requestID != 0, let r = handoverRounds[reply.requestID], var s = requests[r]?.search,
              s.expected.contains(giver) else { return }
        s.answers[giver] = reply.answer
        requests[r]!.search = s
        if s.answers.count == s.expected.count { endSearchRound(r) }
    }

    /// Hands over what it can of the drain `r`; completes it when nothing is left to hand
    /// over or `drainTimeout` passed.
    mutating func runDrain(_ r: RequestID) {
        guard let p = requests[r], case .drain = p.kind else { return }
        guard now < p.drainUntil else { complete(r, .drained(p.handed)); return }
        let pass = handOverOwned()
        requests[r]!.handed = p.handed + pass.handed
        if pass.targets == 0 { complete(r, .drained(p.handed + pass.handed)) }
    }

    /// A draining node whose drains completed, inside its drain window and before it
    /// left: hands over what it came to own again since (a copy it kept, promoted by a
    /// failover). It walks its sessions only when what it owns changed since its last
    /// pass (their count, or a promotion or takeover happened), or when that pass left a
    /// session it could not hand over yet (a scope held, the serving check not passed):
    /// owned sessions without a live member to take them stay, and are not walked again
    /// every tick.
    mutating func drainAgain() {
        guard draining, drainRequests.isEmpty, membership.status == .alive, let end = drainWindowEnd, now < end else { return }
        var mark = [0, 0, 0]
        for l in lanes.indices {
            let (owned, promotions, takeovers) = lanes.inPlace(l) { ($0.owned.count, $0.counters.promotions, $0.counters.takeovers) }
            mark[0] += owned; mark[1] += promotions; mark[2] += takeovers
        }
        guard mark != drainAgainMark || drainAgainRetry else { return }
        let pass = handOverOwned()
        mark[0] -= pass.handed
        drainAgainMark = mark
        drainAgainRetry = pass.targets > pass.handed
        if pass.handed > 0 { log(.info, "handed over sessions this draining node came to own again", ["drs.sessions": "\(pass.handed)"]) }
    }

    /// One drain pass: each owned session whose scope is free and which may be served now
    /// goes, unasked, to the first live member of its replica set. Returns how many
    /// sessions had such a member (`targets`, at most 256 per lane) and how many of them
    /// were handed over.
    mutating func handOverOwned() -> (targets: Int, handed: Int) {
        let notLive = Set(peers.keys).subtracting(livePeers)
        var targets = 0
        var handed = 0
        for l in lanes.indices {
            for (id, taker) in lanes[l].drainTargets(limit: 256, excluding: notLive) {
                targets += 1
                // A session whose scope is held (a change in flight) goes on a later pass.
                // So does one this node may not serve now: its copy may be stale.
                guard scopes[id] == nil, servable(id, now: now) == true else { continue }
                let state = lanes[l].handOff(id, to: taker, now: now)
                sendControl(.handoverReply(HandoverReply(requestID: 0, id: id, answer: .transferred(state))), to: taker)
                handed += 1
            }
        }
        return (targets, handed)
    }
}
