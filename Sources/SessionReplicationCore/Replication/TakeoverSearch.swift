/// The decisions of one takeover on request (docs/design.md (Membership and failover)): which members to ask for
/// a session this node does not own, when to wait, when to follow a referral, and when
/// an answer is final. A value type with no clock and no I/O: the node's shell reports
/// what it holds and what members answered, and carries out each `Step`.
///
/// Rules, each found the hard way (see the tests):
/// - A backup copy names the owner to ask; a referral wins over that name (a stray copy
///   of an older epoch can name a node that no longer owns the session), and a named
///   owner that holds nothing makes the next round ask every live member.
/// - A node that may not own the session (`affinity: none`, a `server` node, or it
///   handed the session away less than `takeoverCooldown` ago and the owner its copy
///   names is alive) answers `misdirected` naming the owner instead of taking it over.
/// - `session-not-found` is answered only when authoritative: a tombstone here or at a
///   member, or every asked member holds nothing while none is suspect and every other
///   configured member is accounted for (asked, or known dead or left).
/// - Nothing waits past the deadline (`handoverTimeout` from the start): referrals are
///   followed at once but never past it, since two stray copies can refer to each other.
package struct TakeoverSearch: Sendable {
    /// What this node holds of the session at the start of a round.
    package enum Held: Hashable, Sendable {
        /// It owns the session: the search is over.
        case owner
        /// A tombstone: the session ended.
        case tombstone
        /// A backup copy naming `owner` (nil when the copy names none).
        case backup(owner: String?)
        /// Nothing.
        case nothing
    }

    /// What the shell does next.
    package enum Step: Hashable, Sendable {
        /// This node owns the session now.
        case done
        /// The search ends with this error.
        case fail(SessionError)
        /// Send a handover request to each of these members and report what arrives
        /// within `timeout` to `answered`.
        case ask([String], timeout: Duration)
        /// Wait this long, then start the next round with `next`.
        case wait(Duration)
    }

    /// How the search may end.
    package struct Settings: Hashable, Sendable {
        /// Whether this node may take sessions over: false under `affinity: none` and on a
        /// node whose role does not own sessions. Default true.
        package var mayTakeOver: Bool
        /// Whether this node's role owns sessions (false on a `server` node, which stores
        /// backups only). Default true.
        package var ownsSessions: Bool
        /// Whether to take the session over even when this node handed it away less than
        /// `takeoverCooldown` ago. Default false.
        package var ignoringCooldown: Bool
        /// Whether this node is the only member of its configuration: nobody else can hold
        /// a session, so a search for one it holds nothing of ends at once as not found
        /// instead of waiting `handoverTimeout` for members there are none of. Default false.
        package var alone: Bool

        /// Creates settings; the defaults are those of a sticky node of role `both`.
        package init(mayTakeOver: Bool = true, ownsSessions: Bool = true, ignoringCooldown: Bool = false, alone: Bool = false) {
            self.mayTakeOver = mayTakeOver
            self.ownsSessions = ownsSessions
            self.ignoringCooldown = ignoringCooldown
            self.alone = alone
        }

        /// The settings `policy` gives (its `affinity` and `role`), with `ignoringCooldown`
        /// (default false). A caller that ignores the cooldown cannot send its client to
        /// the owner (an application's embedded driver): it takes the session over under
        /// `affinity: none` too, rather than read a copy it may not serve.
        package init(policy: ReplicationPolicy, ignoringCooldown: Bool = false, alone: Bool = false) {
            self.init(mayTakeOver: (policy.affinity != .none || ignoringCooldown) && policy.role.owns, ownsSessions: policy.role.owns,
                      ignoringCooldown: ignoringCooldown, alone: alone)
        }
    }

    /// How long a round waits before looking again when nobody can be asked (the owner is
    /// suspect and failover decides) or nothing was final: 20 ms.
    package static let pollInterval: Duration = .milliseconds(20)
    /// The longest a single round of asking waits for answers: 500 ms (a referral or
    /// the next round then asks again, within the deadline).
    package static let maxRoundTimeout: Duration = .milliseconds(500)
    /// The shortest: 50 ms, so that a round started just before the deadline still hears
    /// from a member on loopback.
    package static let minRoundTimeout: Duration = .milliseconds(50)

    /// The session searched for.
    package let id: SessionID
    /// This node's name (a copy elsewhere naming this node as owner is no referral).
    package let selfName: String
    /// How the search may end.
    package let settings: Settings
    /// When the search gives up with `session-unavailable`.
    package let deadline: MonotonicInstant
    /// The owner last named by a copy or an answer; named in `session-unavailable`.
    package private(set) var knownOwner: String?
    /// The owner a `kept` answer named while this node held nothing: worth remembering
    /// for a while (the shell's owner hints), so the next request is referred at once.
    package private(set) var learnedOwner: String?

    var referred: [String] = []
    var askEveryone = false
    var round: (held: Held, statuses: [String: MemberStatus], targets: [String])?

    /// Starts a search for `id` by the node `selfName` at `now`, giving up
    /// `handoverTimeout` later.
    package init(id: SessionID, selfName: String, settings: Settings = Settings(), handoverTimeout: Duration, now: MonotonicInstant) {
        self.id = id
        self.selfName = selfName
        self.settings = settings
        self.deadline = now + handoverTimeout
    }

    /// Starts a round: `held` is what this node holds of the session, `handedAwayRecently`
    /// whether it handed the session away less than `takeoverCooldown` ago (honoured only
    /// while the owner its copy names is alive), `statuses`
    /// every peer's membership status, and `hint` a remembered owner (consulted only when
    /// this node holds nothing and may not take the session over). Never `.done` unless
    /// `held` is `.owner`.
    package mutating func next(held: Held, handedAwayRecently: Bool, statuses: [String: MemberStatus],
                              hint: String?, now: MonotonicInstant) -> Step {
        let live = statuses.filter { $0.value.isLive }.map(\.key).sorted()
        var targets: [String]
        switch held {
        case .owner:
            return .done
        case .tombstone:
            return .fail(SessionError(.sessionNotFound, "session \(id) ended"))
        case .backup(let named):
            let owner = named ?? "unknown"
            // A referral being followed is fresher news than the copy's name.
            if referred.isEmpty { knownOwner = owner }
            if handedAwayRecently, !settings.ignoringCooldown, statuses[owner] == .alive {
                return .fail(SessionError(.notOwner, "this node handed session \(id) to \(owner), its owner, less than takeoverCooldown ago; ask \(owner)", owner: owner))
            }
            if !settings.mayTakeOver {
                return .fail(SessionError(.notOwner, "session \(id) is owned by \(owner)", owner: owner))
            }
            if !referred.isEmpty {
                targets = referred
            } else if askEveryone {
                targets = live
            } else {
                targets = statuses[owner] == .alive ? [owner] : []
            }
        case .nothing:
            if settings.alone { return .fail(SessionError(.sessionNotFound, "no member holds session \(id)")) }
            if !settings.mayTakeOver, referred.isEmpty, let hint, statuses[hint] == .alive {
                return .fail(SessionError(.notOwner, "session \(id) is owned by \(hint)", owner: hint))
            }
            targets = referred.isEmpty ? live : referred
            if !settings.ownsSessions, targets.isEmpty {
                return .fail(SessionError(.sessionUnavailable, "this node stores backups only and holds no copy of \(id)"))
            }
        }
        referred = []
        round = (held, statuses, targets)
        if targets.isEmpty {
            // The owner is suspect or was just declared dead: failover decides.
            guard now < deadline else { return .fail(unavailable) }
            return .wait(Self.pollInterval)
        }
        let left = deadline - now
        return .ask(targets, timeout: min(max(left, Self.minRoundTimeout), Self.maxRoundTimeout))
    }

    /// Ends a round of asking: `answers` are what arrived (by member), `ownsNow` whether
    /// a handed-over session was adopted meanwhile, `configuredPeers` every other member
    /// of the configuration. Returns the step, or `nil` to start the next round at once
    /// (a referral to follow).
    package mutating func answered(_ answers: [String: HandoverReply.Answer], ownsNow: Bool,
                                  configuredPeers: [String], now: MonotonicInstant) -> Step? {
        guard !ownsNow else { return .done }
        guard let (held, statuses, targets) = round else { return .wait(Self.pollInterval) }
        round = nil
        var none = 0, ended = false, kept: String?
        for (peer, answer) in answers.sorted(by: { $0.key < $1.key }) {
            switch answer {
            case .none: none += 1
            case .ended: ended = true
            case .backup(_, let owner):
                knownOwner = owner
                if owner != selfName, !referred.contains(owner) { referred.append(owner) }
            case .kept:
                kept = peer
                knownOwner = peer
            case .transferred:
                break
            }
        }
        if let kept, !settings.mayTakeOver {
            if held == .nothing { learnedOwner = kept }
            return .fail(SessionError(.notOwner, "session \(id) is owned by \(kept)", owner: kept))
        }
        if case .backup = held, kept == nil, referred.isEmpty, none > 0 { askEveryone = true }
        if held == .nothing, kept == nil, referred.isEmpty {
            if ended { return .fail(SessionError(.sessionNotFound, "session \(id) ended")) }
            let suspect = statuses.values.contains(.suspect)
            // A node that just rejoined under a new id does not know every member yet
            // (found by `drs drill hang`: a resumed node answered 404 for sessions a
            // member it had not heard from yet owned).
            let accounted = configuredPeers.allSatisfy { peer in
                targets.contains(peer) || statuses[peer].map { !$0.isLive } ?? false
            }
            if none == targets.count, !suspect, accounted {
                return .fail(SessionError(.sessionNotFound, "no member holds session \(id)"))
            }
        }
        guard now < deadline else { return .fail(unavailable) }
        return referred.isEmpty ? .wait(Self.pollInterval) : nil
    }

    /// `session-unavailable`, naming the owner when known.
    var unavailable: SessionError {
        SessionError(.sessionUnavailable, "no node handed session \(id) over within handoverTimeout; retry", owner: knownOwner)
    }
}

