import DICOMExport
import DICOMImport
import DICOMNetwork
import Digest
import ConfigDecoding
import Foundation
import Yams

/// A profile that names the key at fault (and the file).
public struct ProfileError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let key: String
    public let detail: String
    public var description: String { "PROFILE_INVALID: \(file): \(key): \(detail)" }
}

/// A site profile (`Profiles/*.yaml`): which model, which series, how to infer, what to write, and how
/// each label appears in the clinic. Parsed once, validated on load (STYLE.md §5).
///
/// ```yaml
/// name: hippocampus-demo
/// model: {folder: ../Fixtures/demo/model, folds: [0]}
/// selection: {modality: MR, orientation: AXIAL, minimumSlices: 10}
/// structures:
///   - {label: 1, name: Hippocampus_Ant, color: [255, 128, 0], interpretedType: ORGAN}
/// ```
public struct CaseProfile: Sendable {
    public struct Selection: Sendable, Equatable {
        public var modality: String?
        /// AXIAL, CORONAL, SAGITTAL, OBLIQUE or nil for any.
        public var orientation: String?
        public var minimumSlices: Int
        public var sliceThickness: ClosedRange<Double>?
        /// Case-insensitive regular expression on Series Description.
        public var seriesDescription: String?
    }

    public var name: String
    public var file: String
    /// SHA-256 of the file's bytes (the audit log keeps hash and content).
    public var sha256: String
    public var content: String
    public var modelFolder: URL
    public var folds: [String]?
    public var checkpoint: String
    public var selection: Selection
    public var mirroring: Bool
    public var stepSize: Double
    public var allowTilt: Bool
    /// `geometry.maximumFrames` / `geometry.maximumSeriesVoxels` (defaults ``ReaderLimits/standard``).
    public var readerLimits: ReaderLimits
    public var writeSEG: Bool
    public var writeRTSTRUCT: Bool
    public var writeNIfTI: Bool
    public var writeQASnapshot: Bool
    public var structures: [StructureDescription]
    public var auditDatabase: String?
    public var storePatientIdentifiers: Bool
    public var seriesNumberSEG: Int
    public var seriesNumberRTSTRUCT: Int
    /// Apply the model's own postprocessing.json when it has one.
    public var useModelPostprocessing: Bool
    /// Labels reduced to their largest connected component (each on its own), after the model's steps.
    public var keepLargestComponent: [Int]
    /// Where `nnseg serve` sends each succeeded case's outputs (C-STORE, through the outbox).
    public var destinations: [StoreDestination]

