import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SessionReplicationCore

/// The outbound side towards one peer: a TCP connection bound to this node's address
/// (reconnected with backoff), the peer's datagram address, the control messages waiting
/// to be sent, and the once-per-tick flush flag.
final class PeerLink: @unchecked Sendable {
    let name: String
    let eventLoop: any EventLoop
    private let lock = NIOLock()
    private var host: String
    private var port: Int
    private var channel: (any Channel)?
    private var connecting = false
    private var nextAttempt = NIODeadline.uptimeNanoseconds(0)
    private var backoff = TimeAmount.milliseconds(50)
    private var flushScheduled = false
    private var receiptFlushScheduled = false
    private var receipts: [UInt16: Receipt] = [:]
    private var resyncs: [UInt16: [ResyncRequest.Entry]] = [:]
    private var refused: [UInt16: [UInt64]] = [:]
    private var extra: [[UInt8]] = []
    private var _datagramAddress: SocketAddress?
    private var _membershipAddress: SocketAddress?
    private var membershipPort: Int
    private var resolvedIP: String?
    /// The peer's datagram address (its replication port; `nil` while its name is unresolved).
    var datagramAddress: SocketAddress? { lock.withLock { _datagramAddress } }
    /// The peer's membership socket (`nil` while its port is unknown or its name unresolved).
    var membershipAddress: SocketAddress? { lock.withLock { _membershipAddress } }
    /// The configured address: an IP literal, or a DNS name to resolve (`resolved(_:)`).
    var configuredHost: String { lock.withLock { host } }
    /// Whether the configured address is a name rather than an IP literal.
    var isNamed: Bool { lock.withLock { (try? SocketAddress(ipAddress: host, port: 0)) == nil } }
    /// The IP the peer was last found at (the literal itself for a literal).
    var currentIP: String? { lock.withLock { resolvedIP } }
    private var closed = false

    init(name: String, host: String, port: Int, membershipPort: Int, eventLoop: any EventLoop) {
        self.name = name
        self.host = host
        self.port = port
        self.membershipPort = membershipPort
        self.eventLoop = eventLoop
        if let literal = try? SocketAddress(ipAddress: host, port: 0) { locate(literal.ipAddress!) }
    }

    /// Sets the addresses from `ip`; under the lock.
    private func locate(_ ip: String) {
        resolvedIP = ip
        _datagramAddress = try? SocketAddress(ipAddress: ip, port: port)
        _membershipAddress = membershipPort == 0 ? nil : try? SocketAddress(ipAddress: ip, port: membershipPort)
    }

    /// Points the link at a new address (tests binding port 0); drops the connection.
    func setEndpoint(host: String, port: Int, membershipPort: Int?) {
        let old: (any Channel)? = lock.withLock {
            self.host = host
            self.port = port
            if let membershipPort { self.membershipPort = membershipPort }
            resolvedIP = nil
            _datagramAddress = nil
            _membershipAddress = nil
            if let literal = try? SocketAddress(ipAddress: host, port: 0) { locate(literal.ipAddress!) }
            self.nextAttempt = .uptimeNanoseconds(0)
            defer { channel = nil }
            return channel
        }
        old?.close(promise: nil)
    }

    /// The peer's name now resolves to `ips` (its resolver's order): keeps the current IP
    /// when it is still among them, else moves to the first and drops the connection so
    /// the next one goes there. Returns whether the link moved.
    @discardableResult
    func resolved(_ ips: [String]) -> Bool {
        guard let first = ips.first else { return false }
        let old: (moved: Bool, channel: (any Channel)?) = lock.withLock {
            if let resolvedIP, ips.contains(resolvedIP) { return (false, nil) }
            locate(first)
            nextAttempt = .uptimeNanoseconds(0)
            defer { channel = nil }
            return (true, channel)
        }
        old.channel?.close(promise: nil)
        return old.moved
    }

    /// Marks a flush as scheduled; returns `false` if one already is.
    func claimFlush() -> Bool {
        lock.withLock {
            if flushScheduled { return false }
            flushScheduled = true
            return true
        }
    }

    /// Marks a delayed receipt flush as scheduled; returns `false` if one already is.
    func claimReceiptFlush() -> Bool {
        lock.withLock {
            if receiptFlushScheduled || flushScheduled { return false }
            receiptFlushScheduled = true
            return true
        }
    }

