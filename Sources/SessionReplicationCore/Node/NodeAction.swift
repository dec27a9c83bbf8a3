/// Identifies one request a caller made of a node (a read, a write scope, a takeover, a
/// drain). The shell allocates them below `internalBase`; the core uses the ids from
/// `internalBase` up for requests it makes of itself (answering a handover, which waits
/// for the session's scope like any caller).
package struct RequestID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The raw value.
    package var rawValue: UInt64
    /// Wraps a raw value.
    package init(_ rawValue: UInt64) { self.rawValue = rawValue }
    /// The first id the core keeps for itself.
    package static let internalBase: UInt64 = 1 << 63
    /// Whether the core made this request of itself.
    package var isInternal: Bool { rawValue >= Self.internalBase }
    package static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    package var description: String { "r\(rawValue)" }
}

/// Lane-tagged data batch: the never-sent or resent messages of one lane's stream to one
/// peer.
package struct LaneBatch: Hashable, Sendable {
    /// The lane (the sender's shard) whose stream the batch belongs to.
    package var lane: UInt16
    /// The sequenced messages.
    package var batch: OutboundBatch
    /// Creates a lane batch.
    package init(lane: UInt16, batch: OutboundBatch) {
        self.lane = lane
        self.batch = batch
    }
}

/// What the shell sends to one peer in one go: data batches (one frame each) and control
/// messages (one frame together), sealed by the process `speaker`. A transmission whose
/// speaker is no longer this process (it rejoined under a new id meanwhile) is dropped:
/// it speaks for the dead process.
package struct Transmission: Hashable, Sendable {
    /// The process that decided to send it.
    package var speaker: NodeID
    /// Data batches, in order.
    package var batches: [LaneBatch]
    /// Control messages (receipts, resync requests, prepares, promises, handovers, digests).
    package var control: [ReplicationMessage]
    /// Creates a transmission.
    package init(speaker: NodeID, batches: [LaneBatch] = [], control: [ReplicationMessage] = []) {
        self.speaker = speaker
        self.batches = batches
        self.control = control
    }
    /// Whether there is nothing to send.
    package var isEmpty: Bool { batches.isEmpty && control.isEmpty }
}

/// How a request ended.
package enum RequestResult: Hashable, Sendable {
    /// A read: the owned session (counting as an access), or `nil` when this node does
    /// not own it.
    case session(SessionState?)
    /// A write, creation or sync: the session after it (`nil` after an invalidation) and
    /// the backups that confirmed it (`nil`: local durability).
    case written(SessionState?, replicatedTo: [String]?)
    /// A takeover: this node owns the session now.
    case tookOver
    /// A drain: how many sessions were handed over.
    case drained(Int)
    /// The request failed; what the error says happened (nothing applied, except for
    /// `sync-timeout`).
    case failed(SessionError)
}

/// How a change scope ends (`NodeCore.commitScope`).
package enum ScopeCommit: Hashable, Sendable {
    /// Commit these changes (and a new idle limit when set).
    case changes(ChangeSet, maxInactiveInterval: Duration?)
    /// End the session (tombstone, replicated invalidation) for `reason`.
    case invalidate(EndReason)
    /// Release the scope without changing anything; the request fails with `error`.
    case abort(SessionError)
}

/// A line the shell logs.
package struct NodeLog: Hashable, Sendable {
    /// Log levels the core uses.
    package enum Level: Hashable, Sendable { case debug, info, notice, warning }
    /// The level.
    package var level: Level
    /// A static message.
    package var message: String
    /// Metadata (`drs.peer`, `drs.session`, ...).
    package var metadata: [String: String]
    /// Creates a log line.
    package init(_ level: Level, _ message: String, _ metadata: [String: String] = [:]) {
        self.level = level
        self.message = message
        self.metadata = metadata
    }
}

/// Why the core refused an inbound frame.
package enum FrameRefusal: String, Hashable, Sendable {
    /// It came from a process of that member that a later one replaced.
    case retiredProcess = "retired-process"
    /// Its sender is not a member.
    case unknownSender = "unknown-sender"
    /// Its sender is a process membership holds dead or left.
    case deadProcess = "dead-process"
    /// A control message it carried does not make sense (a lane this node does not run).
    case malformed
}

