import DICOMExport
import DICOMImport
import Dispatch
import Foundation
import NIfTI
import QASnapshot
import VolumeGeometry

/// The outputs of one case, written in one sequence for every command — each optional: the label map as
/// NIfTI, the SEG, then the RTSTRUCT referencing it (each ROI points at its segment), and the QA image;
/// all or nothing — if one fails, what was already written is removed. The source header is read once
/// for both DICOM objects (``ReferencedSeries``).
public enum CaseOutputs {
    /// What ``writeDICOM(labels:series:structures:algorithm:seg:segOptions:rtstruct:rtstructOptions:confidence:)`` wrote.
    public struct DICOMWritten: Sendable {
        public var seg: SegmentationWriter.Result?
        public var rtstruct: RTStructWriter.Result?
        public var timings: [(stage: String, seconds: Double)] = []
        public var verification: OutputVerification.Report?
    }

    public struct Written: Sendable {
        public var nifti: URL?
        public var seg: SegmentationWriter.Result?
        public var rtstruct: RTStructWriter.Result?
        /// Width and height of the QA sheet's first page, and how many pages it has.
        public var qa: (width: Int, height: Int)?
        public var qaPages = 0
        public var report: URL?
        /// Seconds per output written, in order: nifti, seg, rtstruct, verify, qa (the case's `stage_timings`).
        public var timings: [(stage: String, seconds: Double)] = []
        /// The read-back check of the SEG and RTSTRUCT (nil when neither was written).
        public var verification: OutputVerification.Report?
    }

    /// Where each output goes (nil: not wanted) and how the DICOM objects are numbered.
    public struct Request: Sendable {
        public var nifti: URL?
        public var seg: URL?
        public var segOptions: SegmentationOptions
        public var rtstruct: URL?
        public var rtstructOptions: RTStructOptions
        /// The QA sheet's first page; further pages beside it as `qa-2.png`, `qa-3.png`, ….
        public var qa: URL?
        /// The self-contained HTML report (QA pages embedded, provenance, verification verdicts).
        public var report: URL?
        /// Who and what made the case, for the QA banner and the report.
        public var context: ReportContext

        public init(nifti: URL? = nil, seg: URL? = nil, segOptions: SegmentationOptions = SegmentationOptions(), rtstruct: URL? = nil,
                    rtstructOptions: RTStructOptions = RTStructOptions(), qa: URL? = nil, report: URL? = nil,
                    context: ReportContext = ReportContext()) {
            self.nifti = nifti
            self.seg = seg
            self.segOptions = segOptions
            self.rtstruct = rtstruct
            self.rtstructOptions = rtstructOptions
            self.qa = qa
            self.report = report
            self.context = context
        }
    }

