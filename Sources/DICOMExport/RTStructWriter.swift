import Contours
import Foundation
import Parallel
import VolumeGeometry

/// Options of an RTSTRUCT.
///
/// Holes and islands (spec §3.5): every boundary is written as its own CLOSED_PLANAR contour — outer
/// boundaries counter-clockwise, hole boundaries clockwise (seen from +N) — on the slice it lies in.
/// Readers that combine contours of a slice with the even-odd rule (platipy, dcmrtstruct2nii, rt-utils,
/// plastimatch `--xor-contours`) and winding-aware readers get the holes; islands are separate contours
/// in every reader. The keyhole representation for union-only importers is the planned alternative
/// (R-RT-09: the site's TPS acceptance test decides).
public struct RTStructOptions: Sendable, Equatable {
    public var seriesNumber: Int
    public var seriesDescription: String
    public var structureSetLabel: String
    /// Douglas–Peucker tolerance in mm (0: only collinear vertices removed — the contour is then exact
    /// under pixel-centre rasterisation).
    public var simplificationToleranceMM: Double
    /// Name-based (re-runs replace) or fresh UIDs.
    public var uids: OutputUIDs
    /// Islands (3-D, 6-connected) smaller than this are left out of the contours (the largest part of a
    /// structure always stays); 0 keeps all. Per label in ``minimumIslandMM3ByLabel``.
    public var minimumIslandMM3: Double
    public var minimumIslandMM3ByLabel: [Int: Double]
    /// Holes (background enclosed in 3-D) up to this size are filled in the contours; 0 fills none.
    public var fillHolesMM3: Double
    /// Points per ROI and per file above which the structure set is reported (``RTStructWriter/Result/warnings``),
    /// or refused when ``strictPointBudget`` is set.
    public var pointBudgetPerROI: Int
    public var pointBudgetPerFile: Int
    public var strictPointBudget: Bool

    /// `exact`: the voxel boundary (half-voxel staircases; rasterising by voxel centre gives the mask back).
    /// `smooth`: sub-pixel iso-contours, simplified (Douglas–Peucker, at least 0.25 pixel) — what planners review
    /// and edit. Drawn from the model's confidence when the prediction is at hand (`run`, `watch`, `serve`:
    /// where the class's logit margin over its strongest rival crosses zero, ``RTStructWriter/confidenceField``),
    /// else from the mask blurred with a Gaussian of σ = 0.7 pixel (`export` of an existing label map); either
    /// field is lightly blurred (σ 0.7) so a one-pixel line survives. A slice the smoothing would draw poorly (Dice
    /// below 0.95 against its mask: specks, one-pixel lines, fragments) keeps its exact contours, so nothing a
    /// model found is lost. TotalSegmentator's 31 structures (mask): 1.6× fewer points, Dice ≥ 0.998 against the
    /// labels; a disc whose edge the model puts between voxel centres: vertices 0.035 px from it (mask: 0.16 px).
    public enum ContourMode: String, Sendable, Equatable, CaseIterable {
        case exact, smooth
    }
    public var contours: ContourMode
    /// `separate`: every hole is its own (clockwise) contour — even-odd readers show it. `keyhole`: each hole
    /// joined to the boundary around it by a zero-width cut (``Keyhole``), for importers that take the union.
    public enum HoleMode: String, Sendable, Equatable, CaseIterable {
        case separate, keyhole
    }
    public var holes: HoleMode
    static let smoothingSigmaPixels = 0.7
    static let smoothToleranceMinimumPixels = 0.25
    /// A slice whose smooth contours rasterise to less than this Dice against its mask keeps its exact contours.
    static let smoothMinimumSliceDice = 0.95

    public static let defaultMinimumIslandMM3 = 200.0
    public static let defaultFillHolesMM3 = 50.0
    public static let defaultPointBudgetPerROI = 100_000
    public static let defaultPointBudgetPerFile = 1_000_000

