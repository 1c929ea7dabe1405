import AuditLog
import Console
import DICOMNetwork
import Foundation
import Outbox
import Testing
import TestSupport
import WatchService
#if canImport(Glibc)
import Glibc
#endif

/// Issue #20 (first part): `nnseg console` over a real audit log (a demo case run by `nnseg run`, plus failed cases),
/// checked with real HTTP requests (curl): health, readiness, Prometheus metrics, the JSON API with paging and
/// filters, accounts and roles (401 anonymous, 403 auditor on an operator action, operator actions audited).
@Suite(.ownThreads)
struct ConsoleTests {
    final class Console {
        let process: Process
        let port: Int
        init(_ arguments: [String], log: URL) throws {
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            let process = Process()
            process.executableURL = CommandRunner.executable
            process.arguments = ["console"] + arguments + ["--port", "0"]
            process.environment = ProcessInfo.processInfo.environment.merging(TestKeys.environment) { _, new in new }
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
            self.process = process
            var found: Int?
            _ = waitUntil(60) {
                let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
                found = text.split(separator: "\n").first { $0.hasPrefix("console listening on http://127.0.0.1:") }
                    .flatMap { Int($0.split(separator: ":").last ?? "") }
                return found != nil || !process.isRunning
            }
            guard let found else { throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: (try? String(contentsOf: log, encoding: .utf8)) ?? ""]) }
            port = found
        }
        deinit { stop() }
        func stop() {
            if process.isRunning { kill(process.processIdentifier, SIGTERM); process.waitForExit() }
        }
        /// (status, body) of a request.
        func request(_ path: String, user: String? = nil, method: String = "GET") throws -> (status: Int, body: String) {
            var arguments = ["-s", "-X", method, "-w", "\n%{http_code}", "http://127.0.0.1:\(port)\(path)"]
            if let user { arguments += ["-u", user] }
            let result = try CommandRunner.run("/usr/bin/curl", arguments)
            let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
            return (Int(lines.last ?? "") ?? -1, lines.dropLast().joined(separator: "\n"))
        }
        func json(_ path: String, user: String, method: String = "GET") throws -> [String: Any] {
            let r = try request(path, user: user, method: method)
            #expect(r.status == 200, "\(path): \(r.status) \(r.body)")
            return (try? JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any]) ?? [:]
        }
    }

    /// A node's files as the console sees them: a real case (`nnseg run` on the demo series) and three failed ones in
    /// the audit log, an outbox with one item for the real case, a quarantine entry, the site file and the accounts
    /// (operator olga, auditor aude).
    static func node(in dir: URL) throws -> (database: URL, site: URL, accounts: URL, real: AuditCase, audit: AuditLog) {
        let database = dir.appendingPathComponent("audit.sqlite")
        let run = try CommandRunner.nnseg(["run", "--profile", CasePipelineProfiles.fastDemoProfile(in: dir).path,
                                           SharedData.fixtures.appendingPathComponent("demo/hippocampus-mr").path,
                                           "-o", dir.appendingPathComponent("out").path, "--audit-db", database.path])
        #expect(run.status == 0, "\(run.stderr)")
        let audit = try AuditLog(path: database.path, keys: try TestKeys.auditKeys())
        let real = try #require(try audit.cases().first, "no case recorded")
        for i in 1...3 {
            _ = try audit.finish(caseID: "failed-\(i)", startedAt: Date(timeIntervalSinceNow: Double(-i)), status: .failed, model: "Dataset004_Hippocampus",
                                 seriesInstanceUID: "2.25.\(i)", profile: "hippocampus-demo", error: "SERIES_NOT_FOUND: no series matched")
        }
        let work = dir.appendingPathComponent("work")
        let outbox = try Outbox(path: work.appendingPathComponent("outbox.sqlite").path)
        try outbox.enqueue(caseID: real.caseID, destination: StoreDestination(name: "pacs", aeTitle: "PACS", host: "127.0.0.1", port: 1, outputs: ["SEG"]),
                           files: ["seg.dcm"])
        let entry = work.appendingPathComponent("incoming/.nnseg/quarantine/file-20261203T000000-00000001")
        try FileManager.default.createDirectory(at: entry, withIntermediateDirectories: true)
        try Data("NOT_DICOM: junk.bin: no DICM prefix\n".utf8).write(to: entry.appendingPathComponent("REASON.txt"))
        try Data("junk".utf8).write(to: entry.appendingPathComponent("junk.bin"))
        let site = dir.appendingPathComponent("site.yaml")
        try Data("""
            profile: \(try CasePipelineProfiles.fastDemoProfile(in: dir).path)
            folders: {work: work, outgoing: out}
            auditDatabase: audit.sqlite

            """.utf8).write(to: site)
        let accounts = dir.appendingPathComponent("accounts.yaml")
        try Data("""
            accounts:
              - {name: olga, role: operator, passwordHash: "\(ConsoleAccess.hash(password: "olga-secret", cost: 4))"}
              - {name: aude, role: auditor, passwordHash: "\(ConsoleAccess.hash(password: "aude-secret", cost: 4))"}

            """.utf8).write(to: accounts)
        return (database, site, accounts, real, audit)
    }

    /// schemathesis (the test-tools venv) against the OpenAPI file on a running console with an operator's account:
    /// every check (server errors, status codes and content types as documented, responses matching their schemas,
    /// schema-violating requests refused, stateful links) but response time — in a full clean-clone run on 2 cores
    /// one operator POST (an outbox cancel: two SQLite writes, one of them signed into the audit log) took 40 s
    /// while the rest of the suite ran beside it; a time limit there measures the machine's load, not the API —
    /// with a fixed seed and budget.
    @Test(.timeLimit(.minutes(4)))
    func schemathesisFindsNothingAgainstTheOpenAPIFile() throws {
        let schemathesis = try #require(SharedData.schemathesis, "run Ops/setup.sh --test (.venv-schemathesis)")
        let dir = try SharedData.temporaryDirectory("console-schemathesis")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, site, accounts, _, _) = try Self.node(in: dir)
        let console = try Console(["--site", site.path, "--accounts", accounts.path, "--allow-operator-actions"], log: dir.appendingPathComponent("console.log"))
        let seed = 20_261_203
        let run = try CommandRunner.run(schemathesis, [
            "run", SharedData.repositoryRoot.appendingPathComponent("Ops/console/openapi.yaml").path, "--url", "http://127.0.0.1:\(console.port)",
            "--auth", "olga:olga-secret", "--checks", "all", "--max-response-time", "600", "--max-examples", "25", "--seed", "\(seed)", "--generation-database", "none",
            "--workers", "1", "--no-color", "--report-dir", dir.appendingPathComponent("report").path,
        ])
        #expect(run.status == 0, "schemathesis (seed \(seed)):\n\(run.stdout.suffix(6000))\n\(run.stderr.suffix(2000))")
        let summary = run.stdout.split(separator: "\n").last { $0.contains("generated") } ?? ""
        print("schemathesis: \(summary.trimmingCharacters(in: .whitespaces)) (seed \(seed))")
        console.stop()
    }

    @Test(.timeLimit(.minutes(4)))
    func theConsoleServesHealthMetricsAndTheAPIToItsAccounts() throws {
        let dir = try SharedData.temporaryDirectory("console")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (database, site, accounts, real, audit) = try Self.node(in: dir)
        let patient = try audit.events(caseID: real.caseID).first { $0.kind == "input_series" }
            .flatMap { try JSONSerialization.jsonObject(with: Data($0.payload.utf8)) as? [String: Any] }?["patient_id"] as? String ?? ""
        #expect(!patient.isEmpty && patient != "Chrisjen^Avasarala")

        let console = try Console(["--site", site.path, "--accounts", accounts.path, "--allow-operator-actions"], log: dir.appendingPathComponent("console.log"))
        let auditor = "aude:aude-secret", operatorUser = "olga:olga-secret"
        let health = try console.request("/healthz")
        #expect(health.status == 200 && health.body.trimmingCharacters(in: .whitespacesAndNewlines) == "ok")
        let ready = try console.request("/readyz")
        #expect(ready.status == 200 && ready.body.contains("\"cases\":4"), "\(ready)")

        // Access: anonymous and wrong passwords are refused; an auditor may not act.
        #expect(try console.request("/api/v1/cases").status == 401)
        #expect(try console.request("/api/v1/cases", user: "aude:wrong").status == 401)
        #expect(try console.request("/api/v1/outbox/1/cancel", user: auditor, method: "POST").status == 403)

        // Paging and filters.
        let first = try console.json("/api/v1/cases?limit=2", user: auditor)
        let second = try console.json("/api/v1/cases?limit=2&offset=2", user: auditor)
        let ids = ((first["items"] as? [[String: Any]] ?? []) + (second["items"] as? [[String: Any]] ?? [])).compactMap { $0["case_id"] as? String }
        #expect(first["next_offset"] as? Int == 2 && second["next_offset"] == nil)
        #expect(Set(ids) == Set([real.caseID, "failed-1", "failed-2", "failed-3"]) && ids.count == 4)
        #expect((try console.json("/api/v1/cases?status=failed", user: auditor)["items"] as? [Any])?.count == 3)
        let byPatient = try console.json("/api/v1/cases?patient_id=\(patient)", user: auditor)["items"] as? [[String: Any]] ?? []
        #expect(byPatient.map { $0["case_id"] as? String } == [real.caseID])
        #expect((try console.json("/api/v1/cases?since=2999-01-01", user: auditor)["items"] as? [Any])?.isEmpty == true)
        #expect(try console.request("/api/v1/cases?since=yesterday", user: auditor).status == 400)

        // One case: its events, no patient name anywhere.
        let detail = try console.request("/api/v1/cases/\(real.caseID)", user: auditor)
        #expect(detail.status == 200 && detail.body.contains("\"kind\":\"stage_timings\"") && detail.body.contains("\"kind\":\"input_series\""))
        #expect(!detail.body.contains("Avasarala") && !detail.body.contains("Chrisjen"))
        #expect(try console.request("/api/v1/cases/no-such-case", user: auditor).status == 404)

        // The operator cancels the outbox item: done, and audited with the account's name.
        #expect(try console.json("/api/v1/outbox?state=pending", user: auditor)["items"].map { ($0 as? [Any])?.count } == 1)
        #expect(try console.json("/api/v1/outbox/1/cancel", user: operatorUser, method: "POST")["state"] as? String == "CANCELLED")
        let action = try audit.events(caseID: real.caseID).last { $0.kind == "outbox_cancel" }
        #expect(action?.payload.contains("\"account\":\"olga\"") == true, "\(String(describing: action))")

        // Verify on demand, then the metrics.
        #expect(try console.json("/api/v1/verify", user: auditor, method: "POST")["intact"] as? Bool == true)
        let metrics = try console.request("/metrics")
        #expect(metrics.status == 200)
        for line in ["nnseg_cases{status=\"SUCCEEDED\"} 1", "nnseg_cases{status=\"FAILED\"} 3", "nnseg_outbox_items{state=\"CANCELLED\"} 1",
                     "nnseg_audit_verify_intact 1", "nnseg_stage_seconds_count{stage=\"sliding_window\"} 1", "nnseg_worker_failures_total 0"] {
            #expect(metrics.body.contains(line), "\(line) in:\n\(metrics.body)")
        }
        console.stop()
        #expect(console.process.terminationStatus == 0, "graceful stop on SIGTERM")

        // A read-only console on the same database: the same reads, no operator actions.
        let readOnly = try Console(["--database", database.path, "--accounts", accounts.path], log: dir.appendingPathComponent("console2.log"))
        #expect((try readOnly.json("/api/v1/cases", user: operatorUser)["items"] as? [Any])?.count == 4)
        #expect(try readOnly.request("/api/v1/outbox/1/retry", user: operatorUser, method: "POST").status == 403)
    }

    /// `nnseg serve` with a `console:` section: a case received by C-STORE, then the pages — dashboard, case list,
    /// case page with its QA sheet, report, outputs, verification and signature — loaded by headless Chromium
    /// (screenshots kept in `.build/test-output/console/`), the export, the quarantine requeue by an operator, and
    /// the refusals (anonymous, auditor, another site's form, files the console must not serve).
    @Test(.timeLimit(.minutes(4)))
    func serveHostsThePagesAndChromiumShowsThem() throws {
        _ = try #require(Chromium.executable, "chromium is installed by Ops/setup.sh --test")
        // Port 0: the console takes a free port itself and says which (no window in which another process could
        // take a port picked here).
        let node = try ServeTests.Node("serve-console", siteExtra: "console: {accounts: accounts.yaml, port: 0}\n", prepare: { dir in
            try Data("""
                accounts:
                  - {name: olga, role: operator, passwordHash: "\(ConsoleAccess.hash(password: "olga-secret", cost: 4))"}
                  - {name: aude, role: auditor, passwordHash: "\(ConsoleAccess.hash(password: "aude-secret", cost: 4))"}

                """.utf8).write(to: dir.appendingPathComponent("accounts.yaml"))
        })
        var consolePort: Int?
        node.waitUntil(120) {
            consolePort = (try? String(contentsOf: node.log, encoding: .utf8))?.firstMatch(of: /console listening on http:\/\/127\.0\.0\.1:(\d+)/)
                .flatMap { Int($0.1) }
            return consolePort != nil || node.process?.isRunning != true
        }
        let port = try #require(consolePort, "the console says where it listens:\n\(node.logTail)")
        let base = "http://127.0.0.1:\(port)"
        func get(_ path: String, user: String? = "aude:aude-secret", extra: [String] = []) throws -> (status: Int, type: String, body: String) {
            var arguments = ["-s", "-w", "\n%{http_code} %{content_type}"] + extra + [base + path]
            if let user { arguments += ["-u", user] }
            let result = try CommandRunner.run("/usr/bin/curl", arguments)
            var lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
            let last = lines.popLast().map(String.init) ?? ""
            let parts = last.split(separator: " ", maxSplits: 1)
            return (Int(parts.first ?? "") ?? -1, parts.count > 1 ? String(parts[1]) : "", lines.joined(separator: "\n"))
        }
        // The node answers C-ECHO once its console listens (it is started first); wait for the console's own answer
        // too, stopping at once if the node exited.
        let answers = node.waitUntil(120) { (try? get("/healthz", user: nil).status) == 200 || node.process?.isRunning != true }
            && node.process?.isRunning == true
        try #require(answers, "the console answers:\n\(node.logTail)")

        // A case by C-STORE, and a file that is no DICOM dropped into the intake (quarantined: NOT_DICOM).
        #expect(try node.store(ServeTests.files).status == 0)
        #expect(try node.waitUntil { try node.cases().contains { $0["status"] as? String == "SUCCEEDED" } })
        let caseID = try #require(try node.cases().first { $0["status"] as? String == "SUCCEEDED" }?["case_id"] as? String)
        try Data("not a DICOM file".utf8).write(to: node.work.appendingPathComponent("incoming/junk.bin"))
        let quarantine = node.work.appendingPathComponent("incoming/.nnseg/quarantine")
        #expect(node.waitUntil(60) { node.entries(quarantine).count == 1 })
        let entry = try #require(node.entries(quarantine).first)

        // Refusals.
        #expect(try get("/", user: nil).status == 401)
        #expect(try get("/cases/\(caseID)", user: "aude:wrong").status == 401)
        #expect(try get("/quarantine/\(entry)/requeue", extra: ["-X", "POST"]).status == 403, "an auditor cannot requeue")
        #expect(try get("/quarantine/\(entry)/requeue", user: "olga:olga-secret", extra: ["-X", "POST", "-H", "Origin: http://elsewhere.example"]).status == 403,
                "another site's form is refused")
        #expect(try get("/cases/\(caseID)/files/seg.dcm").status == 404, "DICOM outputs carry names: not served")
        #expect(try get("/cases/\(caseID)/files/..%2F..%2Faudit.sqlite").status == 404)

        // The pages, as an auditor.
        let dashboard = try get("/")
        #expect(dashboard.status == 200 && dashboard.type.hasPrefix("text/html"))
        #expect(dashboard.body.contains(caseID) && dashboard.body.contains("NOT_DICOM") && dashboard.body.contains(entry))
        let list = try get("/cases?status=SUCCEEDED")
        #expect(list.status == 200 && list.body.contains(caseID) && list.body.contains("/export/cases.csv?status=SUCCEEDED"))
        let page = try get("/cases/\(caseID)")
        #expect(page.status == 200)
        for part in ["/cases/\(caseID)/files/qa.png", "report.html", "MATCHES", "VALID", "PASSED", "Hippocampus_Ant", "sliding_window", "checkpoint_final.pth"] {
            #expect(page.body.contains(part), "the case page shows \(part)")
        }
        for page in [dashboard.body, list.body, page.body] { #expect(!page.contains("Avasarala") && !page.contains("Chrisjen"), "no patient name") }
        let qa = try get("/cases/\(caseID)/files/qa.png")
        #expect(qa.status == 200 && qa.type == "image/png")
        #expect(try get("/cases/\(caseID)/files/report.html").type.hasPrefix("text/html"))
        let csv = try get("/export/cases.csv?status=SUCCEEDED")
        #expect(csv.status == 200 && csv.body.hasPrefix("case_id,status,") && csv.body.contains("\(caseID),SUCCEEDED,"))
        let json = try get("/export/cases.json?case_id=\(caseID)")
        let exported = (try? JSONSerialization.jsonObject(with: Data(json.body.utf8)) as? [String: Any])?["cases"] as? [[String: Any]]
        #expect(exported?.count == 1 && (exported?.first?["events"] as? [Any])?.isEmpty == false)
        let verify = try get("/verify", extra: ["-X", "POST"])
        #expect(verify.status == 200 && verify.body.contains("INTACT"))

        // Headless Chromium loads the dashboard and the case page (the QA sheet image included): screenshots kept.
        let output = try SharedData.testOutput("console")
        let profile = node.dir.appendingPathComponent("chromium")
        for (name, path) in [("dashboard", "/"), ("case", "/cases/\(caseID)")] {
            let url = "http://aude:aude-secret@127.0.0.1:\(port)\(path)"
            let shot = output.appendingPathComponent("\(name).png")
            let run = try Chromium.screenshot(url, to: shot, width: 1280, height: 2400, profile: profile)
            #expect(FileManager.default.fileExists(atPath: shot.path), "chromium: \(run.stderr.suffix(800))")
            let colours = try Chromium.distinctColours(shot)
            #expect(colours > (name == "case" ? 50 : 5), "\(name).png is not blank (\(colours) colours)")
            let dom = try Chromium.dom(url, profile: profile)
            #expect(dom.contains(caseID), "the \(name) page Chromium rendered shows the case ID")
            if name == "case" { #expect(dom.contains("<img class=\"qa\""), "the QA sheet is on the page") }
        }

        // The operator requeues the quarantined file: it goes back into the intake (and, still no DICOM, to quarantine
        // again as a new entry); the action is audited with the account.
        let requeued = try get("/quarantine/\(entry)/requeue", user: "olga:olga-secret", extra: ["-X", "POST", "-H", "Origin: \(base)", "-d", "return=/cases"])
        #expect(requeued.status == 303, "back to the page the form was on")
        #expect(try node.events("quarantine_requeued").contains { $0.contains("\"account\":\"olga\"") && $0.contains(entry) })
        #expect(node.waitUntil(60) { let now = node.entries(quarantine); return now.count == 1 && now.first != entry }, "quarantined again as a new entry")
        #expect(try get("/quarantine/\(entry)/requeue", user: "olga:olga-secret", extra: ["-X", "POST", "-d", "return=%zz%&=&return"]).status == 404,
                "already requeued (a malformed form body is no trap)")
        #expect(try get("/healthz", user: nil).status == 200)
    }
}
