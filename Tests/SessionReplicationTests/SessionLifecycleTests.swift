import Logging
import NIOPosix
import SessionReplication
import SessionReplicationCore
import Testing

@Suite("Roles, transient attributes, expiry and key rotation over loopback", .timeLimit(.minutes(10)))
struct SessionLifecycleTests {
    @Test("a client node stores no backups and a server node owns no sessions")
    func roles() async throws {
        var config = TestCluster.configuration(names: ["c1", "s1", "b1"]) { $0.replicas = .count(2) }
        config.nodes[0].role = .client
        config.nodes[1].role = .server
        try await TestCluster.with(config) { cluster in
            let onClient = try #require(try await cluster["c1"].createSession(attributes: ["a": [1]]).state)
            #expect(onClient.replicaSet.sorted() == ["b1", "s1"])
            let onBoth = try #require(try await cluster["b1"].createSession(attributes: ["a": [2]]).state)
            #expect(onBoth.replicaSet == ["s1"])
            let error = await #expect(throws: SessionError.self) { _ = try await cluster["s1"].createSession() }
            #expect(error?.code == .notOwner)
            _ = try await cluster["b1"].sync(onBoth.id)
            #expect(cluster["c1"].counters.backups == 0)
            #expect(cluster["s1"].copy(of: onBoth.id)?.backupState?.stamp == onBoth.stamp)
        }
    }

    @Test("transient attributes stay on the owner")
    func transientAttributesStayLocal() async throws {
        var config = TestCluster.configuration(names: ["n1", "n2"])
        config.sessions.transientAttributes = ["tmp.*", "csrf"]
        try await TestCluster.with(config) { cluster in
            let id = try #require(try await cluster["n1"].createSession(attributes: ["csrf": [9], "keep": [1]]).state?.id)
            _ = try await cluster["n1"].withSession(id) { s in
                s.set("tmp.scratch", [1, 2, 3])
                s.set("keep", [2])
            }
            _ = try await cluster["n1"].sync(id)
            #expect(cluster["n1"].copy(of: id)?.ownerState?.attributes.keys.sorted() == ["csrf", "keep", "tmp.scratch"])
            #expect(cluster["n2"].copy(of: id)?.backupState?.attributes == ["keep": [2]])
        }
    }

    @Test("the owner expires an idle session and every backup gets a tombstone")
    func ownerExpiryIsReplicated() async throws {
        var config = TestCluster.configuration(names: ["n1", "n2"])
        config.sessions.maxInactiveInterval = .seconds(2)
        try await TestCluster.with(config) { cluster in
            #expect(await cluster.joined())
            let id = try #require(try await cluster["n1"].createSession(attributes: ["a": [1]]).state?.id)
            // Only the owner's invalidation can put a tombstone on the backup (under a
            // loaded machine the copy may arrive just before it, and be seen only briefly).
            #expect(await eventually(timeout: .seconds(60)) { if case .tombstone = cluster["n2"].copy(of: id) { return true } else { return false } })
            if case .tombstone = cluster["n1"].copy(of: id) {} else { Issue.record("owner kept the expired session") }
            #expect(cluster["n1"].counters.replication.expired == 1)
            // An expired session is gone for the API too.
            let error = await #expect(throws: SessionError.self) { _ = try await cluster["n1"].withSession(id) { $0.set("b", [1]) } }
            #expect(error?.code == .sessionNotFound)
        }
    }

    @Test("a backup that may not own (role server) evicts a copy after maxInactiveInterval + backupGrace without word from its dead owner")
    func backupEviction() async throws {
        // Synchronous: the creation returns once n2 holds the backup, and n1 stops right
        // after, before it can expire the session itself (its tombstone would reach n2
        // first). The idle limit is long enough that a test task starved for seconds, as
        // in a loaded run, still stops n1 in time; it showed 3 s was not.
        var config = TestCluster.configuration(names: ["n1", "n2"]) { $0.mode = .synchronous }
        config.nodes[1].role = .server
        config.sessions.maxInactiveInterval = .seconds(20)
        config.sessions.backupGrace = .zero
        let cluster = try await TestCluster(config)
        #expect(await cluster.joined())
        // A synchronous creation leaves a copy on n2, unless n2 was declared dead by
        // mistake meanwhile and rejoined, dropping it (seen under load in another test).
        // So up to three creations are tried, and each miss is printed with its cause.
        var attempts: [String] = []
        var chosen: SessionID?
        for _ in 0..<3 where chosen == nil {
            let process = cluster["n2"].nodeID
            let created = try await cluster["n1"].createSession(attributes: ["a": [1]])
            let sid = try #require(created.state?.id)
            if cluster["n2"].copy(of: sid)?.backupState != nil { chosen = sid; break }
            attempts.append("\(created.durability), n2 held \(String(describing: cluster["n2"].copy(of: sid))), n2 \(process == cluster["n2"].nodeID ? "kept its process" : "rejoined")")
        }
        if !attempts.isEmpty { print("backup eviction test: creations without a copy on n2: \(attempts)") }
        let id = try #require(chosen, "no creation left a copy on n2: \(attempts)")
        await cluster["n1"].shutdown()
        // (Whether n2 still holds the copy right after is not asserted: a test task starved
        // for longer than the idle limit finds it evicted already, as two loaded runs did.)
        let evicted = await eventually(timeout: .seconds(120)) { cluster["n2"].copy(of: id) == nil }
        let counters = cluster["n2"].counters.replication
        await cluster.shutdown()
        #expect(evicted)
        #expect(counters.promotions == 0)
        #expect(counters.backupsEvicted == 1)
    }

