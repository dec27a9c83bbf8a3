import NIOConcurrencyHelpers
import SessionReplicationCore

/// Hands a node's session events to every subscriber, each through its own bounded
/// buffer: a slow subscriber loses its oldest events (counted), never slows replication.
final class SessionEventHub: @unchecked Sendable {
    private let lock = NIOLock()
    private var subscribers: [UInt64: AsyncStream<SessionEvent>.Continuation] = [:]
    private var next: UInt64 = 0
    private var dropped = 0

    /// Events lost because a subscriber's buffer was full.
    var droppedCount: Int { lock.withLock { dropped } }

    /// Whether anyone listens.
    var hasSubscribers: Bool { lock.withLock { !subscribers.isEmpty } }

    /// A new subscription with room for `buffer` events; `onEmpty` runs when the last
    /// subscription ends.
    func subscribe(buffer: Int, onEmpty: @escaping @Sendable () -> Void) -> AsyncStream<SessionEvent> {
        let (stream, continuation) = AsyncStream<SessionEvent>.makeStream(bufferingPolicy: .bufferingNewest(max(1, buffer)))
        let key: UInt64 = lock.withLock {
            next += 1
            subscribers[next] = continuation
            return next
        }
        continuation.onTermination = { [weak self] _ in
            guard let self else { return }
            let empty = self.lock.withLock {
                self.subscribers[key] = nil
                return self.subscribers.isEmpty
            }
            if empty { onEmpty() }
        }
        return stream
    }

    /// Delivers `event` to every subscriber.
    func publish(_ event: SessionEvent) {
        let targets = lock.withLock { Array(subscribers.values) }
        var lost = 0
        for c in targets {
            if case .dropped = c.yield(event) { lost += 1 }
        }
        if lost > 0 { lock.withLock { dropped += lost } }
    }

    /// Ends every subscription (the node stopped).
    func finish() {
        let targets = lock.withLock { Array(subscribers.values) }
        for c in targets { c.finish() }
    }
}
