import Contours
import Foundation
import VolumeGeometry

/// An RTSTRUCT's ROIs rasterised onto the grid of its source series (CLOSED_PLANAR contours, even-odd
/// rule at voxel centres — holes drawn as separate contours come out as holes).
public struct ImportedStructureSet: Sendable {
    public struct ROI: Sendable, Equatable {
        public var number: Int
        public var name: String
        public var contourCount: Int
    }

    public var rois: [ROI]
    /// Label value per voxel for the requested ROIs (0: none).
    public var labels: Volume<UInt16>
    /// Voxels inside more than one requested ROI (the later mapping entry wins).
    public var overlappingVoxels: Int
    /// Requested ROI names with no contours (or not present): the caller decides whether that is an error.
    public var emptyROIs: [String]
}

public enum StructureSetReader {
    public static let rtStructureSetStorage = "1.2.840.10008.5.1.4.1.1.481.3"

    /// The ROIs an RTSTRUCT declares (number, name, number of contours), without rasterising.
    public static func rois(_ url: URL) throws -> [ImportedStructureSet.ROI] {
        let file = try open(url)
        return try rois(file, path: url.path).map { $0.roi }
    }

    /// An RTSTRUCT's closed contours in voxel coordinates of a grid, per ROI and slice — read once, then
    /// rasterised ROI by ROI (``rasterize(_:mapping:)``) without reading the file again.
    public struct Contours: Sendable {
        public var rois: [ImportedStructureSet.ROI]
        /// Per declared ROI (same order as ``rois``): its polygons per slice index (nil: no contour item).
        public var polygons: [[Int: [Polygon]]?]
        public var grid: VolumeGeometry
        public var shape: VolumeShape
        public var path: String
    }

    /// Rasterises the ROIs named in `mapping` (case-insensitive ROI name → label value, applied in order)
    /// onto `grid`. Every contour must lie in one slice plane of the grid; a contour off the grid (e.g.
    /// on an image that is not part of this series) is refused with its ROI and contour named.
    public static func read(_ url: URL, onto grid: VolumeGeometry, shape: VolumeShape,
                            mapping: [(roiName: String, label: Int)]) throws -> ImportedStructureSet {
        let wanted = Set(mapping.map { $0.roiName.lowercased() })
        return try rasterize(contours(url, onto: grid, shape: shape, only: wanted), mapping: mapping)
    }

    /// Reads every closed contour of the ROIs named in `only` (lower-case names; nil: all) onto `grid`'s voxel
    /// coordinates, checking that each lies in one slice plane.
    public static func contours(_ url: URL, onto grid: VolumeGeometry, shape: VolumeShape, only: Set<String>? = nil) throws -> Contours {
        let path = url.path
        let file = try open(url)
        let declared = try rois(file, path: path)
        guard let toVoxel = PatientToVoxel(grid) else {
            throw DICOMImportError(.noGeometry, path, "the target grid is degenerate")
        }
        var all: [[Int: [Polygon]]?] = []
        for entry in declared {
            guard let item = entry.contourItem, only?.contains(entry.roi.name.lowercased()) ?? true else {
                all.append(nil)
                continue
            }
            var perSlice: [Int: [Polygon]] = [:]
            let contours = file.itemCount(atPath: "3006,0039[\(item)]/3006,0040") ?? 0
            for c in 0..<contours {
                let base = "3006,0039[\(item)]/3006,0040[\(c)]"
                let type = file.string(atPath: base + "/3006,0042")?.uppercased() ?? "CLOSED_PLANAR"
                guard type == "CLOSED_PLANAR" else { continue }  // POINT / OPEN_* contours enclose no volume
                guard let values = file.doubles(atPath: base + "/3006,0050"), values.count >= 9, values.count % 3 == 0 else {
                    throw DICOMImportError(.readFailed, path, "ROI '\(entry.roi.name)' contour \(c + 1): ContourData needs at least 3 points")
                }
                var points: [SIMD2<Double>] = []
                var planes: [Double] = []
                points.reserveCapacity(values.count / 3)
                planes.reserveCapacity(values.count / 3)
                for p in stride(from: 0, to: values.count, by: 3) {
                    let v = toVoxel(SIMD3(values[p], values[p + 1], values[p + 2]))
                    points.append(SIMD2(v.x, v.y))
                    planes.append(v.z)
                }
                guard points.allSatisfy({ $0.x.isFinite && $0.y.isFinite && abs($0.x) < 1e6 && abs($0.y) < 1e6 }) else {
                    throw DICOMImportError(.noGeometry, path, "ROI '\(entry.roi.name)' contour \(c + 1): a point is not a finite position near the series")
                }
                // Range first: Int() of a non-finite or huge coordinate from the file would trap.
                guard let first = planes.first, first.isFinite, first > -1, first < Double(shape.z) else {
                    throw DICOMImportError(.noGeometry, path, String(format: "ROI '%@' contour %d lies off the series grid (slice position %.3g of 0…%d)",
                                                                     entry.roi.name, c + 1, planes.first ?? .nan, shape.z - 1))
                }
                let k = Int(first.rounded())
                guard planes.allSatisfy({ abs($0 - Double(k)) < 0.05 }), k >= 0, k < shape.z else {
                    throw DICOMImportError(.noGeometry, path, String(format: "ROI '%@' contour %d lies off the series grid (slice position %.2f of 0…%d)",
                                                                     entry.roi.name, c + 1, planes[0], shape.z - 1))
                }
                perSlice[k, default: []].append(Polygon(points: points))
            }
            all.append(perSlice)
        }
        return Contours(rois: declared.map(\.roi), polygons: all, grid: grid, shape: shape, path: path)
    }

