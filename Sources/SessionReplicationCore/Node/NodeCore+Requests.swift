/// Requests callers make of a node: each one ends with a `complete` action (a scope also
/// gets `scopeReady` first). Requests on one session that take its scope (reads, change
/// scopes, syncs, handover answers) run one at a time, in arrival order.
extension NodeCore {
    /// Creates a session owned by this node under `id` (the shell draws random ids from
    /// a CSPRNG; derived ids, such as the `PersistDriver`'s, are given) and replicates it
    /// at once. Completes with `written`, or fails: `capacity`, `payload-too-large`,
    /// `invalid-attribute-name`, `bad-request` (idle limit), `misdirected` (a `server`
    /// node), `insufficient-replicas`, `overloaded`, `not-ready`, `no-quorum` (no quorum
    /// lease within `4 x lease` under `promotion: majority`), `precondition-failed` (the
    /// id is held here) with nothing created; `sync-timeout` (created, durability unknown).
    package mutating func create(_ r: RequestID, id: SessionID, attributes: [String: [UInt8]], maxInactiveInterval: Duration?,
                                now: MonotonicInstant, wall: WallTime) -> [NodeAction] {
        begin(now, wall)
        if let e = unavailableError { complete(r, .failed(e)); return takeActions() }
        requests[r] = PendingRequest(kind: .create(id, attributes: attributes, maxInactiveInterval: maxInactiveInterval))
        if settings.majority, !hasQuorum(now: now) {
            requests[r]!.stage = .awaitingServing(until: now + settings.lease * 4)
            park(r)
        } else {
            runCreate(r)
        }
        return takeActions()
    }

    /// Reads owned session `id` (an access). Waits for a scope in progress on it and for
    /// the serving check; completes with `session(nil)` when this node does not own it.
    /// Fails `fenced`/`no-quorum` when the check still fails after `4 x lease`,
    /// `session-unavailable` when this node rejoined meanwhile, `not-ready` when stopped.
    /// With `touching` false the read is no access (an application's driver reading its
    /// own deadline-bound keys).
    package mutating func read(_ r: RequestID, _ id: SessionID, touching: Bool = true, now: MonotonicInstant, wall: WallTime) -> [NodeAction] {
        start(r, .read(id, touching: touching), now, wall)
        return takeActions()
    }

    /// Begins a change scope on owned session `id`: once it holds the session and may
    /// serve it, `scopeReady` hands the caller the state; the caller then calls
    /// `commitScope`. Fails `precondition-failed` (`ifMatch` differs), `misdirected` (only
    /// a backup here), `session-not-found`, `fenced`, `no-quorum`, `not-ready`.
    package mutating func beginScope(_ r: RequestID, _ id: SessionID, ifMatch: Stamp?, now: MonotonicInstant, wall: WallTime) -> [NodeAction] {
        start(r, .scope(id, ifMatch: ifMatch), now, wall)
        return takeActions()
    }

    /// A change scope whose changes are known up front, in one event instead of
    /// `beginScope` and `commitScope`: once it holds session `id` and may serve it, the
    /// attributes in `changes.updated` are set and those in `changes.removed` removed
    /// (setting the bytes an attribute already has, or removing an absent one, is no
    /// change, as in a scope), with idle limit `maxInactiveInterval` when given, and
    /// committed. Completes as `commitScope`; fails as `beginScope` and `commitScope`.
    package mutating func write(_ r: RequestID, _ id: SessionID, ifMatch: Stamp?, changes: ChangeSet, maxInactiveInterval: Duration?,
                                now: MonotonicInstant, wall: WallTime) -> [NodeAction] {
        start(r, .write(id, ifMatch: ifMatch, changes, maxInactiveInterval: maxInactiveInterval), now, wall)
        return takeActions()
    }

    /// Ends the scope of request `r` (after `scopeReady`): commits the changes (checking
    /// the serving rule again at the commit: a commit that fails it waits, holding the
    /// scope and applying nothing, up to `4 x lease` for fresh grants), ends the session,
    /// or releases it unchanged. Completes with `written` once replicated per mode, or
    /// fails: `fenced`/`no-quorum` (still failing the check after that wait; `not-ready`
    /// when the node starts draining or stops meanwhile, nothing applied),
    /// `payload-too-large`, `insufficient-replicas`, `overloaded` (after `syncTimeout` of
    /// full queues), `session-unavailable` (this node rejoined while the body ran; nothing
    /// applied); `sync-timeout` (applied, durability unknown).
    package mutating func commitScope(_ r: RequestID, _ commit: ScopeCommit, now: MonotonicInstant, wall: WallTime) -> [NodeAction] {
        begin(now, wall)
        guard let p = requests[r], case .inScope = p.stage, let id = p.scopeSession else {
            let error = stopped ? SessionError(.shuttingDown, "the node stopped; nothing was applied")
                : SessionError(.sessionUnavailable, "this node rejoined the cluster while the request waited; nothing was applied; retry")
            emit(.complete(r, .failed(error)))
            return takeActions()
        }
        runCommit(r, id, commit)
        return takeActions()
    }

