/// A DICOM attribute tag (group, element), printed as DICOM writes it: `(0020,0032)`.
public struct DICOMTag: Hashable, Sendable, CustomStringConvertible {
    public let group: UInt16
    public let element: UInt16

    public init(_ group: UInt16, _ element: UInt16) {
        self.group = group
        self.element = element
    }

    /// The path form the DCMTK shim understands: `gggg,eeee`.
    var path: String { hex(group) + "," + hex(element) }

    public var description: String { "(\(hex(group).uppercased()),\(hex(element).uppercased()))" }

    private func hex(_ v: UInt16) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 4 - s.count) + s
    }
}

/// The attributes nnseg reads, named with DICOM's own keywords.
public extension DICOMTag {
    static let mediaStorageSOPClassUID = DICOMTag(0x0002, 0x0002)
    static let mediaStorageSOPInstanceUID = DICOMTag(0x0002, 0x0003)
    static let imageType = DICOMTag(0x0008, 0x0008)
    static let sopClassUID = DICOMTag(0x0008, 0x0016)
    static let sopInstanceUID = DICOMTag(0x0008, 0x0018)
    static let modality = DICOMTag(0x0008, 0x0060)
    static let manufacturer = DICOMTag(0x0008, 0x0070)
    static let seriesDescription = DICOMTag(0x0008, 0x103E)
    static let sliceThickness = DICOMTag(0x0018, 0x0050)
    static let spacingBetweenSlices = DICOMTag(0x0018, 0x0088)
    static let echoNumbers = DICOMTag(0x0018, 0x0086)
    static let sequenceName = DICOMTag(0x0018, 0x0024)
    static let gantryDetectorTilt = DICOMTag(0x0018, 0x1120)
    static let studyInstanceUID = DICOMTag(0x0020, 0x000D)
    static let seriesInstanceUID = DICOMTag(0x0020, 0x000E)
    static let seriesNumber = DICOMTag(0x0020, 0x0011)
    static let acquisitionNumber = DICOMTag(0x0020, 0x0012)
    static let instanceNumber = DICOMTag(0x0020, 0x0013)
    static let imagePositionPatient = DICOMTag(0x0020, 0x0032)
    static let imageOrientationPatient = DICOMTag(0x0020, 0x0037)
    static let frameOfReferenceUID = DICOMTag(0x0020, 0x0052)
    static let temporalPositionIdentifier = DICOMTag(0x0020, 0x0100)
    static let stackID = DICOMTag(0x0020, 0x9056)
    static let inStackPositionNumber = DICOMTag(0x0020, 0x9057)
    static let samplesPerPixel = DICOMTag(0x0028, 0x0002)
    static let photometricInterpretation = DICOMTag(0x0028, 0x0004)
    static let numberOfFrames = DICOMTag(0x0028, 0x0008)
    static let rows = DICOMTag(0x0028, 0x0010)
    static let columns = DICOMTag(0x0028, 0x0011)
    static let pixelSpacing = DICOMTag(0x0028, 0x0030)
    static let bitsAllocated = DICOMTag(0x0028, 0x0100)
    static let bitsStored = DICOMTag(0x0028, 0x0101)
    static let highBit = DICOMTag(0x0028, 0x0102)
    static let pixelRepresentation = DICOMTag(0x0028, 0x0103)
    static let rescaleIntercept = DICOMTag(0x0028, 0x1052)
    static let rescaleSlope = DICOMTag(0x0028, 0x1053)
    static let rescaleType = DICOMTag(0x0028, 0x1054)
    static let lossyImageCompression = DICOMTag(0x0028, 0x2110)
    static let modalityLUTSequence = DICOMTag(0x0028, 0x3000)
    static let triggerTime = DICOMTag(0x0018, 0x1060)
    static let pixelData = DICOMTag(0x7FE0, 0x0010)

    // Functional groups (Enhanced multi-frame objects).
    static let sharedFunctionalGroupsSequence = DICOMTag(0x5200, 0x9229)
    static let perFrameFunctionalGroupsSequence = DICOMTag(0x5200, 0x9230)
    static let pixelMeasuresSequence = DICOMTag(0x0028, 0x9110)
    static let planePositionSequence = DICOMTag(0x0020, 0x9113)
    static let planeOrientationSequence = DICOMTag(0x0020, 0x9116)
    static let pixelValueTransformationSequence = DICOMTag(0x0028, 0x9145)
    static let frameContentSequence = DICOMTag(0x0020, 0x9111)
}