    public init(contentsOf url: URL) throws {
        let path = url.path
        guard let data = try? Data(contentsOf: url), let text = String(data: data, encoding: .utf8) else {
            throw ProfileError(file: path, key: "", detail: "cannot read the file")
        }
        // Decoded strictly into typed values: an unknown key at any level, or a value of the wrong type, is
        // refused with its path (``ProfileDocument``); the checks below are the ones types cannot express.
        let document: ProfileDocument
        do {
            document = try StrictDecoding.decode { try YAMLDecoder().decode(StrictDecoding.Root<ProfileDocument>.self, from: text).value }
        } catch let issue as ConfigurationIssue {
            throw ProfileError(file: path, key: issue.path, detail: issue.detail)
        } catch {
            throw ProfileError(file: path, key: "", detail: "not valid YAML (\(error))")
        }
        file = path
        content = text
        sha256 = SHA256.hash(Array(data)).hex
        guard let name = document.name, !name.isEmpty else { throw ProfileError(file: path, key: "name", detail: "required text") }
        self.name = name

        guard let folder = document.model?.folder else {
            throw ProfileError(file: path, key: "model.folder", detail: "required: the nnU-Net model folder")
        }
        let base = url.deletingLastPathComponent()
        modelFolder = folder.hasPrefix("/") ? URL(fileURLWithPath: folder) : base.appendingPathComponent(folder).standardizedFileURL
        guard FileManager.default.fileExists(atPath: modelFolder.appendingPathComponent("plans.json").path) else {
            throw ProfileError(file: path, key: "model.folder", detail: "\(modelFolder.path) has no plans.json")
        }
        folds = document.model?.folds?.map(\.text)
        checkpoint = document.model?.checkpoint ?? "checkpoint_final.pth"

        let s = document.selection
        var thickness: ClosedRange<Double>?
        if let pair = s?.sliceThickness {
            guard pair.count == 2, pair[0] <= pair[1] else {
                throw ProfileError(file: path, key: "selection.sliceThickness", detail: "must be [minimum, maximum] in mm")
            }
            thickness = pair[0]...pair[1]
        }
        let orientation = s?.orientation?.uppercased()
        if let o = orientation, !["AXIAL", "CORONAL", "SAGITTAL", "OBLIQUE", "ANY"].contains(o) {
            throw ProfileError(file: path, key: "selection.orientation", detail: "'\(o)' is not AXIAL, CORONAL, SAGITTAL, OBLIQUE or ANY")
        }
        let pattern = s?.seriesDescription
        if let pattern, (try? NSRegularExpression(pattern: pattern)) == nil {
            throw ProfileError(file: path, key: "selection.seriesDescription", detail: "'\(pattern)' is not a valid regular expression")
        }
        selection = Selection(modality: s?.modality?.uppercased(), orientation: orientation == "ANY" ? nil : orientation,
                              minimumSlices: s?.minimumSlices ?? 1, sliceThickness: thickness, seriesDescription: pattern)

        mirroring = document.inference?.mirroring ?? true
        stepSize = document.inference?.stepSize ?? 0.5
        guard stepSize > 0 && stepSize <= 1 else { throw ProfileError(file: path, key: "inference.stepSize", detail: "must be in (0, 1]") }
        allowTilt = document.geometry?.allowTilt ?? false
        readerLimits = ReaderLimits(maximumFrames: document.geometry?.maximumFrames ?? ReaderLimits.standard.maximumFrames,
                                    maximumSeriesVoxels: document.geometry?.maximumSeriesVoxels ?? ReaderLimits.standard.maximumSeriesVoxels)
        guard readerLimits.maximumFrames >= 1 else {
            throw ProfileError(file: path, key: "geometry.maximumFrames", detail: "must be at least 1")
        }
        guard readerLimits.maximumSeriesVoxels >= 1 else {
            throw ProfileError(file: path, key: "geometry.maximumSeriesVoxels", detail: "must be at least 1")
        }

        let outputs = document.outputs
        writeSEG = outputs?.seg ?? true
        writeRTSTRUCT = outputs?.rtstruct ?? true
        writeNIfTI = outputs?.nifti ?? true
        writeQASnapshot = outputs?.qaSnapshot ?? true
        seriesNumberSEG = outputs?.segSeriesNumber ?? 901
        seriesNumberRTSTRUCT = outputs?.rtstructSeriesNumber ?? 902

        guard let list = document.structures, !list.isEmpty else {
            throw ProfileError(file: path, key: "structures", detail: "required: one entry per model label")
        }
        structures = try list.enumerated().map { i, m in
            let key = "structures[\(i)]"
            guard (1...65535).contains(m.label) else { throw ProfileError(file: path, key: "\(key).label", detail: "required integer 1…65535") }
            guard !m.name.isEmpty, m.name.utf8.count <= 64 else {
                throw ProfileError(file: path, key: "\(key).name", detail: "required, 1–64 characters")
            }
            func code(_ field: String, _ value: [ProfileDocument.Scalar]?) throws -> CodedConcept? {
                guard let c = value else { return nil }
                guard c.count == 3 else { throw ProfileError(file: path, key: "\(key).\(field)", detail: "must be [code value, scheme, meaning]") }
                return CodedConcept(c[0].text, c[1].text, c[2].text)
            }
            var color: SIMD3<UInt8>?
            if let rgb = m.color {
                guard rgb.count == 3, rgb.allSatisfy({ (0...255).contains($0) }) else {
                    throw ProfileError(file: path, key: "\(key).color", detail: "must be [r, g, b] with values 0–255")
                }
                color = SIMD3(UInt8(rgb[0]), UInt8(rgb[1]), UInt8(rgb[2]))
            }
            let interpreted = m.interpretedType?.uppercased() ?? "ORGAN"
            let allowed = ["EXTERNAL", "PTV", "CTV", "GTV", "TREATED_VOLUME", "IRRAD_VOLUME", "BOLUS", "AVOIDANCE", "ORGAN", "MARKER",
                           "REGISTRATION", "ISOCENTER", "CONTRAST_AGENT", "CAVITY", "SUPPORT", "FIXATION", "DOSE_REGION", "CONTROL"]
            guard allowed.contains(interpreted) else {
                throw ProfileError(file: path, key: "\(key).interpretedType", detail: "'\(interpreted)' is not an RT ROI Interpreted Type")
            }
            return StructureDescription(label: m.label, name: m.name, category: try code("category", m.category) ?? .tissue,
                                        type: try code("type", m.type) ?? .tissue, modifier: try code("modifier", m.modifier),
                                        color: color, interpretedType: interpreted)
        }
        let labels = structures.map(\.label)
        if Set(labels).count != labels.count { throw ProfileError(file: path, key: "structures", detail: "labels must be unique") }

        useModelPostprocessing = document.postprocessing?.useModel ?? true
        keepLargestComponent = document.postprocessing?.keepLargestComponent ?? []
        let describedLabels = Set(structures.map(\.label))
        if let unknownLabel = keepLargestComponent.first(where: { !describedLabels.contains($0) }) {
            throw ProfileError(file: path, key: "postprocessing.keepLargestComponent", detail: "label \(unknownLabel) is not among structures")
        }

        auditDatabase = document.audit?.database
        storePatientIdentifiers = document.audit?.storePatientIdentifiers ?? false

        destinations = try (document.destinations ?? []).enumerated().map { i, d in
            let key = "destinations[\(i)]"
            guard !d.name.isEmpty else { throw ProfileError(file: path, key: "\(key).name", detail: "required") }
            guard !d.aeTitle.isEmpty, d.aeTitle.utf8.count <= 16, !d.aeTitle.contains("\\") else {
                throw ProfileError(file: path, key: "\(key).aeTitle", detail: "1–16 characters without a backslash")
            }
            guard !d.host.isEmpty else { throw ProfileError(file: path, key: "\(key).host", detail: "required") }
            guard (1...65_535).contains(d.port) else { throw ProfileError(file: path, key: "\(key).port", detail: "1…65535") }
            let outputs = (d.outputs ?? ["SEG", "RTSTRUCT"]).map { $0.uppercased() }
            guard !outputs.isEmpty, outputs.allSatisfy({ ["SEG", "RTSTRUCT"].contains($0) }) else {
                throw ProfileError(file: path, key: "\(key).outputs", detail: "SEG, RTSTRUCT or both")
            }
            return StoreDestination(name: d.name, aeTitle: d.aeTitle, host: d.host, port: d.port, outputs: outputs, tls: d.tls ?? false)
        }
        if Set(destinations.map(\.name)).count != destinations.count {
            throw ProfileError(file: path, key: "destinations", detail: "names must be unique")
        }
    }
}

