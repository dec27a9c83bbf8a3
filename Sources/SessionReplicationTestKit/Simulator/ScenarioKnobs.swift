import SessionReplicationCore

/// One fault a scenario injects, with when it starts and how long it lasts (global time).
package enum ScenarioFault: Hashable, Sendable, CustomStringConvertible {
    /// SIGKILL; started again `restartAfter` later (`nil`: never), its wall clock
    /// stepped by `wallStep` (negative: back, so its new node id is smaller).
    case crash(String, restartAfter: Duration?, wallStep: Duration)
    /// SIGSTOP for a while; with `stopClock` its monotonic clock stops too.
    case pause(String, stopClock: Bool)
    /// One of its event loops stalls: inbound traffic of that loop waits.
    case loopPause(String, SimulatedLoop)
    /// Cut off from every other node (both ways).
    case partition(String)
    /// One link cut, both ways, between two nodes (membership too).
    case linkCut(String, String)
    /// One direction cut.
    case oneWay(from: String, to: String)
    /// Its stream connections reset again and again (queued frames and control lost).
    case resets(String)
    /// SIGTERM: drain and leave; started again `restartAfter` later.
    case drain(String, restartAfter: Duration)

    /// The nodes it acts on.
    package var nodes: [String] {
        switch self {
        case .crash(let n, _, _), .pause(let n, _), .loopPause(let n, _), .partition(let n), .resets(let n), .drain(let n, _): return [n]
        case .linkCut(let a, let b), .oneWay(let a, let b): return [a, b]
        }
    }

    /// Whether it cuts paths between live nodes (under `promotion: any` a cut-off node
    /// may serve alone, so some invariants pause while one lasts).
    package var cuts: Bool {
        switch self {
        case .partition, .linkCut, .oneWay: return true
        default: return false
        }
    }

    package var description: String {
        switch self {
        case .crash(let n, let r, let w): return "crash(\(n), restart \(r.map { "\($0)" } ?? "never")\(w == .zero ? "" : ", wall \(w)"))"
        case .pause(let n, let s): return "pause(\(n)\(s ? ", clock stops" : ""))"
        case .loopPause(let n, let l): return "loopPause(\(n), \(l))"
        case .partition(let n): return "partition(\(n))"
        case .linkCut(let a, let b): return "linkCut(\(a), \(b))"
        case .oneWay(let a, let b): return "oneWay(\(a) -> \(b))"
        case .resets(let n): return "resets(\(n))"
        case .drain(let n, let r): return "drain(\(n), restart \(r))"
        }
    }
}

/// A fault and its window.
package struct ScheduledFault: Hashable, Sendable, CustomStringConvertible {
    /// The fault.
    package var fault: ScenarioFault
    /// When it starts, and how long it lasts.
    package var at: Duration, lasting: Duration
    package var description: String { "\(fault) at \(at) for \(lasting)" }
}

/// The scenario families of the simulation matrix. Every seed belongs to one family
/// (`seed % count`), and draws its knobs within it from the seed.
package enum ScenarioFamily: String, CaseIterable, Sendable {
    /// 3 nodes, synchronous to 1 backup, one crash, pause or partition (under majority).
    case standard
    /// 3-5 nodes, synchronous with 2 backups and `minSyncReplicas: 1`: the prepare round.
    case twoBackups = "two-backups"
    /// 3-7 nodes, any mode, transport and replica count, two or three overlapping faults.
    case mixed
    /// Restarts faster than detection (50-400 ms), some with the wall clock stepped back.
    case restarts
    /// Cuts: partitions, one-link and one-way cuts, under `majority` and `any`.
    case cuts
    /// Clock drift up to 5 %, monotonic clocks that stop while paused, one-loop pauses,
    /// connection resets.
    case clocks
    /// Deletes, owner-side expiry with short idle limits, drains and leaves.
    case lifecycle
}