    /// Writes what `request` asks for. `image`: the series' intensities (for the QA image). SEG, RTSTRUCT and
    /// QA need at least one structure present; the NIfTI is written even for an empty result. `confidence`: the
    /// model's per-voxel margin on the labels' grid (``CasePrediction/confidence``), which smooth contours follow.
    public static func write(labels: LabelVolume, image: ImageVolume, series: ReferencedSeries, structures: [StructureDescription],
                             algorithm: AlgorithmIdentification, request: Request, confidence: [Float16]? = nil) throws -> Written {
        var written = Written()
        var files: [URL] = []
        func timed<T>(_ stage: String, _ body: () throws -> T) rethrows -> T {
            let start = DispatchTime.now().uptimeNanoseconds
            defer { written.timings.append((stage, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)) }
            return try body()
        }
        do {
            if let url = request.nifti {
                try timed("nifti") { try NIfTIImage(volume: labels).write(to: url) }
                files.append(url)
                written.nifti = url
            }
            if !structures.isEmpty {
                let dicom = try writeDICOM(labels: labels, series: series, structures: structures, algorithm: algorithm, seg: request.seg,
                                           segOptions: request.segOptions, rtstruct: request.rtstruct, rtstructOptions: request.rtstructOptions,
                                           confidence: confidence)
                written.seg = dicom.seg
                written.rtstruct = dicom.rtstruct
                written.timings += dicom.timings
                written.verification = dicom.verification
                files += [request.seg, request.rtstruct].compactMap { $0 }
                let volumes = CaseReport.volumes(labels, structures: structures)
                var pngs: [Data] = []
                if request.qa != nil || request.report != nil {
                    try timed("qa") {
                        let pages = QASnapshot.sheet(image: image, labels: labels, structures: structures.map {
                            QASnapshot.Structure(label: UInt16($0.label), color: $0.color, name: $0.name, cubicCentimetres: volumes[$0.label] ?? 0)
                        }, context: request.context.banner)
                        pngs = pages.map(QASnapshot.png)
                        if let url = request.qa, let first = pages.first {
                            for (n, png) in pngs.enumerated() {
                                let target = n == 0 ? url : CaseReport.pageURL(url, page: n + 1)
                                try png.write(to: target)
                                files.append(target)
                            }
                            written.qa = (first.width, first.height)
                            written.qaPages = pages.count
                        }
                    }
                }
                if let url = request.report {
                    try timed("report") {
                        try CaseReport.html(context: request.context, structures: structures, volumes: volumes, verification: written.verification,
                                            rtstruct: written.rtstruct, pages: pngs).write(to: url, atomically: true, encoding: .utf8)
                    }
                    files.append(url)
                    written.report = url
                }
            }
        } catch {
            for url in files { try? FileManager.default.removeItem(at: url) }
            throw error
        }
        return written
    }

    /// Writes the SEG to `seg` and/or the RTSTRUCT to `rtstruct` (nil: not wanted), then reads both back
    /// (``OutputVerification``); `timings` has seconds per object and for the check. Outputs that do not verify
    /// are removed and ``OutputVerificationFailure`` is thrown with the report.
    public static func writeDICOM(labels: LabelVolume, series: ReferencedSeries, structures: [StructureDescription],
                                  algorithm: AlgorithmIdentification, seg: URL?, segOptions: SegmentationOptions = SegmentationOptions(),
                                  rtstruct: URL?, rtstructOptions: RTStructOptions = RTStructOptions(), confidence: [Float16]? = nil)
        throws -> DICOMWritten {
        var written = DICOMWritten()
        var files: [URL] = []
        func timed<T>(_ stage: String, _ body: () throws -> T) rethrows -> T {
            let start = DispatchTime.now().uptimeNanoseconds
            defer { written.timings.append((stage, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)) }
            return try body()
        }
        do {
            var reference: RTStructWriter.SegmentationReference?
            if let seg {
                let r = try timed("seg") {
                    try SegmentationWriter.write(labels: labels, series: series, structures: structures, algorithm: algorithm, options: segOptions, to: seg)
                }
                files.append(seg)
                written.seg = r
                reference = .init(sopInstanceUID: r.sopInstanceUID,
                                  segmentNumbers: Dictionary(uniqueKeysWithValues: structures.enumerated().map { ($1.label, $0 + 1) }))
            }
            if let rtstruct {
                written.rtstruct = try timed("rtstruct") {
                    try RTStructWriter.write(labels: labels, series: series, structures: structures, algorithm: algorithm,
                                             options: rtstructOptions, segmentation: reference, confidence: confidence, to: rtstruct)
                }
                files.append(rtstruct)
            }
            if seg != nil || rtstruct != nil {
                let report = try timed("verify") {
                    try OutputVerification.verify(labels: labels, series: series, structures: structures, seg: seg, rtstruct: rtstruct,
                                                  rtstructOptions: rtstructOptions, cleaned: written.rtstruct?.cleaned ?? [:])
                }
                written.verification = report
                written.rtstruct?.cleaned = [:]  // checked: not carried with the case
                guard report.passed else { throw OutputVerificationFailure(report: report) }
            }
        } catch {
            for url in files { try? FileManager.default.removeItem(at: url) }
            throw error
        }
        return written
    }
}

