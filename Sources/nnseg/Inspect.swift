import ArgumentParser
import DICOMImport
import Foundation
import Logging
import NIfTI
import VolumeGeometry

/// `nnseg inspect <folder or file>`: what series a folder holds, and whether each could be read.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the DICOM series (or NIfTI image) found at a path, with size, spacing, orientation and warnings.")

    @Argument(help: "A folder scanned recursively for DICOM files, or one .nii/.nii.gz file.")
    var path: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Flag(help: "Also decode every image stack's pixels to prove it loads.")
    var decode = false

    @OptionGroup var readerLimits: ReaderLimitOptions
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.bootstrap()
        let logger = Logger(label: "nnseg.inspect")
        let url = URL(fileURLWithPath: path)
        if path.hasSuffix(".nii") || path.hasSuffix(".nii.gz") {
            try inspectNIfTI(url)
            return
        }
        let progress = ProgressReporter(title: "scanning")
        let scan = try DICOMScanner(limits: readerLimits.limits).scan(url) { done, total in progress.update(done, total) }
        progress.finish()
        logger.info("scan finished", metadata: [
            "files": "\(scan.filesSeen)", "stacks": "\(scan.stacks.count)",
            "nonImageObjects": "\(scan.nonVolumeObjects.count)", "skipped": "\(scan.skipped.count)",
        ])
        // No image series: exit status 2 with NO_IMAGE_SERIES, in the JSON document or as the error line.
        let noSeries = scan.stacks.isEmpty
            ? DICOMImportError(.noImageSeries, scan.root, "no DICOM image series among \(scan.filesSeen) file(s) "
                               + "(\(scan.nonVolumeObjects.count) other DICOM object(s), \(scan.skipped.count) skipped)")
            : nil
        var reports: [StackReport] = []
        for (index, stack) in scan.stacks.enumerated() {
            var report = StackReport(index: index + 1, stack: stack)
            if decode {
                do {
                    let series = try DICOMSeriesLoader(policy: GeometryPolicy(limits: readerLimits.limits)).load(stack)
                    report.loadResult = "loaded: values \(series.volume.voxels.min() ?? 0) … \(series.volume.voxels.max() ?? 0)"
                } catch let error as DICOMImportError {
                    report.loadResult = "refused: \(error.code.rawValue): \(error.detail)"
                    logger.warning("stack refused", metadata: ["series": "\(stack.seriesInstanceUID)", "code": "\(error.code.rawValue)"])
                }
            }
            for warning in report.warnings {
                logger.warning("\(warning)", metadata: ["series": "\(stack.seriesInstanceUID)"])
            }
            reports.append(report)
        }
        if json {
            let document = InspectDocument(
                root: scan.root, filesSeen: scan.filesSeen, stacks: reports,
                otherObjects: scan.nonVolumeObjects.map {
                    .init(path: $0.path, sopClass: SOPClass.name($0.sopClassUID), modality: $0.modality,
                          seriesInstanceUID: $0.seriesInstanceUID)
                },
                skipped: scan.skipped.map { .init(path: $0.path, code: $0.code?.rawValue, reason: $0.reason) },
                error: noSeries.map { .init(code: $0.code.rawValue, message: $0.description) })
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(document), as: UTF8.self))
            if noSeries != nil { throw ExitCode(ExitStatus.nothingFound.rawValue) }  // reported in the document
            return
        }
        print("\(scan.filesSeen) file(s) under \(scan.root): \(scan.stacks.count) image stack(s), "
              + "\(scan.nonVolumeObjects.count) other DICOM object(s), \(scan.skipped.count) skipped")
        for report in reports { print(report.text) }
        if !scan.nonVolumeObjects.isEmpty {
            print("\nOther DICOM objects (not image volumes):")
            for o in scan.nonVolumeObjects {
                print("  \(SOPClass.name(o.sopClassUID)) [\(o.modality)] series \(o.seriesInstanceUID)  \(o.path)")
            }
        }
        if !scan.skipped.isEmpty {
            print("\nSkipped files:")
            for s in scan.skipped { print("  \(s.code?.rawValue ?? "DUPLICATE"): \(s.path): \(s.reason)") }
        }
        if let noSeries { throw noSeries }
    }

    func inspectNIfTI(_ url: URL) throws {
        let image = try NIfTIImage(contentsOf: url)
        let v = image.floatVolume()
        let g = v.geometry
        print("\(url.path): NIfTI-1 \(image.voxels.dataType.name), size \(v.shape.xyz.map(String.init).joined(separator: "×")) (x×y×z)")
        print("  spacing \(format(g.spacing)) mm, origin \(format(g.origin)) mm (LPS), transform from \(image.transformSource.rawValue)")
        print("  direction \(g.direction)")
        print("  values \(v.voxels.min() ?? 0) … \(v.voxels.max() ?? 0), scl_slope \(image.header.sclSlope), scl_inter \(image.header.sclInter)")
    }
}