    @Test("during key rotation a node accepts frames sealed with a key of its keyring")
    func keyRotation() async throws {
        let old: [UInt8] = Array(repeating: 1, count: 32), new: [UInt8] = Array(repeating: 2, count: 32)
        var base = TestCluster.configuration(names: ["n1", "n2"])
        base.keys = ClusterKeys(current: old, keyring: [new])
        var rotated = base
        rotated.keys = ClusterKeys(current: new, keyring: [old])
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let n1 = try ReplicationNode(configuration: base, name: "n1", logger: Logger(label: "t"), eventLoopGroup: group)
        let n2 = try ReplicationNode(configuration: rotated, name: "n2", logger: Logger(label: "t"), eventLoopGroup: group)
        try await n1.start(); try await n2.start()
        n1.setPeerEndpoint("n2", host: "127.0.0.1", port: n2.replicationPort!, membershipPort: n2.membershipPort)
        n2.setPeerEndpoint("n1", host: "127.0.0.1", port: n1.replicationPort!, membershipPort: n1.membershipPort)
        // Membership speaks sealed frames too: joining at all shows each accepts the
        // other's key. A session created before the join would have no backup yet.
        let joined = await eventually { [n1, n2].allSatisfy { $0.members().allSatisfy { $0.state == "alive" } && $0.isReady } }
        let a = try await n1.createSession(attributes: ["x": [1]]).state!.id
        let b = try await n2.createSession(attributes: ["y": [2]]).state!.id
        let synced = (try await n1.sync(a).durability, try await n2.sync(b).durability)
        let held = (n2.copy(of: a)?.backupState != nil, n1.copy(of: b)?.backupState != nil)
        await n1.shutdown(); await n2.shutdown()
        try await group.shutdownGracefully()
        #expect(joined)
        #expect(synced.0 == .replicated(["n2"]))
        #expect(synced.1 == .replicated(["n1"]))
        #expect(held.0 && held.1)
    }
}

@Suite("Shutdown and restarted peers", .timeLimit(.minutes(10)))
struct ShutdownAndRestartTests {
    @Test("shutdown ends a synchronous write that waits for a backup, and later calls fail with not-ready")
    func shutdownEndsWaits() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2"]) {
            $0.mode = .synchronous
            $0.syncTimeout = .seconds(30)
        }
        let sink = try await BlackHole.start()
        let cluster = try await TestCluster(config, only: ["n1"])
        let n1 = cluster["n1"]
        n1.setPeerEndpoint("n2", host: "127.0.0.1", port: sink.port)
        let write = Task { try await n1.createSession(attributes: ["a": [1]]) }
        #expect(await eventually { n1.counters.primaries == 1 })
        await cluster.shutdown()
        let error = await #expect(throws: SessionError.self) { _ = try await write.value }
        #expect(error?.code == .shuttingDown)
        let later = await #expect(throws: SessionError.self) { _ = try await n1.createSession() }
        #expect(later?.code == .shuttingDown)
        try await sink.close()
    }

    @Test("a start whose membership port is taken throws and leaves no socket bound; a later start binds again")
    func failedStartReleasesItsSockets() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        // The membership port is held by another socket; the replication port is free.
        let blocker = try await DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let probe = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let replicationPort = try #require(probe.localAddress?.port)
        try await probe.close()
        var config = TestCluster.configuration(names: ["n1"])
        config.nodes[0].replicationPort = replicationPort
        config.nodes[0].membershipPort = try #require(blocker.localAddress?.port)
        let node = try ReplicationNode(configuration: config, name: "n1", logger: Logger(label: "t"), eventLoopGroup: group)
        await #expect(throws: (any Error).self) { try await node.start() }
        // The replication UDP socket the failed start bound is closed and stays closed
        // (before, it stayed bound until the process ended).
        try await Task.sleep(for: .milliseconds(300))
        let udp = try await DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: replicationPort).get()
        try await udp.close()
        // Once the membership port is free, the same node starts.
        try await blocker.close()
        try await node.start()
        #expect(node.replicationPort == replicationPort)
        await node.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("a backup that restarts empty gets every session it backs again")
    func restartedBackupIsRepopulated() async throws {
        let config = TestCluster.configuration(names: ["n1", "n2"])
        let cluster = try await TestCluster(config)
        let n1 = cluster["n1"]
        var ids: [SessionID] = []
        for i in 0..<20 { ids.append(try #require(try await n1.createSession(attributes: ["i": [UInt8(i)]]).state?.id)) }
        for id in ids { _ = try await n1.sync(id) }
        await cluster["n2"].shutdown()
        // A new n2 process: a fresh node id, nothing held.
        let fresh = try ReplicationNode(configuration: config, name: "n2", logger: .init(label: "t"), eventLoopGroup: cluster.group)
        try await fresh.start()
        fresh.setPeerEndpoint("n1", host: "127.0.0.1", port: n1.replicationPort!, membershipPort: n1.membershipPort)
        n1.setPeerEndpoint("n2", host: "127.0.0.1", port: fresh.replicationPort!, membershipPort: fresh.membershipPort)
        // One write makes n1 hear from the new process.
        _ = try await n1.withSession(ids[0]) { $0.set("b", [2]) }
        let all = ids
        let repopulated = await eventually {
            all.allSatisfy { fresh.copy(of: $0)?.backupState?.stamp == n1.copy(of: $0)?.ownerState?.stamp }
        }
        await fresh.shutdown()
        await cluster.shutdown()
        #expect(repopulated)
    }
}
