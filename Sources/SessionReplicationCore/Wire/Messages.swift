/// Changes to one session since the state at `baseVersion` in the same epoch.
package struct SessionDelta: Hashable, Sendable {
    /// The session.
    package var id: SessionID
    /// The epoch both states belong to.
    package var epoch: Epoch
    /// The version of the previous state sent to this backup (not `version - 1` when
    /// changes were coalesced).
    package var baseVersion: UInt64
    /// The version after applying this delta.
    package var version: UInt64
    /// Last access as the owner saw it.
    package var lastAccessedAt: WallTime
    /// The idle limit after the change.
    package var maxInactiveInterval: Duration
    /// The owner's recorded replica set.
    package var replicaSet: [String]
    /// Attributes set, with their new values.
    package var updated: [String: [UInt8]]
    /// Attributes removed.
    package var removed: [String]

    /// Creates a delta.
    package init(id: SessionID, epoch: Epoch, baseVersion: UInt64, version: UInt64, lastAccessedAt: WallTime,
                maxInactiveInterval: Duration, replicaSet: [String], updated: [String: [UInt8]], removed: [String]) {
        self.id = id
        self.epoch = epoch
        self.baseVersion = baseVersion
        self.version = version
        self.lastAccessedAt = lastAccessedAt
        self.maxInactiveInterval = maxInactiveInterval
        self.replicaSet = replicaSet
        self.updated = updated
        self.removed = removed
    }
}

/// Why a session ended.
package enum EndReason: UInt8, Hashable, Sendable {
    /// Invalidated by the application.
    case invalidated = 1
    /// Expired on its owner.
    case expired = 2
    /// Replaced by a new id.
    case rotated = 3
}

/// The end of a session: every holder keeps a tombstone for `(id, stamp)`.
package struct Invalidation: Hashable, Sendable {
    /// The session.
    package var id: SessionID
    /// Its last state; the tombstone beats this and anything older.
    package var stamp: Stamp
    /// Why it ended.
    package var reason: EndReason
    /// Creates an invalidation.
    package init(id: SessionID, stamp: Stamp, reason: EndReason) {
        self.id = id
        self.stamp = stamp
        self.reason = reason
    }
}

/// A later last-access time for a session whose content did not change.
package struct Touch: Hashable, Sendable {
    /// The session.
    package var id: SessionID
    /// The state the backup must hold for the touch to apply.
    package var stamp: Stamp
    /// The new last access.
    package var lastAccessedAt: WallTime
    /// Creates a touch.
    package init(id: SessionID, stamp: Stamp, lastAccessedAt: WallTime) {
        self.id = id
        self.stamp = stamp
        self.lastAccessedAt = lastAccessedAt
    }
}

/// Cumulative receipt: every data message of the stream `lane` up to `through` was
/// processed (applied, or reported in a resync request sent before this receipt), and the
/// sequences in `received` (inclusive ranges above `through`, at most 16) are held out of
/// order: the gaps between them are missing and should be resent.
package struct Receipt: Hashable, Sendable {
    /// The sender's lane the receipt is for.
    package var lane: UInt16
    /// Highest sequence processed contiguously.
    package var through: UInt64
    /// Ranges received beyond a gap, ascending, each `lower...upper`. Default none.
    package var received: [ClosedRange<UInt64>]
    /// Sequences delivered but refused as fenced (a message of an older epoch than the
    /// copy held here): covered by `through` yet not applied, so they confirm nothing to
    /// a synchronous write. Default none.
    package var refused: [UInt64]
    /// Most ranges a receipt carries.
    package static let maxRanges = 16
    /// Most refused sequences a receipt carries.
    package static let maxRefused = 1024
    /// Creates a receipt.
    /// The process whose stream this receipt is about: a receipt never confirms anything
    /// for another process of the same name (one started since). Default zero (unknown).
    package var stream = NodeID(0)
    package init(lane: UInt16, through: UInt64, received: [ClosedRange<UInt64>] = [], refused: [UInt64] = [], stream: NodeID = NodeID(0)) {
        self.stream = stream
        self.lane = lane
        self.through = through
        self.received = received
        self.refused = refused
    }
}

/// A backup asks for full states: each entry names the sequence whose message could not
/// be applied (a gap, an unknown session) and its session.
package struct ResyncRequest: Hashable, Sendable {
    /// One message that could not be applied.
    package struct Entry: Hashable, Sendable {
        /// Its stream sequence.
        package var sequence: UInt64
        /// Its session.
        package var id: SessionID
        /// Creates an entry.
        package init(sequence: UInt64, id: SessionID) {
            self.sequence = sequence
            self.id = id
        }
    }
    /// The owner's lane.
    package var lane: UInt16
    /// The messages that could not be applied.
    package var entries: [Entry]
    /// Creates a request.
    package init(lane: UInt16, entries: [Entry]) {
        self.lane = lane
        self.entries = entries
    }
}

