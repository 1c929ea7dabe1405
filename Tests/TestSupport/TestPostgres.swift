import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A private PostgreSQL cluster for the tests of #19, started once per test process by `Ops/pg.sh` on a free
/// loopback port in a temporary folder, and stopped when the process exits. Each test takes a database of its own
/// (``database(_:)``), so tests never see each other's rows.
public enum TestPostgres {
    struct Server {
        let folder: URL
        let port: Int
        var url: String { "postgres://nnseg@127.0.0.1:\(port)/nnseg" }
    }

    nonisolated(unsafe) private static var server: Server?
    private static let lock = NSLock()

    /// Whether the PostgreSQL server binaries are installed (`bash Ops/setup.sh --test`).
    public static var isAvailable: Bool {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? [])
            .contains { FileManager.default.isExecutableFile(atPath: "/usr/lib/postgresql/\($0)/bin/initdb") }
    }

    static func started() throws -> Server {
        lock.lock()
        defer { lock.unlock() }
        if let server { return server }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("nnseg-pg-\(getpid())-\(UUID().uuidString.prefix(8))")
        let port = try freePort()
        let script = SharedData.repositoryRoot.appendingPathComponent("Ops/pg.sh").path
        // system() waits with waitpid: Foundation's Process does not see the script end while the server it started
        // holds a descriptor the Process machinery watches.
        let log = folder.path + ".log"
        let status = system("/bin/bash '\(script)' start '\(folder.path)' \(port) </dev/null >'\(log)' 2>&1")
        guard status == 0 else {
            throw TestPostgresError(detail: "Ops/pg.sh start failed: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
        let started = Server(folder: folder, port: port)
        server = started
        atexit {
            guard let s = TestPostgres.server else { return }
            let script = SharedData.repositoryRoot.appendingPathComponent("Ops/pg.sh").path
            _ = system("/bin/bash '\(script)' stop '\(s.folder.path)' </dev/null >/dev/null 2>&1")
            try? FileManager.default.removeItem(at: s.folder)
            try? FileManager.default.removeItem(atPath: s.folder.path + ".log")
        }
        return started
    }

    /// A new, empty database on the test cluster: its postgres:// URL.
    public static func database(_ label: String = "t") throws -> String {
        let s = try started()
        let name = "\(label.lowercased().filter { $0.isLetter || $0.isNumber })_\(UUID().uuidString.prefix(8).lowercased())"
        let created = try CommandRunner.run("/usr/bin/psql", [s.url, "-qAtc", "CREATE DATABASE \(name)"])
        guard created.status == 0 else { throw TestPostgresError(detail: "CREATE DATABASE failed: \(created.stderr)") }
        return "postgres://nnseg@127.0.0.1:\(s.port)/\(name)"
    }

    /// Runs SQL with psql (as the cluster's superuser: what an administrator with database rights could do).
    @discardableResult
    public static func psql(_ url: String, _ sql: String) throws -> CommandRunner.Result {
        try CommandRunner.run("/usr/bin/psql", [url, "-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql])
    }

    /// A TCP port on 127.0.0.1 that nothing listens on now.
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestPostgresError(detail: "socket failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0 else { throw TestPostgresError(detail: "bind failed") }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

public struct TestPostgresError: Error, CustomStringConvertible {
    public let detail: String
    public var description: String { "TestPostgres: \(detail)" }
}
