import NIOConcurrencyHelpers
import SessionReplicationCore

/// What a caller waiting on a request hears: its scope is ready, or it ended.
enum RequestOutcome: Sendable {
    case ready(SessionState)
    case result(RequestResult)
}

/// The node's `NodeCore` behind a lock, with the callers waiting on its requests. Events
/// run under the lock and return their actions, which the node performs after unlocking
/// (the pattern of async-http-client's connection pool: modify the state, then run the
/// actions).
final class CoreBox: @unchecked Sendable {
    private let lock = NIOLock()
    private var core: NodeCore
    private var waiting: [RequestID: CheckedContinuation<RequestOutcome, Never>] = [:]
    private var early: [RequestID: RequestOutcome] = [:]
    private var nextRequest: UInt64 = 1
    /// Called under the lock when the core takes a new node id, so that no frame leaves
    /// under the new id before the sealer knows it.
    private let identityChanged: @Sendable (NodeID) -> Void

    init(core: NodeCore, identityChanged: @escaping @Sendable (NodeID) -> Void) {
        self.core = core
        self.identityChanged = identityChanged
    }

    /// A fresh request id.
    func newRequest() -> RequestID {
        lock.withLock {
            defer { nextRequest += 1 }
            return RequestID(nextRequest)
        }
    }

    /// Runs one event on the core under the lock; returns its actions.
    func run(_ event: (inout NodeCore) -> [NodeAction]) -> [NodeAction] {
        lock.withLock {
            let actions = event(&core)
            for case .identityChanged(let id) in actions { identityChanged(id) }
            return actions
        }
    }

    /// Reads the core under the lock.
    func read<T>(_ body: (borrowing NodeCore) -> T) -> T {
        lock.withLock { body(core) }
    }

    /// Changes the core outside the event interface (settings such as
    /// `reportsBackupApplies`, test hooks).
    func modify<T>(_ body: (inout NodeCore) -> T) -> T {
        lock.withLock { body(&core) }
    }

    /// Hands `outcome` to the caller waiting on `r` (or keeps it until it waits).
    func deliver(_ r: RequestID, _ outcome: RequestOutcome) {
        let c: CheckedContinuation<RequestOutcome, Never>? = lock.withLock {
            if let c = waiting.removeValue(forKey: r) { return c }
            early[r] = outcome
            return nil
        }
        c?.resume(returning: outcome)
    }

    /// Waits for the next outcome of `r`.
    func wait(_ r: RequestID) async -> RequestOutcome {
        await withCheckedContinuation { (c: CheckedContinuation<RequestOutcome, Never>) in
            let ready: RequestOutcome? = lock.withLock {
                if let o = early.removeValue(forKey: r) { return o }
                waiting[r] = c
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }
}
