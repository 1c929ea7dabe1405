import ArgumentParser
import AuditLog
import CaseIdentity
import Foundation

/// `nnseg audit list|show|export|verify` over the audit journal.
struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Query and verify the audit log.",
        subcommands: [List.self, Show.self, ExportCases.self, Verify.self])

    struct Database: ParsableArguments {
        @Option(help: "Audit database (default: ./nnseg-audit.sqlite).")
        var database = "nnseg-audit.sqlite"

        func open() throws -> AuditLog {
            guard FileManager.default.fileExists(atPath: database) else {
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
        @Option(help: "csv or json.") var format = "csv"

        func run() throws {
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
                throw ValidationError("--format must be csv or json")
            }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Walk the hash chain; exit status 3 at the first broken row.")
        @OptionGroup var db: Database

        func run() throws {
            switch try db.open().verify() {
            case .intact(let n):
                print("audit log intact: \(n) event(s) verified")
            case .broken(let id, let reason):
                print("audit log BROKEN at event \(id): \(reason)")
                throw CommandOutcome(code: "AUDIT_BROKEN", message: "AUDIT_BROKEN: event \(id): \(reason)", status: .auditBroken)
            }
        }
    }
}
