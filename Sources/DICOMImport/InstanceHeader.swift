/// Geometry and value transform of one frame (a classic single-frame image has exactly one).
public struct FrameHeader: Equatable, Sendable {
    /// 0-based frame number inside its object.
    public var frameIndex: Int
    /// Image Position (Patient): LPS centre of the first transmitted pixel, mm.
    public var imagePosition: SIMD3<Double>?
    /// Image Orientation (Patient): row direction X, then column direction Y.
    public var imageOrientation: (row: SIMD3<Double>, column: SIMD3<Double>)?
    /// Pixel Spacing: (row spacing, column spacing) in mm, in DICOM's order.
    public var pixelSpacing: SIMD2<Double>?
    public var sliceThickness: Double?
    public var spacingBetweenSlices: Double?
    public var rescaleSlope: Double
    public var rescaleIntercept: Double
    public var rescaleType: String?
    /// Stack ID of Enhanced objects (Frame Content), nil for classic images.
    public var stackID: String?

    public init(frameIndex: Int, imagePosition: SIMD3<Double>?, imageOrientation: (row: SIMD3<Double>, column: SIMD3<Double>)?,
                pixelSpacing: SIMD2<Double>?, sliceThickness: Double? = nil, spacingBetweenSlices: Double? = nil,
                rescaleSlope: Double = 1, rescaleIntercept: Double = 0, rescaleType: String? = nil, stackID: String? = nil) {
        self.frameIndex = frameIndex
        self.imagePosition = imagePosition
        self.imageOrientation = imageOrientation
        self.pixelSpacing = pixelSpacing
        self.sliceThickness = sliceThickness
        self.spacingBetweenSlices = spacingBetweenSlices
        self.rescaleSlope = rescaleSlope
        self.rescaleIntercept = rescaleIntercept
        self.rescaleType = rescaleType
        self.stackID = stackID
    }

    public static func == (a: FrameHeader, b: FrameHeader) -> Bool {
        a.frameIndex == b.frameIndex && a.imagePosition == b.imagePosition
            && a.imageOrientation?.row == b.imageOrientation?.row
            && a.imageOrientation?.column == b.imageOrientation?.column && a.pixelSpacing == b.pixelSpacing
            && a.sliceThickness == b.sliceThickness && a.spacingBetweenSlices == b.spacingBetweenSlices
            && a.rescaleSlope == b.rescaleSlope && a.rescaleIntercept == b.rescaleIntercept
            && a.rescaleType == b.rescaleType && a.stackID == b.stackID
    }
}

/// What nnseg needs from one DICOM instance's header: identity, pixel format and per-frame geometry.
/// Holds UIDs and technical attributes only — no patient name, ID or birth date.
public struct InstanceHeader: Sendable {
    public var path: String
    public var transferSyntaxUID: String
    public var hasMetaHeader: Bool

    public var sopClassUID: String
    /// SOP Instance UID; when the dataset's is empty, the file meta MediaStorageSOPInstanceUID (and
    /// ``sopInstanceUIDFromMeta`` is set — spec R-RD-03: such instances cannot be referenced by outputs).
    public var sopInstanceUID: String
    public var sopInstanceUIDFromMeta: Bool
    public var studyInstanceUID: String
    public var seriesInstanceUID: String
    public var frameOfReferenceUID: String
    public var modality: String
    public var manufacturer: String
    public var seriesDescription: String
    public var seriesNumber: Int?
    public var instanceNumber: Int?
    public var acquisitionNumber: Int?
    public var imageType: [String]
    public var echoNumbers: String
    public var sequenceName: String
    public var temporalPositionIdentifier: String
    public var gantryDetectorTilt: Double?
    public var lossyImageCompression: Bool
    public var hasModalityLUTSequence: Bool
    public var hasPixelData: Bool

    public var pixelFormat: PixelFormat
    public var frames: [FrameHeader]
    /// An attribute that cannot be used safely (a frame count beyond the limit, a position that is not a
    /// finite number of millimetres, …): the file is refused with it (``DICOMFile/checkComplete(_:)``)
    /// before anything is allocated or computed from the value.
    public var problem: DICOMImportError?

