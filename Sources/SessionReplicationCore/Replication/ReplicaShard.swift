import DequeModule

/// One shard of a node: the sessions it owns, the backup copies it holds, tombstones,
/// and the outbound replication streams of its lane. A value type driven by events
/// (`create`, `commit`, `apply`, `onReceipt`, `onResync`, `tick`) with `now` passed in;
/// it performs no I/O. The node reads the batches to transmit with `takeBatches` and
/// `tick`'s outcome, and completes waits named in the outcomes.
package struct ReplicaShard: Sendable {
    /// The settings.
    package private(set) var settings: ShardSettings
    /// Counters since start.
    package internal(set) var counters = ReplicationCounters()

    struct Owned: Sendable, HoldsSessionState {
        var state: SessionState
        /// Version last sent to the backups; 0 before the first send.
        var sentVersion: UInt64 = 0
        var pending = ChangeSet()
        var needsFull = false
        /// `expiryGrace`, in 4 bytes (next to `needsFull`, where the entry had padding).
        var expiryGraceMilliseconds: UInt32 = 0
        var accessSent: WallTime
        /// Added to the idle deadline: a promoted copy's last access may be up to the access
        /// replication interval old, and a session expires late, never early. Whole
        /// milliseconds, rounded up; at most about 49 days.
        var expiryGrace: Duration {
            get { .milliseconds(expiryGraceMilliseconds) }
            set { expiryGraceMilliseconds = UInt32(clamping: (newValue + .nanoseconds(999_999)).millisecondsClamped) }
        }
        /// What an adopted handover still waits for; `nil` for any other owned session.
        var confirmation: Confirmation?

        /// Members whose answer an adopted handover still waits for before it serves (none
        /// may own the session, nor hold it from an owner other than the giver). Set first
        /// when a confirmation starts: `confirmSentAt` and `confirmGiver` are kept only
        /// while it is not empty.
        var confirming: Set<String> {
            get { confirmation?.waitingOn ?? [] }
            set { confirmation = newValue.isEmpty ? nil : Confirmation(waitingOn: newValue, sentAt: confirmSentAt, giver: confirmGiver) }
        }
        /// When the members in `confirming` were last asked.
        var confirmSentAt: MonotonicInstant {
            get { confirmation?.sentAt ?? .zero }
            set { confirmation = confirmation.map { Confirmation(waitingOn: $0.waitingOn, sentAt: newValue, giver: $0.giver) } }
        }
        /// The node that handed the session over.
        var confirmGiver: String {
            get { confirmation?.giver ?? "" }
            set { confirmation = confirmation.map { Confirmation(waitingOn: $0.waitingOn, sentAt: $0.sentAt, giver: newValue) } }
        }

        /// In the digest of every member of the replica set, at the last version sent (none
        /// before the first send).
        var digestShare: DigestShare? {
            sentVersion == 0 ? nil : DigestShare(stamp: Stamp(epoch: state.stamp.epoch, version: sentVersion), peer: nil, peers: state.replicaSet)
        }

        var awaitsConfirmation: Bool { !confirming.isEmpty }
    }

    /// A confirmation in progress, boxed: few owned sessions are ever confirming, and held
    /// inline its fields made every owned entry 32 bytes larger. Immutable: a change
    /// stores a new box, so copies of an entry never share a change.
    final class Confirmation: Sendable {
        let waitingOn: Set<String>
        let sentAt: MonotonicInstant
        let giver: String
        init(waitingOn: Set<String>, sentAt: MonotonicInstant, giver: String) {
            self.waitingOn = waitingOn
            self.sentAt = sentAt
            self.giver = giver
        }
    }

    struct Backup: Sendable, HoldsSessionState {
        var state: SessionState
        var lastHeard: MonotonicInstant
        /// The node the copy answers to (it came from it, or was promised or handed to it).
        var owner: String
        /// That node's process, when known: a copy fails over only when this very process
        /// departs (a new process of the same name may own the session by now).
        var ownerID: NodeID?
        /// Whether `owner` is a taker this node promised the copy to (it has not owned the
        /// session yet), rather than the node the copy came from.
        var promised = false

        /// In the digest of the owner it answers to.
        var digestShare: DigestShare? { DigestShare(stamp: state.stamp, peer: owner, peers: []) }

        var awaitsConfirmation: Bool { false }
    }

    struct Tombstone: Sendable {
        var stamp: Stamp
        var until: MonotonicInstant
    }

    struct Waiter: Sendable {
        var session: SessionID
        var targets: [String: UInt64]
        var acked: [String] = []
        var needed: Int
        var deadline: MonotonicInstant
    }

    var owned = SessionTable<Owned>()
    var backups = SessionTable<Backup>()
    var tombstones: [SessionID: Tombstone] = [:]
    /// Outbound streams by peer name.
    package internal(set) var streams: [String: OutboundStream] = [:]
    var waiters: [UInt64: Waiter] = [:]
    var waitersByPeer: [String: Deque<(sequence: UInt64, waiter: UInt64)>] = [:]
    /// Whole sessions queued to a peer in answer to a resync, by sequence: a repeated
    /// request finds them instead of queueing another copy.
    var resyncFulls: [String: [SessionID: UInt64]] = [:]
    var nextWaiter: UInt64 = 1
    var dirty: Set<SessionID> = []
    var accessed: Set<SessionID> = []
    var repair: Set<SessionID> = []
    var ownerExpiry = ExpiryWheel()
    var backupExpiry = ExpiryWheel()
    var tombstoneExpiry = ExpiryWheel()
    var nextTimedWrite: MonotonicInstant?
    var nextAccessFlush: MonotonicInstant?
    var nextRepair: MonotonicInstant?
    /// Peers whose streams hold never-sent messages.
    package internal(set) var peersWithUnsent: Set<String> = []
    /// Peers the transport currently reaches (static membership: all until told otherwise).
    package private(set) var unreachable: Set<String> = []
    /// Members membership holds dead or left: no placement names them, and copies they
    /// owned are promoted by their first live backup.
    package internal(set) var departed: Set<String> = []
    /// Members draining before they leave (`NodeCore` tells every lane): no placement
    /// names them, though they stay live members until they leave.
    package internal(set) var leaving: Set<String> = []
    /// Members membership has reported alive: placement prefers them.
    package internal(set) var heardAlive: Set<String> = []
    /// Takeovers waiting for the other holders' promises.
    var takeovers: [SessionID: Takeover] = [:]
    /// Sessions whose current takeover here (waiting for promises or for its promotion)
    /// started without a copy: its prepares carried `noCopy`, so other takers rank it
    /// below any taker with a copy, and it ranks itself the same way even once a promise
    /// brought it a copy. Set when such a takeover starts; cleared when a takeover with a
    /// copy starts, on promotion, and when it yields to another taker.
    var copylessTakeovers: Set<SessionID> = []
    /// Nominations received before this node held their old owner departed (or while
    /// `promotion: majority` defers its failover), by session: acted on when it departs.
    var nominations: [SessionID: Nomination] = [:]
    /// Adopted sessions whose confirmation met a copy of a later epoch whose owner had
    /// departed here (the adoption was stale): kept as backups of that owner, and taken
    /// over from it by `NodeCore` (`takeOverStaleAdoptions`).
    var staleAdoptions: [SessionID] = []
    /// When `nominations` is next swept of entries older than `nominationLifetime`.
    var nominationSweepDue: MonotonicInstant = .zero
    /// When the oldest takeover's prepare is due to be sent again (no later; a takeover
    /// started since is due after it).
    var prepareResendDue: MonotonicInstant = .zero
    /// Backup copies to promote once the departed owner's leases have run out.
    var pendingPromotions = PromotionQueue()
    /// Owned sessions short of backups since a member (re)joined, filled a slice per tick.
    /// When this node last handed each session away, and to whom (for `takeoverCooldown`).
    var handedAway: [SessionID: (at: MonotonicInstant, to: String)] = [:]
    /// Hand-overs not yet confirmed: the taker's process and the state handed over, kept
    /// while this node's copy still names that taker at that stamp (the taker's first
    /// message supersedes it). Lets the handover be answered again when the taker asks
    /// once more, its answer having been lost.
    var unconfirmedHandoffs: [SessionID: UnconfirmedHandoff] = [:]
    var nextCooldownSweep: MonotonicInstant = .zero
    var digestRound: UInt64 = 0
    /// Where a new stream to each peer starts: past every sequence an earlier stream to
    /// it used (see `OutboundStream.init(startingAt:)`).
    var sequenceFloor: [String: UInt64] = [:]
    /// Make-before-break moves onto a member that joined, by that member: the sequence
    /// of the whole session sent to it, and the backup it replaces once receipted.
    var moves: [String: Deque<(sequence: UInt64, id: SessionID, displaced: String)>] = [:]
    var refill: [SessionID] = []
    var refillIndex = 0
    /// Sessions promoted by a tick and not yet sent to their new backups, in promotion
    /// order from `unsentIndex` on (see `sendPromoted`).
    var unsentPromotions: [SessionID] = []
    var unsentIndex = 0
    /// Refusals by a backup of each owned session's messages, and the sessions given up on.
    var refusals: [SessionID: Int] = [:]
    var refusedForGood: Set<SessionID> = []
    /// When set, what happens to sessions here is recorded in `events`. Default false.
    package var reportsEvents = false
    /// Session events since the last `takeEvents` (their `at` is set by the node).
    var events: [SessionEvent] = []

    /// Records a session event when events are reported.
    mutating func note(_ kind: SessionEvent.Kind, _ id: SessionID, _ stamp: Stamp) {
        if reportsEvents { events.append(SessionEvent(kind, id, stamp, at: WallTime(milliseconds: 0))) }
    }

    /// Takes the recorded session events.
    package mutating func takeEvents() -> [SessionEvent] {
        defer { events = [] }
        return events
    }

    /// Creates an empty shard.
    package init(settings: ShardSettings) {
        self.settings = settings
        owned.lanes = max(1, settings.lanes)
        backups.lanes = max(1, settings.lanes)
    }

    /// Sessions owned.
    package var ownedCount: Int { owned.count }
    /// Backup copies held.
    package var backupCount: Int { backups.count }
    /// Tombstones held.
    package var tombstoneCount: Int { tombstones.count }

    // MARK: - Owner side

    /// Creates a session owned by this node, replicated at once in every write frequency.
    /// Fails with `capacity` at `maxSessions` or beyond the byte budget (`maxBytes`),
    /// `payloadTooLarge` beyond the size limits (`maxAttributes`, `maxAttributeBytes`,
    /// `maxSessionBytes`, and what one replication frame carries),
    /// `notOwner` on a `server` node, `insufficientReplicas` (synchronous, `fail`) when
    /// fewer backups are reachable than `minSyncReplicas`; nothing is created then.
    package mutating func create(id: SessionID, attributes: [String: [UInt8]], maxInactiveInterval: Duration?,
                                now: MonotonicInstant, wall: WallTime, sessionCount: Int) throws(SessionError) -> CommitOutcome {
        guard settings.policy.role.owns else { throw SessionError(.notOwner, "this node's role is server: it stores backups and owns no sessions") }
        guard sessionCount < settings.sessions.maxSessions else { throw SessionError(.capacity, "maxSessions (\(settings.sessions.maxSessions)) reached") }
        guard owned[id] == nil, backups[id] == nil else { throw SessionError(.preconditionFailed, "session id already in use") }
        // An ended id (derived ids can come back) starts a new generation that beats its
        // tombstone everywhere.
        guard let generation = Epoch(counter: tombstones[id]?.stamp.epoch.counter ?? 0, owner: settings.selfID).next(owner: settings.selfID) else {
            counters.overflowRefused += 1
            throw SessionError(.capacity, "session id \(id) has used up its epochs")
        }
        if let maxInactiveInterval, !IdleLimit.isValid(maxInactiveInterval) {
            throw SessionError(.badRequest, "maxInactiveInterval must be between 1 ms and 366 days")
        }
        try checkBudget(adding: try checkSizes(attributes))
        let replicaSet = placement(for: id, keeping: [])
        let localOnly = try checkSyncReplicas(replicaSet)
        try checkQueues(replicaSet)
        tombstones[id] = nil
        let state = SessionState(id: id, stamp: Stamp(epoch: generation, version: 1),
                                 attributes: attributes, createdAt: wall, lastAccessedAt: wall,
                                 maxInactiveInterval: maxInactiveInterval ?? settings.sessions.maxInactiveInterval,
                                 replicaSet: replicaSet)
        owned[id] = Owned(state: state, accessSent: wall)
        ownerExpiry.schedule(id, at: state.expiresAt.milliseconds / 1000 + 1)
        counters.sessionsCreated += 1
        note(.created, id, state.stamp)
        let targets = send(id, now: now)
        return outcome(for: id, targets: targets, localOnly: localOnly, now: now)
    }

    /// The owned session `id`, marking it accessed; `nil` if not owned here.
    package mutating func access(_ id: SessionID, wall: WallTime) -> SessionState? {
        guard owned[id] != nil else { return nil }
        owned[id]!.state.lastAccessedAt = max(owned[id]!.state.lastAccessedAt, wall)
        accessed.insert(id)
        return owned[id]!.state
    }

    /// Send-to-receipt samples per peer since the last call.
    package mutating func takeLatencySamples() -> [String: [Duration]] {
        var out: [String: [Duration]] = [:]
        for peer in streams.keys {
            let samples = streams[peer]!.takeLatencySamples()
            if !samples.isEmpty { out[peer] = samples }
        }
        return out
    }

    /// The node a backup copy of `id` came from; `nil` when none is held.
    package func backupOwner(of id: SessionID) -> String? { backups[id]?.owner }

    /// Owned sessions with a replica set member the transport does not reach, or a copy
    /// awaiting repair, plus promoted sessions still queued to be sent whole (some of
    /// which a write may have sent meanwhile).
    package var underReplicatedCount: Int { underReplicatedHeld + unsentPromotions.count - unsentIndex }

    /// `underReplicatedCount` without the promoted sessions still queued to be sent.
    var underReplicatedHeld: Int {
        guard !unreachable.isEmpty else { return repair.union(refusedForGood).count }
        if unreachable.count == 1, let peer = unreachable.first {
            // One peer out of reach (the usual case): the sessions it backs are counted as
            // they change, plus those mending or given up on that it does not back.
            var n = owned.holderCounts[peer] ?? 0
            for id in repair.union(refusedForGood) {
                if let o = owned[id], !o.state.replicaSet.contains(peer) { n += 1 }
            }
            return n
        }
        return underReplicatedCountWalking
    }

    /// `underReplicatedCount` by walking every owned session (while peers are out of
    /// reach): what the kept counts are checked against in tests and benchmarks, and the
    /// count itself when several peers are out of reach.
    package var underReplicatedCountWalking: Int {
        var n = 0
        for (id, o) in owned where repair.contains(id) || refusedForGood.contains(id) || o.state.replicaSet.contains(where: { unreachable.contains($0) }) {
            n += 1
        }
        return n
    }

    /// The replica set of `id` when this node owns it (cheaper than `copy(of:)`).
    package func ownedReplicaSet(of id: SessionID) -> [String]? { owned[id]?.state.replicaSet }

    /// When this node owns `id`: its replica set, and whether its ownership is confirmed
    /// (an adopted handover serves only once every live member answered that nobody else
    /// owns it).
    /// (Inlined, and the entry read where it lies: called on a lane read out of the lane
    /// array, an outlined call copied the whole lane first, on every serving check.)
    @inline(__always)
    package func ownership(of id: SessionID) -> (replicaSet: [String], confirmed: Bool)? {
        owned.withEntry(id) { ($0.state.replicaSet, $0.confirmation == nil) }
    }

    /// A mask of the positions in `ids` (bit `i` for `ids[i]`; `ids` holds at most 64) of
    /// the sessions in `owned` with their ownership confirmed, found by a walk over
    /// `owned`: no id is hashed, so it is the cheaper way when a shard owns few sessions
    /// next to `ids`. (Static, on the table: a method called on a lane read out of the
    /// lane array copies the whole lane first.)
    static func confirmedMask(in owned: [Owned?], among ids: [SessionID]) -> UInt64 {
        var mask: UInt64 = 0
        // Fields read where they lie: binding each entry copied all of its 136 bytes.
        owned.withUnsafeBufferPointer { entries in
            for k in entries.indices where entries[k]?.confirmation == nil {
                if let id = entries[k]?.state.id, let i = ids.firstIndex(of: id) { mask |= 1 << UInt64(i) }
            }
        }
        return mask
    }

    /// This node's copy of `id` without touching it.
    package func copy(of id: SessionID) -> HeldCopy? {
        if let o = owned[id] { return .owner(o.state) }
        if let b = backups[id] { return .backup(b.state) }
        if let t = tombstones[id] { return .tombstone(t.stamp) }
        return nil
    }

    /// Commits the changes of a scope on an owned session: bumps the version when
    /// anything changed and replicates per `writeFrequency`. Size checks (as `create`),
    /// the byte budget for a session that grows (`capacity`), the version's range
    /// (`capacity` once it would reach `Stamp.maxVersion`; never wraps) and (synchronous)
    /// replica checks happen first; on failure nothing is applied.
    ///
    /// In best-effort mode with `writeFrequency: end-of-service`, a change whose backup's
    /// queue already holds more than `bestEffortBacklog` throws `overloaded` (nothing
    /// applied) so the writer waits for the queue to drain instead of the queue shedding
    /// its oldest messages; `ignoringBacklog` (the wait is over) commits anyway.
    package mutating func commit(_ id: SessionID, changes: ChangeSet, maxInactiveInterval: Duration?,
                                now: MonotonicInstant, wall: WallTime, ignoringBacklog: Bool = false) throws(SessionError) -> CommitOutcome {
        // Taken out of the dictionary while it changes, so its attributes are not copied.
        guard var entry = owned.removeValue(forKey: id) else { throw SessionError(.sessionNotFound, "session \(id) is not owned here") }
        let localOnly: Bool
        do throws(SessionError) {
            if let maxInactiveInterval, !IdleLimit.isValid(maxInactiveInterval) {
                throw SessionError(.badRequest, "maxInactiveInterval must be between 1 ms and 366 days")
            }
            let size = try checkSizes(entry.state.attributes, applying: changes)
            if !changes.isEmpty {
                guard entry.state.stamp.version < Stamp.maxVersion - 1 else {
                    counters.overflowRefused += 1
                    throw SessionError(.capacity, "session \(id) has used up its versions (\(Stamp.maxVersion))")
                }
                // Taken out of the table, the entry's own bytes are not counted: only a
                // session that grows must fit.
                if size > entry.state.byteSize { try checkBudget(adding: size) }
            }
            entry.state.lastAccessedAt = max(entry.state.lastAccessedAt, wall)
            guard !changes.isEmpty else {
                owned[id] = entry
                accessed.insert(id)
                // A write that changes nothing answers with the durability of the version
                // it leaves: synchronous mode waits for that version on minSyncReplicas
                // backups, as `sync` does (at once when they receipted it already).
                guard settings.policy.mode == .synchronous, settings.policy.writeFrequency == .endOfService,
                      !entry.state.replicaSet.isEmpty else {
                    return CommitOutcome(state: entry.state, waiter: nil, localOnly: entry.state.replicaSet.isEmpty)
                }
                let degraded = try checkSyncReplicas(entry.state.replicaSet)
                return outcome(for: id, targets: currentTargets(id, now: now), localOnly: degraded, now: now)
            }
            localOnly = try checkSyncReplicas(entry.state.replicaSet)
            try checkQueues(entry.state.replicaSet)
            if !ignoringBacklog, !changes.isEmpty { try checkBacklog(entry.state.replicaSet) }
        } catch {
            owned[id] = entry
            throw error
        }
        for (name, value) in changes.updated { entry.state.attributes[name] = value }
        for name in changes.removed { entry.state.attributes[name] = nil }
        if let maxInactiveInterval { entry.state.maxInactiveInterval = maxInactiveInterval }
        entry.state.stamp.version += 1
        entry.pending.merge(changes)
        owned[id] = entry
        counters.commits += 1
        if reportsEvents { note(.changed((Array(changes.updated.keys) + Array(changes.removed)).sorted()), id, entry.state.stamp) }
        // The wheel is lazy about later deadlines, not earlier ones.
        if maxInactiveInterval != nil { ownerExpiry.schedule(id, at: entry.state.expiresAt.milliseconds / 1000 + 1) }
        switch settings.policy.writeFrequency {
        case .endOfService:
            let targets = send(id, now: now)
            return outcome(for: id, targets: targets, localOnly: localOnly, now: now)
        case .timeBased, .manual:
            dirty.insert(id)
            if nextTimedWrite == nil { nextTimedWrite = now + settings.policy.writeInterval }
            return CommitOutcome(state: entry.state, waiter: nil, localOnly: true)
        }
    }

    /// Sends what is pending for `id` now and waits per mode: synchronous for
    /// `minSyncReplicas` applies, acknowledged for receipts from every reachable backup,
    /// best-effort not at all (`waiter` is `nil`).
    package mutating func sync(_ id: SessionID, now: MonotonicInstant) throws(SessionError) -> CommitOutcome {
        guard let entry = owned[id] else { throw SessionError(.sessionNotFound, "session \(id) is not owned here") }
        let targets = currentTargets(id, now: now)
        switch settings.policy.mode {
        case .bestEffort:
            return CommitOutcome(state: owned[id]?.state, waiter: nil, localOnly: entry.state.replicaSet.isEmpty)
        case .synchronous:
            return outcome(for: id, targets: targets, localOnly: false, now: now)
        case .acknowledged:
            let live = targets.filter { !unreachable.contains($0.key) }
            let w = addWaiter(id, targets: live, needed: live.count, now: now)
            return CommitOutcome(state: owned[id]?.state, waiter: w, localOnly: false)
        }
    }

    /// What a wait for the current version of owned session `id` waits for, per backup: the
    /// sequence that carries it (sending what is pending, or the whole session to a backup
    /// that needs it, first), or 0 when everything queued to that backup is receipted.
    mutating func currentTargets(_ id: SessionID, now: MonotonicInstant) -> [String: UInt64] {
        guard let entry = owned[id] else { return [:] }
        if entry.sentVersion < entry.state.stamp.version || entry.needsFull { return send(id, now: now) }
        var targets: [String: UInt64] = [:]
        for peer in entry.state.replicaSet {
            if let s = streams[peer], s.nextSequence > 1, s.receiptedThrough < s.nextSequence - 1 {
                targets[peer] = s.nextSequence - 1
            } else {
                targets[peer] = 0
            }
        }
        return targets
    }

    /// Ends an owned session: tombstones it here and sends the invalidation to every
    /// backup (acknowledged in every mode). The waiter completes once every reachable
    /// backup receipted it.
    /// Expiry passes `wait: false`: nobody waits for its receipts.
    package mutating func invalidate(_ id: SessionID, reason: EndReason, now: MonotonicInstant, wait: Bool = true) throws(SessionError) -> CommitOutcome {
        guard let entry = owned.removeValue(forKey: id) else { throw SessionError(.sessionNotFound, "session \(id) is not owned here") }
        dirty.remove(id); accessed.remove(id); repair.remove(id)
        addTombstone(id, entry.state.stamp, now: now, idle: entry.state.maxInactiveInterval)
        note(reason == .expired ? .expired : reason == .rotated ? .rotated : .invalidated, id, entry.state.stamp)
        let message = MessageCodec.encode(.invalidate(Invalidation(id: id, stamp: entry.state.stamp, reason: reason)))
        var targets: [String: UInt64] = [:]
        for peer in entry.state.replicaSet {
            targets[peer] = enqueue(message, to: peer, session: id, mustDeliver: true)
            counters.invalidationsSent += 1
        }
        // Every backup membership holds alive must hold the tombstone before the end is
        // acknowledged, reachable or not: one that missed it could otherwise promote the
        // ended session after its owner dies.
        let live = targets.filter { !departed.contains($0.key) }
        let w = live.isEmpty || !wait ? nil : addWaiter(id, targets: live, needed: live.count, now: now)
        return CommitOutcome(state: nil, waiter: w, localOnly: live.isEmpty)
    }

    /// Another member holds a tombstone of `id` (a takeover search learned it): a copy
    /// it beats is dropped and the tombstone kept here, so a session later created under
    /// the same id (derived ids come back) starts a generation above it.
    package mutating func learnTombstone(_ id: SessionID, _ stamp: Stamp, now: MonotonicInstant) {
        guard owned[id] == nil else { return }
        if let b = backups[id], b.state.stamp > stamp { return }
        if let t = tombstones[id], t.stamp >= stamp { return }
        backups[id] = nil
        addTombstone(id, stamp, now: now)
    }

    /// Records whether the transport reaches `peer`.
    package mutating func setReachable(_ peer: String, _ reachable: Bool) {
        if reachable { unreachable.remove(peer) } else { unreachable.insert(peer) }
    }

    // MARK: - Streams

    /// Takes the never-sent batches for `peer`. Datagram transport applies the UDP
    /// window and pacing; `datagram` batches are at most `udpMaxPayload` minus overhead
    /// (a larger single message is returned alone: the node sends it over TCP).
    package mutating func takeBatches(for peer: String, now: MonotonicInstant, datagram: Bool) -> [OutboundBatch] {
        // Streams are mutated in place (`streams[peer]!.…`): copying one out and back
        // would copy its whole queue on every call.
        guard streams[peer] != nil else { return [] }
        let p = settings.policy
        let limit = maxBatchBytes(datagram: datagram)
        let window = datagram ? max(8, p.udpWindow / max(1, settings.lanes)) : nil
        let rate = datagram ? max(100, p.udpRate / max(1, settings.lanes)) : nil
        let batches = streams[peer]!.takeUnsent(now: now, maxBatchBytes: limit, window: window, rate: rate)
        if streams[peer]!.unsent == 0 { peersWithUnsent.remove(peer) }
        return batches
    }

    /// Marks every in-flight message to `peer` for immediate resend (after a reconnect).
    package mutating func resendInFlight(to peer: String, now: MonotonicInstant, datagram: Bool) -> [OutboundBatch] {
        let limit = maxBatchBytes(datagram: datagram)
        guard streams[peer] != nil else { return [] }
        return streams[peer]!.resendAllNow(now: now, maxBatchBytes: limit)
    }

    /// This lane's share of the per-peer `maxQueueBytes`.
    var laneQueueLimit: Int { max(1, settings.policy.maxQueueBytes / max(1, settings.lanes)) }

    /// `peer` restarted (a new node id under its name): it holds nothing. Every owned
    /// session it backs is re-sent whole at the next repair pass, and what it reported
    /// holding is forgotten.
    package mutating func peerRestarted(_ peer: String) {
        streams[peer]?.receiverRestarted()
        for (id, entry) in owned where entry.state.replicaSet.contains(peer) {
            owned[id]!.needsFull = true
            repair.insert(id)
        }
        if !repair.isEmpty { nextRepair = .zero }  // at the next tick
    }

    func maxBatchBytes(datagram: Bool) -> Int {
        datagram ? max(64, settings.policy.udpMaxPayload - settings.datagramOverhead) : settings.maxStreamBatchBytes
    }

    /// What a receipt produced.
    package struct ReceiptOutcome: Sendable {
        /// Waits it completed.
        package var completed: [(WaiterID, WaitResult)] = []
        /// Messages the receiver reported missing, to resend now.
        package var resend: [OutboundBatch] = []
        /// Sessions whose messages this peer refused `maxRefusals` times: no longer resent
        /// to it (counted under-replicated).
        package var givenUp: [SessionID] = []
    }

    /// How often a backup may refuse a session's messages before this owner stops
    /// resending them to it. Default 3.
    package static let maxRefusals = 3

    /// A backup refused some of what this owner sent (it could not decode it, or it holds
    /// the session under a later epoch): each such session is re-sent whole at the next
    /// repair, up to `maxRefusals` times; after that it is given up on (counted, and
    /// under-replicated) rather than resent for ever. A refusal is handled once: later
    /// receipts that repeat it find its message receipted already.
    mutating func refusedBy(_ peer: String, _ refused: [UInt64], _ stream: OutboundStream) -> [SessionID] {
        let set = Set(refused)
        var givenUp: [SessionID] = []
        for e in stream.entries where set.contains(e.sequence) {
            guard owned[e.session] != nil else { continue }
            let n = (refusals[e.session] ?? 0) + 1
            refusals[e.session] = n
            if n <= Self.maxRefusals {
                owned[e.session]!.needsFull = true
                repair.insert(e.session)
            } else if refusedForGood.insert(e.session).inserted {
                counters.refusedForGood += 1
                givenUp.append(e.session)
            }
        }
        return givenUp
    }

    /// A receipt from `peer` for this shard's lane: completes waits and returns the
    /// messages reported missing (older than `reorderDelay`) for immediate resend.
    package mutating func onReceipt(from peer: String, _ receipt: Receipt, now: MonotonicInstant, datagram: Bool) -> ReceiptOutcome {
        var out = ReceiptOutcome()
        // A receipt never confirms a sequence this stream did not send.
        var receipt = receipt
        receipt.through = min(receipt.through, (streams[peer]?.nextSequence ?? 1) - 1)
        if !receipt.refused.isEmpty, let stream = streams[peer] { out.givenUp = refusedBy(peer, receipt.refused, stream) }
        let limit = maxBatchBytes(datagram: datagram)
        let holeDelay = settings.policy.reorderDelay
        if streams[peer] != nil {
            let r = streams[peer]!.receipt(through: receipt.through, held: receipt.received, now: now,
                                           holeDelay: holeDelay, maxBatchBytes: limit)
            out.resend = r.resend
            counters.retries += r.resent
            // The receiver still waits for sequences this stream abandoned (the bare
            // watermark frame was lost): tell it again.
            let low = streams[peer]!.lowWatermark
            if receipt.through + 1 < low, r.resend.isEmpty {
                out.resend = [OutboundBatch(firstSequence: 0, lowWatermark: low, messages: [], byteCount: 0)]
            }
        }
        out.completed = completeWaiters(peer: peer, through: receipt.through, refused: Set(receipt.refused))
        finishMoves(peer: peer, through: receipt.through, now: now)
        return out
    }

    /// Completes the waits `peer` receipted through `through`. A sequence in `refused`
    /// was delivered but not applied (the peer holds a newer epoch): it confirms nothing,
    /// and a wait that can no longer reach its count ends as timed out.
    mutating func completeWaiters(peer: String, through: UInt64, refused: Set<UInt64> = []) -> [(WaiterID, WaitResult)] {
        var done: [(WaiterID, WaitResult)] = []
        // In place: a copy of the queue per receipt would copy every waiter in it.
        guard waitersByPeer[peer] != nil else { return done }
        while let first = waitersByPeer[peer]!.first, first.sequence <= through {
            waitersByPeer[peer]!.removeFirst()
            guard var w = waiters[first.waiter], w.targets[peer] == first.sequence else { continue }
            w.targets[peer] = nil
            if refused.contains(first.sequence) {
                counters.refusedReceipts += 1
                if w.acked.count + w.targets.count < w.needed || (w.targets.isEmpty && w.acked.count < w.needed) {
                    waiters[first.waiter] = nil
                    counters.syncTimeouts += 1
                    done.append((WaiterID(rawValue: first.waiter), .timedOut(w.acked.sorted())))
                } else {
                    waiters[first.waiter] = w
                }
                continue
            }
            w.acked.append(peer)
            if w.acked.count >= w.needed {
                waiters[first.waiter] = nil
                done.append((WaiterID(rawValue: first.waiter), .replicated(w.acked.sorted())))
            } else {
                waiters[first.waiter] = w
            }
        }
        return done
    }

    /// A resync request from `peer`: each named session still owned is sent to it whole
    /// (waits on the failed sequence move to the new one); a session that ended is sent
    /// its invalidation.
    package mutating func onResync(from peer: String, entries: [ResyncRequest.Entry], now: MonotonicInstant) {
        let receipted = streams[peer]?.receiptedThrough ?? 0
        if let answered = resyncFulls[peer] { resyncFulls[peer] = answered.filter { $0.value > receipted } }
        for e in entries {
            if let queued = resyncFulls[peer]?[e.id], queued > e.sequence {
                // Already answered and not yet receipted: a repeat of the request.
                retarget(peer: peer, session: e.id, upTo: e.sequence, to: queued)
                continue
            }
            counters.resyncsServed += 1
            let seq: UInt64
            if let o = owned[e.id], o.state.replicaSet.contains(peer), o.sentVersion < o.state.stamp.version {
                // Changes not flushed yet (manual or time-based writes) must not leak out
                // early: the whole session goes with the next flush; the backup keeps asking.
                owned[e.id]!.needsFull = true
                if settings.policy.writeFrequency == .timeBased {
                    dirty.insert(e.id)
                    if nextTimedWrite == nil { nextTimedWrite = now + settings.policy.writeInterval }
                }
                continue
            } else if let o = owned[e.id], o.state.replicaSet.contains(peer) {
                seq = enqueue(MessageCodec.encode(.full(replicable(o.state))), to: peer, session: e.id, mustDeliver: false)
                counters.fullStatesSent += 1
            } else if let t = tombstones[e.id] {
                seq = enqueue(MessageCodec.encode(.invalidate(Invalidation(id: e.id, stamp: t.stamp, reason: .invalidated))),
                              to: peer, session: e.id, mustDeliver: true)
            } else {
                continue
            }
            resyncFulls[peer, default: [:]][e.id] = seq
            retarget(peer: peer, session: e.id, upTo: e.sequence, to: seq)
        }
    }

    // MARK: - Backup side

    /// Applies one data message received from the owner `peer`. Monotonic: a delta only
    /// on exactly its base version in the same epoch, a full state only if strictly
    /// newer; a tombstone beats any equal or older state. A copy that answers to another
    /// node (promised to a taker, or handed over) refuses `peer`'s messages of an epoch
    /// no newer than its own (`fenced`: receipted as refused, confirming nothing).
    package mutating func apply(_ message: ReplicationMessage, from peer: String, process: NodeID? = nil, now: MonotonicInstant) -> ApplyOutcome {
        guard settings.policy.role.storesBackups else { return .ignored }
        switch message {
        case .full(let s):
            // Beaten by a tombstone: refused, so that the write it carries is never counted
            // as held here (a re-used id created under an epoch the tombstone beats).
            if let t = tombstones[s.id], t.stamp >= s.stamp { counters.fencedRejected += 1; return .fenced }
            if let o = owned[s.id] {
                guard s.stamp.epoch > o.state.stamp.epoch else { counters.fencedRejected += 1; return .fenced }
                owned[s.id] = nil
                note(.passivated, s.id, s.stamp)
                dirty.remove(s.id); accessed.remove(s.id); repair.remove(s.id)
            }
            if let b = backups[s.id], b.owner != peer, s.stamp.epoch <= b.state.stamp.epoch {
                // This copy now answers to another node (it promised a taker, or took a
                // handover): the old owner's later messages under its epoch are refused.
                counters.fencedRejected += 1
                return .fenced
            }
            if !s.replicaSet.contains(settings.selfName) {
                // The owner moved this copy elsewhere (make-before-break): drop it.
                if let b = backups[s.id], b.state.stamp <= s.stamp {
                    backups[s.id] = nil
                    counters.released += 1
                }
                return .applied
            }
            if let b = backups[s.id], b.state.stamp >= s.stamp {
                backups[s.id]!.lastHeard = now
                if b.state.stamp == s.stamp, b.state.replicaSet != s.replicaSet {
                    // Same content, new replica set (a move finished): metadata only.
                    backups[s.id]!.state.replicaSet = s.replicaSet
                    return .applied
                }
                counters.staleIgnored += 1
                return .ignored
            }
            tombstones[s.id] = nil
            storeBackup(s, from: peer, ownerID: process, now: now)
            counters.appliedFull += 1
            return .applied
        case .delta(let d):
            if let t = tombstones[d.id], Stamp(epoch: d.epoch, version: d.version) <= t.stamp { counters.staleIgnored += 1; return .ignored }
            if owned[d.id] != nil { counters.fencedRejected += 1; return .fenced }
            guard var b = backups.removeValue(forKey: d.id) else { return .needsResync }
            defer { backups[d.id] = b }
            if b.owner != peer, d.epoch <= b.state.stamp.epoch { counters.fencedRejected += 1; return .fenced }
            if b.state.stamp.epoch == d.epoch, b.state.stamp.version >= d.version {
                b.lastHeard = now
                counters.staleIgnored += 1
                return .ignored
            }
            guard b.state.stamp.epoch == d.epoch, b.state.stamp.version == d.baseVersion else {
                if b.state.stamp.epoch > d.epoch { counters.fencedRejected += 1; return .fenced }
                return .needsResync
            }
            for (name, value) in d.updated { b.state.attributes[name] = value }
            for name in d.removed { b.state.attributes[name] = nil }
            b.state.stamp.version = d.version
            b.state.lastAccessedAt = max(b.state.lastAccessedAt, d.lastAccessedAt)
            b.state.maxInactiveInterval = d.maxInactiveInterval
            b.state.replicaSet = d.replicaSet
            b.lastHeard = now
            counters.applied += 1
            return .applied
        case .invalidate(let i):
            if let o = owned[i.id] {
                guard i.stamp.epoch > o.state.stamp.epoch else { counters.fencedRejected += 1; return .fenced }
                owned[i.id] = nil
                note(.passivated, i.id, i.stamp)
            }
            if let b = backups[i.id], b.state.stamp > i.stamp { counters.staleIgnored += 1; return .ignored }
            if let b = backups[i.id], b.owner != peer, i.stamp.epoch <= b.state.stamp.epoch { counters.fencedRejected += 1; return .fenced }
            let idle = backups.removeValue(forKey: i.id)?.state.maxInactiveInterval
            if let t = tombstones[i.id], t.stamp >= i.stamp { return .applied }
            addTombstone(i.id, i.stamp, now: now, idle: idle)
            counters.applied += 1
            return .applied
        case .touch(let t):
            guard var b = backups[t.id] else { return tombstones[t.id] == nil ? .needsResync : .ignored }
            if b.owner != peer, t.stamp.epoch <= b.state.stamp.epoch { return .ignored }
            if b.state.stamp == t.stamp {
                b.state.lastAccessedAt = max(b.state.lastAccessedAt, t.lastAccessedAt)
                b.lastHeard = now
                backups[t.id] = b
                return .applied
            }
            return b.state.stamp < t.stamp ? .needsResync : .ignored
        case .receipt, .resync, .prepare, .promise, .nominate, .handover, .handoverReply, .digest, .digestReply, .release:
            return .ignored
        }
    }

    // MARK: - Time

    /// What a tick produced.
    package struct TickOutcome: Sendable {
        /// Batches to retransmit, by peer.
        package var resend: [(peer: String, batches: [OutboundBatch])] = []
        /// Waits that timed out.
        package var completed: [(WaiterID, WaitResult)] = []
        /// Sessions that expired on this owner.
        package var expired: [SessionID] = []
        /// Backup copies promoted (their old owner's leases ran out).
        package var promoted: [SessionID] = []
        /// Anti-entropy digests to send, by backup.
        package var digests: [(peer: String, request: DigestRequest)] = []
        /// Prepares (of takeovers and confirmations) to send again, by member.
        package var prepares: [(peer: String, request: PrepareRequest)] = []
        /// Hand-over answers to send again (their takers have not confirmed them), with the
        /// taker's process: only that process may be sent them.
        package var handovers: [(peer: String, taker: NodeID, reply: HandoverReply)] = []
    }

    /// A hand-over whose taker has not been heard from since.
    struct UnconfirmedHandoff: Sendable {
        var to: String
        var taker: NodeID
        var handed: SessionState
        /// The request it answered, and when the answer was last sent (it is sent again
        /// until the taker's word arrives: an answer lost with its datagram or connection
        /// must not leave the session without an owner).
        var requestID: UInt64
        var sentAt: MonotonicInstant
    }

    /// Advances time: retries and drops, time-based writes, access replication, repair,
    /// wait timeouts, owner expiry, backup eviction and tombstone expiry. Streams to the
    /// peers in `reliable` (a live ordered connection carries them) are not retried.
    package mutating func tick(now: MonotonicInstant, wall: WallTime, datagram: Bool, reliable: Set<String> = []) -> TickOutcome {
        var out = TickOutcome()
        let p = settings.policy
        let limit = maxBatchBytes(datagram: datagram)
        let retryLimit = p.mode == .bestEffort ? p.retryCount : nil
        for peer in streams.keys.sorted() {
            if reliable.contains(peer) {
                if let probe = streams[peer]!.probe(now: now, retryInterval: p.retryInterval) {
                    out.resend.append((peer, [probe]))
                    counters.retries += 1
                }
                continue
            }
            let r = streams[peer]!.retry(now: now, retryInterval: p.retryInterval, retryLimit: retryLimit, maxBatchBytes: limit)
            counters.retries += r.resent
            counters.drops += r.dropped.count
            for id in r.dropped where owned[id] != nil { repair.insert(id) }
            var batches = r.batches
            if r.watermarkMoved, batches.isEmpty {
                // Tell the receiver to stop waiting for what was dropped.
                batches = [OutboundBatch(firstSequence: 0, lowWatermark: streams[peer]!.lowWatermark, messages: [], byteCount: 0)]
            }
            if !batches.isEmpty { out.resend.append((peer, batches)) }
        }
        if let due = nextTimedWrite, now >= due {
            for id in dirty.sorted() where owned[id] != nil && p.writeFrequency == .timeBased { _ = send(id, now: now) }
            if p.writeFrequency == .timeBased { dirty.removeAll() }
            nextTimedWrite = dirty.isEmpty ? nil : now + p.writeInterval
        }
        let accessInterval = settings.sessions.effectiveAccessInterval
        if nextAccessFlush == nil { nextAccessFlush = now + accessInterval }
        if let due = nextAccessFlush, now >= due {
            for id in accessed.sorted() { sendTouch(id, now: now) }
            accessed.removeAll()
            nextAccessFlush = now + accessInterval
        }
        if nextRepair == nil { nextRepair = now + p.repairInterval }
        if let due = nextRepair, now >= due {
            for id in repair.sorted() where owned[id] != nil && !refusedForGood.contains(id) {
                owned[id]!.needsFull = true
                _ = send(id, now: now)
                counters.repairsSent += 1
            }
            repair.removeAll()
            nextRepair = now + p.repairInterval
            out.digests = digestRequests()
        }
        for (key, w) in waiters.sorted(by: { $0.key < $1.key }) where now >= w.deadline {
            waiters[key] = nil
            counters.syncTimeouts += 1
            out.completed.append((WaiterID(rawValue: key), .timedOut(w.acked.sorted())))
        }
        out.promoted = runPendingPromotions(now: now)
        sendPromoted(now: now)
        sweepNominations(now: now)
        out.prepares = resendPrepares(now: now)
        out.handovers = resendHandoffs(now: now)
        sweepHandedAway(now: now)
        runRefill(now: now, budget: Self.refillSlice)
        out.expired = expireOwned(wall: wall, now: now)
        evictBackups(now: now)
        for id in tombstoneExpiry.popDue(Int64(now.nanoseconds / 1_000_000_000)) {
            if let t = tombstones[id], t.until <= now { tombstones[id] = nil }
        }
        return out
    }

    mutating func expireOwned(wall: WallTime, now: MonotonicInstant) -> [SessionID] {
        var expired: [SessionID] = []
        for id in ownerExpiry.popDue(wall.milliseconds / 1000) {
            guard let o = owned[id] else { continue }
            if o.state.expiresAt + o.expiryGrace <= wall {
                _ = try? invalidate(id, reason: .expired, now: now, wait: false)
                counters.expired += 1
                expired.append(id)
            } else {
                ownerExpiry.schedule(id, at: (o.state.expiresAt + o.expiryGrace).milliseconds / 1000 + 1)
            }
        }
        return expired
    }

    mutating func evictBackups(now: MonotonicInstant) {
        for id in backupExpiry.popDue(Int64(now.nanoseconds / 1_000_000_000)) {
            guard let b = backups[id] else { continue }
            let deadline = b.lastHeard + b.state.maxInactiveInterval + settings.sessions.backupGrace
            if deadline <= now {
                backups[id] = nil
                counters.backupsEvicted += 1
            } else {
                backupExpiry.schedule(id, at: Int64(deadline.nanoseconds / 1_000_000_000) + 1)
            }
        }
    }

    // MARK: - Internals

    /// Checks `attributes` after `changes` without building the result: names, each value
    /// against `maxAttributeBytes`, the count against `maxAttributes`, the total against
    /// `maxSessionBytes`, and the whole against what one message of one frame carries
    /// (`WireLimits`), so that no session a receiver would refuse is ever created. Returns
    /// the session's size (names plus values) after the changes.
    @discardableResult
    func checkSizes(_ attributes: [String: [UInt8]], applying changes: ChangeSet) throws(SessionError) -> Int {
        let limits = WireLimits()
        var total = 0, count = 0, largest = 0
        for (name, value) in attributes where changes.updated[name] == nil && !changes.removed.contains(name) {
            total += name.utf8.count + value.count
            count += 1
            largest = max(largest, value.count)
        }
        for (name, value) in changes.updated {
            guard AttributeName.isValid(name) else {
                throw SessionError(.invalidAttributeName, "attribute names are 1-256 bytes of UTF-8 without control characters")
            }
            guard value.count <= settings.sessions.maxAttributeBytes else {
                throw SessionError(.payloadTooLarge, "attribute exceeds maxAttributeBytes (\(settings.sessions.maxAttributeBytes))")
            }
            total += name.utf8.count + value.count
            count += 1
            largest = max(largest, value.count)
        }
        guard count <= settings.sessions.maxAttributes else {
            throw SessionError(.payloadTooLarge, "session would hold \(count) attributes, more than maxAttributes (\(settings.sessions.maxAttributes))")
        }
        guard total <= settings.sessions.maxSessionBytes else {
            throw SessionError(.payloadTooLarge, "session exceeds maxSessionBytes (\(settings.sessions.maxSessionBytes))")
        }
        if let problem = limits.sessionProblem(attributes: count, bytes: total, largestValue: largest) {
            throw SessionError(.payloadTooLarge, "session too large to replicate: \(problem)")
        }
        return total
    }

    /// Checks a new session's attributes (all of them are new); returns its size.
    @discardableResult
    func checkSizes(_ attributes: [String: [UInt8]]) throws(SessionError) -> Int {
        var all = ChangeSet()
        all.updated = attributes
        return try checkSizes([:], applying: all)
    }

    /// Bytes (names plus values) of every session owned and every backup copy held here.
    package var heldBytes: Int { owned.bytes + backups.bytes }

    /// Throws `capacity` when holding `size` more bytes would pass this lane's share of
    /// the node's byte budget (`sessions.maxBytes / lanes`); `size` 0 or less always fits.
    func checkBudget(adding size: Int) throws(SessionError) {
        guard size > 0, let budget = settings.sessions.maxBytes else { return }
        let share = budget / max(1, settings.lanes)
        guard heldBytes + size <= share else {
            throw SessionError(.capacity, "sessions.maxBytes (\(budget) bytes) reached: this lane holds \(heldBytes) of its \(share)")
        }
    }

    /// Whether the write proceeds local-only (degrade); throws when it must fail.
    func checkSyncReplicas(_ replicaSet: [String]) throws(SessionError) -> Bool {
        guard settings.policy.mode == .synchronous else { return false }
        let reachable = replicaSet.filter { !unreachable.contains($0) }.count
        // Fewer eligible members than `replicas` means a smaller replica set, not a refusal.
        let needed = settings.policy.syncReplicasNeeded(backups: replicaSet.count)
        guard reachable < needed else { return false }
        if settings.policy.onSyncTimeout == .degrade { return true }
        throw SessionError(.insufficientReplicas, "\(reachable) reachable backups, minSyncReplicas is \(needed)")
    }

    /// Throws `overloaded` when a best-effort end-of-service write would queue behind more
    /// than `bestEffortBacklog` bytes to a backup: the writer waits (up to `syncTimeout`)
    /// for the peer to catch up, feeling backpressure instead of losing older writes.
    func checkBacklog(_ replicaSet: [String]) throws(SessionError) {
        guard settings.policy.mode == .bestEffort, settings.policy.writeFrequency == .endOfService else { return }
        let limit = bestEffortBacklog
        for peer in replicaSet where (streams[peer]?.queuedBytes ?? 0) > limit {
            throw SessionError(.overloaded, "best-effort queue to \(peer) holds more than \(limit) bytes")
        }
    }

    /// Bytes a best-effort write may queue behind, per backup, in this lane: this lane's
    /// share of what the UDP window carries (`udpWindow x udpMaxPayload / lanes`), at
    /// least 256 KiB.
    var bestEffortBacklog: Int {
        let p = settings.policy
        return max(256 << 10, p.udpWindow * p.udpMaxPayload / max(1, settings.lanes))
    }

    /// Throws `overloaded` when an acknowledged/synchronous queue is full (best-effort
    /// sheds instead).
    func checkQueues(_ replicaSet: [String]) throws(SessionError) {
        guard settings.policy.mode != .bestEffort else { return }
        for peer in replicaSet where (streams[peer]?.queuedBytes ?? 0) > laneQueueLimit {
            throw SessionError(.overloaded, "replication queue to \(peer) is full")
        }
    }

    func replicable(_ state: SessionState) -> SessionState {
        guard !settings.sessions.transientAttributes.isEmpty else { return state }
        // (A local: a closure reading `settings` through `self` copied the whole shard.)
        let sessions = settings.sessions
        var s = state
        s.attributes = s.attributes.filter { !sessions.isTransient($0.key) }
        return s
    }

    /// Sends the pending changes of `id` (a delta, or a full state when needed) to every
    /// member of its replica set; returns the sequence per peer.
    mutating func send(_ id: SessionID, now: MonotonicInstant) -> [String: UInt64] {
        dirty.remove(id)
        guard var entry = owned[id], entry.sentVersion < entry.state.stamp.version || entry.needsFull else { return [:] }
        let state = entry.state
        guard !state.replicaSet.isEmpty else {
            entry.pending = ChangeSet(); entry.sentVersion = state.stamp.version; entry.needsFull = false
            owned[id] = entry
            return [:]
        }
        // Coalesced changes (time-based, manual) can name more removed attributes than a
        // message carries: the whole session, which the size checks bound, goes instead.
        let full = entry.sentVersion == 0 || entry.needsFull || settings.policy.writeContents == .allAttributes
            || !Self.deltaFits(entry.pending, state, maxAttributes: settings.sessions.maxAttributes)
        let message: ReplicationMessage
        if full {
            message = .full(replicable(state))
            counters.fullStatesSent += state.replicaSet.count
        } else {
            var set: [String: [UInt8]] = [:]
            let sessions = settings.sessions
            for name in entry.pending.updated.keys where !sessions.isTransient(name) { set[name] = state.attributes[name] }
            let removed = entry.pending.removed.filter { !sessions.isTransient($0) }.sorted()
            message = .delta(SessionDelta(id: id, epoch: state.stamp.epoch, baseVersion: entry.sentVersion, version: state.stamp.version,
                                          lastAccessedAt: state.lastAccessedAt, maxInactiveInterval: state.maxInactiveInterval,
                                          replicaSet: state.replicaSet, updated: set, removed: removed))
            counters.deltasSent += state.replicaSet.count
        }
        entry.pending = ChangeSet()
        entry.sentVersion = state.stamp.version
        entry.needsFull = false
        entry.accessSent = state.lastAccessedAt
        owned[id] = entry
        accessed.remove(id)
        let bytes = MessageCodec.encode(message)
        var targets: [String: UInt64] = [:]
        for peer in state.replicaSet {
            targets[peer] = enqueue(bytes, to: peer, session: id, mustDeliver: false)
        }
        return targets
    }

    /// Whether a delta of `pending` on `state` stays within one message's counts and one
    /// frame's bytes.
    static func deltaFits(_ pending: ChangeSet, _ state: SessionState, maxAttributes: Int) -> Bool {
        guard pending.removed.count + pending.updated.count <= maxAttributes else { return false }
        let limits = WireLimits()
        var bytes = limits.encodedStateBytes(attributes: pending.updated.count, bytes: 0)
        for name in pending.updated.keys { bytes += name.utf8.count + (state.attributes[name]?.count ?? 0) }
        for name in pending.removed { bytes += 2 + name.utf8.count }
        return bytes <= limits.maxFrameBytes
    }

    mutating func sendTouch(_ id: SessionID, now: MonotonicInstant) {
        guard let entry = owned[id], entry.state.lastAccessedAt > entry.accessSent, entry.sentVersion == entry.state.stamp.version else { return }
        owned[id]!.accessSent = entry.state.lastAccessedAt
        let stamp = Stamp(epoch: entry.state.stamp.epoch, version: entry.sentVersion)
        let bytes = MessageCodec.encode(.touch(Touch(id: id, stamp: stamp, lastAccessedAt: entry.state.lastAccessedAt)))
        for peer in entry.state.replicaSet {
            _ = enqueue(bytes, to: peer, session: id, mustDeliver: false)
            counters.touchesSent += 1
        }
    }

    mutating func enqueue(_ bytes: [UInt8], to peer: String, session: SessionID, mustDeliver: Bool) -> UInt64 {
        if streams[peer] == nil { streams[peer] = OutboundStream(startingAt: sequenceFloor[peer] ?? 1) }
        let seq = streams[peer]!.enqueue(bytes, session: session, mustDeliver: mustDeliver)
        if settings.policy.mode == .bestEffort {
            let limit = laneQueueLimit
            let dropped = streams[peer]!.shed(toFit: limit)
            counters.overflowDrops += dropped.count
            for id in dropped where owned[id] != nil { repair.insert(id) }
        }
        peersWithUnsent.insert(peer)
        return seq
    }

    mutating func outcome(for id: SessionID, targets: [String: UInt64], localOnly: Bool, now: MonotonicInstant) -> CommitOutcome {
        let state = owned[id]?.state
        guard settings.policy.mode == .synchronous, !localOnly, !targets.isEmpty else {
            return CommitOutcome(state: state, waiter: nil, localOnly: localOnly || targets.isEmpty)
        }
        let live = targets.filter { !unreachable.contains($0.key) }
        let needed = settings.policy.syncReplicasNeeded(backups: targets.count)
        let w = addWaiter(id, targets: live, needed: needed, now: now)
        return CommitOutcome(state: state, waiter: w, localOnly: false)
    }

    mutating func addWaiter(_ id: SessionID, targets: [String: UInt64], needed: Int, now: MonotonicInstant) -> WaiterID {
        let key = nextWaiter
        nextWaiter += 1
        var w = Waiter(session: id, targets: [:], needed: needed, deadline: now + settings.policy.syncTimeout)
        for (peer, seq) in targets.sorted(by: { $0.key < $1.key }) {
            if seq == 0 || (streams[peer]?.receiptedThrough ?? 0) >= seq {
                w.acked.append(peer)
            } else {
                w.targets[peer] = seq
                waitersByPeer[peer, default: []].append((seq, key))
            }
        }
        waiters[key] = w
        return WaiterID(rawValue: key)
    }

    /// Completes waits that need nothing more (all targets already receipted); the node
    /// calls this right after registering a wait.
    package mutating func settledWait(_ waiter: WaiterID) -> WaitResult? {
        guard let w = waiters[waiter.rawValue], w.acked.count >= w.needed else { return nil }
        waiters[waiter.rawValue] = nil
        return .replicated(w.acked.sorted())
    }

    /// Moves every wait on `peer` for session `id` up to sequence `old` to `new` (the
    /// whole session sent in answer to a resync), so that a receipt covering a message
    /// the backup could not apply never confirms it.
    mutating func retarget(peer: String, session id: SessionID, upTo old: UInt64, to new: UInt64) {
        guard let count = waitersByPeer[peer]?.count, count > 0 else { return }
        var moved: [UInt64] = []
        for i in 0..<count {
            let entry = waitersByPeer[peer]![i]
            guard entry.sequence > 0, entry.sequence <= old, let w = waiters[entry.waiter],
                  w.session == id, w.targets[peer] == entry.sequence else { continue }
            waiters[entry.waiter]!.targets[peer] = new
            waitersByPeer[peer]![i].sequence = 0
            moved.append(entry.waiter)
        }
        for key in moved { waitersByPeer[peer]!.append((new, key)) }
    }

    mutating func storeBackup(_ s: SessionState, from owner: String, ownerID: NodeID? = nil, now: MonotonicInstant) {
        let isNew = backups[s.id] == nil
        backups[s.id] = Backup(state: s, lastHeard: now, owner: owner, ownerID: ownerID)
        if isNew {
            let deadline = now + s.maxInactiveInterval + settings.sessions.backupGrace
            backupExpiry.schedule(s.id, at: Int64(deadline.nanoseconds / 1_000_000_000) + 1)
        }
    }

    mutating func addTombstone(_ id: SessionID, _ stamp: Stamp, now: MonotonicInstant, idle: Duration? = nil) {
        var sessions = settings.sessions
        if let idle { sessions.maxInactiveInterval = max(idle, sessions.maxInactiveInterval) }
        let until = now + sessions.tombstoneLifetime(repairInterval: settings.policy.repairInterval)
        tombstones[id] = Tombstone(stamp: stamp, until: until)
        tombstoneExpiry.schedule(id, at: Int64(until.nanoseconds / 1_000_000_000) + 1)
    }
}

extension ReplicaShard {
    /// Counts a synchronous write that degraded to local durability.
    package mutating func noteDegraded() { counters.syncDegraded += 1 }
    /// Counts resync requests this node sent as a backup.
    package mutating func noteResyncRequested(_ n: Int) { counters.resyncsRequested += n }
}
