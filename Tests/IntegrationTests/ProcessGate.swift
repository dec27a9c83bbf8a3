import Testing

/// Suites that start real `drs` processes take turns: started all at once, a dozen debug
/// processes starve two cores for seconds, and the loopback clusters of the other test
/// targets, running beside them, lose their leases.
actor ProcessGate {
    static let shared = ProcessGate()
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func acquire() async {
        guard busy else { busy = true; return }
        await withCheckedContinuation { waiting.append($0) }
    }

    func release() {
        if waiting.isEmpty { busy = false } else { waiting.removeFirst().resume() }
    }
}

/// The trait: a suite marked `.oneClusterAtATime` runs alone among the suites so marked
/// (its own tests are `.serialized`).
struct OneClusterAtATime: SuiteTrait, TestScoping {
    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        // Around the whole suite only (the gate is not reentrant).
        guard test.isSuite else { return try await function() }
        await ProcessGate.shared.acquire()
        do {
            try await function()
        } catch {
            await ProcessGate.shared.release()
            throw error
        }
        await ProcessGate.shared.release()
    }
}

extension Trait where Self == OneClusterAtATime {
    /// Runs the suite alone among the suites that start `drs` processes.
    static var oneClusterAtATime: Self { OneClusterAtATime() }
}
