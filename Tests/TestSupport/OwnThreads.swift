import Foundation
import Testing

/// Runs every job it is given on a new thread of its own, outside Swift's cooperative thread pool.
final class OwnThreadExecutor: TaskExecutor, @unchecked Sendable {
    static let shared = OwnThreadExecutor()

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        let thread = Thread { job.runSynchronously(on: executor) }
        thread.stackSize = 8 << 20
        thread.start()
    }
}

/// A suite trait: the suite's tests — their bodies *and* their time limits — run on threads of their own instead of
/// Swift's cooperative pool.
///
/// The pool is as wide as the CPU count (two threads on CI), and a synchronous test blocks one of its threads for as
/// long as it runs: two long tests (a training run, a cascade) hold the whole pool for minutes. Swift Testing starts a
/// test's time limit before its body has a thread, so a 13 s test with a 3 min limit failed at the limit, never
/// having run (CI, stop 37: two tests "exceeded" their limits at the instant a training test freed the pool; three
/// locally). Under this trait a limit measures the test itself. Meant for the few suites that wait on processes,
/// sockets and timers (the services, the watch folder, the cluster) and the training check: the former mostly sleep,
/// so running them beside the pool costs little CPU. Tasks they create inherit the preference.
public struct OwnThreadsTrait: SuiteTrait, TestScoping {
    public var isRecursive: Bool { false }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        try await withTaskExecutorPreference(OwnThreadExecutor.shared) { try await function() }
    }
}

extension Trait where Self == OwnThreadsTrait {
    /// The suite's tests and their time limits run on threads of their own (``OwnThreadsTrait``).
    public static var ownThreads: Self { Self() }
}