/// A profile file as written: every section and key it may hold, each with its type. Decoded with
/// ``StrictDecoding``, so an unknown key anywhere (`outputs.rtstuct`) is refused with a suggestion.
struct ProfileDocument: Decodable {
    /// A YAML scalar kept as text (fold numbers or "all"; code values that look like numbers).
    struct Scalar: Decodable {
        var text: String
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let i = try? c.decode(Int.self) { text = String(i) } else if let d = try? c.decode(Double.self) { text = String(d) } else {
                text = try c.decode(String.self)
            }
        }
    }

    struct Model: Decodable {
        var folder: String?
        var folds: [Scalar]?
        var checkpoint: String?
        enum CodingKeys: String, CodingKey, CaseIterable { case folder, folds, checkpoint }
    }

    struct Selection: Decodable {
        var modality: String?
        var orientation: String?
        var minimumSlices: Int?
        var sliceThickness: [Double]?
        var seriesDescription: String?
        enum CodingKeys: String, CodingKey, CaseIterable { case modality, orientation, minimumSlices, sliceThickness, seriesDescription }
    }

    struct Inference: Decodable {
        var mirroring: Bool?
        var stepSize: Double?
        enum CodingKeys: String, CodingKey, CaseIterable { case mirroring, stepSize }
    }

    struct Geometry: Decodable {
        var allowTilt: Bool?
        var maximumFrames: Int?
        var maximumSeriesVoxels: Int?
        enum CodingKeys: String, CodingKey, CaseIterable { case allowTilt, maximumFrames, maximumSeriesVoxels }
    }

    struct Outputs: Decodable {
        var seg: Bool?
        var rtstruct: Bool?
        var nifti: Bool?
        var qaSnapshot: Bool?
        var segSeriesNumber: Int?
        var rtstructSeriesNumber: Int?
        enum CodingKeys: String, CodingKey, CaseIterable { case seg, rtstruct, nifti, qaSnapshot, segSeriesNumber, rtstructSeriesNumber }
    }

    struct Structure: Decodable {
        var label: Int
        var name: String
        var color: [Int]?
        var interpretedType: String?
        var category: [Scalar]?
        var type: [Scalar]?
        var modifier: [Scalar]?
        enum CodingKeys: String, CodingKey, CaseIterable { case label, name, color, interpretedType, category, type, modifier }
    }

    struct Postprocessing: Decodable {
        var useModel: Bool?
        var keepLargestComponent: [Int]?
        enum CodingKeys: String, CodingKey, CaseIterable { case useModel, keepLargestComponent }
    }

    struct Audit: Decodable {
        var database: String?
        var storePatientIdentifiers: Bool?
        enum CodingKeys: String, CodingKey, CaseIterable { case database, storePatientIdentifiers }
    }

    var name: String?
    var model: Model?
    var selection: Selection?
    var inference: Inference?
    var geometry: Geometry?
    var outputs: Outputs?
    var structures: [Structure]?
    var audit: Audit?
    var postprocessing: Postprocessing?
    var destinations: [Destination]?
    enum CodingKeys: String, CodingKey, CaseIterable { case name, model, selection, inference, geometry, outputs, structures, audit, postprocessing, destinations }

    struct Destination: Decodable {
        var name: String
        var aeTitle: String
        var host: String
        var port: Int
        var outputs: [String]?
        var tls: Bool?
        enum CodingKeys: String, CodingKey, CaseIterable { case name, aeTitle, host, port, outputs, tls }
    }
}
