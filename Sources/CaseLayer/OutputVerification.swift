import DICOMExport
import DICOMImport
import Foundation
import Parallel
import VolumeGeometry

/// Every case checks what it wrote before anything is moved into place or sent (issue #17): the SEG and the
/// RTSTRUCT are read back with nnseg's own readers and rasterised onto the source grid.
///
/// * **References**: Study Instance UID and Frame of Reference of each object equal the source's; the SEG's
///   Referenced Series lists exactly the source's instances; the RTSTRUCT's Referenced Frame of Reference →
///   Study → Series is the source series and each of its contour images is a source instance.
/// * **SEG**: the segment number of every voxel equals the label map's (exact).
/// * **RTSTRUCT**, per ROI against the structure as its contours were drawn from it (the label map's voxels,
///   islands left out and holes filled as the writer's options say): Dice ≥ 0.90 for ROIs of at least 1 cm³
///   (non-empty below); voxels the contours add lie within ``Tolerances/addedDistanceMM`` of the structure (a
///   one-sided Hausdorff distance); the centroid in patient coordinates within ``Tolerances/centroidShiftMM`` of
///   the structure's — a left/right or any other flip moves it by centimetres.
public enum OutputVerification {
    public struct Tolerances: Sendable, Equatable {
        public var minimumDice = 0.90
        /// ROIs smaller than this (cm³) need only be non-empty.
        public var diceFromCM3 = 1.0
        public var addedDistanceMM = 5.0
        public var centroidShiftMM = 5.0
        public init() {}
    }

    public struct ROIVerdict: Sendable, Equatable {
        public var label: Int
        public var name: String
        public var labelCM3: Double
        /// SEG voxels that differ from the label map for this segment (nil: no SEG).
        public var segMismatchedVoxels: Int?
        public var rtstructDice: Double?
        /// Farthest voxel the contours add, from the structure (mm; 0 when they add none).
        public var rtstructAddedDistanceMM: Double?
        public var centroidShiftMM: Double?
        public var passed: Bool
        public var problems: [String]
    }

    public struct Report: Sendable, Equatable {
        public var rois: [ROIVerdict]
        /// Reference problems (empty: every reference resolves to the source).
        public var referenceProblems: [String]
        public var passed: Bool { referenceProblems.isEmpty && rois.allSatisfy(\.passed) }
        /// One line naming what failed, for the case's error.
        public var failureSummary: String {
            (referenceProblems + rois.filter { !$0.passed }.map { "ROI \($0.name): " + $0.problems.joined(separator: "; ") })
                .joined(separator: " | ")
        }
    }