/// The source series an existing label map belongs to (`nnseg export`): the first image stack under a
/// folder whose grid holds the labels exactly (same voxel centres, axes possibly permuted or flipped).
public enum LabelReference {
    public struct Match: Sendable {
        public var stack: ImageStack
        public var loaded: LoadedSeries
        /// The labels re-indexed onto the stack's grid.
        public var labels: LabelVolume
    }

    /// - Parameter headerNote: what the label file's header says about its own geometry (a NIfTI's sheared sform
    ///   passed over for its qform), added to a refusal.
    public static func locate(_ labels: LabelVolume, labelsPath: String, in folder: URL, headerNote: String? = nil) throws -> Match {
        let scan = try DICOMScanner().scan(folder)
        var reasons: [String] = []
        for stack in scan.stacks {
            guard stack.geometry != nil else {
                reasons.append("series \(stack.seriesInstanceUID): no volume geometry (\(stack.missingGeometry ?? "unknown"))")
                continue
            }
            let loaded: LoadedSeries
            do { loaded = try DICOMSeriesLoader(policy: GeometryPolicy(allowShear: true)).load(stack) } catch {
                reasons.append("series \(stack.seriesInstanceUID): cannot be loaded (\(error))")
                continue
            }
            if let aligned = labels.reindexed(onto: loaded.volume.geometry, shape: loaded.volume.shape) {
                return Match(stack: stack, loaded: loaded, labels: aligned)
            }
            reasons.append("series \(stack.seriesInstanceUID): " + gridDifference(labels, loaded.volume))
        }
        throw DICOMExportError(.gridMismatch, labelsPath,
                               "not on the grid of any of the \(scan.stacks.count) series under \(folder.path): "
                                   + (reasons.isEmpty ? "no image series" : reasons.joined(separator: "; "))
                                   + (headerNote.map { "; the label file: \($0)" } ?? ""))
    }

    /// Why `labels` is not a re-indexing of `image`'s grid, in the terms that tell a user what to fix: the voxel
    /// count, the spacing (as sets: axes may be permuted), the orientation (angle between the closest axes), or
    /// the position (mm).
    static func gridDifference(_ labels: LabelVolume, _ image: ImageVolume) -> String {
        let a = labels.shape, b = image.shape
        if a.count != b.count || [a.x, a.y, a.z].sorted() != [b.x, b.y, b.z].sorted() {
            return "size \(a.x)×\(a.y)×\(a.z) vs the series' \(b.x)×\(b.y)×\(b.z)"
        }
        func f(_ v: Double) -> String { String(format: "%.4g", v) }
        let sa = labels.geometry.spacing, sb = image.geometry.spacing
        let sortedA = [sa.x, sa.y, sa.z].sorted(), sortedB = [sb.x, sb.y, sb.z].sorted()
        if zip(sortedA, sortedB).contains(where: { abs($0 - $1) > 1e-3 * max($0, $1) }) {
            return "spacing \(f(sa.x))×\(f(sa.y))×\(f(sa.z)) mm vs the series' \(f(sb.x))×\(f(sb.y))×\(f(sb.z)) mm"
                + " (the series' slice spacing is measured along its normal; a non-uniform or tilted series differs from its nominal spacing)"
        }
        // Orientation: each label axis against the closest series axis.
        let da = labels.geometry.direction, db = image.geometry.direction
        var worst = 0.0
        for i in 0..<3 {
            let u = da[column: i]
            let best = (0..<3).map { j -> Double in abs((u * db[column: j]).sum()) }.max() ?? 1
            worst = max(worst, acos(min(1, best)) * 180 / .pi)
        }
        if worst > 0.05 {
            return "orientation differs by \(String(format: "%.2f", worst))° (rotated or sheared axes)"
        }
        let shift = labels.geometry.origin - image.geometry.origin
        return "same size, spacing and axes, but the voxel centres are shifted (origin \(String(format: "%.2f", (shift * shift).sum().squareRoot())) mm apart, "
            + "not by whole voxels)"
    }
}
