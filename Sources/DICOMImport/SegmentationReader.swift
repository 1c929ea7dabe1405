import Foundation
import VolumeGeometry

/// A DICOM Segmentation (BINARY, FRACTIONAL or LABELMAP) read onto the grid of its source series: the
/// way third-party contours (dcmqi, highdicom, 3D Slicer, PACS tools) become labels for training.
public struct ImportedSegmentation: Sendable {
    public struct Segment: Sendable, Equatable {
        public var number: Int
        public var label: String
    }

    public var segments: [Segment]
    /// Segment number per voxel (0: none), on the grid it was read onto.
    public var labels: Volume<UInt16>
    /// Voxels claimed by more than one segment (the higher segment number is kept).
    public var overlappingVoxels: Int
    public var segmentationType: String
}

public enum SegmentationReader {
    public static let segmentationStorage = "1.2.840.10008.5.1.4.1.1.66.4"
    public static let labelMapSegmentationStorage = "1.2.840.10008.5.1.4.1.1.66.7"

    /// Reads the SEG at `url` onto `grid` (normally the referenced series' geometry). Every frame must lie
    /// on a slice of the grid with the grid's in-plane size and orientation; anything else is refused with
    /// the frame named, and nothing is returned.
    public static func read(_ url: URL, onto grid: VolumeGeometry, shape: VolumeShape) throws -> ImportedSegmentation {
        let file = try DICOMFile(path: url.path)
        let header = file.header()
        let path = url.path
        guard [segmentationStorage, labelMapSegmentationStorage].contains(header.sopClassUID) else {
            throw DICOMImportError(.readFailed, path, "not a Segmentation object (SOP Class \(header.sopClassUID))")
        }
        guard header.frameOfReferenceUID.isEmpty == false else {
            throw DICOMImportError(.noGeometry, path, "the SEG has no FrameOfReferenceUID")
        }
        let type = file.string(atPath: "0062,0001")?.uppercased() ?? ""
        guard ["BINARY", "FRACTIONAL", "LABELMAP"].contains(type) else {
            throw DICOMImportError(.unsupportedPixelFormat, path, "SegmentationType '\(type)' is not BINARY, FRACTIONAL or LABELMAP")
        }
        let segmentCount = file.itemCount(atPath: "0062,0002") ?? 0
        var segments: [ImportedSegment] = []
        for i in 0..<segmentCount {
            guard let number = file.string(atPath: "0062,0002[\(i)]/0062,0004").flatMap({ Int($0) }) else {
                throw DICOMImportError(.readFailed, path, "segment item \(i) has no SegmentNumber")
            }
            segments.append(ImportedSegment(number: number, label: file.string(atPath: "0062,0002[\(i)]/0062,0005") ?? ""))
        }
        guard !segments.isEmpty || type == "LABELMAP" else {
            throw DICOMImportError(.readFailed, path, "the SEG lists no segments (SegmentSequence is empty)")
        }
        let format = header.pixelFormat
        guard format.rows == shape.y, format.columns == shape.x else {
            throw DICOMImportError(.noGeometry, path, "frames are \(format.columns)x\(format.rows), the series grid \(shape.x)x\(shape.y)")
        }
        guard let toVoxel = PatientToVoxel(grid) else {
            throw DICOMImportError(.noGeometry, path, "the target grid is degenerate")
        }
        let pixels = try file.decodePixels()
        let threshold: Int32
        if type == "FRACTIONAL" {
            let maximum = file.int(DICOMTag(0x0062, 0x000E)) ?? 255
            threshold = Int32((Double(maximum) / 2).rounded(.up))  // ≥ 50 % occupancy
        } else {
            threshold = 1
        }
        // LABELMAP: PixelPaddingValue marks "no segment" like 0 does.
        let padding = type == "LABELMAP" ? file.int(DICOMTag(0x0028, 0x0120)).map(Int32.init) : nil
        var labels = Volume<UInt16>(shape: shape, geometry: grid, repeating: 0)
        var overlaps = 0
        let plane = shape.y * shape.x
        let known = Set(segments.map(\.number))
        for (f, frame) in header.frames.enumerated() {
            guard let position = frame.imagePosition else {
                throw DICOMImportError(.noGeometry, path, "frame \(f + 1) has no ImagePositionPatient")
            }
            if let o = frame.imageOrientation {
                func distance(_ a: SIMD3<Double>, _ b: SIMD3<Double>) -> Double { let d = a - b; return (d * d).sum().squareRoot() }
                let agree = distance(o.row, grid.direction.columns.0) < 1e-3 && distance(o.column, grid.direction.columns.1) < 1e-3
                guard agree else {
                    throw DICOMImportError(.noGeometry, path, "frame \(f + 1) is not in the series' orientation (reformatted SEGs are not supported)")
                }
            }
            let p = toVoxel(position)
            // Range first: Int() of a non-finite or huge coordinate from the file would trap.
            guard p.z.isFinite, p.z > -1, p.z < Double(shape.z) else {
                throw DICOMImportError(.noGeometry, path, String(format: "frame %d lies off the series grid (voxel %.3g, %.3g, %.3g)", f + 1, p.x, p.y, p.z))
            }
            let k = Int(p.z.rounded())
            guard abs(p.x) < 0.01, abs(p.y) < 0.01, abs(p.z - Double(k)) < 0.01, k >= 0, k < shape.z else {
                throw DICOMImportError(.noGeometry, path, String(format: "frame %d lies off the series grid (voxel %.3f, %.3f, %.3f)", f + 1, p.x, p.y, p.z))
            }
            var segmentNumber = 0
            if type != "LABELMAP" {
                guard let s = file.string(atPath: "5200,9230[\(f)]/0062,000a[0]/0062,000b").flatMap({ Int($0) }), known.contains(s) else {
                    throw DICOMImportError(.readFailed, path, "frame \(f + 1) has no ReferencedSegmentNumber of a listed segment")
                }
                segmentNumber = s
            }
            let base = f * plane
            for q in 0..<plane {
                let v = pixels.values[base + q]
                let value: Int
                if type == "LABELMAP" {
                    guard v > 0, v != padding else { continue }
                    value = Int(v)
                } else {
                    guard v >= threshold else { continue }
                    value = segmentNumber
                }
                let index = k * plane + q
                let old = Int(labels.voxels[index])
                if old != 0 && old != value { overlaps += 1 }
                labels.voxels[index] = UInt16(max(old, value))
            }
        }
        return ImportedSegmentation(segments: segments.map { .init(number: $0.number, label: $0.label) }, labels: labels,
                                    overlappingVoxels: overlaps, segmentationType: type)
    }

    private struct ImportedSegment { var number: Int; var label: String }
}
