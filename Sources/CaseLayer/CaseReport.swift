import DICOMExport
import Foundation
import QASnapshot
import VolumeGeometry

/// Who and what made a case: the QA banner and the report's provenance (no patient names or IDs).
public struct ReportContext: Sendable {
    public var caseID: String
    public var model: String
    public var configuration: String
    public var precision: String
    public var software: String
    public var profile: String
    public var sourceSeriesUID: String
    public var created: Date

    public init(caseID: String = "", model: String = "", configuration: String = "", precision: String = "fp32", software: String = "",
                profile: String = "", sourceSeriesUID: String = "", created: Date = Date()) {
        self.caseID = caseID
        self.model = model
        self.configuration = configuration
        self.precision = precision
        self.software = software
        self.profile = profile
        self.sourceSeriesUID = sourceSeriesUID
        self.created = created
    }

    var banner: QASnapshot.Context { QASnapshot.Context(caseID: caseID, model: model, precision: precision, software: software) }
}

/// `report.html`: one self-contained page per case — the QA sheet's pages embedded, provenance, and per
/// structure its volume, its contours and the read-back verdicts — for a reviewer without a DICOM viewer.
public enum CaseReport {
    /// Volume of each structure's label in cm³.
    public static func volumes(_ labels: LabelVolume, structures: [StructureDescription]) -> [Int: Double] {
        var counts = [Int](repeating: 0, count: 65_536)
        for v in labels.voxels { counts[Int(v)] += 1 }
        let sp = labels.geometry.spacing
        let voxelCM3 = sp.x * sp.y * sp.z / 1000
        return Dictionary(uniqueKeysWithValues: structures.map { ($0.label, (Double(counts[$0.label]) * voxelCM3 * 1000).rounded() / 1000) })
    }

    /// `qa.png` → `qa-2.png` for page 2.
    public static func pageURL(_ first: URL, page: Int) -> URL {
        let base = first.deletingPathExtension().lastPathComponent
        return first.deletingLastPathComponent().appendingPathComponent("\(base)-\(page).\(first.pathExtension)")
    }

    public static func html(context: ReportContext, structures: [StructureDescription], volumes: [Int: Double],
                            verification: OutputVerification.Report?, rtstruct: RTStructWriter.Result?, pages: [Data]) -> String {
        func e(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
                .replacingOccurrences(of: "\"", with: "&quot;")
        }
        func number(_ v: Double?, _ digits: Int) -> String { v.map { String(format: "%.\(digits)f", $0) } ?? "–" }
        let created = ISO8601DateFormatter().string(from: context.created)
        var rows: [String] = []
        for s in structures {
            let verdict = verification?.rois.first { $0.label == s.label }
            let cleanup = rtstruct?.cleanup[s.label]
            let colour = String(format: "#%02x%02x%02x", s.color.x, s.color.y, s.color.z)
            let state = verdict.map { $0.passed ? "<span class=ok>verified</span>" : "<span class=bad>" + e($0.problems.joined(separator: "; ")) + "</span>" } ?? "–"
            rows.append("<tr><td><span class=swatch style=\"background:\(colour)\"></span></td><td>\(e(s.name))</td><td>\(s.label)</td>"
                        + "<td>\(number(volumes[s.label], 2))</td><td>\(rtstruct?.contours[s.label].map(String.init) ?? "–")</td>"
                        + "<td>\(rtstruct?.points[s.label].map(String.init) ?? "–")</td><td>\(cleanup.map { "\($0.islandsRemoved) / \($0.holesFilled)" } ?? "–")</td>"
                        + "<td>\(verdict?.segMismatchedVoxels.map(String.init) ?? "–")</td><td>\(number(verdict?.rtstructDice, 4))</td>"
                        + "<td>\(number(verdict?.rtstructAddedDistanceMM, 2))</td><td>\(number(verdict?.centroidShiftMM, 2))</td><td>\(state)</td></tr>")
        }
        let references = verification.map { $0.referenceProblems.isEmpty ? "<span class=ok>every reference resolves to the source series</span>"
            : "<span class=bad>" + e($0.referenceProblems.joined(separator: "; ")) + "</span>" } ?? "–"
        let images = pages.enumerated().map { n, png in
            "<figure><img alt=\"QA sheet page \(n + 1)\" src=\"data:image/png;base64,\(png.base64EncodedString())\"><figcaption>QA sheet, page \(n + 1) of \(pages.count)</figcaption></figure>"
        }
        return """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>nnseg case \(e(context.caseID))</title>
        <style>
        body{font-family:sans-serif;margin:24px;background:#fafafa;color:#222}
        .banner{background:#a01414;color:#fff;padding:12px 16px;font-weight:bold;font-size:20px}
        table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
        th{background:#eee}.swatch{display:inline-block;width:16px;height:16px;border:1px solid #333}
        .ok{color:#1a7f1a}.bad{color:#b00;font-weight:bold}img{max-width:100%;border:1px solid #999}
        </style></head><body>
        <div class="banner">AI-generated contours — not approved. Review every structure before clinical use.</div>
        <h1>Case \(e(context.caseID))</h1>
        <table>
        <tr><th>Created</th><td>\(e(created))</td></tr>
        <tr><th>Model</th><td>\(e(context.model))</td></tr>
        <tr><th>Configuration</th><td>\(e(context.configuration))</td></tr>
        <tr><th>Precision</th><td>\(e(context.precision))</td></tr>
        <tr><th>Software</th><td>\(e(context.software))</td></tr>
        <tr><th>Profile</th><td>\(e(context.profile))</td></tr>
        <tr><th>Source series</th><td>\(e(context.sourceSeriesUID))</td></tr>
        <tr><th>References</th><td>\(references)</td></tr>
        </table>
        <h2>Structures</h2>
        <table><tr><th></th><th>ROI</th><th>Label</th><th>Volume (cm³)</th><th>Contours</th><th>Points</th><th>Islands left out / holes filled</th>
        <th>SEG voxels differing</th><th>RTSTRUCT Dice</th><th>Farthest added voxel (mm)</th><th>Centroid shift (mm)</th><th>Verification</th></tr>
        \(rows.joined(separator: "\n"))
        </table>
        <h2>QA sheet</h2>
        \(images.joined(separator: "\n"))
        </body></html>

        """
    }
}
