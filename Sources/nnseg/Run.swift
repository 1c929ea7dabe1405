import ArgumentParser
import AuditLog
import BatchPipeline
import CaseIdentity
import Foundation
import Logging
import SiteProfile

/// `nnseg run --profile P <study> -o <out>`: the audited clinical job.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Segment a DICOM study with a site profile: select the series, predict, write SEG / RTSTRUCT / NIfTI / QA PNG, record the case.")

    @Option(help: "Site profile (Profiles/*.yaml).")
    var profile: String

    @Argument(help: "Study folder (DICOM files, searched recursively).")
    var study: String

    @Option(name: .short, help: "Output folder; each case gets its own sub-folder.")
    var output: String

    @Option(name: [.customLong("audit-db"), .customLong("database")],
            help: "Audit database: an SQLite file (default: the profile's audit.database, else ./nnseg-audit.sqlite) or postgres://… (PGPASSWORD for the password).")
    var auditDb: String?

    @Flag(help: "Fresh output UIDs instead of name-based ones (by default a re-run of a case gives the same SEG/RTSTRUCT UIDs, so PACS replaces them).")
    var newUids = false

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.bootstrap()
        let caseProfile = try CaseProfile(contentsOf: URL(fileURLWithPath: profile))
        let databasePath = auditDb ?? caseProfile.auditDatabase ?? "nnseg-audit.sqlite"
        let audit = try AuditLog(path: databasePath, keys: try caseProfile.auditKeys())
        let pipeline = try CasePipeline(profile: caseProfile, audit: audit)
        pipeline.freshUIDs = newUids
        let result = try pipeline.run(study: URL(fileURLWithPath: study), output: URL(fileURLWithPath: output))
        print("case      \(result.caseID): \(result.status)")
        if let error = result.error { print("error     \(error)") }
        for name in result.outputs { print("output    \(result.outputFolder.appendingPathComponent(name).path)") }
        print("audit     \(URL(fileURLWithPath: databasePath).standardizedFileURL.path) (nnseg audit show \(result.caseID) --database \(databasePath))")
        if result.caseStatus == .failed { throw ExitCode(ExitStatus.failed.rawValue) }
    }
}
