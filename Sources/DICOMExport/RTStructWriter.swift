import Contours
import Foundation
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

    public init(seriesNumber: Int = 902, seriesDescription: String = "nnseg structures (AI generated)", structureSetLabel: String = "NNSEG",
                simplificationToleranceMM: Double = 0, uids: OutputUIDs = .fresh) {
        self.seriesNumber = seriesNumber
        self.seriesDescription = seriesDescription
        self.structureSetLabel = structureSetLabel
        self.simplificationToleranceMM = simplificationToleranceMM
        self.uids = uids
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
                             segmentation: SegmentationReference? = nil, to url: URL) throws -> Result {
        try series.validateForOutput(url.path)
        try series.validateGrid(labels, output: url.path)
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
        // ROIs.
        let sliceSize = series.rows * series.columns
        let boxes = LabelBoxes.perSlice(labels)
        let pixelTolerance = options.simplificationToleranceMM / min(series.pixelSpacing.x, series.pixelSpacing.y)
        var counts: [Int: Int] = [:]
        var empty: [Int] = []
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
            let label = try s.labelValue(output: url.path)
            var c = 0
            for (k, slice) in series.slices.enumerated() {
                guard let box = boxes[k][label] else { continue }
                // Trace only the label's bounding box (plus a margin of one pixel), then shift back.
                let x0 = max(box.minX - 1, 0), y0 = max(box.minY - 1, 0)
                let x1 = min(box.maxX + 1, series.columns - 1), y1 = min(box.maxY + 1, series.rows - 1)
                let w = x1 - x0 + 1, h = y1 - y0 + 1
                var mask = [Bool](repeating: false, count: w * h)
                let start = k * sliceSize
                for y in 0..<h { for x in 0..<w { mask[y * w + x] = labels.voxels[start + (y0 + y) * series.columns + x0 + x] == label } }
                let offset = SIMD2(Double(x0), Double(y0))
                for local in MarchingSquares.contours(mask: mask, rows: h, columns: w, tolerance: pixelTolerance) {
                    let polygon = Polygon(points: local.points.map { $0 + offset })
                    let data = try contourData(polygon, slice: slice, series: series, output: url.path)
                    let item = "\(contourItem)/3006,0040[\(c)]"
                    try b.put("\(item)/3006,0048", String(c + 1))
                    try b.put("\(item)/3006,0016[0]/0008,1150", slice.sopClassUID)
                    try b.put("\(item)/3006,0016[0]/0008,1155", slice.sopInstanceUID)
                    try b.put("\(item)/3006,0042", "CLOSED_PLANAR")
                    try b.put("\(item)/3006,0046", String(data.points))
                    try b.put("\(item)/3006,0050", data.text)
                    c += 1
                }
            }
            counts[s.label] = c
            if c == 0 { empty.append(s.label) }
            let observation = "3006,0080[\(r)]"
            try b.put("\(observation)/3006,0082", String(number))
            try b.put("\(observation)/3006,0084", String(number))
            try b.put("\(observation)/3006,00a4", s.interpretedType)
            try b.put("\(observation)/3006,00a6", "")
        }
        try b.save(to: url, implicitVR: true)
        return Result(seriesInstanceUID: seriesUID, sopInstanceUID: sopUID, contours: counts, emptyROIs: empty)
    }

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
