import Benchmark
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import SessionReplication
import SessionReplicationCore
import SessionReplicationHummingbird

// The hot paths, one at a time, with wall time and allocations per operation (ordo-one's
// malloc interposer): a regression in either shows up in `make benchmarks` against a
// saved baseline. Every benchmark moves a 1 KiB attribute. Run with `make benchmarks`.

/// A 1 KiB value that does not compress to nothing.
let kibibyte: [UInt8] = (0..<1024).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .throughput],
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: .seconds(3),
        maxIterations: 1_000
    )
    codec()
    sealing()
    shards()
    persistDriver()
    httpRoutes()
}

/// The message codec: a 1 KiB delta encoded, and decoded.
func codec() {
    let delta = ReplicationMessage.delta(SessionDelta(
        id: SessionID(high: 1, low: 2), epoch: Epoch(counter: 1, owner: NodeID(1)), baseVersion: 7, version: 8,
        lastAccessedAt: WallTime(milliseconds: 1_700_000_000_000), maxInactiveInterval: .seconds(1800),
        replicaSet: ["n2"], updated: ["cart": kibibyte], removed: []))
    let bytes = MessageCodec.encode(delta)
    Benchmark("codec: encode a 1 KiB delta") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(MessageCodec.encode(delta)) }
    }
    Benchmark("codec: decode a 1 KiB delta") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try! MessageCodec.decode(bytes)) }
    }
}

/// A frame holding one 1 KiB delta, sealed (AES-GCM) and opened.
func sealing() {
    let keys = ClusterKeys(current: Array(repeating: 7, count: 32))
    let sender = FrameCodec(sealer: FrameSealer(keys: keys, clusterID: "bench", selfID: NodeID(1)), selfName: "n1", limits: WireLimits())
    let receiver = FrameCodec(sealer: FrameSealer(keys: keys, clusterID: "bench", selfID: NodeID(2)), selfName: "n2", limits: WireLimits())
    let delta = MessageCodec.encode(.delta(SessionDelta(
        id: SessionID(high: 1, low: 2), epoch: Epoch(counter: 1, owner: NodeID(1)), baseVersion: 7, version: 8,
        lastAccessedAt: WallTime(milliseconds: 1_700_000_000_000), maxInactiveInterval: .seconds(1800),
        replicaSet: ["n2"], updated: ["cart": kibibyte], removed: [])))
    let body = FrameBody.encode(data: [delta], control: [])
    var frame = ByteBuffer()
    sender.encode(lane: 0, firstSequence: 1, lowWatermark: 1, body: body, datagram: true, into: &frame)
    Benchmark("frame: seal a 1 KiB delta") { benchmark in
        for _ in benchmark.scaledIterations {
            var buffer = ByteBuffer()
            sender.encode(lane: 0, firstSequence: 1, lowWatermark: 1, body: body, datagram: true, into: &buffer)
            blackHole(buffer)
        }
    }
    Benchmark("frame: open a 1 KiB delta") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(receiver.decode(frame, datagram: true)) }
    }
}

/// The replica shards without I/O: the owner commits a 1 KiB change and takes its
/// (encoded) batch, the backup decodes and applies it, the owner takes the receipt.
func shards() {
    var policy = ReplicationPolicy()
    policy.mode = .acknowledged
    let id = SessionID(high: 3, low: 4)
    var now = MonotonicInstant.zero
    let wall = WallTime(milliseconds: 1_700_000_000_000)
    var owner = ReplicaShard(settings: ShardSettings(selfName: "n1", selfID: NodeID(1), policy: policy, sessions: SessionPolicy(), backupCandidates: ["n2"]))
    var backup = ReplicaShard(settings: ShardSettings(selfName: "n2", selfID: NodeID(2), policy: policy, sessions: SessionPolicy(), backupCandidates: ["n1"]))
    _ = try? owner.create(id: id, attributes: ["cart": kibibyte], maxInactiveInterval: nil, now: now, wall: wall, sessionCount: 0)
    /// Sends the owner's batches to the backup and its receipts back.
    func deliver() {
        for batch in owner.takeBatches(for: "n2", now: now, datagram: false) {
            for bytes in batch.messages {
                guard let message = try? MessageCodec.decode(bytes) else { fatalError("a batch did not decode") }
                blackHole(backup.apply(message, from: "n1", process: NodeID(1), now: now))
            }
            let through = batch.firstSequence + UInt64(batch.messages.count) - 1
            blackHole(owner.onReceipt(from: "n2", Receipt(lane: 0, through: through, stream: NodeID(1)), now: now, datagram: false))
        }
    }
    deliver()
    var changes = ChangeSet()
    changes.updated["cart"] = kibibyte
    Benchmark("shard: commit 1 KiB, decode and apply on the backup, receipt") { benchmark in
        for _ in benchmark.scaledIterations {
            now = now + .microseconds(1)
            do { blackHole(try owner.commit(id, changes: changes, maxInactiveInterval: nil, now: now, wall: wall)) } catch { fatalError("commit failed: \(error)") }
            deliver()
        }
    }
    underReplicated()
}