    public init(seriesNumber: Int = 902, seriesDescription: String = "nnseg structures (AI generated)", structureSetLabel: String = "NNSEG",
                simplificationToleranceMM: Double = 0, uids: OutputUIDs = .fresh, minimumIslandMM3: Double = Self.defaultMinimumIslandMM3,
                minimumIslandMM3ByLabel: [Int: Double] = [:], fillHolesMM3: Double = Self.defaultFillHolesMM3,
                pointBudgetPerROI: Int = Self.defaultPointBudgetPerROI, pointBudgetPerFile: Int = Self.defaultPointBudgetPerFile,
                strictPointBudget: Bool = false, contours: ContourMode = .exact, holes: HoleMode = .separate) {
        self.seriesNumber = seriesNumber
        self.seriesDescription = seriesDescription
        self.structureSetLabel = structureSetLabel
        self.simplificationToleranceMM = simplificationToleranceMM
        self.uids = uids
        self.minimumIslandMM3 = minimumIslandMM3
        self.minimumIslandMM3ByLabel = minimumIslandMM3ByLabel
        self.fillHolesMM3 = fillHolesMM3
        self.pointBudgetPerROI = pointBudgetPerROI
        self.pointBudgetPerFile = pointBudgetPerFile
        self.strictPointBudget = strictPointBudget
        self.contours = contours
        self.holes = holes
    }
}

/// Writes an RT Structure Set (spec §3): one ROI per described label, CLOSED_PLANAR contours in LPS on
/// every source slice that holds the structure, each contour referencing its slice; complete
/// Referenced Frame of Reference → Study → Series → Contour Image references; observations with the
/// interpreted type; UNAPPROVED; Implicit VR Little Endian (R-RT-08).
public enum RTStructWriter {
    public struct Result: Sendable, Equatable {
        public var seriesInstanceUID: String
        public var sopInstanceUID: String
        /// Contours written per label.
        public var contours: [Int: Int]
        /// Labels described but absent from the map (ROI written without contours).
        public var emptyROIs: [Int]
        /// Contour points written per label.
        public var points: [Int: Int] = [:]
        /// What the island/hole cleanup changed per label (contours only; the SEG keeps the label map).
        public var cleanup: [Int: MaskCleanup.Counts] = [:]
        /// Named warnings (`RTSTRUCT_POINT_BUDGET: …`), for the audit log and `status`.
        public var warnings: [String] = []
        /// What the contours were drawn from.
        public var contourSource: ContourSource = .voxelBoundary
        /// Each structure's cleaned mask as contoured, by label, for ``OutputVerification`` (empty when over the
        /// memory bound of ``keepsCleaned(boxes:mapVoxels:)``).
        public var cleaned: [Int: PackedStructure] = [:]
    }

    /// `voxel-boundary` (exact), `model-confidence` (smooth, from the prediction's margin), `smoothed-mask`
    /// (smooth, when no prediction is at hand: an existing label map).
    public enum ContourSource: String, Sendable, Equatable {
        case voxelBoundary = "voxel-boundary", modelConfidence = "model-confidence", smoothedMask = "smoothed-mask"
    }

    /// The SEG written in the same run, referenced from each ROI (R-RT-05).
    public struct SegmentationReference: Sendable, Equatable {
        public var sopInstanceUID: String
        /// Segment number per label.
        public var segmentNumbers: [Int: Int]

        public init(sopInstanceUID: String, segmentNumbers: [Int: Int]) {
            self.sopInstanceUID = sopInstanceUID
            self.segmentNumbers = segmentNumbers
        }
    }

    /// Largest Contour Data value length that survives transcoding to explicit VR (2-byte length).
    static let maximumContourDataBytes = 65_534

