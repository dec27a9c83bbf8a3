import Foundation
import Testing

/// Two threads of their own for the tests that simulate clusters in process.
///
/// All test targets run in one process, and Swift Testing runs async tests on the
/// cooperative pool, two threads on this two-core machine. A simulator test computes for
/// seconds without suspending: two of them took both threads, and every loopback test
/// beside them waited (tests of a few milliseconds reported 50 s, and a backup arrived
/// after its 3 s session had expired). Run here, they still use the cores, but the kernel
/// shares them out and the pool stays free for the tests that wait on sockets.
final class SimulationThreads: TaskExecutor, @unchecked Sendable {
    static let shared = SimulationThreads(threads: 2)

    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    private init(threads: Int) {
        for i in 0..<threads {
            let thread = Thread { [unowned self] in self.work() }
            thread.name = "simulation-\(i)"
            thread.start()
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func work() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// Runs each test of a suite on `SimulationThreads` (see there why).
struct OffThePool: TestTrait, SuiteTrait, TestScoping {
    var isRecursive: Bool { true }

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        try await withTaskExecutorPreference(SimulationThreads.shared) { try await function() }
    }
}

extension Trait where Self == OffThePool {
    /// Runs the suite's tests on threads of their own, off the cooperative pool.
    static var offThePool: Self { OffThePool() }
}