    /// - Parameter rtstructOptions: how the RTSTRUCT was written — its contours are compared with each structure as
    ///   they were drawn from it (islands left out, holes filled: ``RTStructWriter/cleanedStructure(labels:label:lower:upper:structureLabel:voxelMM3:options:)``).
    /// - Parameter cleaned: the writer's cleaned structures by label (``RTStructWriter/Result/cleaned``); a
    ///   structure not in it is cleaned here as the writer would.
    public static func verify(labels: LabelVolume, series: ReferencedSeries, structures: [StructureDescription], seg: URL?,
                              rtstruct: URL?, rtstructOptions: RTStructOptions = RTStructOptions(),
                              cleaned: [Int: RTStructWriter.PackedStructure] = [:],
                              tolerances: Tolerances = Tolerances()) throws -> Report {
        let grid = labels.geometry, shape = labels.shape
        var problems: [String] = []
        var segLabels: Volume<UInt16>?
        if let seg {
            problems += references(of: seg, series: series, kind: "SEG")
            segLabels = try SegmentationReader.read(seg, onto: grid, shape: shape).labels
        }
        var rtContours: StructureSetReader.Contours?
        if let rtstruct {
            problems += references(of: rtstruct, series: series, kind: "RTSTRUCT")
            // Read once; each ROI is then rasterised on its own.
            rtContours = try StructureSetReader.contours(rtstruct, onto: grid, shape: shape)
        }
        let toPatient = VoxelToPatient(grid)
        let spacing = grid.spacing
        let voxelCM3 = spacing.x * spacing.y * spacing.z / 1000
        // One pass over the volume (chunks in parallel): per structure, its voxel count, the SEG's disagreements,
        // the RTSTRUCT raster's count, overlap, added voxels and both centroids.
        var indexOf = [Int](repeating: -1, count: 65_536)
        for (i, s) in structures.enumerated() where (1...65_535).contains(s.label) { indexOf[s.label] = i }
        struct Tally {
            var count = 0, segMismatch = 0, rtCount = 0
            var sumRT = SIMD3<Double>(0, 0, 0)
            /// The structure's bounding box in the label map (voxel indices; empty while lower > upper).
            var lower = SIMD3<Int>(repeating: .max), upper = SIMD3<Int>(repeating: -1)
            mutating func merge(_ o: Tally) {
                count += o.count; segMismatch += o.segMismatch; rtCount += o.rtCount
                sumRT += o.sumRT
                lower = pointwiseMin(lower, o.lower); upper = pointwiseMax(upper, o.upper)
            }
        }
        let plane = shape.y * shape.x
        let chunk = max(plane, 1 << 18)
        let pieces = try Parallel.map((shape.count + chunk - 1) / chunk) { c -> [Tally] in
            var tallies = [Tally](repeating: Tally(), count: structures.count)
            for i in (c * chunk)..<min(shape.count, (c + 1) * chunk) {
                let a = indexOf[Int(labels.voxels[i])]
                if a >= 0 {
                    tallies[a].count += 1
                    let p = SIMD3(i % shape.x, (i / shape.x) % shape.y, i / plane)
                    tallies[a].lower = pointwiseMin(tallies[a].lower, p)
                    tallies[a].upper = pointwiseMax(tallies[a].upper, p)
                }
                if let segLabels {
                    // Segment n is structure n - 1: both sides must name the same structure (or none).
                    let segment = Int(segLabels.voxels[i]) - 1
                    if segment != a {
                        if a >= 0 { tallies[a].segMismatch += 1 }
                        if segment >= 0 && segment < structures.count && segment != a { tallies[segment].segMismatch += 1 }
                    }
                }
            }
            return tallies
        }
        var tallies = [Tally](repeating: Tally(), count: structures.count)
        for piece in pieces { for (i, t) in piece.enumerated() { tallies[i].merge(t) } }
        let verdicts = try Parallel.map(structures.count) { index -> ROIVerdict in
            let s = structures[index], t = tallies[index], value = UInt16(clamping: s.label)
            let cm3 = Double(t.count) * voxelCM3
            var verdict = ROIVerdict(label: s.label, name: s.name, labelCM3: (cm3 * 1000).rounded() / 1000,
                                     segMismatchedVoxels: segLabels == nil ? nil : t.segMismatch, rtstructDice: nil,
                                     rtstructAddedDistanceMM: nil, centroidShiftMM: nil, passed: true, problems: [])
            if t.segMismatch > 0 { verdict.problems.append("SEG differs from the label map in \(t.segMismatch) voxel(s)") }
            if let rtContours {
                // This ROI alone (smooth contours of neighbours may overlap: one shared raster would let a later ROI
                // take an earlier one's voxels), against the structure as the contours were drawn from it.
                let rtLabels = try StructureSetReader.rasterize(rtContours, mapping: [(s.name, s.label)]).labels
                var t = t
                for (i, v) in rtLabels.voxels.enumerated() where v == value {
                    t.rtCount += 1
                    t.sumRT += SIMD3(Double(i % shape.x), Double((i / shape.x) % shape.y), Double(i / plane))
                }
                // The box from the tally: no scan of the map per structure.
                let intended = t.count == 0 ? nil : cleaned[s.label]?.unpacked() ?? RTStructWriter.cleanedStructure(
                    labels: labels, label: value, lower: t.lower, upper: t.upper, structureLabel: s.label,
                    voxelMM3: series.pixelSpacing.x * series.pixelSpacing.y * series.spacingAlongNormal, options: rtstructOptions)
                let c = compare(raster: rtLabels, value: value, rasterCount: t.rtCount, intended: intended, labels: labels,
                                limitMM: tolerances.addedDistanceMM)
                let dice = c.intendedCount + t.rtCount == 0 ? 1 : 2 * Double(c.both) / Double(c.intendedCount + t.rtCount)
                verdict.rtstructDice = (dice * 10000).rounded() / 10000
                if cm3 >= tolerances.diceFromCM3 && dice < tolerances.minimumDice {
                    verdict.problems.append(String(format: "RTSTRUCT Dice %.4f below %.2f", dice, tolerances.minimumDice))
                }
                if c.intendedCount > 0 && t.rtCount == 0 { verdict.problems.append("RTSTRUCT has no contour for a structure of \(c.intendedCount) voxel(s)") }
                verdict.rtstructAddedDistanceMM = (c.farthestAddedMM * 100).rounded() / 100
                if c.farthestAddedMM > tolerances.addedDistanceMM {
                    verdict.problems.append(String(format: "RTSTRUCT adds voxels more than %.1f mm from the structure", tolerances.addedDistanceMM))
                }
                if c.intendedCount > 0 && t.rtCount > 0 {
                    let shift = toPatient(t.sumRT / Double(t.rtCount)) - toPatient(c.intendedSum / Double(c.intendedCount))
                    let millimetres = (shift * shift).sum().squareRoot()
                    verdict.centroidShiftMM = (millimetres * 100).rounded() / 100
                    // A contour set that is displaced (mirrored, a slice off, a wrong origin) overlaps the structure
                    // poorly or better when moved back. A spread-out structure can show a centroid shift without
                    // either: smoothing drops one-voxel-thin parts (within the Dice tolerance), and such parts far
                    // from the rest move the centroid, while no one-voxel move of the contours improves their overlap.
                    if millimetres > tolerances.centroidShiftMM, let m = intended {
                        let better = betterAlignment(raster: rtLabels, value: value, intended: m, overlap: c.both)
                        if dice < tolerances.minimumDice || better != nil {
                            verdict.problems.append(String(format: "RTSTRUCT centroid %.1f mm from the structure's (L/R %.1f mm)", millimetres, shift.x)
                                                    + (better.map { "; moved one voxel along \($0) it overlaps the structure better" } ?? ""))
                        }
                    }
                }
            }
            verdict.passed = verdict.problems.isEmpty
            return verdict
        }
        return Report(rois: verdicts, referenceProblems: problems)
    }

