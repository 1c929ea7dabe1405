import Foundation

extension Process {
    /// Waits for the process to end, sleeping between looks (Foundation's `waitUntilExit` on Linux spins its run
    /// loop at 100 % of a core on a thread without run-loop sources — seen for the whole of an outbox send, and
    /// forever when a child never ended). With a deadline: false if it is still running then.
    @discardableResult
    public func waitForExit(until deadline: Date? = nil) -> Bool {
        while isRunning {
            if let deadline, Date() >= deadline { return false }
            usleep(5_000)
        }
        return true
    }

    /// Asks the process to stop (SIGTERM) and, if it has not ended after `grace` seconds, kills it (SIGKILL): a
    /// supervisor never waits forever for a child (a receiver that got SIGTERM while it was still starting, before
    /// its handler was in place, ignored it and kept `nnseg serve` from stopping).
    public func stop(grace: TimeInterval) {
        guard isRunning else { return }
        terminate()
        if !waitForExit(until: Date().addingTimeInterval(grace)) {
            kill(processIdentifier, SIGKILL)
            waitForExit()
        }
    }
}
