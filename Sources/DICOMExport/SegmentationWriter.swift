import Foundation
import VolumeGeometry

/// Attributes copied from the source so that Patient and Study entities stay consistent (R-SEG-05).
enum SourceAttributes {
    /// Patient, Study, character set and position reference (copied when present).
    static let copied = [
        "0010,0010", "0010,0020", "0010,0021", "0010,0030", "0010,0040", "0010,1010", "0010,1020", "0010,1030",
        "0010,2160", "0010,4000",                                      // Patient
        "0020,000d", "0008,0020", "0008,0030", "0008,0090", "0020,0010", "0008,0050", "0008,1030",  // Study
        "0020,1040",                                                   // PositionReferenceIndicator
    ]
    /// Type 2 attributes written empty when the source lacks them (never invented).
    static let type2 = ["0010,0010", "0010,0020", "0010,0030", "0010,0040", "0008,0020", "0008,0030", "0008,0090",
                        "0020,0010", "0008,0050", "0020,1040"]
}

/// Options of a SEG.
public struct SegmentationOptions: Sendable, Equatable {
    public var seriesNumber: Int
    public var seriesDescription: String
    public var contentLabel: String
    /// false: omit empty frames (keeping one per segment so every segment stays discoverable, R-SEG-07).
    public var emitAllFrames: Bool
    /// Name-based (re-runs replace) or fresh UIDs.
    public var uids: OutputUIDs
    /// `binary`: Segmentation Storage, one 1-bit frame per segment and slice. `labelmap`: Label Map Segmentation
    /// Storage (…66.7), one 8- or 16-bit frame per slice whose pixels are segment numbers — a fraction of the
    /// size for many structures; read by highdicom ≥ 0.23 and dcmqi, not yet by every PACS viewer.
    public enum Encoding: String, Sendable, Equatable, CaseIterable {
        case binary, labelmap
    }
    public var encoding: Encoding

    public init(seriesNumber: Int = 901, seriesDescription: String = "nnseg segmentation (AI generated)", contentLabel: String = "NNSEG",
                emitAllFrames: Bool = false, uids: OutputUIDs = .fresh, encoding: Encoding = .binary) {
        self.seriesNumber = seriesNumber
        self.seriesDescription = seriesDescription
        self.contentLabel = contentLabel
        self.emitAllFrames = emitAllFrames
        self.uids = uids
        self.encoding = encoding
    }
}

/// Writes a BINARY DICOM Segmentation (spec §2) for a label map on the source grid: one segment per
/// described label, frames on the source slices with plane position and derivation references,
/// segment-major order, Dimension Index [ReferencedSegmentNumber, ImagePositionPatient].
public enum SegmentationWriter {
    public struct Result: Sendable, Equatable {
        public var seriesInstanceUID: String
        public var sopInstanceUID: String
        public var frames: Int
        /// Labels described but absent from the map (written with one empty frame).
        public var emptySegments: [Int]
    }

