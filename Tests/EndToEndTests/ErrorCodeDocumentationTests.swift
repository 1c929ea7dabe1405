import BatchPipeline
import CaseIdentity
import CaseLayer
import DICOMExport
import DICOMImport
import Foundation
import ModelSharing
import NIfTI
import Outbox
import Testing
import TestSupport
import WatchService

/// Issue #13: every stable code and case status of the typed enums is documented in the README's
/// "Error codes" section (a new code without documentation fails here).
struct ErrorCodeDocumentationTests {
    @Test func everyCodeIsInTheReadme() throws {
        let readme = try String(contentsOf: SharedData.repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let start = try #require(readme.range(of: "## Error codes"))
        let section = String(readme[start.upperBound...]).components(separatedBy: "\n## ")[0]
        let codes = DICOMImportError.Code.allCases.map(\.rawValue) + NIfTIError.Code.allCases.map(\.rawValue)
            + DICOMExportError.Code.allCases.map(\.rawValue) + PipelineError.Code.allCases.map(\.rawValue)
            + CaseLayerError.Code.allCases.map(\.rawValue) + WatchError.Code.allCases.map(\.rawValue)
            + WatchReason.allCases.map(\.rawValue) + CaseStatus.allCases.map(\.rawValue) + OutboxError.Code.allCases.map(\.rawValue)
            + BundleError.Code.allCases.map(\.rawValue)
        let missing = codes.filter { !section.contains("`\($0)`") }
        #expect(missing.isEmpty, "not documented in README › Error codes: \(missing)")
    }
}