/// A taker asks another holder of sessions whose owner died to promise (docs/design.md (Membership and failover),
/// takeover): it reports the copy it holds, and whether it is fresher.
package struct PrepareRequest: Hashable, Sendable {
    /// The owner that died.
    package var oldOwner: String
    /// The sessions and the stamp of the taker's own copy of each.
    package var entries: [Entry]
    /// One session.
    package struct Entry: Hashable, Sendable {
        /// The session.
        package var id: SessionID
        /// The taker's copy's stamp.
        package var stamp: Stamp
        /// Creates an entry.
        package init(id: SessionID, stamp: Stamp) {
            self.id = id
            self.stamp = stamp
        }
    }
    /// Creates a request.
    /// The departed owner's process: only that process loses its leases (a new process
    /// of the same name keeps getting them). Default zero (none named).
    package var oldOwnerID = NodeID(0)
    package init(oldOwner: String, oldOwnerID: NodeID = NodeID(0), entries: [Entry]) {
        self.oldOwnerID = oldOwnerID
        self.oldOwner = oldOwner
        self.entries = entries
    }
}

/// A holder's answer to `PrepareRequest`: for each session, its own copy when that is
/// fresher than the taker's, and how long ago it last granted the old owner a lease.
package struct PromiseReply: Hashable, Sendable {
    /// The owner that died.
    package var oldOwner: String
    /// Milliseconds since this holder last granted the old owner a lease (it grants no
    /// more from now on); `UInt32.max` when it never did.
    package var sinceGrantMs: UInt32
    /// The sessions asked about.
    package var entries: [Entry]
    /// One session.
    package struct Entry: Hashable, Sendable {
        /// The session.
        package var id: SessionID
        /// The holder's copy when it is fresher than the taker's; `nil` otherwise.
        package var fresher: SessionState?
        /// Whether the holder owns the session (it took it over meanwhile): the taker
        /// then gives up its takeover and keeps a backup of `fresher`.
        package var ownedByHolder: Bool
        /// For a fresher backup copy: the node it answers to. When that is not the
        /// departed owner, the session lives on elsewhere and the taker gives up.
        package var owner: String?
        /// The holder's tombstone of the session, when it holds one: nothing is promoted
        /// over a tombstone at least as new as the taker's copy.
        package var ended: Stamp?
        /// Creates an entry; `ownedByHolder` defaults to false, `owner` and `ended` to nil.
        package init(id: SessionID, fresher: SessionState?, ownedByHolder: Bool = false, owner: String? = nil, ended: Stamp? = nil) {
            self.id = id
            self.fresher = fresher
            self.ownedByHolder = ownedByHolder && fresher != nil
            self.owner = fresher == nil || ownedByHolder ? nil : owner
            self.ended = fresher == nil ? ended : nil
        }
    }
    /// Creates a reply.
    /// The departed owner's process (see `PrepareRequest.oldOwnerID`).
    package var oldOwnerID = NodeID(0)
    package init(oldOwner: String, oldOwnerID: NodeID = NodeID(0), sinceGrantMs: UInt32, entries: [Entry]) {
        self.oldOwnerID = oldOwnerID
        self.oldOwner = oldOwner
        self.sinceGrantMs = sinceGrantMs
        self.entries = entries
    }
}

/// A node asks for a session it was asked to serve (docs/design.md (Membership and failover), takeover on
/// request and handover): the owner hands it over, any other node says what it holds.
package struct HandoverRequest: Hashable, Sendable {
    /// Matches the reply to the request (chosen by the asker; never 0).
    package var requestID: UInt64
    /// The session.
    package var id: SessionID
    /// Creates a request.
    package init(requestID: UInt64, id: SessionID) {
        self.requestID = requestID
        self.id = id
    }
}

/// The answer to `HandoverRequest`, or (with `requestID` 0) a draining owner's unasked
/// handover of a session to the first member of its replica set.
package struct HandoverReply: Hashable, Sendable {
    /// What the answering node holds.
    package enum Answer: Hashable, Sendable {
        /// Nothing under this id.
        case none
        /// The session ended here at this stamp.
        case ended(Stamp)
        /// A backup copy at this stamp, of a session owned by `owner`.
        case backup(Stamp, owner: String)
        /// This node owns the session and keeps it (`affinity: none`, it took it less
        /// than `takeoverCooldown` ago, or it is fenced or stopping); ask again later.
        case kept(Stamp)
        /// The whole session: the asker owns it from now on under a higher epoch. The
        /// sender keeps a backup copy until the new owner's own copy supersedes it.
        case transferred(SessionState)
    }
    /// The request answered; 0 for a drain handover nobody asked for.
    package var requestID: UInt64
    /// The session.
    package var id: SessionID
    /// The answer.
    package var answer: Answer
    /// Creates a reply.
    package init(requestID: UInt64, id: SessionID, answer: Answer) {
        self.requestID = requestID
        self.id = id
        self.answer = answer
    }
}