/// Every knob of one simulated run, drawn from the seed.
package struct ScenarioKnobs: Hashable, Sendable, CustomStringConvertible {
    /// The family.
    package var family: ScenarioFamily
    /// Node names (3 to 7).
    package var names: [String]
    /// Replication settings.
    package var policy: ReplicationPolicy
    /// `promotion: majority`.
    package var majority: Bool
    /// Shards per node (at least 2).
    package var lanes = 2
    /// Datagram loss, duplication, delay spread (until 20 s).
    package var network = NetworkModel()
    /// Clock-rate drift bound.
    package var drift = 0.0
    /// The faults.
    package var faults: [ScheduledFault] = []
    /// Share of operations that delete a session, and idle limit of short-lived sessions.
    package var deleteShare = 0.0
    package var shortIdle: Duration?
    /// A configured node that is not running when the cluster starts, and when it starts
    /// (`lifecycle`: before then the others have never heard of it).
    package var lateStarter: String?
    package var lateStartAt: Duration = .zero

    package var description: String {
        let p = policy
        return "\(family.rawValue): \(names.count) nodes, \(p.mode.rawValue)/\(p.effectiveTransport.rawValue), replicas \(p.replicas), minSync \(p.minSyncReplicas.map(String.init) ?? "-"), \(majority ? "majority" : "any"), drift \(Int(drift * 100))%, loss \(network.dropRate), faults \(faults)\(lateStarter.map { ", \($0) starts at \(lateStartAt)" } ?? "")"
    }

    /// The knobs of `seed` (its family is `seed % families`, or `family` when given).
    package static func draw(seed: UInt64, family given: ScenarioFamily? = nil) -> ScenarioKnobs {
        var r = SeededGenerator(seed: seed &* 0xD1B5_4A32_D192_ED03 &+ 1)
        let all = ScenarioFamily.allCases
        let family = given ?? all[Int(seed % UInt64(all.count))]
        func pick(_ n: Int) -> Int { Int(r.next() % UInt64(n)) }
        func ms(_ lo: Int, _ hi: Int) -> Duration { .milliseconds(Int64(lo + pick(hi - lo + 1))) }
        func chance(_ percent: Int) -> Bool { pick(100) < percent }

        var p = ReplicationPolicy()
        p.mode = .synchronous
        p.replicas = .count(1)
        p.minSyncReplicas = 1
        p.syncTimeout = .milliseconds(500)
        p.retryInterval = .milliseconds(50)
        p.repairInterval = .seconds(2)
        p.takeoverCooldown = .seconds(1)
        var count = 3
        var majority = false
        switch family {
        case .standard:
            break
        case .twoBackups:
            count = 3 + pick(3)
            p.replicas = .count(2)
        case .mixed, .restarts, .cuts, .clocks, .lifecycle:
            count = family == .mixed ? 3 + pick(5) : 3 + pick(3)
            let modes: [ReplicationMode] = [.bestEffort, .acknowledged, .synchronous]
            p.mode = modes[pick(3)]
            switch pick(3) {
            case 0: p.replicas = .count(1)
            case 1: p.replicas = .count(min(2, count - 1))
            default: p.replicas = .all
            }
            let backups = p.replicas.resolve(eligible: count - 1)
            p.minSyncReplicas = p.mode == .synchronous ? 1 + pick(max(1, backups)) : nil
            if p.mode == .synchronous, backups > 1, chance(60) { p.minSyncReplicas = 1 }
            if p.mode == .bestEffort {
                p.transport = chance(50) ? .udp : .tcp
                p.retryCount = 2 + pick(3)
                if chance(30) { p.writeFrequency = .timeBased; p.writeInterval = ms(100, 600) }
            }
            majority = chance(40)
        }
        let names = (1...count).map { "n\($0)" }
        var k = ScenarioKnobs(family: family, names: names, policy: p, majority: majority)
        k.network.dropRate = Double(pick(30)) / 1000
        k.network.duplicateRate = Double(pick(20)) / 1000
        k.network.maxDelay = .microseconds(Int64(200 + pick(2_800)))
        func victim() -> String { names[pick(count)] }
        func pair() -> (String, String) {
            let a = pick(count)
            let b = (a + 1 + pick(count - 1)) % count
            return (names[a], names[b])
        }
        func window(_ lo: Int, _ hi: Int) -> (Duration, Duration) { (ms(3_000, 13_000), ms(lo, hi)) }
        var faults: [ScheduledFault] = []
        func add(_ f: ScenarioFault, _ w: (Duration, Duration)) { faults.append(ScheduledFault(fault: f, at: w.0, lasting: w.1)) }
        switch family {
        case .standard, .twoBackups:
            switch pick(4) {
            case 0: add(.crash(victim(), restartAfter: ms(1_000, 7_000), wallStep: .zero), window(0, 0))
            case 1: add(.crash(victim(), restartAfter: nil, wallStep: .zero), window(0, 0))
            case 2: add(.pause(victim(), stopClock: false), window(100, 3_100))
            default:
                k.majority = true
                add(.partition(victim()), window(200, 5_200))
            }
        case .mixed:
            for _ in 0..<(2 + pick(2)) {
                switch pick(7) {
                case 0: add(.crash(victim(), restartAfter: chance(70) ? ms(300, 5_000) : nil, wallStep: .zero), window(0, 0))
                case 1: add(.pause(victim(), stopClock: false), window(100, 3_000))
                case 2: add(.partition(victim()), window(200, 4_000))
                case 3: let (a, b) = pair(); add(.linkCut(a, b), window(500, 5_000))
                case 4: add(.resets(victim()), window(500, 3_000))
                case 5: add(.loopPause(victim(), chance(50) ? .membership : .replication), window(50, 600))
                default: let (a, b) = pair(); add(.oneWay(from: a, to: b), window(300, 3_000))
                }
            }
        case .restarts:
            for _ in 0..<(1 + pick(2)) {
                let step: Duration = chance(40) ? .seconds(-Int64(1 + pick(30))) : .zero
                add(.crash(victim(), restartAfter: ms(50, 400), wallStep: step), window(0, 0))
            }
        case .cuts:
            for _ in 0..<(1 + pick(2)) {
                switch pick(3) {
                case 0: add(.partition(victim()), window(200, 5_000))
                case 1: let (a, b) = pair(); add(.linkCut(a, b), window(500, 6_000))
                default: let (a, b) = pair(); add(.oneWay(from: a, to: b), window(300, 4_000))
                }
            }
        case .clocks:
            k.drift = Double(pick(51)) / 1000
            for _ in 0..<(1 + pick(2)) {
                switch pick(3) {
                case 0: add(.pause(victim(), stopClock: chance(60)), window(100, 3_000))
                case 1: add(.loopPause(victim(), chance(50) ? .membership : .replication), window(50, 800))
                default: add(.resets(victim()), window(500, 3_000))
                }
            }
        case .lifecycle:
            k.deleteShare = 0.03
            k.shortIdle = ms(1_500, 4_000)
            switch pick(3) {
            case 0: add(.drain(victim(), restartAfter: ms(500, 4_000)), window(0, 0))
            case 1: add(.crash(victim(), restartAfter: ms(500, 4_000), wallStep: .zero), window(0, 0))
            default: add(.pause(victim(), stopClock: false), window(100, 2_000))
            }
        }
        k.faults = faults.sorted { $0.at < $1.at }
        // Drawn last, so the knobs above stay what they were for every seed.
        if family == .lifecycle, count >= 4, chance(40) {
            let spare = names.filter { n in !faults.contains { $0.fault.nodes.contains(n) } }
            if !spare.isEmpty {
                k.lateStarter = spare[pick(spare.count)]
                k.lateStartAt = ms(2_000, 27_000)
            }
        }
        return k
    }
}