    public static func write(labels: LabelVolume, series: ReferencedSeries, structures: [StructureDescription],
                             algorithm: AlgorithmIdentification, options: RTStructOptions = RTStructOptions(),
                             segmentation: SegmentationReference? = nil, confidence: [Float16]? = nil, to url: URL) throws -> Result {
        try series.validateForOutput(url.path)
        try series.validateGrid(labels, output: url.path)
        if let confidence, confidence.count != labels.voxels.count {
            throw DICOMExportError(.invalidDescription, url.path, "the confidence map has \(confidence.count) voxels, the label map \(labels.voxels.count)")
        }
        guard !structures.isEmpty else { throw DICOMExportError(.invalidDescription, url.path, "no structures to write") }
        for s in structures where s.name.isEmpty || s.name.utf8.count > 64 {
            throw DICOMExportError(.invalidDescription, url.path, "ROI name '\(s.name)' must be 1–64 characters")
        }
        let b = DatasetBuilder()
        let (date, time) = SegmentationWriter.dateTime(Date())
        let seriesUID = options.uids.make("rtstruct-series"), sopUID = options.uids.make("rtstruct-sop")
        try series.sourceHeader.copy(into: b, tags: SourceAttributes.copied)
        for tag in SourceAttributes.type2 where !(try series.sourceHeader.has(tag)) { try b.put(tag, "") }
        if let charset = try series.sourceHeader.string("0008,0005"), !charset.isEmpty { try b.put("0008,0005", charset) }
        try b.put("0020,000d", series.studyInstanceUID)
        try b.put("0020,0052", series.frameOfReferenceUID)
        try b.put("0008,0016", "1.2.840.10008.5.1.4.1.1.481.3")
        try b.put("0008,0018", sopUID)
        try b.put("0008,0012", date)
        try b.put("0008,0013", time)
        try b.put("0008,0060", "RTSTRUCT")
        try b.put("0020,000e", seriesUID)
        try b.put("0020,0011", String(options.seriesNumber))
        try b.put("0008,103e", options.seriesDescription)
        try b.put("0008,1070", "")
        try b.put("0008,0070", algorithm.manufacturer)
        try b.put("0008,1090", algorithm.name)
        try b.put("0018,1000", algorithm.deviceSerialNumber)
        try b.put("0018,1020", algorithm.softwareVersions)
        try b.put("0020,0013", "1")
        try b.put("3006,0002", options.structureSetLabel)
        try b.put("3006,0004", options.structureSetLabel)
        if let note = series.repairNote { try b.put("3006,0006", String(note.prefix(1024))) }  // StructureSetDescription (ST)
        try b.put("3006,0008", date)
        try b.put("3006,0009", time)
        try b.put("300e,0002", "UNAPPROVED")
        // References: FoR → study → series → every slice.
        let frame = "3006,0010[0]"
        try b.put("\(frame)/0020,0052", series.frameOfReferenceUID)
        try b.put("\(frame)/3006,0012[0]/0008,1150", "1.2.840.10008.3.1.2.3.1")
        try b.put("\(frame)/3006,0012[0]/0008,1155", series.studyInstanceUID)
        let referencedSeries = "\(frame)/3006,0012[0]/3006,0014[0]"
        try b.put("\(referencedSeries)/0020,000e", series.seriesInstanceUID)
        for (i, slice) in series.slices.enumerated() {
            try b.put("\(referencedSeries)/3006,0016[\(i)]/0008,1150", slice.sopClassUID)
            try b.put("\(referencedSeries)/3006,0016[\(i)]/0008,1155", slice.sopInstanceUID)
        }
        // ROIs: each structure cleaned (islands, holes) and contoured on its own, in parallel; then written in order.
        let traced = try trace(labels: labels, series: series, structures: structures, options: options, confidence: confidence, output: url.path)
        var result = Result(seriesInstanceUID: seriesUID, sopInstanceUID: sopUID, contours: [:], emptyROIs: [])
        result.contourSource = options.contours == .exact ? .voxelBoundary : confidence == nil ? .smoothedMask : .modelConfidence
        for (r, s) in structures.enumerated() {
            let number = r + 1
            let roi = "3006,0020[\(r)]"
            try b.put("\(roi)/3006,0022", String(number))
            try b.put("\(roi)/3006,0024", series.frameOfReferenceUID)
            try b.put("\(roi)/3006,0026", s.name)
            try b.put("\(roi)/3006,0036", "AUTOMATIC")
            try b.put("\(roi)/3006,0038", "\(algorithm.name) \(algorithm.version)")
            if let segmentation, let segment = segmentation.segmentNumbers[s.label] {
                try b.put("\(roi)/0008,1156[0]/0008,1150", "1.2.840.10008.5.1.4.1.1.66.4")
                try b.put("\(roi)/0008,1156[0]/0008,1155", segmentation.sopInstanceUID)
                try b.put("\(roi)/0008,1156[0]/0062,000b", String(segment))
            }
            let contourItem = "3006,0039[\(r)]"
            try b.put("\(contourItem)/3006,0084", String(number))
            try b.put("\(contourItem)/3006,002a", "\(s.color.x)\\\(s.color.y)\\\(s.color.z)")
            let contours = traced[r].contours
            for (c, contour) in contours.enumerated() {
                let slice = series.slices[contour.slice]
                let item = "\(contourItem)/3006,0040[\(c)]"
                try b.put("\(item)/3006,0048", String(c + 1))
                try b.put("\(item)/3006,0016[0]/0008,1150", slice.sopClassUID)
                try b.put("\(item)/3006,0016[0]/0008,1155", slice.sopInstanceUID)
                try b.put("\(item)/3006,0042", "CLOSED_PLANAR")
                try b.put("\(item)/3006,0046", String(contour.points))
                try b.put("\(item)/3006,0050", contour.text)
            }
            let points = contours.reduce(0) { $0 + $1.points }
            result.contours[s.label] = contours.count
            result.points[s.label] = points
            result.cleanup[s.label] = traced[r].cleanup
            if let cleaned = traced[r].cleaned { result.cleaned[s.label] = cleaned }
            if contours.isEmpty { result.emptyROIs.append(s.label) }
            if points > options.pointBudgetPerROI {
                result.warnings.append("RTSTRUCT_POINT_BUDGET: ROI \(s.name) has \(points) contour points (budget \(options.pointBudgetPerROI) per ROI)")
            }
            let observation = "3006,0080[\(r)]"
            try b.put("\(observation)/3006,0082", String(number))
            try b.put("\(observation)/3006,0084", String(number))
            try b.put("\(observation)/3006,00a4", s.interpretedType)
            try b.put("\(observation)/3006,00a6", "")
        }
        let total = result.points.values.reduce(0, +)
        if total > options.pointBudgetPerFile {
            result.warnings.append("RTSTRUCT_POINT_BUDGET: \(total) contour points in the structure set (budget \(options.pointBudgetPerFile) per file)")
        }
        if options.strictPointBudget, let first = result.warnings.first {
            throw DICOMExportError(.pointBudgetExceeded, url.path, String(first.dropFirst("RTSTRUCT_POINT_BUDGET: ".count))
                                   + (result.warnings.count > 1 ? " (and \(result.warnings.count - 1) more)" : ""))
        }
        try b.save(to: url, implicitVR: true)
        return result
    }