    /// The limit on |Image Position| (mm) of a plausible frame: a kilometre is no patient. Not a setting —
    /// no real scanner exceeds it; the limits real data may exceed are ``ReaderLimits``.
    public static let maximumCoordinate = 1e6

    /// Whether this object can contribute frames to an image volume (not SEG, RTSTRUCT, SR, …).
    public var isVolumeImage: Bool { hasPixelData && !SOPClass.isNonVolume(sopClassUID) }
}

/// SOP Class knowledge needed for reading.
public enum SOPClass {
    /// UID prefixes (whole components) of objects that are not image slices of a volume.
    static let nonVolumePrefixes: [[Substring]] = [
        "1.2.840.10008.5.1.4.1.1.66",   // Raw Data, Segmentation (66.4), Label Map SEG (66.7), Registration
        "1.2.840.10008.5.1.4.1.1.481",  // RT objects (RTSTRUCT 481.3, RTPLAN, RTDOSE…)
        "1.2.840.10008.5.1.4.1.1.88",   // Structured Reports, Key Object Selection
        "1.2.840.10008.5.1.4.1.1.11",   // Presentation States
        "1.2.840.10008.5.1.4.1.1.104",  // Encapsulated documents
        "1.2.840.10008.1.3.10",         // Media Storage Directory (DICOMDIR)
    ].map { $0.split(separator: ".") }

    public static func isNonVolume(_ uid: String) -> Bool {
        let parts = uid.split(separator: ".")
        return nonVolumePrefixes.contains { prefix in parts.count >= prefix.count && Array(parts.prefix(prefix.count)) == prefix }
    }

    /// Image Storage SOP classes whose instances must carry Pixel Data (CR, DX/MG/IO, CT, US, MR, SC, XA/RF,
    /// NM, PET, RT Image and their enhanced / legacy-converted forms).
    static let imageStoragePrefixes: [[Substring]] = [
        "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.3.1", "1.2.840.10008.5.1.4.1.1.4",
        "1.2.840.10008.5.1.4.1.1.6", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.12", "1.2.840.10008.5.1.4.1.1.20",
        "1.2.840.10008.5.1.4.1.1.128", "1.2.840.10008.5.1.4.1.1.130", "1.2.840.10008.5.1.4.1.1.481.1",
    ].map { $0.split(separator: ".") }

    /// True for an Image Storage SOP class (an instance of it without Pixel Data is incomplete).
    public static func isImageStorage(_ uid: String) -> Bool {
        if uid == "1.2.840.10008.5.1.4.1.1.4.2" { return false }  // MR Spectroscopy: no Pixel Data
        let parts = uid.split(separator: ".")
        return imageStoragePrefixes.contains { prefix in parts.count >= prefix.count && Array(parts.prefix(prefix.count)) == prefix }
    }

    /// Human name of the common SOP classes, for reports.
    public static func name(_ uid: String) -> String {
        switch uid {
        case "1.2.840.10008.5.1.4.1.1.2": return "CT Image"
        case "1.2.840.10008.5.1.4.1.1.2.1": return "Enhanced CT Image"
        case "1.2.840.10008.5.1.4.1.1.2.2": return "Legacy Converted Enhanced CT Image"
        case "1.2.840.10008.5.1.4.1.1.4": return "MR Image"
        case "1.2.840.10008.5.1.4.1.1.4.1": return "Enhanced MR Image"
        case "1.2.840.10008.5.1.4.1.1.4.4": return "Legacy Converted Enhanced MR Image"
        case "1.2.840.10008.5.1.4.1.1.128": return "PET Image"
        case "1.2.840.10008.5.1.4.1.1.7": return "Secondary Capture Image"
        case "1.2.840.10008.5.1.4.1.1.66.4": return "Segmentation"
        case "1.2.840.10008.5.1.4.1.1.66.7": return "Label Map Segmentation"
        case "1.2.840.10008.5.1.4.1.1.481.3": return "RT Structure Set"
        case "1.2.840.10008.5.1.4.1.1.481.2": return "RT Dose"
        case "1.2.840.10008.5.1.4.1.1.481.5": return "RT Plan"
        case "1.2.840.10008.1.3.10": return "Media Storage Directory"
        default: return uid.isEmpty ? "(no SOP Class)" : uid
        }
    }