/// The under-replicated count a status read (`/cluster/status`, a metrics scrape) takes
/// while a backup is out of reach, on an owner of 100,000 sessions: kept counts against
/// a walk of every session (how it was counted before).
func underReplicated() {
    var policy = ReplicationPolicy()
    policy.replicas = .count(1)
    var shard = ReplicaShard(settings: ShardSettings(selfName: "n1", selfID: NodeID(1), policy: policy, sessions: SessionPolicy(),
                                                     backupCandidates: ["n2", "n3"]))
    let wall = WallTime(milliseconds: 1_700_000_000_000)
    for i in 0..<100_000 {
        do {
            _ = try shard.create(id: SessionID(high: 9, low: UInt64(i)), attributes: ["a": [1]], maxInactiveInterval: nil,
                                 now: MonotonicInstant.zero, wall: wall, sessionCount: i)
        } catch { fatalError("create failed: \(error)") }
    }
    shard.setReachable("n2", false)
    let unreachable = shard
    Benchmark("status: under-replicated count, 100,000 sessions, one backup out of reach", configuration: .init(scalingFactor: .one)) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(unreachable.underReplicatedCount) }
    }
    Benchmark("status: the same by walking every session", configuration: .init(scalingFactor: .one)) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(unreachable.underReplicatedCountWalking) }
    }
    // A member that was away comes back: the event that queues what it should back.
    var away = shard
    away.setReachable("n2", true)
    _ = away.memberDeparted("n3", now: MonotonicInstant.zero)
    let before = away
    var four = ReplicaShard(settings: ShardSettings(selfName: "n1", selfID: NodeID(1), policy: policy, sessions: SessionPolicy(),
                                                    backupCandidates: ["n2", "n3", "n4"]))
    for i in 0..<100_000 {
        do {
            _ = try four.create(id: SessionID(high: 10, low: UInt64(i)), attributes: ["a": [1]], maxInactiveInterval: nil,
                                now: MonotonicInstant.zero, wall: wall, sessionCount: i)
        } catch { fatalError("create failed: \(error)") }
    }
    _ = four.memberDeparted("n4", now: MonotonicInstant.zero)
    four.memberReturned("n4")
    let idle = four
    Benchmark("membership: a member that backs none of 100,000 owned sessions departs (the event itself)", configuration: .init(scalingFactor: .one, maxIterations: 50)) { benchmark in
        for _ in benchmark.scaledIterations {
            var s = idle
            blackHole(s.memberDeparted("n4", now: MonotonicInstant.zero).rereplicated.count)
        }
    }
    Benchmark("membership: a member returns to an owner of 100,000 sessions (the event itself)", configuration: .init(scalingFactor: .one, maxIterations: 50)) { benchmark in
        for _ in benchmark.scaledIterations {
            var s = before
            s.memberReturned("n3")
            blackHole(s.stateTransferPending)
        }
    }
}

/// One node (no backups, loopback) under a started ReplicationNode, for the paths that
/// go through its lock and its event loop.
final class OneNode: @unchecked Sendable {
    var node: ReplicationNode?