    public static func write(labels: LabelVolume, series: ReferencedSeries, structures: [StructureDescription],
                             algorithm: AlgorithmIdentification, options: SegmentationOptions = SegmentationOptions(),
                             to url: URL) throws -> Result {
        try series.validateForOutput(url.path)
        try series.validateGrid(labels, output: url.path)
        guard !structures.isEmpty else { throw DICOMExportError(.invalidDescription, url.path, "no structures to write") }
        for s in structures {
            guard s.label > 0 else { throw DICOMExportError(.invalidDescription, url.path, "label \(s.label) cannot be a segment") }
            guard !s.name.isEmpty, s.name.utf8.count <= 64 else {
                throw DICOMExportError(.invalidDescription, url.path, "segment label '\(s.name)' must be 1–64 characters")
            }
        }
        let b = DatasetBuilder()
        let now = Date()
        let (date, time) = Self.dateTime(now)
        let seriesUID = options.uids.make("seg-series"), sopUID = options.uids.make("seg-sop")
        // Patient / Study / FoR from the first source instance.
        try series.sourceHeader.copy(into: b, tags: SourceAttributes.copied)
        for tag in SourceAttributes.type2 where !(try series.sourceHeader.has(tag)) { try b.put(tag, "") }
        try b.put("0020,000d", series.studyInstanceUID)
        try b.put("0020,0052", series.frameOfReferenceUID)
        if let charset = try series.sourceHeader.string("0008,0005"), !charset.isEmpty {
            try b.put("0008,0005", charset)  // Type 1C: only when the source declares one
        }
        // SOP common, series, equipment.
        let labelMap = options.encoding == .labelmap
        try b.put("0008,0016", labelMap ? "1.2.840.10008.5.1.4.1.1.66.7" : "1.2.840.10008.5.1.4.1.1.66.4")
        try b.put("0008,0018", sopUID)
        try b.put("0008,0012", date)
        try b.put("0008,0013", time)
        try b.put("0008,0060", "SEG")
        try b.put("0020,000e", seriesUID)
        try b.put("0020,0011", String(options.seriesNumber))
        try b.put("0008,103e", options.seriesDescription)
        try b.put("0008,0021", date)
        try b.put("0008,0031", time)
        try b.put("0008,0070", algorithm.manufacturer)
        try b.put("0008,1090", algorithm.name)
        try b.put("0018,1000", algorithm.deviceSerialNumber)
        try b.put("0018,1020", algorithm.softwareVersions)
        // General image, image pixel, segmentation image.
        try b.put("0020,0013", "1")
        try b.put("0008,0023", date)
        try b.put("0008,0033", time)
        try b.put("0008,0008", "DERIVED\\PRIMARY")
        if let note = series.repairNote { try b.put("0008,2111", String(note.prefix(1024))) }  // DerivationDescription (ST)
        try b.put("0028,0002", "1")
        try b.put("0028,0004", "MONOCHROME2")
        try b.put("0028,0010", String(series.rows))
        try b.put("0028,0011", String(series.columns))
        let bitsAllocated = labelMap ? (structures.count <= 255 ? 8 : 16) : 1
        try b.put("0028,0100", String(bitsAllocated))
        try b.put("0028,0101", String(bitsAllocated))
        try b.put("0028,0102", String(bitsAllocated - 1))
        try b.put("0028,0103", "0")
        try b.put("0028,2110", series.isLossy ? "01" : "00")
        try b.put("0062,0001", labelMap ? "LABELMAP" : "BINARY")
        if !labelMap { try b.put("0062,0013", "NO") }
        try b.put("0070,0080", options.contentLabel)
        try b.put("0070,0081", "Segmentation by \(algorithm.name) \(algorithm.version)")
        try b.put("0070,0084", "")
        // Segments.
        for (i, s) in structures.enumerated() {
            let item = "0062,0002[\(i)]"
            try b.put("\(item)/0062,0004", String(i + 1))
            try b.put("\(item)/0062,0005", s.name)
            try b.put("\(item)/0062,0008", "AUTOMATIC")
            try b.put("\(item)/0062,0009", algorithm.name)
            try putCode(b, "\(item)/0062,0003[0]", s.category)
            try putCode(b, "\(item)/0062,000f[0]", s.type)
            if let m = s.modifier { try putCode(b, "\(item)/0062,000f[0]/0062,0011[0]", m) }
            try b.put("\(item)/0062,000d", CIELab.dicom(s.color).map(String.init).joined(separator: "\\"))
            let algo = "\(item)/0062,0007[0]"
            try putCode(b, "\(algo)/0066,002f[0]", .artificialIntelligence)
            try b.put("\(algo)/0066,0036", algorithm.name)
            try b.put("\(algo)/0066,0031", algorithm.version)
            if !algorithm.parameters.isEmpty { try b.put("\(algo)/0066,0032", algorithm.parameters) }
        }
        let sliceSize = series.rows * series.columns
        let boxes = LabelBoxes.perSlice(labels)
        if labelMap {
            try writeLabelMapFrames(b, labels: labels, series: series, structures: structures, boxes: boxes, bits: bitsAllocated, options: options, output: url.path)
            try b.save(to: url, implicitVR: false)
            let emptySegments = try structures.filter { s in
                let value = try s.labelValue(output: url.path)
                return !boxes.contains { $0[value] != nil }
            }.map(\.label)
            return Result(seriesInstanceUID: seriesUID, sopInstanceUID: sopUID, frames: series.slices.count, emptySegments: emptySegments)
        }
        // Frames: segment-major, position ascending along the normal (= volume order).
        var frames: [(segment: Int, slice: Int)] = []
        var emptySegments: [Int] = []
        for (i, s) in structures.enumerated() {
            let label = try s.labelValue(output: url.path)
            var present: [Int] = []
            for k in 0..<series.slices.count where options.emitAllFrames || boxes[k][label] != nil { present.append(k) }
            if present.isEmpty {
                emptySegments.append(s.label)
                present = [series.slices.count / 2]
            }
            frames += present.map { (i + 1, $0) }
        }
        try b.put("0028,0008", String(frames.count))
        // Shared functional groups: pixel measures and plane orientation.
        try putSharedGroups(b, series)
        // Dimension organisation.
        let dimensionUID = options.uids.make("seg-dimension-organization")
        try b.put("0020,9221[0]/0020,9164", dimensionUID)
        try b.put("0020,9222[0]/0020,9164", dimensionUID)
        try b.put("0020,9222[0]/0020,9165", "(0062,000B)")
        try b.put("0020,9222[0]/0020,9167", "(0062,000A)")
        try b.put("0020,9222[0]/0020,9421", "ReferencedSegmentNumber")
        try b.put("0020,9222[1]/0020,9164", dimensionUID)
        try b.put("0020,9222[1]/0020,9165", "(0020,0032)")
        try b.put("0020,9222[1]/0020,9167", "(0020,9113)")
        try b.put("0020,9222[1]/0020,9421", "ImagePositionPatient")
        // Per-frame functional groups and packed pixels (1 bit, LSB first, frames concatenated bit-wise).
        var bits = [UInt8](repeating: 0, count: (frames.count * sliceSize + 7) / 8)
        for (f, frame) in frames.enumerated() {
            let item = "5200,9230[\(f)]"
            let slice = series.slices[frame.slice]
            try b.put("\(item)/0020,9111[0]/0020,9157", "\(frame.segment)\\\(frame.slice + 1)")
            try b.put("\(item)/0020,9113[0]/0020,0032", [slice.position.x, slice.position.y, slice.position.z])
            try b.put("\(item)/0062,000a[0]/0062,000b", String(frame.segment))
            try putDerivation(b, item: item, slice: slice)
            let label = try structures[frame.segment - 1].labelValue(output: url.path)
            guard let box = boxes[frame.slice][label] else { continue }
            let start = frame.slice * sliceSize, bitBase = f * sliceSize
            for y in box.minY...box.maxY {
                for x in box.minX...box.maxX where labels.voxels[start + y * series.columns + x] == label {
                    let bit = bitBase + y * series.columns + x
                    bits[bit >> 3] |= 1 << UInt8(bit & 7)
                }
            }
        }
        if bits.count % 2 == 1 { bits.append(0) }
        try b.pixelData(bits, bitsAllocated: 1)
        // Common instance reference: every source instance.
        try putCommonInstanceReference(b, series)
        try b.save(to: url, implicitVR: false)
        return Result(seriesInstanceUID: seriesUID, sopInstanceUID: sopUID, frames: frames.count, emptySegments: emptySegments)
    }

