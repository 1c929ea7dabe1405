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

    /// Outputs may only be written for a series with complete identity (spec R-RD-03) and a frame of
    /// reference (R-RT-01, SEG frames with plane positions).
    func validateForOutput(_ output: String) throws {
        guard !frameOfReferenceUID.isEmpty else {
            throw DICOMExportError(.missingFrameOfReference, output,
                                   "source series \(seriesInstanceUID.isEmpty ? "(empty UID)" : seriesInstanceUID) has no Frame of Reference UID; its contours and frames could not be placed")
        }
        guard !studyInstanceUID.isEmpty, !seriesInstanceUID.isEmpty,
              slices.allSatisfy({ !$0.sopInstanceUID.isEmpty && !$0.sopClassUID.isEmpty }) else {
            throw DICOMExportError(.missingUIDs, output,
                                   "the source series lacks Study/Series/SOP Instance UIDs (anonymised?); references would dangle")
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
    public var softwareVersions: String

    public init(name: String, version: String, parameters: String, manufacturer: String = "nnseg", softwareVersions: String = "nnseg") {
        self.name = name
        self.version = version
        self.parameters = parameters
        self.manufacturer = manufacturer
        self.softwareVersions = softwareVersions
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

    /// A fixed palette so that colours are deterministic per label (R-SEG-04).
    public static func defaultColor(_ label: Int) -> SIMD3<UInt8> {
        let palette: [SIMD3<UInt8>] = [
            SIMD3(230, 25, 75), SIMD3(60, 180, 75), SIMD3(255, 225, 25), SIMD3(0, 130, 200), SIMD3(245, 130, 48),
            SIMD3(145, 30, 180), SIMD3(70, 240, 240), SIMD3(240, 50, 230), SIMD3(210, 245, 60), SIMD3(250, 190, 212),
            SIMD3(0, 128, 128), SIMD3(220, 190, 255), SIMD3(170, 110, 40), SIMD3(255, 250, 200), SIMD3(128, 0, 0),
            SIMD3(170, 255, 195), SIMD3(128, 128, 0), SIMD3(255, 215, 180), SIMD3(0, 0, 128), SIMD3(128, 128, 128),
        ]
        return palette[(max(label, 1) - 1) % palette.count]
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
    /// sRGB (0…255) → DICOM PCS-scaled CIELab (PS3.3 C.10.7.1.1), D65.
    static func dicom(_ rgb: SIMD3<UInt8>) -> [Int] {
        func linear(_ c: UInt8) -> Double {
            let v = Double(c) / 255
            return v <= 0.04045 ? v / 12.92 : pow((v + 0.055) / 1.055, 2.4)
        }
        let r = linear(rgb.x), g = linear(rgb.y), b = linear(rgb.z)
        let x = (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / 0.95047
        let y = (0.2126729 * r + 0.7151522 * g + 0.0721750 * b) / 1.0
        let z = (0.0193339 * r + 0.1191920 * g + 0.9503041 * b) / 1.08883
        func f(_ t: Double) -> Double { t > pow(6.0 / 29, 3) ? cbrt(t) : t / (3 * pow(6.0 / 29, 2)) + 4.0 / 29 }
        let l = 116 * f(y) - 16, a = 500 * (f(x) - f(y)), bb = 200 * (f(y) - f(z))
        func clamp(_ v: Double) -> Int { Int(min(max(v.rounded(), 0), 65535)) }
        return [clamp(l * 65535 / 100), clamp((a + 128) * 65535 / 255), clamp((bb + 128) * 65535 / 255)]
    }
}
