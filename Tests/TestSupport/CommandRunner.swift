import Foundation

/// Runs the built `nnseg` executable (argument-parser's AssertExecuteCommand pattern).
public enum CommandRunner {
    public struct Result: Sendable {
        public let status: Int32
        public let stdout: String
        public let stderr: String
    }

    /// The `nnseg` binary built beside the test bundle.
    public static var executable: URL {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        // On Linux the test runner is `<bin>/nnsegPackageTests.xctest`; on macOS it sits inside a bundle.
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("nnseg").path), dir.path != "/" {
            dir.deleteLastPathComponent()
        }
        return dir.appendingPathComponent("nnseg")
    }

    /// Runs `nnseg` with the test keys in its environment (``TestKeys/environment``), as a site runs it.
    public static func nnseg(_ arguments: [String], environment: [String: String] = [:]) throws -> Result {
        try run(executable.path, arguments, environment: TestKeys.environment.merging(environment) { _, new in new })
    }

    /// Starts `nnseg` in the background (for tests that kill it): its standard output and error appended to `log`,
    /// or discarded without one.
    public static func launch(_ arguments: [String], environment: [String: String] = [:], log: URL? = nil) throws -> Process {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(TestKeys.environment) { _, new in new }
            .merging(environment) { _, new in new }
        if let log {
            if !FileManager.default.fileExists(atPath: log.path) { FileManager.default.createFile(atPath: log.path, contents: nil) }
            let handle = try FileHandle(forWritingTo: log)
            try handle.seekToEnd()
            process.standardOutput = handle
            process.standardError = handle
        } else {
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
        }
        try process.run()
        return process
    }

    /// The last `lines` lines of a log file (for a failing expectation's comment).
    public static func tail(_ log: URL, lines: Int = 40) -> String {
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? "(no log at \(log.path))"
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// Runs any program (validators such as dciodvfy, plastimatch, the highdicom script).
    public static func run(_ path: String, _ arguments: [String], environment: [String: String] = [:]) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self))
    }
}

/// Waits until `condition` holds (checked every 0.1 s), at most `timeout` seconds; the condition's last value.
@discardableResult
public func waitUntil(_ timeout: TimeInterval = 90, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(100_000)
    }
    return try condition()
}

/// The system's gzip, an independent reader for what nnseg deflates.
public enum SystemGzip {
    /// `gzip -dc file`: the inflated bytes and gzip's exit status.
    public static func inflate(_ file: URL) throws -> (data: Data, status: Int32) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/gzip")
        process.arguments = ["-dc", file.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (data, process.terminationStatus)
    }
}
