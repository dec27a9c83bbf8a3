import NIOConcurrencyHelpers
import NIOCore
import SessionReplicationCore

/// Who may hold connections to the replication port, how many, and for how long, before
/// anything authenticated: the listener's side of the hostile-input rules.
///
/// - Only the configured peers' addresses connect (`allow` adds more, e.g. discovered
///   ones; a peer configured by name connects from where it last resolved, `locate`); a
///   peer configured on a wildcard address (`0.0.0.0`, `::`) opens the door to any.
/// - At most `perPeer` connections per peer at an address (peers sharing an address share
///   its allowance), and `maxTotal` in all.
/// - A connection has `firstFrameTimeout` to deliver one complete frame that opens under
///   the cluster key from a configured member; until then at most `preAuthBytes` are
///   buffered. Afterwards frames up to the node's maximum frame size are read, and any
///   frame begun must be complete within `frameTimeout`.
final class InboundPolicy: Sendable {
    /// Connections per configured peer at an address. Default 4.
    let perPeer: Int
    /// Bytes buffered before the first frame authenticates. Default 64 KiB.
    let preAuthBytes: Int
    /// Time to the first authenticated frame. Default 5 s.
    let firstFrameTimeout: TimeAmount
    /// Time a frame begun may take to arrive whole. Default 30 s.
    let frameTimeout: TimeAmount

    private struct State {
        var allowed: [String: Int] = [:]   // address -> peers configured there
        var located: [String: Set<String>] = [:] // peer configured by name -> the IPs it resolves to
        var named = 0                       // peers configured by name
        var anyAddress = false
        var open: [String: Int] = [:]
        var total = 0

        /// Peers that may connect from `host`.
        func peers(at host: String) -> Int {
            (allowed[host] ?? 0) + located.values.reduce(0) { $0 + ($1.contains(host) ? 1 : 0) } + (anyAddress ? 1 : 0)
        }
        var configuredPeers: Int { allowed.values.reduce(0, +) + named }
    }
    private let state: NIOLockedValueBox<State>

    /// The policy for a node named `selfName` of `configuration`. Peers configured by a
    /// DNS name connect from the address they last resolved to (`located`).
    init(configuration: ClusterConfiguration, selfName: String, perPeer: Int = 4, preAuthBytes: Int = 64 << 10,
         firstFrameTimeout: TimeAmount = .seconds(5), frameTimeout: TimeAmount = .seconds(30)) {
        self.perPeer = perPeer
        self.preAuthBytes = preAuthBytes
        self.firstFrameTimeout = firstFrameTimeout
        self.frameTimeout = frameTimeout
        var s = State()
        for node in configuration.nodes where node.name != selfName {
            guard (try? SocketAddress(ipAddress: node.address, port: 0)) != nil else {
                s.named += 1
                continue
            }
            let host = Self.normalize(node.address)
            if host == "0.0.0.0" || host == "::" { s.anyAddress = true }
            s.allowed[host, default: 0] += 1
        }
        state = NIOLockedValueBox(s)
    }

    /// Most connections at once: `perPeer` for every configured peer, and 4 more.
    var maxTotal: Int { state.withLockedValue { s in s.configuredPeers * perPeer + 4 } }

    /// Lets one more peer connect from `address` (a member discovered later).
    func allow(_ address: String) {
        state.withLockedValue { $0.allowed[Self.normalize(address), default: 0] += 1 }
    }

    /// The peer configured by the name `peer` now connects from `addresses` (what its
    /// name resolves to: every one of them, for a dual-stack name), no longer from where
    /// it resolved before.
    func locate(_ peer: String, at addresses: [String]) {
        state.withLockedValue { $0.located[peer] = Set(addresses.map(Self.normalize)) }
    }

    /// Admits a connection from `remote`, counting it (give it back with `release`);
    /// otherwise the reason to refuse it.
    func admit(_ remote: SocketAddress?) -> FrameRejection? {
        guard let host = remote?.ipAddress.map(Self.normalize) else { return .unknownAddress }
        return state.withLockedValue { s in
            let peers = s.peers(at: host)
            guard peers > 0 else { return .unknownAddress }
            let limitTotal = s.configuredPeers * perPeer + 4
            guard s.open[host, default: 0] < peers * perPeer, s.total < limitTotal else { return .tooManyConnections }
            s.open[host, default: 0] += 1
            s.total += 1
            return nil
        }
    }

    /// A connection admitted from `remote` closed.
    func release(_ remote: SocketAddress?) {
        guard let host = remote?.ipAddress.map(Self.normalize) else { return }
        state.withLockedValue { s in
            guard let n = s.open[host], n > 0 else { return }
            s.open[host] = n == 1 ? nil : n - 1
            s.total -= 1
        }
    }

    /// Connections open now (tests).
    var openCount: Int { state.withLockedValue { $0.total } }

    /// The canonical text of an address literal (`::ffff:127.0.0.1` as `127.0.0.1`).
    static func normalize(_ address: String) -> String {
        let canonical = (try? SocketAddress(ipAddress: address, port: 0))?.ipAddress ?? address
        return canonical.hasPrefix("::ffff:") && canonical.contains(".") ? String(canonical.dropFirst(7)) : canonical
    }
}