    /// The raster of one ROI against the cleaned structure: the structure's voxel count and centroid sum, the
    /// overlap, and the farthest raster voxel outside the structure (mm; raster voxels outside its box count as
    /// beyond `limitMM`).
    static func compare(raster: Volume<UInt16>, value: UInt16, rasterCount: Int, intended: RTStructWriter.CleanedStructure?,
                        labels: LabelVolume, limitMM: Double) -> (intendedCount: Int, intendedSum: SIMD3<Double>, both: Int, farthestAddedMM: Double) {
        guard let m = intended else { return (0, .zero, 0, rasterCount > 0 ? limitMM + 1 : 0) }
        let shape = labels.shape, spacing = labels.geometry.spacing
        var count = 0, both = 0, rasterInBox = 0
        var sum = SIMD3<Double>(0, 0, 0)
        var added: [SIMD3<Int>] = []
        for z in 0..<m.depth { for y in 0..<m.height { for x in 0..<m.width {
            let inside = m.mask[(z * m.height + y) * m.width + x]
            let (vx, vy, vz) = (m.x0 + x, m.y0 + y, m.z0 + z)
            if inside {
                count += 1
                sum += SIMD3(Double(vx), Double(vy), Double(vz))
            }
            guard vx >= 0, vy >= 0, vz >= 0, vx < shape.x, vy < shape.y, vz < shape.z,
                  raster.voxels[(vz * shape.y + vy) * shape.x + vx] == value else { continue }
            rasterInBox += 1
            if inside { both += 1 } else { added.append(SIMD3(x, y, z)) }
        } } }
        var farthest = rasterCount > rasterInBox ? limitMM + spacing.max() : 0
        let reach = SIMD3(Int((limitMM / spacing.x).rounded(.up)) + 1, Int((limitMM / spacing.y).rounded(.up)) + 1,
                          Int((limitMM / spacing.z).rounded(.up)) + 1)
        for p in added where farthest <= limitMM {
            var best = Double.infinity
            for dz in -reach.z...reach.z where p.z + dz >= 0 && p.z + dz < m.depth {
                for dy in -reach.y...reach.y where p.y + dy >= 0 && p.y + dy < m.height {
                    for dx in -reach.x...reach.x where p.x + dx >= 0 && p.x + dx < m.width
                        && m.mask[((p.z + dz) * m.height + p.y + dy) * m.width + p.x + dx] {
                        let d = SIMD3(Double(dx) * spacing.x, Double(dy) * spacing.y, Double(dz) * spacing.z)
                        best = min(best, (d * d).sum().squareRoot())
                    }
                }
            }
            farthest = max(farthest, best.isFinite ? best : limitMM + spacing.max())
        }
        return (count, sum, both, farthest)
    }

