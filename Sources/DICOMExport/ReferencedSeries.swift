import Foundation
import VolumeGeometry

/// The source image series an output refers to: identity, grid and the instance behind every slice,
/// in volume order (k = 0 first). Filled by the caller from the reader's result (this module does not
/// depend on the reader).
public struct ReferencedSeries: Sendable {
    public struct Slice: Sendable, Equatable {
        public var sopClassUID: String
        public var sopInstanceUID: String
        public var path: String
        /// Image Position (Patient) of the slice, LPS mm.
        public var position: SIMD3<Double>

        public init(sopClassUID: String, sopInstanceUID: String, path: String, position: SIMD3<Double>) {
            self.sopClassUID = sopClassUID
            self.sopInstanceUID = sopInstanceUID
            self.path = path
            self.position = position
        }
    }

    public var studyInstanceUID: String
    public var seriesInstanceUID: String
    public var frameOfReferenceUID: String
    public var modality: String
    public var rows: Int
    public var columns: Int
    /// (row spacing, column spacing), DICOM order.
    public var pixelSpacing: SIMD2<Double>
    public var rowDirection: SIMD3<Double>
    public var columnDirection: SIMD3<Double>
    public var sliceThickness: Double?
    public var slices: [Slice]
    /// The voxel grid of the series as the reader built it.
    public var geometry: VolumeGeometry
    public var isLossy: Bool
    /// What `repairMissingUIDs` supplied (nil: nothing): written into the outputs' DerivationDescription
    /// (SEG) and StructureSetDescription (RTSTRUCT) so a reader of the objects sees it.
    public var repairNote: String?
    /// The first slice's header, opened once for all outputs of this series.
    let sourceHeader: SourceHeader

    public init(studyInstanceUID: String, seriesInstanceUID: String, frameOfReferenceUID: String, modality: String, rows: Int,
                columns: Int, pixelSpacing: SIMD2<Double>, rowDirection: SIMD3<Double>, columnDirection: SIMD3<Double>,
                sliceThickness: Double?, slices: [Slice], geometry: VolumeGeometry, isLossy: Bool) {
        self.studyInstanceUID = studyInstanceUID
        self.seriesInstanceUID = seriesInstanceUID
        self.frameOfReferenceUID = frameOfReferenceUID
        self.modality = modality
        self.rows = rows
        self.columns = columns
        self.pixelSpacing = pixelSpacing
        self.rowDirection = rowDirection
        self.columnDirection = columnDirection
        self.sliceThickness = sliceThickness
        self.slices = slices
        self.geometry = geometry
        self.isLossy = isLossy
        sourceHeader = SourceHeader(path: slices.first?.path ?? "")
    }

    public var shape: VolumeShape { VolumeShape(z: slices.count, y: rows, x: columns) }

    /// SpacingBetweenSlices as DICOM defines it: along the slice normal (row × column), from the first and last
    /// slice positions — on a gantry-tilted series smaller than the distance between positions.
    public var spacingAlongNormal: Double {
        guard slices.count > 1 else { return geometry.spacing.z }
        let normal = SIMD3(rowDirection.y * columnDirection.z - rowDirection.z * columnDirection.y,
                           rowDirection.z * columnDirection.x - rowDirection.x * columnDirection.z,
                           rowDirection.x * columnDirection.y - rowDirection.y * columnDirection.x)
        let length = (normal * normal).sum().squareRoot()
        guard length > 0 else { return geometry.spacing.z }
        let delta = slices[slices.count - 1].position - slices[0].position
        return abs((delta * normal).sum()) / length / Double(slices.count - 1)
    }

    /// The attributes the outputs' references need that the source lacks, each named with its tag (empty:
    /// complete). Checked before inference (a case fails in seconds, not after the model ran) and again by
    /// the writers.
    public var missingReferences: [String] {
        var missing: [String] = []
        if frameOfReferenceUID.isEmpty { missing.append("FrameOfReferenceUID (0020,0052)") }
        if studyInstanceUID.isEmpty { missing.append("StudyInstanceUID (0020,000D)") }
        if seriesInstanceUID.isEmpty { missing.append("SeriesInstanceUID (0020,000E)") }
        let noInstance = slices.filter { $0.sopInstanceUID.isEmpty }.count
        if noInstance > 0 { missing.append("SOPInstanceUID (0008,0018) in \(noInstance) of \(slices.count) instances") }
        let noClass = slices.filter { $0.sopClassUID.isEmpty }.count
        if noClass > 0 { missing.append("SOPClassUID (0008,0016) in \(noClass) of \(slices.count) instances") }
        return missing
    }

    /// Outputs may only be written for a series with complete identity (spec R-RD-03) and a frame of
    /// reference (R-RT-01, SEG frames with plane positions). The error names every missing attribute.
    public func validateForOutput(_ output: String) throws {
        guard !frameOfReferenceUID.isEmpty else {
            throw DICOMExportError(.missingFrameOfReference, output,
                                   "source series \(seriesInstanceUID.isEmpty ? "(empty UID)" : seriesInstanceUID) has no Frame of Reference UID (0020,0052); its contours and frames could not be placed")
        }
        let missing = missingReferences
        guard missing.isEmpty else {
            throw DICOMExportError(.missingUIDs, output,
                                   "the source series lacks " + missing.joined(separator: ", ")
                                       + " (anonymised?); the outputs' references would dangle (research data: repairMissingUIDs)")
        }
    }