    func start() async throws {
        let configuration = ClusterConfiguration(
            clusterID: "bench", keys: .insecure,
            nodes: [NodeEndpoint(name: "n1", address: "127.0.0.1", httpPort: 0, replicationPort: 0, membershipPort: 0)])
        var logger = Logger(label: "bench")
        logger.logLevel = .critical
        let node = try ReplicationNode(configuration: configuration, name: "n1", logger: logger)
        try await node.start()
        self.node = node
    }

    func stop() async {
        await node?.shutdown()
        node = nil
    }
}

/// Hummingbird's PersistDriver over a node: `set` and `get` of a 1 KiB value on a key
/// this node owns, as the SessionMiddleware does once per request.
func persistDriver() {
    let one = OneNode()
    struct Cart: Codable, Sendable { var blob: String }
    let cart = Cart(blob: String(repeating: "x", count: 1024))
    Benchmark("persist driver: set 1 KiB on an owned key, x1000", configuration: .init(scalingFactor: .one, maxIterations: 50)) { benchmark in
        let driver = DRSPersistDriver(node: one.node!)
        try? await driver.set(key: "bench", value: cart, expires: nil)
        benchmark.startMeasurement()
        for _ in 0..<1_000 {
            do { try await driver.set(key: "bench", value: cart, expires: nil) } catch { fatalError("set failed: \(error)") }
        }
        benchmark.stopMeasurement()
    } setup: {
        try await one.start()
    } teardown: {
        await one.stop()
    }
    Benchmark("persist driver: get 1 KiB on an owned key, x1000", configuration: .init(scalingFactor: .one, maxIterations: 50)) { benchmark in
        let driver = DRSPersistDriver(node: one.node!)
        try? await driver.set(key: "bench", value: cart, expires: nil)
        benchmark.startMeasurement()
        for _ in 0..<1_000 {
            guard let value = try? await driver.get(key: "bench", as: Cart.self) else { fatalError("get found nothing") }
            blackHole(value)
        }
        benchmark.stopMeasurement()
    } setup: {
        try await one.start()
    } teardown: {
        await one.stop()
    }
}

/// One HTTP request through the router (Hummingbird's test client, no sockets): the
/// API's `PUT` of a 1 KiB attribute, against a bare route reading the same body.
func httpRoutes() {
    let one = OneNode()
    let uses = 1_000
    Benchmark("http: PUT /sessions/{id}/attributes/a, 1 KiB, x1000", configuration: .init(scalingFactor: .one, maxIterations: 50)) { benchmark in
        let node = one.node!
        nonisolated(unsafe) let benchmark = benchmark  // used by one task at a time
        let router = Router()
        SessionAPI(backend: node, settings: .init(configuration: node.configuration)).addRoutes(to: router)
        try? await Application(router: router).test(.router) { client in
            let created = try await client.execute(uri: "/sessions", method: .post)
            let id = String(buffer: created.body).split(separator: "\"").dropFirst(3).first.map(String.init) ?? ""
            benchmark.startMeasurement()
            for _ in 0..<uses {
                let r = try await client.execute(uri: "/sessions/\(id)/attributes/a", method: .put, body: ByteBuffer(bytes: kibibyte))
                precondition(r.status == .ok, "PUT answered \(r.status)")
            }
            benchmark.stopMeasurement()
        }
    } setup: {
        try await one.start()
    } teardown: {
        await one.stop()
    }
    Benchmark("http: bare route reading 1 KiB, x1000", configuration: .init(scalingFactor: .one, maxIterations: 50)) { benchmark in
        nonisolated(unsafe) let benchmark = benchmark  // used by one task at a time
        let router = Router()
        router.put("/bare") { request, _ -> String in
            let body = try await request.body.collect(upTo: 1 << 20)
            return "\(body.readableBytes)"
        }
        try? await Application(router: router).test(.router) { client in
            benchmark.startMeasurement()
            for _ in 0..<uses {
                let r = try await client.execute(uri: "/bare", method: .put, body: ByteBuffer(bytes: kibibyte))
                precondition(r.status == .ok, "PUT /bare answered \(r.status)")
            }
            benchmark.stopMeasurement()
        }
    }
}