/// The first handler of an inbound replication connection: admits it by `InboundPolicy`,
/// splits the stream into frames on their 4-byte little-endian length prefix, checks that
/// the first frame authenticates (`authenticate` answers `nil`: it opens under the
/// cluster key and names a configured member; else why not) before it buffers more than `preAuthBytes`, enforces the
/// timeouts, and hands every frame to `receiver`. Every refusal closes the connection
/// and is counted through `reject`.
final class InboundFrameGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    let policy: InboundPolicy
    let maxFrameBytes: Int
    let authenticate: @Sendable (ByteBuffer) -> FrameRejection?
    let reject: @Sendable (FrameRejection) -> Void
    let deliver: @Sendable (ByteBuffer) -> Void

    private var buffer = ByteBuffer()
    private var admitted = false
    private var remote: SocketAddress?
    private var authenticated = false
    private var timer: Scheduled<Void>?
    private var closing = false

    init(policy: InboundPolicy, maxFrameBytes: Int, authenticate: @escaping @Sendable (ByteBuffer) -> FrameRejection?,
         reject: @escaping @Sendable (FrameRejection) -> Void, deliver: @escaping @Sendable (ByteBuffer) -> Void) {
        self.policy = policy
        self.maxFrameBytes = maxFrameBytes
        self.authenticate = authenticate
        self.reject = reject
        self.deliver = deliver
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { admit(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        if !admitted && !closing { admit(context: context) }
        context.fireChannelActive()
    }

    private func admit(context: ChannelHandlerContext) {
        remote = context.channel.remoteAddress
        if let refusal = policy.admit(remote) {
            refuse(refusal, context: context)
            return
        }
        admitted = true
        arm(policy.firstFrameTimeout, context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        if admitted {
            admitted = false
            policy.release(remote)
        }
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        if admitted {
            admitted = false
            policy.release(remote)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard admitted, !closing else { return }
        var chunk = unwrapInboundIn(data)
        buffer.writeBuffer(&chunk)
        while let length = buffer.getInteger(at: buffer.readerIndex, endianness: .little, as: UInt32.self) {
            // Before the first frame authenticates, no frame may be larger than what is
            // buffered for a stranger.
            let frameLimit = authenticated ? maxFrameBytes : policy.preAuthBytes - 4
            guard Int(length) <= frameLimit else {
                refuse(.oversized, context: context)
                return
            }
            guard buffer.readableBytes >= 4 + Int(length) else { break }
            buffer.moveReaderIndex(forwardBy: 4)
            let frame = buffer.readSlice(length: Int(length))!
            if !authenticated {
                if let refusal = authenticate(frame) {
                    refuse(refusal, context: context)
                    return
                }
                authenticated = true
                timer?.cancel()
                timer = nil
            }
            deliver(frame)
            if closing { return }
        }
        buffer.discardReadBytes()
        // A frame begun must arrive whole within `frameTimeout`; none pending, no timer
        // (an authenticated peer may stay quiet as long as it likes).
        if authenticated {
            if buffer.readableBytes == 0 {
                timer?.cancel()
                timer = nil
            } else if timer == nil {
                arm(policy.frameTimeout, context: context)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func arm(_ delay: TimeAmount, context: ChannelHandlerContext) {
        timer?.cancel()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: delay) {
            let (handler, context) = loopBound.value
            handler.timer = nil
            handler.refuse(.timedOut, context: context)
        }
    }

    private func refuse(_ reason: FrameRejection, context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        timer?.cancel()
        timer = nil
        buffer = ByteBuffer()
        reject(reason)
        context.close(promise: nil)
    }
}

extension ReplicationNode {
    /// An empty replication frame (no messages, no watermark): what a node sends first on
    /// every connection it opens, so that the listener authenticates it while buffering
    /// little. Receivers ignore it beyond its authentication and anti-replay counter.
    func helloFrame() -> ByteBuffer {
        var hello = ByteBuffer()
        frameCodec.encode(lane: 0, firstSequence: 0, lowWatermark: 0, body: FrameBody.encode(data: [], control: []),
                          datagram: false, into: &hello)
        return hello
    }

    /// The first handler of an inbound replication connection, under `policy`: frames go
    /// to `receive`, refusals to the node's rejection counters. The first frame
    /// authenticates when it opens under the cluster key and names a configured member.
    func inboundGuard(_ policy: InboundPolicy) -> InboundFrameGuard {
        InboundFrameGuard(
            policy: policy, maxFrameBytes: frameCodec.limits.maxFrameBytes + 4096,
            authenticate: { [weak self] frame in
                guard let self else { return .malformed }
                switch self.frameCodec.decode(frame, datagram: false) {
                case .failure(let reason): return reason
                case .success(let decoded): return self.links[decoded.header.senderName] == nil ? .unknownSender : nil
                }
            },
            reject: { [weak self] reason in self?.countRejection(reason) },
            deliver: { [weak self] frame in self?.receive(frame, datagram: false) })
    }
}