/// Lookups of ids a node holds nothing of in flight (each asks every live member), and
/// how many may be: a client sending random ids costs the cluster a bounded number of
/// rounds at a time.
package struct SearchSlots: Sendable {
    /// Lookups in flight.
    package private(set) var inFlight = 0
    /// At most this many at once. Default 256; 0 refuses every lookup.
    package var limit: Int

    /// Creates the slots with `limit` (default 256).
    package init(limit: Int = 256) { self.limit = limit }

    /// Takes a slot; returns `nil` when taken, or the limit when every slot is in use
    /// (the caller answers `overloaded`).
    package mutating func acquire() -> Int? {
        guard inFlight < limit else { return limit }
        inFlight += 1
        return nil
    }

    /// Gives back a slot taken by `acquire`.
    package mutating func release() { inFlight = max(0, inFlight - 1) }
}

/// Owners learned from `kept` answers (docs/design.md (Membership and failover): answers cached 1 s): a node
/// with no copy of a session an owner keeps (`affinity: none`) refers requests to that
/// owner without asking every member again. At most `limit` entries (all dropped when
/// full, the simplest bound on memory); the shell uses an entry only while its owner is
/// alive.
package struct OwnerHints: Sendable {
    /// How long a hint lasts: 1 s.
    package static let ttl: Duration = .seconds(1)
    /// The most hints kept: 100,000.
    package static let limit = 100_000
    /// Each remembered owner and when the hint lapses.
    package private(set) var entries: [SessionID: (owner: String, until: MonotonicInstant)] = [:]

    /// An empty table.
    package init() {}

    /// Remembers that `owner` kept `id` at `now`.
    package mutating func remember(_ id: SessionID, owner: String, now: MonotonicInstant) {
        if entries.count >= Self.limit { entries.removeAll(keepingCapacity: true) }
        entries[id] = (owner, now + Self.ttl)
    }

    /// The owner remembered for `id`, if the hint has not lapsed at `now` (a lapsed one
    /// is dropped).
    package mutating func owner(of id: SessionID, now: MonotonicInstant) -> String? {
        guard let entry = entries[id] else { return nil }
        guard now < entry.until else { entries[id] = nil; return nil }
        return entry.owner
    }
}

extension ReplicaShard {
    /// What this shard holds of `id`, as `TakeoverSearch.next` takes it.
    package func searchHeld(_ id: SessionID) -> TakeoverSearch.Held {
        switch copy(of: id) {
        case .owner?: .owner
        case .tombstone?: .tombstone
        case .backup?: .backup(owner: backupOwner(of: id))
        case nil: .nothing
        }
    }
}
