import ArgumentParser
import CaseIdentity
import CaseLayer
import BatchPipeline
import DICOMExport
import DICOMImport
import Digest
import Foundation
import Logging
import NIfTI
import VolumeGeometry

/// `nnseg export`: a label map (NIfTI, e.g. a prediction) written as DICOM-SEG and/or RTSTRUCT that
/// reference the source series.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a label map as DICOM-SEG and/or RTSTRUCT referenced to its source DICOM series.",
        discussion: """
        The labels must lie on the series grid (any axis order or flip of it, e.g. dcm2niix's flipped rows, is accepted; \
        a different grid is refused). One segment / ROI per label present in the map.
        """)

    @Option(help: "Label map (.nii/.nii.gz).")
    var labels: String

    @Option(help: "Folder with the source DICOM series.")
    var reference: String

    @Option(help: "Output DICOM-SEG file.")
    var seg: String?

    @Option(help: "Output RTSTRUCT file.")
    var rtstruct: String?

    @Option(help: "JSON mapping label values to names ({\"1\": \"liver\", …} or {\"labels\": {…}}).")
    var labelNames: String?

    @Option(help: "RTSTRUCT contour simplification tolerance in mm (0: exact).")
    var simplifyMm = 0.0

    @Flag(help: "Reference instances through their file-meta UIDs and derive missing Study/Series UIDs (anonymised sources; logged).")
    var repairMissingUids = false

    @Option(help: "RTSTRUCT contours: exact (the voxel boundary; default for export, a faithful conversion) or smooth (sub-voxel, simplified).")
    var contours = "exact"

    @Option(help: "SEG encoding: binary (Segmentation Storage, 1-bit frames per segment) or labelmap (Label Map Segmentation Storage).")
    var segEncoding = "binary"

    @Option(help: "RTSTRUCT holes: separate (own contours, for even-odd readers) or keyhole (joined to their boundary, for union-only importers).")
    var holes = "separate"

    @Option(help: "RTSTRUCT: islands smaller than this (mm³) are left out of the contours; 0 keeps all (the SEG keeps the label map).")
    var minIslandMm3 = RTStructOptions.defaultMinimumIslandMM3

    @Option(help: "RTSTRUCT: holes up to this size (mm³) are filled in the contours; 0 fills none.")
    var fillHolesMm3 = RTStructOptions.defaultFillHolesMM3

    @Flag(help: "Fresh output UIDs (default: name-based on the source series and the label map's content, so exporting the same labels again gives the same UIDs).")
    var newUids = false

    @Option(help: "UID root for the outputs (default 2.25).")
    var uidRoot: String?

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard seg != nil || rtstruct != nil else { throw ValidationError("give --seg and/or --rtstruct") }
        guard simplifyMm >= 0 else { throw ValidationError("--simplify-mm must be ≥ 0") }
        guard RTStructOptions.ContourMode(rawValue: contours) != nil else { throw ValidationError("--contours must be exact or smooth") }
        guard SegmentationOptions.Encoding(rawValue: segEncoding) != nil else { throw ValidationError("--seg-encoding must be binary or labelmap") }
        guard RTStructOptions.HoleMode(rawValue: holes) != nil else { throw ValidationError("--holes must be separate or keyhole") }
        guard minIslandMm3 >= 0, fillHolesMm3 >= 0 else { throw ValidationError("--min-island-mm3 and --fill-holes-mm3 must be ≥ 0") }
        if let uidRoot, let problem = OutputUIDs.problem(withRoot: uidRoot) { throw ValidationError("--uid-root: \(problem)") }
    }

    func run() throws {
        logging.bootstrap()
        let logger = Logger(label: "nnseg.export")
        let file = try NIfTIImage(contentsOf: URL(fileURLWithPath: labels))
        let labelImage = try file.labelVolume(path: labels)
        let match = try LabelReference.locate(labelImage, labelsPath: labels, in: URL(fileURLWithPath: reference), headerNote: file.transformNote)
        let (stack, loaded, aligned) = (match.stack, match.loaded, match.labels)
        if repairMissingUids && stack.hasEmptySOPInstanceUIDs {
            logger.warning("repairing missing UIDs: references use file-meta SOP Instance UIDs", metadata: ["series": "\(stack.seriesInstanceUID)"])
        }
        let series = try ReferencedSeries(stack: stack, loaded: loaded, repairMissingUIDs: repairMissingUids)
        let names = try Self.names(labelNames)
        let present = Set(aligned.voxels).subtracting([0]).sorted()
        guard !present.isEmpty else {
            throw DICOMExportError(.invalidDescription, labels, "the label map is empty: nothing to export")
        }
        // Names from --label-names; codes, TG-263 names and colours from the catalog where a name is known;
        // colours made distinct across the file.
        let structures = StructureCatalog.distinctColors(present.map {
            StructureCatalog.describe(label: Int($0), name: names[Int($0)] ?? "Label \($0)")
        })
        let algorithm = AlgorithmIdentification(name: "nnseg", version: SoftwareVersion.number,
                                                parameters: "labels \(URL(fileURLWithPath: labels).lastPathComponent)")
        let labelsHash = try SHA256.hash(contentsOf: URL(fileURLWithPath: labels)).hex
        let uids = OutputUIDs(seed: newUids ? nil : "\(series.seriesInstanceUID)|labels \(labelsHash)|export", root: uidRoot)
        let written = try CaseOutputs.writeDICOM(labels: aligned, series: series, structures: structures, algorithm: algorithm,
                                                 seg: seg.map { URL(fileURLWithPath: $0) }, segOptions: SegmentationOptions(uids: uids, encoding: SegmentationOptions.Encoding(rawValue: segEncoding) ?? .binary),
                                                 rtstruct: rtstruct.map { URL(fileURLWithPath: $0) },
                                                 rtstructOptions: RTStructOptions(simplificationToleranceMM: simplifyMm, uids: uids,
                                                                                  minimumIslandMM3: minIslandMm3, fillHolesMM3: fillHolesMm3,
                                                                                  contours: RTStructOptions.ContourMode(rawValue: contours) ?? .exact,
                                                                                  holes: RTStructOptions.HoleMode(rawValue: holes) ?? .separate))
        if let seg, let r = written.seg {
            print("SEG       \(seg): \(structures.count) segment(s), \(r.frames) frame(s), series \(r.seriesInstanceUID)")
        }
        if let rtstruct, let r = written.rtstruct {
            let islands = r.cleanup.values.reduce(0) { $0 + $1.islandsRemoved }, holes = r.cleanup.values.reduce(0) { $0 + $1.holesFilled }
            print("RTSTRUCT  \(rtstruct): \(structures.count) ROI(s), \(r.contours.values.reduce(0, +)) contour(s), \(r.points.values.reduce(0, +)) point(s), "
                  + "series \(r.seriesInstanceUID); \(islands) island(s) left out, \(holes) hole(s) filled")
            for warning in r.warnings { logger.warning("\(warning)") }
        }
        var metadata: Logger.Metadata = ["series": "\(series.seriesInstanceUID)", "structures": "\(structures.count)"]
        for (stage, seconds) in written.timings { metadata["\(stage)_s"] = "\(String(format: "%.3f", seconds))" }
        logger.info("export done", metadata: metadata)
    }

    static func names(_ path: String?) throws -> [Int: String] {
        guard let path else { return [:] }
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
        let table = ((object as? [String: Any])?["labels"] as? [String: Any]) ?? (object as? [String: Any]) ?? [:]
        var names: [Int: String] = [:]
        for (key, value) in table {
            if let label = Int(key), let name = value as? String { names[label] = String(name.prefix(64)) }
        }
        return names
    }
}
