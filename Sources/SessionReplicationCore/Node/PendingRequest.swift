/// A request the core is working on, and where it stands.
struct PendingRequest: Sendable {
    enum Kind: Sendable {
        /// Create a session (waits for a quorum lease under `promotion: majority`).
        case create(SessionID, attributes: [String: [UInt8]], maxInactiveInterval: Duration?)
        /// Read an owned session (an access when `touching`).
        case read(SessionID, touching: Bool)
        /// A change scope on an owned session.
        case scope(SessionID, ifMatch: Stamp?)
        /// Changes known before the session is read (set and remove attributes, a new idle
        /// limit), committed as a scope would commit them, in one event.
        case write(SessionID, ifMatch: Stamp?, ChangeSet, maxInactiveInterval: Duration?)
        /// Send what is pending and wait per mode.
        case sync(SessionID)
        /// Make this node the owner (takeover search).
        case takeOver(SessionID)
        /// Hand every owned session to its first live backup.
        case drain
        /// Answer another node's handover request for an owned session, once its scope is
        /// free (internal).
        case handoverAnswer(SessionID, requester: String, process: NodeID, requestID: UInt64)
    }

    enum Stage: Sendable {
        /// Waiting for the session's scope.
        case queued
        /// Holds the scope; waits for this node to pass the serving check (or a quorum).
        case awaitingServing(until: MonotonicInstant)
        /// The caller's body runs (the shell holds the state).
        case inScope
        /// A commit found this node failing the serving check (its leases lapsed while the
        /// caller's body ran): retried once it passes, failed at `until`.
        case awaitingServingCommit(ScopeCommit, until: MonotonicInstant)
        /// A commit found a replication queue full; retried until `until`.
        case awaitingQueue(ScopeCommit, until: MonotonicInstant)
        /// Waits for replication (a shard's waiter).
        case awaitingReplication(state: SessionState?, strict: Bool, invalidation: Bool)
        /// Replication completed while this node failed the serving check: answered
        /// once it passes again, failed `sync-timeout` at `until`.
        case awaitingServingAnswer(state: SessionState?, replicatedTo: [String], until: MonotonicInstant)
        /// A takeover search or a drain in progress.
        case working
    }

    var kind: Kind
    var stage: Stage = .queued
    /// A takeover search's state.
    var search: SearchState?
    /// A drain's progress.
    var handed = 0
    var drainUntil: MonotonicInstant = .zero

    /// The session whose scope the request takes, if any.
    var scopeSession: SessionID? {
        switch kind {
        case .read(let id, _), .scope(let id, _), .write(let id, _, _, _), .sync(let id), .handoverAnswer(let id, _, _, _): return id
        case .create, .takeOver, .drain: return nil
        }
    }
}

/// One takeover search carried out by the core: the decisions are `TakeoverSearch`'s.
struct SearchState: Sendable {
    var search: TakeoverSearch
    /// Holds one of the `SearchSlots` (a lookup of an id this node held nothing of).
    var holdsSlot: Bool
    var handoverID: UInt64 = 0
    var expected: Set<String> = []
    var answers: [String: HandoverReply.Answer] = [:]
    var roundEnds: MonotonicInstant?
    var resumeAt: MonotonicInstant?
}

extension PendingRequest {
    /// The search's timers, `nil` without a search. (Read in place by the timer, which
    /// would otherwise copy every search, held copies included, at every tick.)
    var searchTimes: (roundEnds: MonotonicInstant?, resumeAt: MonotonicInstant?)? {
        if case .none = search { return nil }
        return (search?.roundEnds, search?.resumeAt)
    }
}