    /// What the contours of one structure are drawn from: its voxels in a box one voxel larger than the
    /// structure on every side (origin `x0, y0, z0` in the label map, may be −1), islands left out and holes
    /// filled as the options say. Output verification compares the RTSTRUCT with this, not with the raw map.
    public struct CleanedStructure: Sendable {
        public var mask: [Bool]
        public var x0: Int, y0: Int, z0: Int
        public var width: Int, height: Int, depth: Int
        public var counts: MaskCleanup.Counts
    }

    /// A ``CleanedStructure`` packed 64 voxels to a word: the writer hands these to the output check, which then
    /// compares with exactly what was contoured without cleaning every structure a second time.
    public struct PackedStructure: Sendable, Equatable {
        var words: [UInt64]
        var x0: Int, y0: Int, z0: Int
        var width: Int, height: Int, depth: Int
        var counts: MaskCleanup.Counts

        init(_ c: CleanedStructure) {
            var words = [UInt64](repeating: 0, count: (c.mask.count + 63) / 64)
            for i in c.mask.indices where c.mask[i] { words[i >> 6] |= 1 << UInt64(i & 63) }
            self.words = words
            (x0, y0, z0, width, height, depth, counts) = (c.x0, c.y0, c.z0, c.width, c.height, c.depth, c.counts)
        }