    /// LABELMAP: one frame per source slice, pixels = segment number (structures in order, 1…n), 0 elsewhere;
    /// dimension index: the plane position only.
    static func writeLabelMapFrames(_ b: DatasetBuilder, labels: LabelVolume, series: ReferencedSeries, structures: [StructureDescription],
                                    boxes: [[UInt16: LabelBoxes.Box]], bits: Int, options: SegmentationOptions, output: String) throws {
        var segmentOf = [UInt16](repeating: 0, count: 65_536)
        for (i, s) in structures.enumerated() { segmentOf[Int(try s.labelValue(output: output))] = UInt16(i + 1) }
        let slices = series.slices.count, sliceSize = series.rows * series.columns
        try b.put("0028,0008", String(slices))
        try putSharedGroups(b, series)
        let dimensionUID = options.uids.make("seg-dimension-organization")
        try b.put("0020,9221[0]/0020,9164", dimensionUID)
        try b.put("0020,9222[0]/0020,9164", dimensionUID)
        try b.put("0020,9222[0]/0020,9165", "(0020,0032)")
        try b.put("0020,9222[0]/0020,9167", "(0020,9113)")
        try b.put("0020,9222[0]/0020,9421", "ImagePositionPatient")
        let bytesPerPixel = bits / 8
        var pixels = [UInt8](repeating: 0, count: slices * sliceSize * bytesPerPixel)
        for (k, slice) in series.slices.enumerated() {
            let item = "5200,9230[\(k)]"
            try b.put("\(item)/0020,9111[0]/0020,9157", String(k + 1))
            try b.put("\(item)/0020,9113[0]/0020,0032", [slice.position.x, slice.position.y, slice.position.z])
            try putDerivation(b, item: item, slice: slice)
            guard !boxes[k].isEmpty else { continue }
            let start = k * sliceSize
            for i in 0..<sliceSize {
                let segment = segmentOf[Int(labels.voxels[start + i])]
                guard segment != 0 else { continue }
                let at = (start + i) * bytesPerPixel
                pixels[at] = UInt8(segment & 0xFF)
                if bytesPerPixel == 2 { pixels[at + 1] = UInt8(segment >> 8) }
            }
        }
        if pixels.count % 2 == 1 { pixels.append(0) }
        try b.pixelData(pixels, bitsAllocated: bits)
        try putCommonInstanceReference(b, series)
    }