/// What the core asks the shell to do.
package enum NodeAction: Hashable, Sendable {
    /// Send a transmission to `peer` now.
    case send(peer: String, Transmission)
    /// Data or control messages wait for `peer`: call `NodeCore.flush` for it soon,
    /// after `delay` when given (receipts over UDP wait a moment so one covers many
    /// datagrams); one flush covers every request to flush made before it runs.
    case flush(peer: String, delay: Duration?)
    /// Send a membership message (a datagram, or over the stream when `reliable`) as
    /// process `speaker`.
    case sendMembership(MembershipOutgoing, speaker: NodeID)
    /// A request ended.
    case complete(RequestID, RequestResult)
    /// A scope request holds its session and this node may serve it: run the caller's
    /// body on `state`, then call `NodeCore.commitScope`.
    case scopeReady(RequestID, SessionState)
    /// This process took a new node id (it rejoined after the cluster declared it dead):
    /// seal from now on as the new id.
    case identityChanged(NodeID)
    /// A frame was refused (counted by reason).
    case refused(FrameRefusal)
    /// A backup copy changed (only when `NodeCore.reportsBackupApplies`).
    case backupApplied(SessionState)
    /// Something happened to a session here (only when `NodeCore.reportsEvents`).
    case event(SessionEvent)
    /// Log a line.
    case log(NodeLog)
}

/// One frame of a transmission, ready to be sealed: its header fields and body.
package struct OutboundFrame: Hashable, Sendable {
    /// The lane (stream) of its data; 0 for control.
    package var lane: UInt16
    /// Sequence of its first data message (0 without data).
    package var firstSequence: UInt64
    /// The sender's low watermark (0 without data).
    package var lowWatermark: UInt64
    /// The encoded `FrameBody`.
    package var body: [UInt8]
    /// Whether it goes as a datagram (UDP transport, and it fits `udpMaxPayload`);
    /// otherwise over the stream connection.
    package var datagram: Bool
}

extension Transmission {
    /// The frames this transmission is sent as: one per data batch and one for the control
    /// messages; over UDP (`datagram`) those that fit `maxDatagram` with the frame's
    /// overhead go as datagrams, larger ones over the stream.
    package func frames(datagram udp: Bool, maxDatagram: Int) -> [OutboundFrame] {
        var out: [OutboundFrame] = []
        func add(_ lane: UInt16, _ first: UInt64, _ low: UInt64, _ body: [UInt8]) {
            let fits = udp && body.count + FrameHeader.maxDatagramOverhead <= maxDatagram
            out.append(OutboundFrame(lane: lane, firstSequence: first, lowWatermark: low, body: body, datagram: fits))
        }
        for b in batches {
            add(b.lane, b.batch.firstSequence, b.batch.lowWatermark, FrameBody.encode(data: b.batch.messages, control: []))
        }
        // Control messages share frames of at most `maxControlFrameBytes` (a failover's
        // prepares in one frame passed the receiver's 16 MiB frame limit and were refused
        // whole).
        var group: [[UInt8]] = []
        var bytes = 0
        for message in control {
            let encoded = MessageCodec.encode(message)
            if !group.isEmpty, bytes + encoded.count > Self.maxControlFrameBytes {
                add(0, 0, 0, FrameBody.encode(data: [], control: group))
                group = []
                bytes = 0
            }
            group.append(encoded)
            bytes += encoded.count
        }
        if !group.isEmpty { add(0, 0, 0, FrameBody.encode(data: [], control: group)) }
        return out
    }

    /// Encoded control messages one frame carries at most, besides a first message of any
    /// size. Default 4 MiB, a quarter of `WireLimits.maxFrameBytes`.
    package static let maxControlFrameBytes = 4 << 20
}

/// Something that happened to a session on this node, for the application (`created`,
/// `changed`, `expired`, `invalidated`, `rotated`, `activated`: this node became its
/// owner by takeover, failover or handover; `passivated`: it stopped being the owner).
public struct SessionEvent: Hashable, Sendable {
    /// What happened.
    public enum Kind: Hashable, Sendable {
        /// Created here.
        case created
        /// Changed here: the attributes set or removed.
        case changed([String])
        /// Expired here (idle past its `maxInactiveInterval`).
        case expired
        /// Ended by a caller.
        case invalidated
        /// Ended by rotation (its attributes live on under a new id).
        case rotated
        /// This node became the owner.
        case activated
        /// This node stopped being the owner (handed over, or another owner took it).
        case passivated
    }
    /// What happened.
    public var kind: Kind
    /// The session.
    public var id: SessionID
    /// Its stamp after the event (the last one for an end).
    public var stamp: Stamp
    /// When (this node's wall clock).
    public var at: WallTime
    /// Creates an event.
    public init(_ kind: Kind, _ id: SessionID, _ stamp: Stamp, at: WallTime) {
        self.kind = kind
        self.id = id
        self.stamp = stamp
        self.at = at
    }
}
