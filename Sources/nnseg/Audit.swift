import ArgumentParser
import AuditLog
import PostgresDB
import CaseIdentity
import Digest
import Foundation

/// `nnseg audit list|show|export|verify` over the audit journal.
struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Query and verify the audit log.",
        subcommands: [List.self, Show.self, ExportCases.self, Verify.self])

    struct Database: ParsableArguments {
        @Option(help: "Audit database: an SQLite file (default: ./nnseg-audit.sqlite) or postgres://user@host:port/db (PGPASSWORD for the password).")
        var database = "nnseg-audit.sqlite"

        func open() throws -> AuditLog {
            guard PostgresLocation.isPostgres(database) || FileManager.default.fileExists(atPath: database) else {
                throw CommandOutcome(code: "AUDIT_DB_NOT_FOUND", message: "AUDIT_DB_NOT_FOUND: \(database): no audit database there", status: .nothingFound)
            }
            return try AuditLog(path: database)
        }
    }

    struct Filters: ParsableArguments {
        @Option(help: "Cases started on or after this date (YYYY-MM-DD or ISO 8601).") var since: String?
        @Option(help: "Cases started before this date.") var until: String?
        @Option(help: "Status: \(CaseStatus.allCases.map(\.rawValue).joined(separator: ", ")).") var status: String?
        @Option(help: "Model name.") var model: String?
        @Option(help: "Input Series Instance UID.") var series: String?
        @Option(help: "At most this many cases (newest first).") var limit: Int?

        func validate() throws {
            if let status, CaseStatus(rawValue: status.uppercased()) == nil {
                throw ValidationError("--status \(status) is not one of \(CaseStatus.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }

        func filter() throws -> AuditLog.Filter {
            AuditLog.Filter(since: try since.map(Self.date), until: try until.map(Self.date), status: status?.uppercased(), model: model,
                            seriesInstanceUID: series, limit: limit)
        }

        static func date(_ text: String) throws -> Date {
            let iso = ISO8601DateFormatter()
            if let d = iso.date(from: text) { return d }
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.timeZone = TimeZone(identifier: "UTC")
            f.dateFormat = "yyyy-MM-dd"
            guard let d = f.date(from: text) else { throw ValidationError("'\(text)' is not a date (YYYY-MM-DD)") }
            return d
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List cases (newest first).")
        @OptionGroup var db: Database
        @OptionGroup var filters: Filters

        func run() throws {
            let cases = try db.open().cases(try filters.filter())
            for c in cases {
                print("\(c.startedAt)  \(c.status.padding(toLength: 12, withPad: " ", startingAt: 0))  \(c.caseID)  model=\(c.model)  series=\(c.seriesInstanceUID)")
            }
            print("\(cases.count) case(s)")
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every event of one case.")
        @OptionGroup var db: Database
        @Argument(help: "Case ID.") var caseID: String

        func run() throws {
            let events = try db.open().events(caseID: caseID)
            guard !events.isEmpty else {
                throw CommandOutcome(code: "CASE_NOT_FOUND", message: "CASE_NOT_FOUND: \(caseID): no events for this case ID in the audit log", status: .nothingFound)
            }
            for e in events { print("#\(e.id ?? 0) \(e.recordedAt) \(e.kind) \(e.payload)") }
        }
    }

    struct ExportCases: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "export", abstract: "Cases as CSV or JSON.")
        @OptionGroup var db: Database
        @OptionGroup var filters: Filters
        @Option(help: "csv or json (the cases), or log: the whole log with every hash and signature, for Ops/verify_audit.py.")
        var format = "csv"

        func run() throws {
            if format == "log" {
                print(try db.open().exportDocument())
                return
            }
            let cases = try db.open().cases(try filters.filter())
            switch format {
            case "json":
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(cases), as: UTF8.self))
            case "csv":
                func field(_ s: String) -> String { s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s }
                print("case_id,started_at,finished_at,status,model,series_uid,profile,error")
                for c in cases {
                    print([c.caseID, c.startedAt, c.finishedAt, c.status, c.model, c.seriesInstanceUID, c.profile, c.error ?? ""].map(field).joined(separator: ","))
                }
            default:
                throw ValidationError("--format must be csv, json or log")
            }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify the hash chain, case rows, signatures, receipts and anchor; exit status 3 if anything does not check out.",
            discussion: """
                Without options: the hash chain and every case row against its sealed summary. --public-key checks every seal
                (signature, and that the chain head it signed is still there) and that every case is signed, so a log whose
                chain was recomputed fails. --receipts DIR (every receipt.json under DIR) and --anchor FILE check that every
                receipted case is still in the log with the same chain head, so removed or truncated cases are found.
                """)
        @OptionGroup var db: Database
        @Option(help: "The audit signing key's public half (<signing key>.pub).") var publicKey: String?
        @Option(help: "A folder whose receipt.json files (case output folders) are checked against the log.") var receipts: String?
        @Option(help: "The append-only anchor file (audit.anchor).") var anchor: String?
        @Flag(help: "Accept cases without a seal (logs written before signing was configured); they are counted.") var allowUnsealed = false

        func run() throws {
            let log = try db.open()
            var evidence = AuditEvidence(allowUnsealed: allowUnsealed)
            do {
                if let publicKey { evidence.publicKey = try VerifyingKey(contentsOf: publicKey) }
            } catch let error as KeyFileError {
                throw CommandOutcome(code: error.code.rawValue, message: error.description)
            }
            if let receipts {
                evidence.receipts = try AuditReceipt.readReceipts(under: URL(fileURLWithPath: receipts)).map { ($0.url.path, $0.receipt) }
            }
            if let anchor {
                guard FileManager.default.fileExists(atPath: anchor) else {
                    throw CommandOutcome(code: "ANCHOR_NOT_FOUND", message: "ANCHOR_NOT_FOUND: \(anchor): no anchor file there", status: .auditBroken)
                }
                let read = try AuditReceipt.readAnchor(URL(fileURLWithPath: anchor))
                evidence.anchor = read.receipts.enumerated().map { ($0.offset + 1, $0.element) } + read.badLines.map { ($0, nil) }
            }
            let report = try log.verify(evidence)
            var checked = ["\(report.events) event(s)", "\(report.cases) case(s)"]
            if publicKey != nil {
                checked.append("\(report.sealedCases) signed case(s), \(report.checkpoints) checkpoint(s)"
                               + (report.unsealedCases > 0 ? ", \(report.unsealedCases) unsigned" : ""))
            }
            if receipts != nil { checked.append("\(report.receiptsChecked) receipt(s)") }
            if anchor != nil { checked.append("\(report.anchorLinesChecked) anchor line(s)") }
            if report.intact {
                print("audit log intact: " + checked.joined(separator: ", ") + " verified")
                return
            }
            print("audit log BROKEN (" + checked.joined(separator: ", ") + "):")
            for f in report.findings { print("  \(f)") }
            let first = report.findings[0]
            throw CommandOutcome(code: "AUDIT_BROKEN", message: "AUDIT_BROKEN: \(first)", status: .auditBroken)
        }
    }
}