    /// Shared functional groups: pixel measures (spacing along the normal) and plane orientation.
    static func putSharedGroups(_ b: DatasetBuilder, _ series: ReferencedSeries) throws {
        let shared = "5200,9229[0]"
        try b.put("\(shared)/0028,9110[0]/0028,0030", [series.pixelSpacing.x, series.pixelSpacing.y])
        try b.put("\(shared)/0028,9110[0]/0018,0050", [series.sliceThickness ?? series.geometry.spacing.z])
        try b.put("\(shared)/0028,9110[0]/0018,0088", [series.spacingAlongNormal])
        try b.put("\(shared)/0020,9116[0]/0020,0037", [series.rowDirection.x, series.rowDirection.y, series.rowDirection.z,
                                                        series.columnDirection.x, series.columnDirection.y, series.columnDirection.z])
    }

    /// A frame's Derivation Image: its source slice, spatial locations preserved.
    static func putDerivation(_ b: DatasetBuilder, item: String, slice: ReferencedSeries.Slice) throws {
        let derivation = "\(item)/0008,9124[0]"
        try putCode(b, "\(derivation)/0008,9215[0]", CodedConcept("113076", "DCM", "Segmentation"))
        try b.put("\(derivation)/0008,2112[0]/0008,1150", slice.sopClassUID)
        try b.put("\(derivation)/0008,2112[0]/0008,1155", slice.sopInstanceUID)
        try b.put("\(derivation)/0008,2112[0]/0028,135a", "YES")
        try putCode(b, "\(derivation)/0008,2112[0]/0040,a170[0]", CodedConcept("121322", "DCM", "Source image for image processing operation"))
    }

    /// Common Instance Reference: every source instance.
    static func putCommonInstanceReference(_ b: DatasetBuilder, _ series: ReferencedSeries) throws {
        try b.put("0008,1115[0]/0020,000e", series.seriesInstanceUID)
        for (i, slice) in series.slices.enumerated() {
            try b.put("0008,1115[0]/0008,114a[\(i)]/0008,1150", slice.sopClassUID)
            try b.put("0008,1115[0]/0008,114a[\(i)]/0008,1155", slice.sopInstanceUID)
        }
    }

    static func putCode(_ b: DatasetBuilder, _ item: String, _ code: CodedConcept) throws {
        try b.put("\(item)/0008,0100", code.value)
        try b.put("\(item)/0008,0102", code.scheme)
        try b.put("\(item)/0008,0104", code.meaning)
    }

    static func dateTime(_ date: Date) -> (String, String) {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd"
        let d = f.string(from: date)
        f.dateFormat = "HHmmss"
        return (d, f.string(from: date))
    }
}
