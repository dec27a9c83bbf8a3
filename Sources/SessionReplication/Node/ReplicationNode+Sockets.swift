import NIOCore
import NIOPosix
import SessionReplicationCore

/// The node's UDP sockets: bound at start, and bound again whenever a send error closes
/// them while the node runs.
extension ReplicationNode {
    /// Binds the replication UDP socket on `port` and re-binds it whenever it closes
    /// while the node runs (NIO closes a datagram socket on a send error such as the
    /// `EPERM` a firewall's drop rule returns; found by `drs drill partition`).
    func bindDatagram(port: Int) async throws -> any Channel {
        let channel = try await DatagramBootstrap(group: group)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(.socketOption(.so_rcvbuf), value: 4 << 20)
            .channelOption(.socketOption(.so_sndbuf), value: 4 << 20)
            // recvmmsg splits one buffer evenly between the messages of a vector read:
            // give every slot room for the largest datagram a peer may send.
            .channelOption(.datagramVectorReadMessageCount, value: Self.datagramVector)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(
                capacity: Self.datagramVector * Self.datagramSlot(configuration.replication.udpMaxPayload)))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DatagramFrameHandler(receiver: self))
                }
            }
            .bind(host: endpoint.listenAddress, port: port).get()
        rebindOnClose(channel, "replication UDP", port: port, bind: { try await $0.bindDatagram(port: port) },
                      install: { state, fresh in state.datagram = fresh })
        return channel
    }

    /// When `channel` closes while the node runs (started and not stopped: a failed
    /// start closes what it bound for good), binds a new socket with `bind` (every
    /// 100 ms until it binds or the node stops) and stores it with `install`, counting
    /// and logging each re-bind. A socket bound after the node stopped is closed.
    func rebindOnClose(_ channel: any Channel, _ what: String, port: Int,
                       bind: @escaping @Sendable (ReplicationNode) async throws -> any Channel,
                       install: @escaping @Sendable (inout RuntimeState, any Channel) -> Void) {
        channel.closeFuture.whenComplete { [weak self] _ in
            guard let self, !self.isStopped, self.state.withLockedValue({ $0.started }) else { return }
            self.rebind(what, port: port) { node in
                let fresh = try await bind(node)
                node.state.withLockedValue { if !$0.stopped { install(&$0, fresh) } }
                if node.isStopped { try? await fresh.close() }
            }
        }
    }

    /// Re-binds a UDP socket that closed while the node runs: retries every 100 ms until
    /// it binds or the node stops, counting and logging each re-bind.
    func rebind(_ what: String, port: Int, _ bind: @escaping @Sendable (ReplicationNode) async throws -> Void) {
        Task { [weak self] in
            while let node = self, !node.isStopped {
                do {
                    try await bind(node)
                    let n = node.transport.withLockedValue { t in t.socketRebinds += 1; return t.socketRebinds }
                    // Every send to a dropped destination closes the socket again: log the
                    // 1st, 2nd, 4th, 8th, ... re-bind only.
                    if n & (n - 1) == 0 {
                        node.logger.warning("\(what) socket closed (a send failed, e.g. EPERM from a firewall drop rule); bound it again",
                                            metadata: ["drs.port": "\(port)", "drs.rebinds": "\(n)"])
                    }
                    return
                } catch {
                    node.logger.warning("\(what) socket could not be bound again: \(error); retrying in 100 ms")
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
        }
    }


    /// Binds the membership socket on `port` (its own event loop, so a flood of
    /// replication traffic never delays a probe or its ack) and re-binds it whenever it
    /// closes while the node runs (see `bindDatagram`).
    func bindMembership(port: Int) async throws -> any Channel {
        let channel = try await DatagramBootstrap(group: membershipLoop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(.socketOption(.so_rcvbuf), value: 1 << 20)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DatagramFrameHandler(receiver: MembershipReceiver(node: self)))
                }
            }
            .bind(host: endpoint.listenAddress, port: port).get()
        let bound = channel.localAddress?.port ?? port
        rebindOnClose(channel, "membership UDP", port: bound, bind: { try await $0.bindMembership(port: bound) },
                      install: { state, fresh in state.membershipChannel = fresh })
        return channel
    }

    /// The membership socket, once bound.
    var membershipChannel: (any Channel)? { state.withLockedValue { $0.membershipChannel } }

    /// The port the membership socket is bound to (useful when configured as 0).
    public var membershipPort: Int? { membershipChannel?.localAddress?.port }

    /// The port replication is bound to (useful when configured as 0).
    public var replicationPort: Int? { state.withLockedValue { $0.server?.localAddress?.port } }

    /// Points this node at a peer's replication endpoint, and its membership port when
    /// given (tests that bind port 0).
    public func setPeerEndpoint(_ name: String, host: String, port: Int, membershipPort: Int? = nil) {
        links[name]?.setEndpoint(host: host, port: port, membershipPort: membershipPort)
    }
}