    /// Sends what is pending for owned session `id` and waits: for `minSyncReplicas`
    /// applies (synchronous), receipts from every reachable backup (acknowledged), or
    /// nothing (best-effort: `written` names the replica set it was sent to). Fails
    /// `session-not-found`, `sync-timeout`, `fenced`, `not-ready`.
    package mutating func sync(_ r: RequestID, _ id: SessionID, now: MonotonicInstant, wall: WallTime) -> [NodeAction] {
        start(r, .sync(id), now, wall)
        return takeActions()
    }

    /// Hands every owned session to the first live member of its replica set, which
    /// holds its copy (an epoch change, no data transfer beyond the last changes), one
    /// free scope at a time, for at most `drainTimeout`; new requests fail `not-ready`
    /// meanwhile. Completes with `drained(n)`. Sessions without a live backup stay.
    /// Until `drainTimeout` from the latest drain's start has passed, sessions this node
    /// comes to own again (a failover promoted its copy) are handed over as well, after
    /// the drain completed, until the node leaves.
    package mutating func drain(_ r: RequestID, now: MonotonicInstant, wall: WallTime) -> [NodeAction] {
        begin(now, wall)
        draining = true
        var p = PendingRequest(kind: .drain)
        p.stage = .working
        p.drainUntil = now + settings.policy.drainTimeout
        drainWindowEnd = max(drainWindowEnd ?? p.drainUntil, p.drainUntil)
        requests[r] = p
        drainRequests.insert(r)
        runDrain(r)
        return takeActions()
    }

    /// Leaves the cluster gracefully: membership tells every live member at once.
    package mutating func leave(now: MonotonicInstant, wall: WallTime) -> [NodeAction] {
        begin(now, wall)
        membership.leave(now: now)
        performMembershipOutput()
        return takeActions()
    }

    /// Stops the node: every request in progress fails `not-ready` (a change already
    /// applied here stays, its durability unknown); later events do nothing.
    package mutating func stop() -> [NodeAction] {
        stopped = true
        failAll(SessionError(.shuttingDown, "the node stopped before the request completed; a change already applied stays here, its durability unknown"))
        return takeActions()
    }

    // MARK: - Internals

    mutating func begin(_ now: MonotonicInstant, _ wall: WallTime) {
        // The wall clock ran on much further than the monotonic one since the previous
        // sample: the monotonic clock stopped (a paused VM). What this node believes of its
        // leases' ends cannot be trusted then: it drops them and is fenced until fresh
        // grants arrive. (A wall clock stepped forward fences it briefly too, which is safe.)
        // Samples are compared pair to pair: the shell reads both clocks before it hands
        // the event over, so events can arrive with samples older than the last one; such
        // a pair moved both clocks back alike and is no jump.
        if let previous = clockSample {
            let mono = now - previous.now
            let walled = Duration.milliseconds(wall.milliseconds - previous.wall.milliseconds)
            let elapsed = mono < .zero ? .zero - mono : mono
            // (The first test alone rules out nearly every sample: a Duration division is slow.)
            if walled - mono > .milliseconds(25), walled - mono > .milliseconds(25) + elapsed / 8 {
                leases.dropGrants()
                nodeCounters.clockJumps += 1
                log(.warning, "the wall clock ran ahead of the monotonic clock (was the process or its VM paused?): leases dropped until fresh grants",
                    ["drs.wall.ms": "\(walled.millisecondsClamped)", "drs.monotonic.ms": "\(mono.millisecondsClamped)"])
            }
        }
        clockSample = (now, wall)
        self.now = max(self.now, now)
        self.wall = wall
    }

    /// Registers a scope-taking request and runs it when it holds the scope.
    mutating func start(_ r: RequestID, _ kind: PendingRequest.Kind, _ now: MonotonicInstant, _ wall: WallTime) {
        begin(now, wall)
        if let e = unavailableError { complete(r, .failed(e)); return }
        requests[r] = PendingRequest(kind: kind)
        enqueueScope(r)
    }

