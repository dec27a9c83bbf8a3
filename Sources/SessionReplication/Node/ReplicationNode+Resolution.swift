import Logging
import SessionReplicationCore

/// Peers configured by DNS name: where they are is looked up, and looked up again when
/// it may have changed.
///
/// A name is resolved when the node starts, then every `Resolution.retry` while the peer
/// is unreachable (not `alive`, or never located) or right after it restarted (a new
/// process id), and every `Resolution.refresh` otherwise. A peer that comes back under
/// its name with a new IP is thus found within about a second of being suspected. When
/// the IP changes, the link's connection is dropped (the next one goes to the new IP) and
/// the listener admits connections from the new IP instead of the old one.
extension ReplicationNode {
    /// How often names are looked up again.
    enum Resolution {
        /// While a peer is unreachable or restarted: 1 s.
        static let retry: Duration = .seconds(1)
        /// While it is alive: 30 s.
        static let refresh: Duration = .seconds(30)
        /// How often the resolver checks which names are due: 250 ms.
        static let poll: Duration = .milliseconds(250)
    }

    /// Where `peer` was last found: its IP (the literal itself when configured by one);
    /// `nil` for an unknown peer or a name never resolved.
    public func peerIP(_ peer: String) -> String? { links[peer]?.currentIP }

    /// Starts the background tasks that resolve named peers, one per peer so that a slow
    /// lookup of one name delays no other (none when every peer is configured by IP
    /// literal). Cancelled by `shutdown()`.
    func startResolver() -> [Task<Void, Never>] {
        links.values.filter(\.isNamed).sorted { $0.name < $1.name }.map { link in
            Task { [weak self] in
                var last: (at: ContinuousClock.Instant, id: NodeID?)?
                var failing = false
                while !Task.isCancelled, let node = self, !node.isStopped {
                    let status = node.core.read { $0.membership.member(link.name) }
                    let now = ContinuousClock.now
                    let unreachable = link.currentIP == nil || status?.status != .alive
                    let restarted = last != nil && status?.id != last?.id
                    let wait = unreachable ? Resolution.retry : Resolution.refresh
                    if last == nil || restarted || now - last!.at >= wait {
                        last = (now, status?.id)
                        await node.resolve(link, failing: &failing)
                    }
                    try? await Task.sleep(for: Resolution.poll)
                }
            }
        }
    }

    /// Resolves `link`'s name once and points the link and the listener at the result;
    /// logs the first failure of a streak (`failing` says whether one is running) and
    /// the recovery.
    func resolve(_ link: PeerLink, failing: inout Bool) async {
        do {
            let ips = try await HostResolver.resolve(link.configuredHost)
            guard !isStopped else { return }
            let before = link.currentIP
            if link.resolved(ips) {
                let metadata: Logger.Metadata = ["drs.peer": "\(link.name)", "drs.host": "\(link.configuredHost)", "drs.ip": "\(link.currentIP ?? "")"]
                if let before {
                    logger.notice("peer moved to a new address", metadata: metadata.merging(["drs.was": "\(before)"]) { a, _ in a })
                } else {
                    logger.info("peer address resolved", metadata: metadata)
                }
            }
            inboundPolicy.locate(link.name, at: ips)
            if failing {
                failing = false
                logger.notice("peer address resolves again", metadata: ["drs.peer": "\(link.name)", "drs.ip": "\(link.currentIP ?? "")"])
            }
        } catch {
            if !failing {
                failing = true
                logger.warning("cannot resolve a peer's address; retrying every second while it is unreachable",
                               metadata: ["drs.peer": "\(link.name)", "drs.error": "\(error)"])
            }
        }
    }
}
