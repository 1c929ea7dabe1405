import DICOMExport
import DICOMImport
import Foundation
import VolumeGeometry

/// The DICOM outputs of one case, written in one sequence for every command: the SEG first, then the
/// RTSTRUCT referencing it (each ROI points at its segment), all or nothing — if one fails, what was
/// already written is removed.
public enum CaseOutputs {
    public struct Written: Sendable {
        public var seg: SegmentationWriter.Result?
        public var rtstruct: RTStructWriter.Result?
    }

    /// Writes the SEG to `seg` and/or the RTSTRUCT to `rtstruct` (nil: not wanted).
    public static func writeDICOM(labels: LabelVolume, series: ReferencedSeries, structures: [StructureDescription],
                                  algorithm: AlgorithmIdentification, seg: URL?, segOptions: SegmentationOptions = SegmentationOptions(),
                                  rtstruct: URL?, rtstructOptions: RTStructOptions = RTStructOptions()) throws -> Written {
        var written = Written()
        var files: [URL] = []
        do {
            var reference: RTStructWriter.SegmentationReference?
            if let seg {
                let r = try SegmentationWriter.write(labels: labels, series: series, structures: structures, algorithm: algorithm,
                                                     options: segOptions, to: seg)
                files.append(seg)
                written.seg = r
                reference = .init(sopInstanceUID: r.sopInstanceUID,
                                  segmentNumbers: Dictionary(uniqueKeysWithValues: structures.enumerated().map { ($1.label, $0 + 1) }))
            }
            if let rtstruct {
                written.rtstruct = try RTStructWriter.write(labels: labels, series: series, structures: structures, algorithm: algorithm,
                                                            options: rtstructOptions, segmentation: reference, to: rtstruct)
                files.append(rtstruct)
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

    public static func locate(_ labels: LabelVolume, labelsPath: String, in folder: URL) throws -> Match {
        let scan = try DICOMScanner().scan(folder)
        for stack in scan.stacks where stack.geometry != nil {
            guard let loaded = try? DICOMSeriesLoader(policy: GeometryPolicy(allowShear: true)).load(stack) else { continue }
            if let aligned = labels.reindexed(onto: loaded.volume.geometry, shape: loaded.volume.shape) {
                return Match(stack: stack, loaded: loaded, labels: aligned)
            }
        }
        throw DICOMExportError(.gridMismatch, labelsPath,
                               "not on the grid of any of the \(scan.stacks.count) series under \(folder.path) (size \(labels.shape), spacing \(labels.geometry.spacing))")
    }
}
