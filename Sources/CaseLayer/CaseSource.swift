import DICOMImport
import Foundation
import NIfTI
import Preprocessing
import VolumeGeometry

/// One case to predict: its channels as the reader gives them, with the geometry to write results on.
public struct InferenceCase: Sendable {
    public var identifier: String
    public var image: CaseImage
    /// Where the case came from (file paths or series UID), for logs.
    public var source: String

    public var channels: ChannelArray { image.channels }
    /// Array-order spacing (z, y, x), as nnU-Net's SimpleITK reader reports it.
    public var spacing: [Double] { image.spacing }
    public var geometry: VolumeGeometry { image.geometry }
}

/// A problem with the input folder: names the file or series and what is wrong.
public struct CaseSourceError: Error, CustomStringConvertible, Equatable {
    public let subject: String
    public let detail: String
    public var description: String { "INPUT_INVALID: \(subject): \(detail)" }

    public init(subject: String, detail: String) {
        self.subject = subject
        self.detail = detail
    }
}

/// Finds cases in an input folder: nnU-Net-style NIfTI files (`<id>_0000<ending>`, one file per
/// channel) or, when there are none, the DICOM image series found under the folder.
public enum CaseSource {
    public enum Entry: Sendable {
        case nifti(identifier: String, channels: [URL])
        case dicom(identifier: String, stack: ImageStack)

        public var identifier: String {
            switch self {
            case .nifti(let id, _), .dicom(let id, _): return id
            }
        }
    }

    /// Lists the cases of `folder`. `channels` is the number of image channels the model takes.
    public static func discover(_ folder: URL, fileEnding: String, channels: Int,
                                limits: ReaderLimits = .standard) throws -> (entries: [Entry], skipped: [SkippedFile]) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CaseSourceError(subject: folder.path, detail: "not a folder")
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(fileEnding) }.sorted()
        if !files.isEmpty {
            var byCase: [String: [String]] = [:]
            for file in files {
                let stem = String(file.dropLast(fileEnding.count))
                guard stem.count > 5, stem.dropLast(4).hasSuffix("_"), Int(stem.suffix(4)) != nil else {
                    throw CaseSourceError(subject: folder.appendingPathComponent(file).path,
                                          detail: "name must end in _XXXX\(fileEnding) (the channel number, e.g. _0000)")
                }
                byCase[String(stem.dropLast(5)), default: []].append(file)
            }
            let entries = try byCase.keys.sorted().map { id -> Entry in
                let names = byCase[id]!.sorted()
                let expected = (0..<channels).map { String(format: "%@_%04d%@", id, $0, fileEnding) }
                guard names == expected else {
                    throw CaseSourceError(subject: folder.appendingPathComponent(id).path,
                                          detail: "expected channel files \(expected.joined(separator: ", ")), found \(names.joined(separator: ", "))")
                }
                return .nifti(identifier: id, channels: names.map { folder.appendingPathComponent($0) })
            }
            return (entries, [])
        }
        // DICOM: every stack that has geometry becomes a case, named by its series.
        let scan = try DICOMScanner(limits: limits).scan(folder)
        guard !scan.stacks.isEmpty else {
            throw DICOMImportError(.noImageSeries, folder.path, "no \(fileEnding) files and no DICOM image series found")
        }
        guard channels == 1 else {
            throw CaseSourceError(subject: folder.path, detail: "the model takes \(channels) channels; DICOM input gives one series per case")
        }
        var used: Set<String> = []
        let entries = scan.stacks.enumerated().map { index, stack -> Entry in
            var id = stack.seriesInstanceUID.isEmpty ? "series_\(index + 1)" : stack.seriesInstanceUID
            if used.contains(id) { id += "_\(index + 1)" }
            used.insert(id)
            return .dicom(identifier: id, stack: stack)
        }
        return (entries, scan.skipped)
    }

    /// Reads a case's voxels.
    public static func load(_ entry: Entry, policy: GeometryPolicy = GeometryPolicy()) throws -> InferenceCase {
        switch entry {
        case .nifti(let id, let urls):
            let volumes = try urls.map { try NIfTIImage(contentsOf: $0).floatVolume() }
            let image: CaseImage
            do { image = try CaseImage(channels: volumes, sources: urls.map(\.path)) } catch let error as PreprocessingError {
                throw CaseSourceError(subject: urls[0].deletingLastPathComponent().appendingPathComponent(id).path, detail: error.detail)
            }
            return InferenceCase(identifier: id, image: image, source: urls.map(\.lastPathComponent).joined(separator: ", "))
        case .dicom(let id, let stack):
            let series = try DICOMSeriesLoader(policy: policy).load(stack)
            let image = try CaseImage(channels: [series.volume], sources: [stack.seriesInstanceUID])
            return InferenceCase(identifier: id, image: image, source: "DICOM series \(stack.seriesInstanceUID.isEmpty ? "(empty UID)" : stack.seriesInstanceUID), \(stack.slices.count) slices")
        }
    }
}