/// Anti-entropy (docs/design.md (Replication)): an owner's digests of the sessions one backup should
/// hold, in one of the owner's lanes, as `buckets` XORs of `(id, epoch, version)` hashes.
package struct DigestRequest: Hashable, Sendable {
    /// Buckets per lane.
    package static let bucketCount = 1024
    /// Matches the reply; chosen by the owner.
    package var round: UInt64
    /// The owner's lane count (the backup groups its copies the owner's way).
    package var lanes: UInt16
    /// The owner's lane the digests cover.
    package var lane: UInt16
    /// `bucketCount` digests.
    package var buckets: [UInt64]
    /// Creates a request.
    package init(round: UInt64, lanes: UInt16, lane: UInt16, buckets: [UInt64]) {
        self.round = round
        self.lanes = lanes
        self.lane = lane
        self.buckets = buckets
    }
}

/// A backup's answer to `DigestRequest`: the buckets that differ and, for each, every
/// copy it holds of the owner's sessions there, so the owner can push what is missing or
/// stale and release what the backup should not hold.
package struct DigestReply: Hashable, Sendable {
    /// The request answered.
    package var round: UInt64
    /// The owner's lane.
    package var lane: UInt16
    /// Buckets whose digests differ.
    package var buckets: [UInt16]
    /// The backup's copies in those buckets.
    package var held: [Entry]
    /// One copy: a session and its stamp (the same pair a prepare names).
    package typealias Entry = PrepareRequest.Entry
    /// Creates a reply.
    package init(round: UInt64, lane: UInt16, buckets: [UInt16], held: [Entry]) {
        self.round = round
        self.lane = lane
        self.buckets = buckets
        self.held = held
    }
}

/// An owner tells a backup to drop copies it holds of sessions whose replica set no
/// longer names it (or that the owner no longer owns). Dropped only while the copy still
/// names that owner and is not newer than `stamp`.
package struct ReleaseRequest: Hashable, Sendable {
    /// The copies to drop, with the stamp the backup reported.
    package var entries: [DigestReply.Entry]
    /// Creates a request.
    package init(entries: [DigestReply.Entry]) { self.entries = entries }
}

/// Every message that travels in a replication frame.
package enum ReplicationMessage: Hashable, Sendable {
    /// A whole session (creation, all-attributes, resync, repair). Sequenced.
    case full(SessionState)
    /// Changes since a base version. Sequenced.
    case delta(SessionDelta)
    /// The session ended. Sequenced; acknowledged in every mode.
    case invalidate(Invalidation)
    /// A later last access. Sequenced.
    case touch(Touch)
    /// Control: a cumulative receipt.
    case receipt(Receipt)
    /// Control: a request for full states.
    case resync(ResyncRequest)
    /// Control: a taker's request to the other holders of a dead owner's sessions.
    case prepare(PrepareRequest)
    /// Control: a holder's answer to `prepare`. Accepted only for a takeover the
    /// receiver started (anything else is counted in `unaskedPromiseEntries` and ignored).
    case promise(PromiseReply)
    /// Control: a holder of a departed owner's sessions asks the first live member of
    /// their replica set to take them over. It names the sessions and the stamps of the
    /// sender's copies, no state: the receiver asks for the copies with a `prepare`.
    case nominate(PrepareRequest)
    /// Control: a request to hand a session over, or to say what is held of it.
    case handover(HandoverRequest)
    /// Control: the answer to `handover` (or a draining owner's handover).
    case handoverReply(HandoverReply)
    /// Control: an owner's anti-entropy digests for one lane.
    case digest(DigestRequest)
    /// Control: a backup's answer to `digest`.
    case digestReply(DigestReply)
    /// Control: copies a backup should drop.
    case release(ReleaseRequest)

    /// The session a data message is about; `nil` for control messages.
    package var sessionID: SessionID? {
        switch self {
        case .full(let s): return s.id
        case .delta(let d): return d.id
        case .invalidate(let i): return i.id
        case .touch(let t): return t.id
        case .receipt, .resync, .prepare, .promise, .nominate, .handover, .handoverReply, .digest, .digestReply, .release: return nil
        }
    }

    /// Whether the message takes a stream sequence number.
    package var isSequenced: Bool { sessionID != nil }
}