func format(_ v: SIMD3<Double>) -> String {
    "(" + [v.x, v.y, v.z].map { String(format: "%.4g", $0) }.joined(separator: ", ") + ")"
}

/// One stack as `inspect` reports it (text or JSON). UIDs and technical attributes only.
struct StackReport: Encodable {
    var index: Int
    var modality: String
    var sopClass: String
    var seriesInstanceUID: String
    var seriesNumber: Int?
    var seriesDescription: String
    var instances: Int
    var slices: Int
    var sizeXYZ: [Int]
    var spacingXYZ: [Double]?
    var origin: [Double]?
    var orientation: String
    var spacingVerdict: String?
    var tiltDegrees: Double?
    var transferSyntaxes: [String]
    var lossy: Bool
    var splitReasons: [String]
    var warnings: [String]
    var loadResult: String?

    init(index: Int, stack: ImageStack) {
        self.index = index
        modality = stack.modality
        sopClass = SOPClass.name(stack.sopClassUID)
        seriesInstanceUID = stack.seriesInstanceUID
        seriesNumber = stack.seriesNumber
        seriesDescription = stack.seriesDescription
        instances = stack.instances.count
        slices = stack.slices.count
        sizeXYZ = [stack.key.columns, stack.key.rows, stack.slices.count]
        let g = stack.geometry?.volumeGeometry
        spacingXYZ = g.map { [$0.spacing.x, $0.spacing.y, $0.spacing.z] }
        origin = g.map { [$0.origin.x, $0.origin.y, $0.origin.z] }
        orientation = stack.orientationLabel
        spacingVerdict = stack.geometry?.verdict.name
        tiltDegrees = stack.geometry?.tiltDegrees
        transferSyntaxes = stack.transferSyntaxes
        lossy = stack.isLossy
        splitReasons = stack.splitReasons
        var w = stack.warnings + (stack.geometry?.warnings ?? [])
        if let missing = stack.missingGeometry { w.append("no geometry: \(missing)") }
        if stack.hasEmptySOPInstanceUIDs { w.append("empty SOP Instance UIDs: SEG/RTSTRUCT cannot reference this series") }
        if stack.isLossy { w.append("lossy compressed source images") }
        warnings = w
    }

    var text: String {
        var lines: [String] = []
        let number = seriesNumber.map { " #\($0)" } ?? ""
        let description = seriesDescription.isEmpty ? "" : " \"\(seriesDescription)\""
        lines.append("\n[\(index)] \(modality) \(sopClass)\(number)\(description)")
        lines.append("    series UID   \(seriesInstanceUID.isEmpty ? "(empty)" : seriesInstanceUID)")
        lines.append("    size         \(sizeXYZ.map(String.init).joined(separator: "×")) (x×y×z) from \(instances) instance(s)")
        if let s = spacingXYZ, let o = origin {
            lines.append("    spacing      \(s.map { String(format: "%.4g", $0) }.joined(separator: " × ")) mm, origin (\(o.map { String(format: "%.2f", $0) }.joined(separator: ", "))) LPS")
        }
        lines.append("    orientation  \(orientation)\(tiltDegrees.map { $0 > 0.01 ? String(format: ", tilt %.2f°", $0) : "" } ?? "")"
                     + (spacingVerdict.map { ", spacing \($0)" } ?? ""))
        lines.append("    encoding     \(transferSyntaxes.joined(separator: ", "))\(lossy ? " (lossy)" : "")")
        if !splitReasons.isEmpty { lines.append("    split from siblings by: \(splitReasons.joined(separator: ", "))") }
        for w in warnings { lines.append("    WARNING      \(w)") }
        if let loadResult { lines.append("    \(loadResult)") }
        return lines.joined(separator: "\n")
    }
}

struct InspectDocument: Encodable {
    struct Other: Encodable {
        var path: String
        var sopClass: String
        var modality: String
        var seriesInstanceUID: String
    }

    struct Skipped: Encodable {
        var path: String
        var code: String?
        var reason: String
    }

    struct Failure: Encodable {
        var code: String
        var message: String
    }

    var root: String
    var filesSeen: Int
    var stacks: [StackReport]
    var otherObjects: [Other]
    var skipped: [Skipped]
    /// Set when the exit status is not 0 (the same code the text output names).
    var error: Failure?
}