    /// The axis and direction ("+x", "-z", …: voxel axes of the map) of a one-voxel move of the raster that
    /// overlaps the structure more than `overlap` (the raster as written), or nil if none does.
    static func betterAlignment(raster: Volume<UInt16>, value: UInt16, intended m: RTStructWriter.CleanedStructure, overlap: Int) -> String? {
        let shape = raster.shape
        var best = (overlap, nil as String?)
        for (move, name) in [(SIMD3(1, 0, 0), "+x"), (SIMD3(-1, 0, 0), "-x"), (SIMD3(0, 1, 0), "+y"), (SIMD3(0, -1, 0), "-y"),
                             (SIMD3(0, 0, 1), "+z"), (SIMD3(0, 0, -1), "-z")] {
            // The raster moved by `move` covers structure voxel v where the raster holds v − move.
            var both = 0
            for z in 0..<m.depth { for y in 0..<m.height { for x in 0..<m.width where m.mask[(z * m.height + y) * m.width + x] {
                let v = SIMD3(m.x0 + x, m.y0 + y, m.z0 + z) &- move
                if v.x >= 0, v.y >= 0, v.z >= 0, v.x < shape.x, v.y < shape.y, v.z < shape.z,
                   raster.voxels[(v.z * shape.y + v.y) * shape.x + v.x] == value { both += 1 }
            } } }
            if both > best.0 { best = (both, name) }
        }
        return best.1
    }

    /// The object's references to its source: Study, Frame of Reference, Series and instances.
    static func references(of url: URL, series: ReferencedSeries, kind: String) -> [String] {
        guard let file = try? DICOMFile(path: url.path) else { return ["\(kind) cannot be read back"] }
        var problems: [String] = []
        let instances = Set(series.slices.map(\.sopInstanceUID))
        func check(_ path: String, _ expected: String, _ what: String) {
            let found = file.string(atPath: path) ?? ""
            if found != expected { problems.append("\(kind) \(what) is '\(found)', the source's '\(expected)'") }
        }
        check("0020,000d", series.studyInstanceUID, "StudyInstanceUID")
        check("0020,0052", series.frameOfReferenceUID, "FrameOfReferenceUID")
        let listed: String
        if kind == "SEG" {
            check("0008,1115[0]/0020,000e", series.seriesInstanceUID, "referenced series")
            listed = "0008,1115[0]/0008,114a"
        } else {
            check("3006,0010[0]/0020,0052", series.frameOfReferenceUID, "referenced frame of reference")
            check("3006,0010[0]/3006,0012[0]/0008,1155", series.studyInstanceUID, "referenced study")
            check("3006,0010[0]/3006,0012[0]/3006,0014[0]/0020,000e", series.seriesInstanceUID, "referenced series")
            listed = "3006,0010[0]/3006,0012[0]/3006,0014[0]/3006,0016"
        }
        let count = file.itemCount(atPath: listed) ?? 0
        var referenced = Set<String>()
        for i in 0..<count { referenced.insert(file.string(atPath: "\(listed)[\(i)]/0008,1155") ?? "") }
        if referenced != instances {
            problems.append("\(kind) references \(referenced.count) instance(s), \(referenced.subtracting(instances).count) not in the source series "
                            + "(\(instances.count) instances)")
        }
        return problems
    }
}

/// Outputs that did not verify: nothing of them is kept; the report says which ROI and check failed.
public struct OutputVerificationFailure: Error, CustomStringConvertible {
    public let report: OutputVerification.Report
    public var description: String { "\(CaseLayerError.Code.outputVerificationFailed.rawValue): \(report.failureSummary)" }
}