    /// Transfer syntaxes whose decoding loses information.
    static let lossyTransferSyntaxes: Set<String> = [
        "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.203",
    ]
}

extension InstanceHeader {
    /// Reads the header of an opened file. Enhanced multi-frame objects get one ``FrameHeader`` per frame
    /// from their functional groups (per-frame first, then shared).
    init(file: DICOMFile, limits: ReaderLimits) {
        func text(_ tag: DICOMTag) -> String { file.string(tag) ?? "" }
        path = file.path
        transferSyntaxUID = file.transferSyntaxUID
        hasMetaHeader = file.hasMetaHeader
        let datasetClass = text(.sopClassUID)
        sopClassUID = datasetClass.isEmpty ? text(.mediaStorageSOPClassUID) : datasetClass
        let datasetInstance = text(.sopInstanceUID)
        sopInstanceUIDFromMeta = datasetInstance.isEmpty && !text(.mediaStorageSOPInstanceUID).isEmpty
        sopInstanceUID = datasetInstance.isEmpty ? text(.mediaStorageSOPInstanceUID) : datasetInstance
        studyInstanceUID = text(.studyInstanceUID)
        seriesInstanceUID = text(.seriesInstanceUID)
        frameOfReferenceUID = text(.frameOfReferenceUID)
        modality = text(.modality)
        manufacturer = text(.manufacturer)
        seriesDescription = text(.seriesDescription)
        seriesNumber = file.int(.seriesNumber)
        instanceNumber = file.int(.instanceNumber)
        acquisitionNumber = file.int(.acquisitionNumber)
        imageType = text(.imageType).split(separator: "\\", omittingEmptySubsequences: false).map { String($0) }
        echoNumbers = text(.echoNumbers)
        sequenceName = text(.sequenceName)
        temporalPositionIdentifier = text(.temporalPositionIdentifier)
        gantryDetectorTilt = file.double(.gantryDetectorTilt)
        lossyImageCompression = text(.lossyImageCompression) == "01"
            || SOPClass.lossyTransferSyntaxes.contains(file.transferSyntaxUID)
        hasModalityLUTSequence = file.itemCount(atPath: DICOMTag.modalityLUTSequence.path) ?? 0 > 0
        hasPixelData = file.has(.pixelData)

        var problem: DICOMImportError?
        let declaredFrames = file.double(.numberOfFrames) ?? 1
        let frameLimit = Double(limits.maximumFrames)
        var frameCount = declaredFrames.isFinite && declaredFrames >= 1 && declaredFrames <= frameLimit ? Int(declaredFrames) : 1
        if !declaredFrames.isFinite || declaredFrames > frameLimit || declaredFrames.rounded() != declaredFrames {
            problem = DICOMImportError(.invalidAttribute, file.path, "NumberOfFrames (0028,0008) is \(file.string(.numberOfFrames) ?? "?"): "
                                       + "not a whole number within the limit of \(limits.maximumFrames) frames (\(ReaderLimits.framesSetting))")
            frameCount = 1
        }
        let bitsAllocated = file.int(.bitsAllocated) ?? 0
        let bitsStored = file.int(.bitsStored) ?? bitsAllocated
        pixelFormat = PixelFormat(
            rows: file.int(.rows) ?? 0, columns: file.int(.columns) ?? 0, frames: frameCount,
            samplesPerPixel: file.int(.samplesPerPixel) ?? 1, bitsAllocated: bitsAllocated, bitsStored: bitsStored,
            highBit: file.int(.highBit) ?? (bitsStored - 1), isSigned: file.int(.pixelRepresentation) == 1,
            photometricInterpretation: text(.photometricInterpretation))

        let perFrameCount = file.itemCount(atPath: DICOMTag.perFrameFunctionalGroupsSequence.path) ?? 0
        let hasShared = (file.itemCount(atPath: DICOMTag.sharedFunctionalGroupsSequence.path) ?? 0) > 0
        if perFrameCount > 0 || hasShared {
            frames = (0..<frameCount).map { Self.functionalGroupFrame(file, index: $0, hasPerFrame: $0 < perFrameCount) }
        } else {
            frames = (0..<frameCount).map { index in
                FrameHeader(
                    frameIndex: index,
                    imagePosition: Self.vector3(file.doubles(.imagePositionPatient)),
                    imageOrientation: Self.orientation(file.doubles(.imageOrientationPatient)),
                    pixelSpacing: Self.vector2(file.doubles(.pixelSpacing)),
                    sliceThickness: file.double(.sliceThickness),
                    spacingBetweenSlices: file.double(.spacingBetweenSlices),
                    rescaleSlope: file.double(.rescaleSlope) ?? 1,
                    rescaleIntercept: file.double(.rescaleIntercept) ?? 0,
                    rescaleType: file.string(.rescaleType),
                    stackID: nil)
            }
        }
        self.problem = problem ?? Self.implausibility(frames: frames, format: pixelFormat, hasPixelData: hasPixelData, path: file.path)
    }