        public func unpacked() -> CleanedStructure {
            let count = width * height * depth
            var mask = [Bool](repeating: false, count: count)
            for i in 0..<count where words[i >> 6] & (1 << UInt64(i & 63)) != 0 { mask[i] = true }
            return CleanedStructure(mask: mask, x0: x0, y0: y0, z0: z0, width: width, height: height, depth: depth, counts: counts)
        }
    }

    /// Cleaned structures are kept for the output check while their packed boxes take at most four bytes per voxel
    /// of the label map (twice the map's own size: 25 structures each spanning a whole 512×512×20 CT take 27.7 bits
    /// per voxel with their one-voxel padding); beyond that the check cleans again (memory over time).
    static func keepsCleaned(boxes: [LabelBoxes.Box3], mapVoxels: Int) -> Bool {
        let bits = boxes.reduce(0) { $0 + $1.paddedSize.x * $1.paddedSize.y * $1.paddedSize.z }
        return bits <= 32 * mapVoxels
    }

    /// The cleaned mask of label value `label`, given its bounding box in the map (voxel indices, inclusive; the
    /// caller's own pass over the map finds it — no scan per structure).
    public static func cleanedStructure(labels: LabelVolume, label: UInt16, lower: SIMD3<Int>, upper: SIMD3<Int>, structureLabel: Int,
                                        voxelMM3: Double, options: RTStructOptions) -> CleanedStructure {
        cleanedStructure(labels: labels, label: label, box: .init(minX: lower.x, minY: lower.y, minZ: lower.z, maxX: upper.x, maxY: upper.y, maxZ: upper.z),
                         structureLabel: structureLabel, voxelMM3: voxelMM3, options: options)
    }

    static func cleanedStructure(labels: LabelVolume, label: UInt16, box: LabelBoxes.Box3, structureLabel: Int, voxelMM3: Double,
                                 options: RTStructOptions) -> CleanedStructure {
        // The box plus one voxel on every side: contours close, and the background around the structure is
        // one component that reaches the border (so it is never taken for a hole).
        let (x0, y0, z0) = (box.paddedOrigin.x, box.paddedOrigin.y, box.paddedOrigin.z)
        let (w, h, d) = (box.paddedSize.x, box.paddedSize.y, box.paddedSize.z)
        var mask = [Bool](repeating: false, count: w * h * d)
        labels.voxels.withUnsafeBufferPointer { v in
            for z in max(z0, 0)..<min(z0 + d, labels.shape.z) {
                for y in max(y0, 0)..<min(y0 + h, labels.shape.y) {
                    let source = (z * labels.shape.y + y) * labels.shape.x, target = ((z - z0) * h + (y - y0)) * w
                    for x in max(x0, 0)..<min(x0 + w, labels.shape.x) where v[source + x] == label { mask[target + x - x0] = true }
                }
            }
        }
        let island = options.minimumIslandMM3ByLabel[structureLabel] ?? options.minimumIslandMM3
        let counts = MaskCleanup.clean(&mask, depth: d, rows: h, columns: w, minimumIslandVoxels: Int((island / voxelMM3).rounded(.up)),
                                       maximumHoleVoxels: Int((options.fillHolesMM3 / voxelMM3).rounded(.down)))
        return CleanedStructure(mask: mask, x0: x0, y0: y0, z0: z0, width: w, height: h, depth: d, counts: counts)
    }