    /// Queues `r` on its session's scope; runs it at once when the scope is free.
    mutating func enqueueScope(_ r: RequestID) {
        guard let id = requests[r]?.scopeSession else { return }
        if scopes[id] == nil {
            scopes[id] = [r]
            scopeAcquired(r)
        } else {
            scopes[id]!.append(r)
        }
    }

    /// Releases the scope `r` holds (or its place in the queue) and starts the next.
    mutating func releaseScope(_ r: RequestID, _ id: SessionID) {
        guard var queue = scopes[id], let i = queue.firstIndex(of: r) else { return }
        queue.remove(at: i)
        if queue.isEmpty {
            scopes[id] = nil
        } else {
            scopes[id] = queue
            if i == 0 { scopeAcquired(queue.first!) }
        }
    }

    /// Ends request `r`: its scope is released and its caller told.
    mutating func complete(_ r: RequestID, _ result: RequestResult) {
        parked[r] = nil
        if let p = requests.removeValue(forKey: r) {
            if let id = p.scopeSession { releaseScope(r, id) }
            if let s = p.search {
                if s.holdsSlot { searchSlots.release() }
                if s.handoverID != 0 { handoverRounds[s.handoverID] = nil }
            }
        }
        if !r.isInternal { emit(.complete(r, result)) }
    }

    /// Every request in progress fails with `error`.
    mutating func failAll(_ error: SessionError) {
        for r in requests.keys.sorted() { complete(r, .failed(error)) }
        scopes = [:]
        waiters = [:]
        handoverRounds = [:]
        parked = [:]
        searching = []
        drainRequests = []
        searchSlots = SearchSlots(limit: searchSlots.limit)
    }

    /// `r` holds its session's scope now.
    mutating func scopeAcquired(_ r: RequestID) {
        guard let p = requests[r], let id = p.scopeSession else { return }
        if case .handoverAnswer(_, let requester, let process, let requestID) = p.kind {
            answerOwnedHandover(r, id, requester: requester, process: process, requestID: requestID)
            return
        }
        if let e = unavailableError { complete(r, .failed(e)); return }
        if servable(id, now: now) == false {
            requests[r]!.stage = .awaitingServing(until: now + settings.lease * 4)
            park(r)
            return
        }
        proceed(r)
    }

    /// `r` holds its scope and passed the serving check (or the session is not owned).
    mutating func proceed(_ r: RequestID) {
        guard let p = requests[r], let id = p.scopeSession else { return }
        parked[r] = nil
        let l = lane(of: id)
        switch p.kind {
        case .read(_, let touching):
            complete(r, .session(touching ? lanes[l].access(id, wall: wall) : ownedState(id)))
        case .scope(_, let ifMatch):
            guard let state = accessForChange(r, id, lane: l, ifMatch: ifMatch) else { return }
            requests[r]!.stage = .inScope
            emit(.scopeReady(r, state))
        case .write(_, let ifMatch, let changes, let mii):
            guard let state = accessForChange(r, id, lane: l, ifMatch: ifMatch) else { return }
            var scope = SessionScope(state: state)
            for (name, value) in changes.updated { scope.set(name, value) }
            for name in changes.removed { scope.remove(name) }
            if let mii { scope.maxInactiveInterval = mii }
            let effective = scope.changes
            requests[r]!.stage = .inScope
            runCommit(r, id, .changes(effective, maxInactiveInterval: effective.maxInactiveIntervalChanged ? scope.maxInactiveInterval : nil))
        case .sync:
            do {
                let outcome = try lanes[l].sync(id, now: now)
                flushPending(lane: l)
                if outcome.waiter == nil, let state = outcome.state {
                    let sentTo = settings.policy.mode == .bestEffort && !state.replicaSet.isEmpty ? state.replicaSet : nil
                    complete(r, .written(state, replicatedTo: sentTo))
                } else {
                    finish(r, outcome, lane: l, strict: true, invalidation: false)
                }
            } catch {
                complete(r, .failed(error))
            }
        case .create, .takeOver, .drain, .handoverAnswer:
            break
        }
    }

    /// The state of owned session `id`, accessed for a change by `r`; `nil` once `r` is
    /// completed as failed: not owned here, or not at the stamp `ifMatch` asks for.
    mutating func accessForChange(_ r: RequestID, _ id: SessionID, lane l: Int, ifMatch: Stamp?) -> SessionState? {
        guard let state = lanes[l].access(id, wall: wall) else { complete(r, .failed(notOwnedHere(id))); return nil }
        if let ifMatch, ifMatch != state.stamp {
            complete(r, .failed(SessionError(.preconditionFailed, "session is at \(state.stamp.etag)")))
            return nil
        }
        return state
    }

