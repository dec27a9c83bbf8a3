import SessionReplicationCore

/// A simulated cluster of `SimulatedNode`s for scripted tests: start it, make requests on
/// named nodes, inject faults through `sim`, run virtual time and inspect every node's
/// copies. What clients were answered is in `log`.
package final class SimulatedCluster {
    /// The simulator (faults: `crash`, `restart`, `pause`, `block`, `partition`, `reset`).
    package let sim: Simulator<SimulatedNode>
    /// What the cluster answered, every state seen, the violations found.
    package let log = ClusterLog()
    /// Node names.
    package let names: [String]

    /// `names` nodes with `policy`; `configure` adjusts each node's settings.
    package init(seed: UInt64 = 1, names: [String], policy: ReplicationPolicy, majority: Bool = false, lanes: Int = 2,
                network: NetworkModel = .init(), configure: (inout NodeSettings) -> Void = { _ in }) {
        self.names = names
        var template = NodeSettings(name: "", members: names, backupCandidates: [], policy: policy,
                                    sessions: SessionPolicy(), membership: MembershipTuning())
        template.sessions.maxInactiveInterval = .seconds(3600)
        template.majority = majority
        template.lanes = lanes
        configure(&template)
        let t = template
        let log = self.log
        sim = Simulator<SimulatedNode>(seed: seed, names: names, network: network) { name, id, now, _, random in
            var s = t
            s.name = name
            s.backupCandidates = names.filter { $0 != name }
            return SimulatedNode(settings: s, id: id, randomSeed: random.next(), now: now, log: log)
        }
        log.globalNow = { [unowned sim] in sim.now }
        log.copies = { [unowned sim] node, id in sim.inspect(node) { $0.core.copy(of: id) } ?? nil }
        log.holders = { [unowned sim] id, attr in
            sim.names.filter { n in
                switch sim.inspect(n, { $0.core.copy(of: id) }) ?? nil {
                case .owner(let s)?, .backup(let s)?: return s.attributes[attr] != nil
                default: return false
                }
            }
        }
        sim.observer = { _ in log.runDeferred() }
    }

    /// Makes a client request on `node` now; `nil` when it is down or paused.
    @discardableResult
    package func request(_ node: String, _ op: ClientOp) -> RequestID? {
        sim.with(node) { p, now, wall in p.request(op, now: now, wall: wall, at: sim.now) }
    }

    /// Runs `duration` of virtual time.
    package func run(_ duration: Duration) { sim.run(for: duration) }

    /// `node`'s copy of `id` (`nil` when it holds nothing or is down).
    package func copy(_ node: String, _ id: SessionID) -> HeldCopy? { sim.inspect(node) { $0.core.copy(of: id) } ?? nil }

    /// The nodes that own `id`.
    package func owners(_ id: SessionID) -> [String] {
        names.filter { if case .owner? = copy($0, id) { true } else { false } }
    }

    /// Whether `node` owns `id` and passes the serving check now.
    package func serves(_ node: String, _ id: SessionID) -> Bool {
        sim.isRunning(node) && sim.inspect(node, { $0.serves(id, now: sim.clock(node)) }) == true
    }

    /// `node`'s view as `/cluster/status` reports it.
    package func status(_ node: String) -> NodeCoreStatus? { sim.inspect(node) { $0.core.status(now: sim.clock(node)) } }

    /// The core of `node` (a copy, for inspection).
    package func core(_ node: String) -> NodeCore? { sim.inspect(node) { $0.core } }
}
