import NIOCore
import ArgumentParser
import Logging
import NIOPosix
import SessionReplication
import SessionReplicationCore

/// `drs demo --config FILE`: starts every node of the configuration on its configured
/// loopback address (in this process, each with its own sockets), writes sessions on one
/// node and shows them arriving on their backups.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "demo", abstract: "Show replication on a local cluster.")

    @Option(help: "Path of a cluster-configs/*.yaml file.")
    var config: String = "cluster-configs/local-3.yaml"

    @Option(help: "Sessions to create on each node.")
    var sessions: Int = 4

    func run() async throws {
        var configuration = try loadConfiguration(config)
        // Every node of the demo runs in this process: a key of its own, made now, seals
        // their frames even when the configuration says `insecure: true` (loopback only).
        if configuration.keys.insecure { configuration.keys = ClusterKeys(current: ClusterKeys.generateKey()) }
        var logger = Logger(label: "drs.demo")
        logger.logLevel = .warning
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        var nodes: [ReplicationNode] = []
        do {
            let p = configuration.replication
            print("cluster \(configuration.clusterID): mode \(p.mode.rawValue) over \(p.effectiveTransport.rawValue), replicas \(p.replicas), write frequency \(p.writeFrequency), \(configuration.keys.insecure ? "UNSEALED (insecure)" : "frames sealed with AES-256-GCM")")
            for endpoint in configuration.nodes {
                let node = try ReplicationNode(configuration: configuration, name: endpoint.name, logger: logger, eventLoopGroup: group)
                try await node.start()
                nodes.append(node)
                print("  started \(endpoint.name) on \(endpoint.address):\(node.replicationPort ?? endpoint.replicationPort) (tcp+udp), node id \(node.nodeID)")
            }
            try await demonstrate(nodes)
        } catch {
            for node in nodes { await node.shutdown() }
            try? await group.shutdownGracefully()
            printError("drs demo: \(error)")
            throw ExitCode(1)
        }
        for node in nodes { await node.shutdown() }
        try? await group.shutdownGracefully()
    }

    func demonstrate(_ nodes: [ReplicationNode]) async throws {
        var created: [(ReplicationNode, SessionID)] = []
        print("\n1. creating \(sessions) sessions on each node, then writing a cart to each")
        for node in nodes where node.configuration.role(of: node.endpoint.name).owns {
            for i in 0..<sessions {
                let r = try await node.createSession(attributes: ["user": Array("user-\(node.endpoint.name)-\(i)".utf8)])
                guard let id = r.state?.id else { continue }
                _ = try await node.withSession(id) { $0.set("cart", Array("apples=\(i + 1)".utf8)) }
                _ = try await node.withSession(id) { $0.set("cart", Array("apples=\(i + 1),pears=2".utf8)) }
                created.append((node, id))
            }
        }
        print("2. asking each owner to sync (sends what a time-based or manual write still holds, waits per mode)")
        for (node, id) in created { _ = try await node.sync(id) }
        try await waitForBackups(nodes, created)
        print("\n   session (cookie)                          owner  stamp            backups (stamp, cart)")
        for (node, id) in created {
            guard case .owner(let s) = node.copy(of: id) else { continue }
            let backups = s.replicaSet.map { name -> String in
                let peer = nodes.first { $0.endpoint.name == name }
                if case .backup(let b) = peer?.copy(of: id) {
                    let ok = b.stamp == s.stamp && b.attributes == s.attributes ? "same" : "DIFFERS"
                    return "\(name) (\(b.stamp.epoch.counter)/v\(b.stamp.version), \(ok))"
                }
                return "\(name) (missing)"
            }
            print("   \(id.cookieValue(route: node.endpoint.name))  \(node.endpoint.name)     \(s.stamp.epoch.counter)/v\(s.stamp.version)             \(backups.isEmpty ? "none (replicas: 0)" : backups.joined(separator: ", "))")
        }
        if let (owner, id) = created.first {
            print("\n3. invalidating \(id.hex) on \(owner.endpoint.name)")
            try await owner.invalidate(id)
            for node in nodes {
                if case .tombstone(let t) = node.copy(of: id) { print("   \(node.endpoint.name) holds a tombstone at \(t.epoch.counter)/v\(t.version)") }
            }
        }
        print("\n4. counters")
        for node in nodes {
            let c = node.counters
            let r = c.replication
            print("   \(node.endpoint.name): primaries \(c.primaries), backups \(c.backups), full states sent \(r.fullStatesSent), deltas sent \(r.deltasSent), applied \(r.applied + r.appliedFull), retries \(r.retries), drops \(r.drops), tcp frames \(c.streamFramesSent), datagrams \(c.datagramsSent), rejected \(c.rejectedTotal)")
        }
    }

    func waitForBackups(_ nodes: [ReplicationNode], _ created: [(ReplicationNode, SessionID)]) async throws {
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            let pending = created.filter { node, id in
                guard case .owner(let s) = node.copy(of: id) else { return false }
                return !s.replicaSet.allSatisfy { name in
                    if case .backup(let b) = nodes.first(where: { $0.endpoint.name == name })?.copy(of: id) { return b.stamp == s.stamp }
                    return false
                }
            }
            if pending.isEmpty { return }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