    /// A header from values instead of a file (the series-geometry fuzz target, tests), validated as a file's
    /// header is: ``problem`` is set the same way, and a scan would refuse it the same way.
    public init(path: String, sopClassUID: String, sopInstanceUID: String, studyInstanceUID: String, seriesInstanceUID: String,
                frameOfReferenceUID: String, modality: String, pixelFormat: PixelFormat, frames: [FrameHeader],
                gantryDetectorTilt: Double? = nil, limits: ReaderLimits = .standard) {
        self.path = path
        transferSyntaxUID = "1.2.840.10008.1.2.1"
        hasMetaHeader = true
        self.sopClassUID = sopClassUID
        self.sopInstanceUID = sopInstanceUID
        sopInstanceUIDFromMeta = false
        self.studyInstanceUID = studyInstanceUID
        self.seriesInstanceUID = seriesInstanceUID
        self.frameOfReferenceUID = frameOfReferenceUID
        self.modality = modality
        manufacturer = ""
        seriesDescription = ""
        imageType = []
        echoNumbers = ""
        sequenceName = ""
        temporalPositionIdentifier = ""
        self.gantryDetectorTilt = gantryDetectorTilt
        lossyImageCompression = false
        hasModalityLUTSequence = false
        hasPixelData = true
        self.pixelFormat = pixelFormat
        self.frames = frames
        problem = frames.count > limits.maximumFrames
            ? DICOMImportError(.invalidAttribute, path, "\(frames.count) frames exceed the limit of \(limits.maximumFrames) frames (\(ReaderLimits.framesSetting))")
            : Self.implausibility(frames: frames, format: pixelFormat, hasPixelData: true, path: path)
    }

    /// Geometry enters slice sorting and gap arithmetic, the pixel format sizes buffers: every value must be
    /// a finite, plausible number, and the format one that can describe pixels.
    static func implausibility(frames: [FrameHeader], format: PixelFormat, hasPixelData: Bool, path: String) -> DICOMImportError? {
        if let bad = frames.first(where: { !plausible($0) }) {
            return DICOMImportError(.invalidAttribute, path, "frame \(bad.frameIndex + 1): Image Position/Orientation (Patient), "
                                    + "Pixel Spacing or Slice Thickness is not a finite value within ±\(Int(maximumCoordinate)) mm")
        }
        if hasPixelData, ![1, 8, 16, 32].contains(format.bitsAllocated) || !(1...4).contains(format.samplesPerPixel) {
            return DICOMImportError(.invalidAttribute, path, "BitsAllocated \(format.bitsAllocated) / SamplesPerPixel "
                                    + "\(format.samplesPerPixel) cannot describe pixels")
        }
        if hasPixelData, !(1...65_535).contains(format.rows) || !(1...65_535).contains(format.columns) {
            return DICOMImportError(.invalidAttribute, path, "Rows \(format.rows) / Columns \(format.columns) cannot describe an image")
        }
        return nil
    }