    /// One structure's contours, in slice order: the slice index, the Contour Data text and its point count.
    struct Traced: Sendable {
        var contours: [(slice: Int, text: String, points: Int)] = []
        var cleanup = MaskCleanup.Counts()
        var cleaned: PackedStructure?
    }

    /// Cleans and contours every structure, structures in parallel (each on its own padded 3-D bounding box).
    static func trace(labels: LabelVolume, series: ReferencedSeries, structures: [StructureDescription], options: RTStructOptions,
                      confidence: [Float16]? = nil, output: String) throws -> [Traced] {
        let values = try structures.map { try $0.labelValue(output: output) }
        let boxes = LabelBoxes.perVolume(labels)
        let voxelMM3 = series.pixelSpacing.x * series.pixelSpacing.y * series.spacingAlongNormal
        let pixelTolerance = options.simplificationToleranceMM / min(series.pixelSpacing.x, series.pixelSpacing.y)
        let keep = keepsCleaned(boxes: values.compactMap { boxes[$0] }, mapVoxels: labels.voxels.count)
        return try Parallel.map(structures.count) { r -> Traced in
                guard let box = boxes[values[r]] else { return Traced() }  // absent from the map: an empty ROI
                let cleaned = cleanedStructure(labels: labels, label: values[r], box: box, structureLabel: structures[r].label,
                                               voxelMM3: voxelMM3, options: options)
                let (mask, x0, y0, z0, w, h, d) = (cleaned.mask, cleaned.x0, cleaned.y0, cleaned.z0, cleaned.width, cleaned.height, cleaned.depth)
                var traced = Traced()
                traced.cleanup = cleaned.counts
                if keep { traced.cleaned = PackedStructure(cleaned) }
                // Contour only what is left: the cleaned structure's in-plane box plus one pixel.
                var lo = SIMD2(Int.max, Int.max), hi = SIMD2(-1, -1)
                for i in mask.indices where mask[i] {
                    let p = SIMD2(i % w, (i / w) % h)
                    lo = pointwiseMin(lo, p)
                    hi = pointwiseMax(hi, p)
                }
                guard hi.x >= 0 else { return traced }
                // A margin wide enough for the smoothing kernel (smooth) or the closing edge (exact).
                let margin = options.contours == .smooth ? 3 : 1
                lo = lo &- margin
                hi = hi &+ margin
                let (pw, ph) = (hi.x - lo.x + 1, hi.y - lo.y + 1)
                let offset = SIMD2(Double(x0 + lo.x), Double(y0 + lo.y))
                for z in 1..<(d - 1) {
                    var plane = [Bool](repeating: false, count: pw * ph)
                    var any = false
                    for y in max(0, -lo.y)..<min(ph, h - lo.y) {
                        let source = (z * h + lo.y + y) * w + lo.x
                        for x in max(0, -lo.x)..<min(pw, w - lo.x) where mask[source + x] {
                            plane[y * pw + x] = true
                            any = true
                        }
                    }
                    guard any else { continue }
                    let k = z0 + z
                    var polygons: [Polygon]
                    if options.contours == .smooth {
                        let field: [Float]
                        if let confidence {
                            field = confidenceField(plane, confidence: confidence, shape: labels.shape, slice: k,
                                                    origin: SIMD2(x0 + lo.x, y0 + lo.y), rows: ph, columns: pw)
                        } else {
                            field = plane.map { $0 ? 1 : 0 }
                        }
                        polygons = MarchingSquares.isoContours(field: MarchingSquares.smoothed(field: field, rows: ph, columns: pw, sigma: RTStructOptions.smoothingSigmaPixels),
                                                               rows: ph, columns: pw, level: 0.5,
                                                               tolerance: max(pixelTolerance, RTStructOptions.smoothToleranceMinimumPixels))
                        // Smoothing must not lose what it cannot draw (specks, one-pixel lines, fragments): a slice
                        // whose smooth contours cover its mask poorly keeps its exact contours.
                        let drawn = MarchingSquares.rasterize(polygons, rows: ph, columns: pw)
                        var both = 0, total = 0
                        for i in plane.indices {
                            if plane[i] { total += 1 }
                            if drawn[i] { total += 1 }
                            if plane[i] && drawn[i] { both += 2 }
                        }
                        if total > 0 && Double(both) / Double(total) < RTStructOptions.smoothMinimumSliceDice {
                            polygons = MarchingSquares.contours(mask: plane, rows: ph, columns: pw, tolerance: pixelTolerance)
                        }
                    } else {
                        polygons = MarchingSquares.contours(mask: plane, rows: ph, columns: pw, tolerance: pixelTolerance)
                    }
                    for local in options.holes == .keyhole ? Keyhole.merge(polygons) : polygons {
                        let polygon = Polygon(points: local.points.map { $0 + offset })
                        let data = try contourData(polygon, slice: series.slices[k], series: series, output: output)
                        traced.contours.append((k, data.text, data.points))
                    }
                }
                return traced
        }
    }

