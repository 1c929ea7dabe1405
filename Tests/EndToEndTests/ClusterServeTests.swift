import Foundation
import Testing
import TestSupport
import WatchService
#if canImport(Glibc)
import Glibc
#endif

/// Issue #19: `nnseg serve` as a cluster intake. Two DICOM nodes share one PostgreSQL database (queue, audit log,
/// outbox) and one shared folder; each receives a series by C-STORE; the cases run on whichever node claims them,
/// and each case's outputs reach the PACS (a DCMTK storescp) exactly once through the shared outbox.
@Suite(.ownThreads, .enabled(if: TestPostgres.isAvailable, "PostgreSQL server binaries not installed (bash Ops/setup.sh --test)"))
struct ClusterServeTests {
    @Test(.timeLimit(.minutes(5)))
    func twoServeNodesShareTheQueueAndSendEachCaseOnce() throws {
        let database = try TestPostgres.database("serve")
        let dir = try SharedData.temporaryDirectory("cluster-serve")
        defer { try? FileManager.default.removeItem(at: dir) }
        let pacsPort = try WatchDeliveryTests.freeLoopbackPort()
        let pacs = try ServeTests.Destination(port: pacsPort, folder: dir.appendingPathComponent("pacs"))
        try pacs.start()
        let demo = try String(contentsOf: SharedData.repositoryRoot.appendingPathComponent("Profiles/hippocampus-demo.yaml"), encoding: .utf8)
        let profile = demo.replacingOccurrences(of: "../Fixtures/demo/model", with: SharedData.fixtures.appendingPathComponent("demo/model").path)
            .replacingOccurrences(of: "mirroring: true", with: "mirroring: false")
            + "destinations:\n  - {name: pacs, aeTitle: PACS, host: 127.0.0.1, port: \(pacsPort), outputs: [SEG, RTSTRUCT]}\n"
        try Data(profile.utf8).write(to: dir.appendingPathComponent("profile.yaml"))

        var processes: [Process] = []
        defer { for p in processes where p.isRunning { kill(p.processIdentifier, SIGTERM); p.waitForExit() } }
        var ports: [Int] = []
        for name in ["a", "b"] {
            let port = try WatchDeliveryTests.freeLoopbackPort()
            ports.append(port)
            let site = dir.appendingPathComponent("site-\(name).yaml")
            try Data("""
                profile: profile.yaml
                node: {aeTitle: NNSEG, port: \(port), allowedCallers: [SCANNER]}
                folders: {work: work-\(name), outgoing: unused}
                intake: {quietPeriod: 1, pollInterval: 0.2}
                outbox: {firstRetryDelay: 0.5, maxRetryDelay: 1}
                database: \(database)
                cluster: {shared: shared, node: serve-\(name), lease: 6}

                """.utf8).write(to: site)
            processes.append(try CommandRunner.launch(["serve", "--site", site.path, "--log-level", "info"]))
            #expect(waitUntil(30) { (try? CommandRunner.run("/usr/bin/echoscu", ["-aet", "SCANNER", "-aec", "NNSEG", "127.0.0.1", "\(port)"]).status) == 0 },
                    "serve-\(name) answers C-ECHO")
        }
        // One series to each node, each its own series.
        for (k, port) in ports.enumerated() {
            let series = dir.appendingPathComponent("series-\(k)")
            try WatchDeliveryTests.copySeries(to: series, uid: "2.25.2026120319\(k)")
            let files = try FileManager.default.contentsOfDirectory(atPath: series.path).map { series.appendingPathComponent($0).path }
            let sent = try CommandRunner.run("/usr/bin/storescu", ["-aet", "SCANNER", "-aec", "NNSEG", "127.0.0.1", "\(port)"] + files)
            #expect(sent.status == 0, "\(sent.stderr)")
        }
        func count(_ sql: String) -> Int { Int((try? TestPostgres.psql(database, sql).stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? "") ?? -1 }
        #expect(waitUntil(180) { count("SELECT count(*) FROM outbox_items WHERE state = 'SENT'") == 2 }, "both cases' outputs sent")
        #expect(count("SELECT count(*) FROM cases WHERE status = 'SUCCEEDED'") == 2)
        #expect(count("SELECT count(DISTINCT series_uid) FROM cases") == 2)
        #expect(count("SELECT count(*) FROM jobs WHERE state = 'done'") == 2)
        #expect(count("SELECT count(*) FROM outbox_items") == 2, "one outbox item per case and destination, whichever node queued it")
        #expect(count("SELECT count(*) FROM events WHERE kind = 'outbox_queued'") == 2)
        #expect(count("SELECT count(*) FROM events WHERE kind = 'sent'") == 2)
        #expect(pacs.received() == 4, "SEG and RTSTRUCT of each case, each once")
        let outgoing = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("shared/outgoing").path)
        #expect(outgoing.filter { !$0.hasPrefix(".") }.count == 2 && !outgoing.contains { $0.hasPrefix(".") }, "\(outgoing)")
        let status = try CommandRunner.nnseg(["status", "--site", dir.appendingPathComponent("site-a.yaml").path])
        #expect(status.stdout.contains("outbox    PENDING 0 · SENT 2 · FAILED 0 · CANCELLED 0"), "\(status.stdout)\(status.stderr)")
        #expect(try CommandRunner.nnseg(["audit", "verify", "--database", database]).status == 0)
    }
}