    /// Why `id` cannot be changed here: only a backup is held (`misdirected`), or nothing.
    func notOwnedHere(_ id: SessionID) -> SessionError {
        if case .backup = copy(of: id) { return SessionError(.notOwner, "this node holds a backup of \(id); ask its owner") }
        return SessionError(.sessionNotFound, "no session \(id)")
    }

    mutating func runCreate(_ r: RequestID) {
        guard case .create(let id, let attributes, let mii)? = requests[r]?.kind else { return }
        parked[r] = nil
        requests[r]!.stage = .working
        let l = lane(of: id)
        do {
            let count = sessionCount
            let outcome = try lanes[l].create(id: id, attributes: attributes, maxInactiveInterval: mii, now: now, wall: wall, sessionCount: count)
            flushPending(lane: l)
            finish(r, outcome, lane: l, strict: false, invalidation: false)
        } catch {
            complete(r, .failed(error))
        }
    }

    mutating func runCommit(_ r: RequestID, _ id: SessionID, _ commit: ScopeCommit) {
        let l = lane(of: id)
        switch commit {
        case .abort(let error):
            complete(r, .failed(error))
        case .invalidate(let reason):
            if servable(id, now: now) == false {
                awaitServing(r, commit)
                return
            }
            do {
                let outcome = try lanes[l].invalidate(id, reason: reason, now: now)
                flushPending(lane: l)
                finish(r, outcome, lane: l, strict: false, invalidation: true)
            } catch {
                complete(r, .failed(error))
            }
        case .changes(let changes, let mii):
            // Checked again at the commit itself, never trusted from earlier.
            if servable(id, now: now) == false {
                awaitServing(r, commit)
                return
            }
            // A best-effort write that waited `syncTimeout` for its backup's backlog to
            // drain goes ahead: the queue sheds (and repair mends) rather than fail it.
            var waitedEnough = false
            if case .awaitingQueue(_, let until) = requests[r]!.stage, now >= until, settings.policy.mode == .bestEffort { waitedEnough = true }
            do {
                let outcome = try lanes[l].commit(id, changes: changes, maxInactiveInterval: mii, now: now, wall: wall, ignoringBacklog: waitedEnough)
                flushPending(lane: l)
                finish(r, outcome, lane: l, strict: false, invalidation: false)
            } catch let error where error.code == .overloaded {
                if case .awaitingQueue(_, let until) = requests[r]!.stage {
                    if now >= until { complete(r, .failed(error)) }
                } else {
                    // Counted once per write that waits (the parked retries are not). A commit
                    // that waited for grants first keeps that wait's end when it is sooner.
                    var until = now + settings.policy.syncTimeout
                    if case .awaitingServingCommit(_, let end) = requests[r]!.stage {
                        until = min(until, end)
                    } else if settings.policy.mode == .bestEffort {
                        lanes[l].counters.backlogWaits += 1
                    }
                    requests[r]!.stage = .awaitingQueue(commit, until: until)
                    park(r)
                }
            } catch {
                complete(r, .failed(error))
            }
        }
    }

    /// A commit that failed the serving check: it waits for fresh grants (a body that ran
    /// while the node was starved outlived its leases) for `4 x lease` from its first
    /// check, as a request waits before its scope, then fails `fenced`/`no-quorum`.
    /// Nothing is applied while it waits, and the session's scope stays held.
    /// A commit that waited for a full queue first keeps that wait's end when it is
    /// sooner, so that switching between the two waits never extends either.
    mutating func awaitServing(_ r: RequestID, _ commit: ScopeCommit) {
        var until = now + settings.lease * 4
        switch requests[r]!.stage {
        case .awaitingServingCommit(_, let end):
            if now >= end { complete(r, .failed(fencedError(now: now))) }
            return
        case .awaitingQueue(_, let end):
            until = min(until, end)
        default:
            break
        }
        if now >= until { complete(r, .failed(fencedError(now: now))); return }
        requests[r]!.stage = .awaitingServingCommit(commit, until: until)
        park(r)
    }