    /// Rasterises the ROIs named in `mapping` (as ``read(_:onto:shape:mapping:)``) from contours already read.
    public static func rasterize(_ contours: Contours, mapping: [(roiName: String, label: Int)]) throws -> ImportedStructureSet {
        let shape = contours.shape
        var labels = Volume<UInt16>(shape: shape, geometry: contours.grid, repeating: 0)
        var claimed = [Bool](repeating: false, count: shape.count)
        var overlaps = 0
        var empty: [String] = []
        let plane = shape.y * shape.x
        for (name, label) in mapping {
            guard label > 0, label <= Int(UInt16.max) else {
                throw DICOMImportError(.readFailed, contours.path, "label value \(label) for ROI '\(name)' must be 1…65535")
            }
            guard let index = contours.rois.firstIndex(where: { $0.name.lowercased() == name.lowercased() }),
                  let perSlice = contours.polygons[index], !perSlice.isEmpty else {
                empty.append(name)
                continue
            }
            for (k, polygons) in perSlice {
                let mask = MarchingSquares.rasterize(polygons, rows: shape.y, columns: shape.x)
                for i in 0..<plane where mask[i] {
                    let index = k * plane + i
                    if claimed[index] && Int(labels.voxels[index]) != label { overlaps += 1 }
                    claimed[index] = true
                    labels.voxels[index] = UInt16(label)
                }
            }
        }
        return ImportedStructureSet(rois: contours.rois, labels: labels, overlappingVoxels: overlaps, emptyROIs: empty)
    }

    private static func open(_ url: URL) throws -> DICOMFile {
        let file = try DICOMFile(path: url.path)
        let sopClass = file.string(atPath: "0008,0016") ?? ""
        guard sopClass == rtStructureSetStorage else {
            throw DICOMImportError(.readFailed, url.path, "not an RT Structure Set (SOP Class \(sopClass))")
        }
        return file
    }

    /// StructureSetROISequence joined with ROIContourSequence by ROI number.
    private static func rois(_ file: DICOMFile, path: String) throws -> [(roi: ImportedStructureSet.ROI, contourItem: Int?)] {
        var contourItems: [Int: Int] = [:]
        for i in 0..<(file.itemCount(atPath: "3006,0039") ?? 0) {
            if let n = file.string(atPath: "3006,0039[\(i)]/3006,0084").flatMap({ Int($0) }) { contourItems[n] = i }
        }
        return try (0..<(file.itemCount(atPath: "3006,0020") ?? 0)).map { i in
            guard let number = file.string(atPath: "3006,0020[\(i)]/3006,0022").flatMap({ Int($0) }) else {
                throw DICOMImportError(.readFailed, path, "StructureSetROISequence item \(i + 1) has no ROINumber")
            }
            let item = contourItems[number]
            let count = item.flatMap { file.itemCount(atPath: "3006,0039[\($0)]/3006,0040") } ?? 0
            return (ImportedStructureSet.ROI(number: number, name: file.string(atPath: "3006,0020[\(i)]/3006,0026") ?? "", contourCount: count), item)
        }
    }
}