    /// Clears the flush flags (at the start of a flush).
    func beginFlush() {
        lock.withLock {
            flushScheduled = false
            receiptFlushScheduled = false
        }
    }

    /// Queues a receipt and the stream's outstanding resync requests for `lane`, both
    /// replacing older ones (resyncs go out before the receipt in the same frame).
    /// Sequences refused as fenced accumulate until the next receipt goes out.
    func addControl(lane: UInt16, through: UInt64, held: [ClosedRange<UInt64>], resync: [ResyncRequest.Entry], refused fenced: [UInt64] = []) {
        lock.withLock {
            if through >= receipts[lane]?.through ?? 0 {
                receipts[lane] = Receipt(lane: lane, through: through, received: held)
                resyncs[lane] = resync.isEmpty ? nil : resync
            }
            if !fenced.isEmpty { refused[lane, default: []] += fenced }
        }
    }

    /// Queues one more control message (a prepare or a promise), sent in order.
    func addControl(_ message: ReplicationMessage) {
        let bytes = MessageCodec.encode(message)
        lock.withLock { extra.append(bytes) }
    }

    /// Takes the queued control messages, encoded: prepares and promises, then resyncs
    /// before receipts.
    func takeControl() -> [[UInt8]] {
        lock.withLock {
            var out: [[UInt8]] = extra
            extra.removeAll(keepingCapacity: true)
            for lane in resyncs.keys.sorted() {
                out.append(MessageCodec.encode(.resync(ResyncRequest(lane: lane, entries: resyncs[lane]!))))
            }
            for lane in receipts.keys.sorted() {
                var receipt = receipts[lane]!
                if let r = refused.removeValue(forKey: lane) {
                    receipt.refused = Array(r.filter { $0 <= receipt.through }.suffix(Receipt.maxRefused))
                    let later = r.filter { $0 > receipt.through }
                    if !later.isEmpty { refused[lane] = later }
                }
                out.append(MessageCodec.encode(.receipt(receipt)))
            }
            receipts.removeAll(keepingCapacity: true)
            resyncs.removeAll(keepingCapacity: true)
            return out
        }
    }

    /// The connected channel, or `nil` (starting a connection attempt when due).
    func connectedChannel(connect: (String, Int) -> Void) -> (any Channel)? {
        let (ch, attempt): ((any Channel)?, (String, Int)?) = lock.withLock {
            if let channel, channel.isActive { return (channel, nil) }
            channel = nil
            // Port 0 means "not known yet" (a test binds port 0 and tells us later).
            guard !closed, port != 0, !connecting, NIODeadline.now() >= nextAttempt else { return (nil, nil) }
            connecting = true
            return (nil, (resolvedIP ?? host, port))
        }
        if let attempt { connect(attempt.0, attempt.1) }
        return ch
    }

    /// Records the outcome of a connection attempt; returns `false` (and closes the
    /// channel) when the link was closed meanwhile.
    @discardableResult
    func connected(_ channel: (any Channel)?) -> Bool {
        let accepted: Bool = lock.withLock {
            connecting = false
            if closed { return false }
            if let channel, let ip = resolvedIP, let remote = channel.remoteAddress?.ipAddress,
               InboundPolicy.normalize(remote) != InboundPolicy.normalize(ip) {
                // Connected to where the peer's name used to point: the link moved on
                // while this attempt ran. Try again at once, at the new address.
                nextAttempt = .uptimeNanoseconds(0)
                return false
            }
            if let channel {
                self.channel = channel
                backoff = .milliseconds(50)
            } else {
                nextAttempt = .now() + backoff
                backoff = min(backoff * 2, .seconds(1))
            }
            return true
        }
        if !accepted { channel?.close(promise: nil) }
        return accepted
    }

    /// Whether a connection is up.
    var isConnected: Bool { lock.withLock { channel?.isActive ?? false } }

    /// Forgets a closed channel.
    func disconnected(_ closed: any Channel) {
        lock.withLock {
            if channel === closed { channel = nil }
        }
    }

    /// Closes the connection for good.
    func close() async {
        let ch = lock.withLock { () -> (any Channel)? in
            closed = true
            defer { channel = nil }
            return channel
        }
        try? await ch?.close()
    }
}