    /// Answers `r` at once, or registers its wait for replication.
    mutating func finish(_ r: RequestID, _ outcome: CommitOutcome, lane l: Int, strict: Bool, invalidation: Bool) {
        guard let w = outcome.waiter else {
            complete(r, .written(outcome.state, replicatedTo: nil))
            return
        }
        let stage = PendingRequest.Stage.awaitingReplication(state: outcome.state, strict: strict, invalidation: invalidation)
        requests[r]?.stage = stage
        parked[r] = nil
        if let settled = lanes[l].settledWait(w) {
            waitEnded(r, settled)
        } else {
            waiters[LaneWaiter(lane: l, waiter: w)] = r
        }
    }

    /// Replication waits of lane `l` ended.
    mutating func completeWaits(lane l: Int, _ results: [(WaiterID, WaitResult)]) {
        for (w, result) in results {
            guard let r = waiters.removeValue(forKey: LaneWaiter(lane: l, waiter: w)) else { continue }
            waitEnded(r, result)
        }
    }

    mutating func waitEnded(_ r: RequestID, _ result: WaitResult) {
        guard case .awaitingReplication(let state, let strict, let invalidation)? = requests[r]?.stage else { return }
        switch result {
        case .replicated(let names):
            // The backups' receipts may have waited in a socket while this node was
            // stopped: if it no longer passes the serving check, another node may have
            // promoted an older copy since, and `replicated` would vouch for a change
            // that is gone. The answer waits for the check, as a commit does.
            if let id = state?.id, servable(id, now: now) == false {
                requests[r]!.stage = .awaitingServingAnswer(state: state, replicatedTo: names, until: now + settings.lease * 4)
                park(r)
                return
            }
            complete(r, .written(state, replicatedTo: names.isEmpty ? nil : names))
        case .timedOut:
            if stopped {
                complete(r, .failed(SessionError(.shuttingDown, "the node stopped before replication completed; the change is applied here, its durability unknown")))
            } else if !strict, !invalidation, settings.policy.onSyncTimeout == .degrade {
                if let id = state?.id { lanes[lane(of: id)].noteDegraded() }
                complete(r, .written(state, replicatedTo: nil))
            } else {
                complete(r, .failed(SessionError(.syncTimeout, "replication did not complete within syncTimeout; the change is applied here, its durability unknown")))
            }
        }
    }

    /// A replicated change whose backups confirmed it while this node failed the serving
    /// check: `replicated` once the node passes it again (its ownership confirmed, so no
    /// other node promoted a copy meanwhile); `sync-timeout` (applied here, durability
    /// unknown) when the session is no longer owned here or at `until`.
    mutating func answerWhenServing(_ r: RequestID, _ state: SessionState?, _ names: [String], until: MonotonicInstant) {
        switch state.flatMap({ servable($0.id, now: now) }) {
        case true?:
            complete(r, .written(state, replicatedTo: names.isEmpty ? nil : names))
        case false? where now < until:
            break
        default:
            complete(r, .failed(SessionError(.syncTimeout, "the backups confirmed the change, but this node lost its lease before it could answer and another node may own the session now; the change is applied here, its durability unknown")))
        }
    }

    /// Parks `r` in its waiting stage, noting when the wait ends for `nextDeadline`
    /// (a full queue's wait has none there: the queue is retried on every tick).
    mutating func park(_ r: RequestID) {
        switch requests[r]?.stage {
        case .awaitingServing(let until)?, .awaitingServingCommit(_, let until)?, .awaitingServingAnswer(_, _, let until)?:
            parked[r] = until
        default: parked[r] = MonotonicInstant(nanoseconds: .max)
        }
    }

    /// Runs what waits on time or leases: serving checks, quorum, full queues, drains.
    mutating func recheckParked() {
        guard !parked.isEmpty else { return }
        for r in parked.keys.sorted() {
            guard let p = requests[r] else { parked[r] = nil; continue }
            switch p.stage {
            case .awaitingServing(let until):
                if case .create = p.kind {
                    if hasQuorum(now: now) { runCreate(r) } else if now >= until { complete(r, .failed(fencedError(now: now))) }
                    continue
                }
                guard let id = p.scopeSession else { continue }
                if let e = unavailableError { complete(r, .failed(e)); continue }
                if servable(id, now: now) != false {
                    proceed(r)
                } else if now >= until {
                    complete(r, .failed(fencedError(now: now)))
                }
            case .awaitingQueue(let commit, _):
                if let id = p.scopeSession { runCommit(r, id, commit) }
            case .awaitingServingCommit(let commit, _):
                if let e = unavailableError { complete(r, .failed(e)); continue }
                if let id = p.scopeSession { runCommit(r, id, commit) }
            case .awaitingServingAnswer(let state, let names, let until):
                answerWhenServing(r, state, names, until: until)
            default:
                break
            }
        }
    }
}
