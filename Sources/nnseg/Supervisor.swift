import Foundation

/// How nnseg's internal child processes (`watch-worker`, `outbox-send`, `serve-scp`) make sure they never outlive the
/// supervisor that started them: a restarted supervisor redoes their work (runs the claim again, sends the pending
/// item, binds the port), so an orphan would do it twice. The supervisor passes its own pid (`--supervisor`); a child
/// whose parent is already another process — the supervisor was killed between starting it and the child looking,
/// which is when an orphan `outbox-send` delivered an item a second time (ServeTests.theOutboxSurvivesAKill, under
/// load) — gives up at once, and otherwise a watcher thread gives up as soon as the parent changes.
enum Supervisor {
    /// Calls `gone` (once, on a background thread) when the parent is not — or stops being — `expected` (the parent
    /// at start when not given).
    static func watch(expected: Int32?, pollMicroseconds: UInt32, gone: @escaping @Sendable () -> Void) {
        let supervisor = expected ?? getppid()
        Thread.detachNewThread {
            while getppid() == supervisor { usleep(pollMicroseconds) }
            gone()
        }
    }
}