    /// The labels must lie on exactly this grid (R-SEG-01).
    func validateGrid(_ labels: LabelVolume, output: String) throws {
        guard labels.shape == shape else {
            throw DICOMExportError(.gridMismatch, output, "labels are \(labels.shape), the series is \(shape)")
        }
        let difference = labels.geometry.maxAbsDifference(geometry)
        guard difference < 1e-3 else {
            throw DICOMExportError(.gridMismatch, output,
                                   "labels are not on the series grid (geometry differs by \(difference)); resample them onto the source first")
        }
    }
}

/// Who made an output: written into Enhanced General Equipment and the algorithm identification.
public struct AlgorithmIdentification: Sendable, Equatable {
    public var name: String
    public var version: String
    /// e.g. "Dataset004_Hippocampus 3d_fullres folds 0 sha256:…".
    public var parameters: String
    public var manufacturer: String
    /// SoftwareVersions (0018,1020): the version of the software that wrote the object.
    public var softwareVersions: String
    /// DeviceSerialNumber (0018,1000): which installation wrote it (the host name unless given).
    public var deviceSerialNumber: String

    public init(name: String, version: String, parameters: String, manufacturer: String = "nnseg", softwareVersions: String? = nil,
                deviceSerialNumber: String? = nil) {
        self.name = name
        self.version = version
        self.parameters = parameters
        self.manufacturer = manufacturer
        self.softwareVersions = softwareVersions ?? version
        self.deviceSerialNumber = String((deviceSerialNumber ?? ProcessInfo.processInfo.hostName).prefix(64))
    }
}

/// A coded concept (code value, scheme, meaning), e.g. ("85756007", "SCT", "Tissue").
public struct CodedConcept: Sendable, Equatable, Hashable {
    public var value: String
    public var scheme: String
    public var meaning: String

    public init(_ value: String, _ scheme: String, _ meaning: String) {
        self.value = value
        self.scheme = scheme
        self.meaning = meaning
    }

    public static let tissue = CodedConcept("85756007", "SCT", "Tissue")
    public static let anatomicalStructure = CodedConcept("123037004", "SCT", "Anatomical Structure")
    public static let artificialIntelligence = CodedConcept("123110", "DCM", "Artificial Intelligence")
}

/// One label of the model as it appears in SEG and RTSTRUCT.
public struct StructureDescription: Sendable, Equatable {
    public var label: Int
    public var name: String
    public var category: CodedConcept
    public var type: CodedConcept
    public var modifier: CodedConcept?
    /// sRGB 0…255.
    public var color: SIMD3<UInt8>
    /// RT ROI Interpreted Type (ORGAN, GTV, …).
    public var interpretedType: String

    public init(label: Int, name: String, category: CodedConcept = .tissue, type: CodedConcept = .tissue,
                modifier: CodedConcept? = nil, color: SIMD3<UInt8>? = nil, interpretedType: String = "ORGAN") {
        self.label = label
        self.name = name
        self.category = category
        self.type = type
        self.modifier = modifier
        self.color = color ?? Self.defaultColor(label)
        self.interpretedType = interpretedType
    }

    /// A colour fixed per label (R-SEG-04): ``StructureCatalog/palette``, 128 colours each as far from the
    /// ones before it as possible.
    public static func defaultColor(_ label: Int) -> SIMD3<UInt8> {
        StructureCatalog.palette[(max(label, 1) - 1) % StructureCatalog.palette.count]
    }
}

extension StructureDescription {
    /// The label's value in a label map; a label outside 1…65535 cannot be in one and is refused, never
    /// clamped onto another label.
    func labelValue(output: String) throws -> UInt16 {
        guard let value = UInt16(exactly: label), value > 0 else {
            throw DICOMExportError(.invalidDescription, output, "structure \(name): label \(label) is outside 1…65535")
        }
        return value
    }
}

enum CIELab {
    /// sRGB (0…255) → CIELAB (L 0…100, a, b), D65.
    static func lab(_ rgb: SIMD3<UInt8>) -> SIMD3<Double> {
        func linear(_ c: UInt8) -> Double {
            let v = Double(c) / 255
            return v <= 0.04045 ? v / 12.92 : pow((v + 0.055) / 1.055, 2.4)
        }
        let r = linear(rgb.x), g = linear(rgb.y), b = linear(rgb.z)
        let x = (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / 0.95047
        let y = (0.2126729 * r + 0.7151522 * g + 0.0721750 * b) / 1.0
        let z = (0.0193339 * r + 0.1191920 * g + 0.9503041 * b) / 1.08883
        func f(_ t: Double) -> Double { t > pow(6.0 / 29, 3) ? cbrt(t) : t / (3 * pow(6.0 / 29, 2)) + 4.0 / 29 }
        return SIMD3(116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z)))
    }

    /// sRGB (0…255) → DICOM PCS-scaled CIELab (PS3.3 C.10.7.1.1), D65.
    static func dicom(_ rgb: SIMD3<UInt8>) -> [Int] {
        let v = lab(rgb)
        func clamp(_ v: Double) -> Int { Int(min(max(v.rounded(), 0), 65535)) }
        return [clamp(v.x * 65535 / 100), clamp((v.y + 128) * 65535 / 255), clamp((v.z + 128) * 65535 / 255)]
    }
}
