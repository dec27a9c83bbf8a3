import DequeModule
import NIOConcurrencyHelpers
import SessionReplicationCore

/// A shard's state machine behind a lock, with the continuations of callers waiting on
/// it. Actions are computed under the lock and performed after unlocking.
final class ShardBox: @unchecked Sendable {
    private let lock = NIOLock()
    private var core: ReplicaShard
    private var continuations: [WaiterID: CheckedContinuation<WaitResult, Never>] = [:]
    private var finished: [WaiterID: WaitResult] = [:]
    private var scopeQueues: [SessionID: Deque<CheckedContinuation<Void, Never>>] = [:]
    private var closed = false

    init(core: ReplicaShard) { self.core = core }

    /// Ends every wait (as timed out) and lets every queued scope proceed: the node is
    /// stopping and nothing will complete them any more. Later waits return at once.
    func close() {
        let (waits, scopes): ([CheckedContinuation<WaitResult, Never>], [CheckedContinuation<Void, Never>]) = lock.withLock {
            closed = true
            let waits = Array(continuations.values)
            let scopes = scopeQueues.values.flatMap { $0 }
            continuations.removeAll()
            finished.removeAll()
            scopeQueues.removeAll()
            return (waits, scopes)
        }
        for c in waits { c.resume(returning: .timedOut([])) }
        for c in scopes { c.resume() }
    }

    /// Replaces the state machine (a rejoin under a new node id drops everything held):
    /// every wait ends as timed out; scopes in progress run on and find nothing.
    func reset(_ make: (ReplicaShard) -> ReplicaShard) {
        let waits: [CheckedContinuation<WaitResult, Never>] = lock.withLock {
            core = make(core)
            let waits = Array(continuations.values)
            continuations.removeAll()
            finished.removeAll()
            return waits
        }
        for c in waits { c.resume(returning: .timedOut([])) }
    }

    /// Runs `body` on the state machine under the lock.
    func withCore<T>(_ body: (inout ReplicaShard) throws -> T) rethrows -> T {
        try lock.withLock { try body(&core) }
    }

    /// Resumes the callers of completed waits (or parks the results until they wait).
    func complete(_ results: [(WaiterID, WaitResult)]) {
        guard !results.isEmpty else { return }
        var resume: [(CheckedContinuation<WaitResult, Never>, WaitResult)] = []
        lock.withLock {
            for (w, r) in results {
                if let c = continuations.removeValue(forKey: w) { resume.append((c, r)) } else { finished[w] = r }
            }
        }
        for (c, r) in resume { c.resume(returning: r) }
    }

    /// Waits for `waiter` to complete.
    func wait(_ waiter: WaiterID) async -> WaitResult {
        await withCheckedContinuation { (c: CheckedContinuation<WaitResult, Never>) in
            let ready: WaitResult? = lock.withLock {
                if closed { return .timedOut([]) }
                if let r = finished.removeValue(forKey: waiter) { return r }
                if let r = core.settledWait(waiter) { return r }
                continuations[waiter] = c
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }

    /// Waits until no other scope holds `id`, then holds it.
    func acquireScope(_ id: SessionID) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let proceed: Bool = lock.withLock {
                if closed { return true }
                if scopeQueues[id] != nil {
                    scopeQueues[id]!.append(c)
                    return false
                }
                scopeQueues[id] = []
                return true
            }
            if proceed { c.resume() }
        }
    }

    /// Releases `id`, handing it to the next waiting scope.
    func releaseScope(_ id: SessionID) {
        let next: CheckedContinuation<Void, Never>? = lock.withLock {
            guard scopeQueues[id] != nil else { return nil }
            if scopeQueues[id]!.isEmpty {
                scopeQueues[id] = nil
                return nil
            }
            return scopeQueues[id]!.removeFirst()
        }
        next?.resume()
    }
}

/// The receiver side of one (sender process, lane) stream, behind its own lock so that
/// frames of one stream are accepted and applied in order even when they arrive on TCP
/// and UDP at once.
final class InboundBox: @unchecked Sendable {
    let lock = NIOLock()
    var stream = InboundStream()
    let senderName: String
    let lane: UInt16
    /// When the stream last received a frame (guarded by `lock`).
    var lastHeard: MonotonicInstant = .zero
    init(senderName: String, lane: UInt16) {
        self.senderName = senderName
        self.lane = lane
    }
}
