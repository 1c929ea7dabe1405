import DICOMExport
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