    static func plausible(_ f: FrameHeader) -> Bool {
        func ok(_ v: Double, _ limit: Double) -> Bool { v.isFinite && abs(v) <= limit }
        if let p = f.imagePosition, !(ok(p.x, maximumCoordinate) && ok(p.y, maximumCoordinate) && ok(p.z, maximumCoordinate)) { return false }
        if let o = f.imageOrientation, ![o.row.x, o.row.y, o.row.z, o.column.x, o.column.y, o.column.z].allSatisfy({ ok($0, 1.5) }) { return false }
        if let s = f.pixelSpacing, !(ok(s.x, 1e4) && ok(s.y, 1e4)) { return false }
        if let t = f.sliceThickness, !ok(t, 1e4) { return false }
        if let t = f.spacingBetweenSlices, !ok(t, 1e4) { return false }
        return ok(f.rescaleSlope, 1e30) && ok(f.rescaleIntercept, 1e30)
    }

    private static func functionalGroupFrame(_ file: DICOMFile, index: Int, hasPerFrame: Bool) -> FrameHeader {
        let perFrame = "\(DICOMTag.perFrameFunctionalGroupsSequence.path)[\(index)]"
        let shared = "\(DICOMTag.sharedFunctionalGroupsSequence.path)[0]"
        /// Looks a macro attribute up per frame first, then in the shared groups.
        func values(_ macro: DICOMTag, _ attribute: DICOMTag) -> [Double]? {
            let suffix = "/\(macro.path)[0]/\(attribute.path)"
            return (hasPerFrame ? file.doubles(atPath: perFrame + suffix) : nil) ?? file.doubles(atPath: shared + suffix)
        }
        func text(_ macro: DICOMTag, _ attribute: DICOMTag) -> String? {
            let suffix = "/\(macro.path)[0]/\(attribute.path)"
            return (hasPerFrame ? file.string(atPath: perFrame + suffix) : nil) ?? file.string(atPath: shared + suffix)
        }
        return FrameHeader(
            frameIndex: index,
            imagePosition: vector3(values(.planePositionSequence, .imagePositionPatient)),
            imageOrientation: orientation(values(.planeOrientationSequence, .imageOrientationPatient)),
            pixelSpacing: vector2(values(.pixelMeasuresSequence, .pixelSpacing)),
            sliceThickness: values(.pixelMeasuresSequence, .sliceThickness)?.first,
            spacingBetweenSlices: values(.pixelMeasuresSequence, .spacingBetweenSlices)?.first,
            rescaleSlope: values(.pixelValueTransformationSequence, .rescaleSlope)?.first ?? file.double(.rescaleSlope) ?? 1,
            rescaleIntercept: values(.pixelValueTransformationSequence, .rescaleIntercept)?.first
                ?? file.double(.rescaleIntercept) ?? 0,
            rescaleType: text(.pixelValueTransformationSequence, .rescaleType),
            stackID: text(.frameContentSequence, .stackID))
    }

    static func vector3(_ v: [Double]?) -> SIMD3<Double>? {
        guard let v, v.count == 3 else { return nil }
        return SIMD3(v[0], v[1], v[2])
    }

    static func vector2(_ v: [Double]?) -> SIMD2<Double>? {
        guard let v, v.count == 2, v[0] > 0, v[1] > 0 else { return nil }
        return SIMD2(v[0], v[1])
    }

    static func orientation(_ v: [Double]?) -> (row: SIMD3<Double>, column: SIMD3<Double>)? {
        guard let v, v.count == 6 else { return nil }
        return (SIMD3(v[0], v[1], v[2]), SIMD3(v[3], v[4], v[5]))
    }
}