    /// The field a structure's smooth contours are drawn from on one slice, given the model's confidence: 0.5 +
    /// ½·c inside the (cleaned) structure and 0.5 − ½·c outside it, c = min(confidence / 4, 1) but at least 0.02,
    /// so the level 0.5 lies where the class's logit margin over its strongest rival crosses zero (sub-voxel,
    /// from the model: exact where the rival across the boundary is the runner-up) and the field is the
    /// plain mask (0/1) wherever the model is sure (a margin of 4 logits, 98 % against 2 %). Voxels the cleanup
    /// added or left out follow the cleaned mask, at the confidence the model gave them.
    static func confidenceField(_ plane: [Bool], confidence: [Float16], shape: VolumeShape, slice k: Int, origin: SIMD2<Int>,
                                rows: Int, columns: Int) -> [Float] {
        var field = [Float](repeating: 0, count: plane.count)
        for y in 0..<rows {
            let gy = origin.y + y
            for x in 0..<columns {
                let gx = origin.x + x
                var c: Float = 1
                if gx >= 0, gy >= 0, gx < shape.x, gy < shape.y {
                    c = min(max(Float(confidence[(k * shape.y + gy) * shape.x + gx]) / confidenceScale, 0.02), 1)
                }
                field[y * columns + x] = plane[y * columns + x] ? 0.5 + 0.5 * c : 0.5 - 0.5 * c
            }
        }
        return field
    }

    /// The margin (in logits) from which a voxel counts as certain in ``confidenceField``.
    static let confidenceScale: Float = 4

    /// Contour Data for a polygon in pixel coordinates of `slice`: LPS points through that slice's own
    /// position (exact for sheared stacks), each value ≤ 16 characters. Simplifies further (collinear,
    /// then growing tolerance) if the text would exceed the explicit-VR value length.
    static func contourData(_ polygon: Polygon, slice: ReferencedSeries.Slice, series: ReferencedSeries,
                            output: String) throws -> (text: String, points: Int) {
        var points = polygon.points
        var tolerance = 0.1
        while true {
            let text = points.map { p -> String in
                let lps = slice.position + p.x * series.pixelSpacing.y * series.rowDirection + p.y * series.pixelSpacing.x * series.columnDirection
                return [lps.x, lps.y, lps.z].map(DecimalString.format).joined(separator: "\\")
            }.joined(separator: "\\")
            if text.utf8.count <= maximumContourDataBytes { return (text, points.count) }
            guard tolerance < 8 else {
                throw DICOMExportError(.contourTooLong, output, "a contour of \(points.count) points does not fit in 65,534 bytes")
            }
            points = MarchingSquares.simplify(polygon.points, tolerance: tolerance)
            tolerance *= 2
        }
    }
}
