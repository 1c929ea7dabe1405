import DICOMExport
import Digest
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

    public init(contentsOf url: URL) throws {
        let path = url.path
        guard let data = try? Data(contentsOf: url), let text = String(data: data, encoding: .utf8) else {
            throw ProfileError(file: path, key: "", detail: "cannot read the file")
        }
        let root: [String: Any]
        do {
            guard let node = try Yams.load(yaml: text) as? [String: Any] else {
                throw ProfileError(file: path, key: "", detail: "the document must be a mapping")
            }
            root = node
        } catch let error as ProfileError {
            throw error
        } catch {
            throw ProfileError(file: path, key: "", detail: "not valid YAML (\(error))")
        }
        let known: Set<String> = ["name", "model", "selection", "inference", "geometry", "outputs", "structures", "audit", "postprocessing"]
        if let unknown = root.keys.sorted().first(where: { !known.contains($0) }) {
            throw ProfileError(file: path, key: unknown, detail: "unknown key (known: \(known.sorted().joined(separator: ", ")))")
        }
        func section(_ key: String) throws -> [String: Any] {
            guard let value = root[key] else { return [:] }
            guard let map = value as? [String: Any] else { throw ProfileError(file: path, key: key, detail: "must be a mapping") }
            return map
        }
        func value<T>(_ map: [String: Any], _ section: String, _ key: String, _ type: T.Type) throws -> T? {
            guard let v = map[key] else { return nil }
            if let t = v as? T { return t }
            if T.self == Double.self, let i = v as? Int { return Double(i) as? T }
            throw ProfileError(file: path, key: "\(section).\(key)", detail: "must be \(T.self == String.self ? "text" : T.self == Bool.self ? "true or false" : "a number")")
        }
        file = path
        content = text
        sha256 = SHA256.hash(Array(data)).hex
        guard let name = root["name"] as? String, !name.isEmpty else { throw ProfileError(file: path, key: "name", detail: "required text") }
        self.name = name

        let model = try section("model")
        guard let folder = try value(model, "model", "folder", String.self) else {
            throw ProfileError(file: path, key: "model.folder", detail: "required: the nnU-Net model folder")
        }
        let base = url.deletingLastPathComponent()
        modelFolder = folder.hasPrefix("/") ? URL(fileURLWithPath: folder) : base.appendingPathComponent(folder).standardizedFileURL
        guard FileManager.default.fileExists(atPath: modelFolder.appendingPathComponent("plans.json").path) else {
            throw ProfileError(file: path, key: "model.folder", detail: "\(modelFolder.path) has no plans.json")
        }
        if let f = model["folds"] {
            guard let list = f as? [Any] else { throw ProfileError(file: path, key: "model.folds", detail: "must be a list") }
            folds = list.map { "\($0)" }
        } else {
            folds = nil
        }
        checkpoint = try value(model, "model", "checkpoint", String.self) ?? "checkpoint_final.pth"

        let s = try section("selection")
        var thickness: ClosedRange<Double>?
        if let t = s["sliceThickness"] {
            guard let pair = t as? [Any], pair.count == 2, let lo = (pair[0] as? Double) ?? (pair[0] as? Int).map(Double.init),
                  let hi = (pair[1] as? Double) ?? (pair[1] as? Int).map(Double.init), lo <= hi
            else { throw ProfileError(file: path, key: "selection.sliceThickness", detail: "must be [minimum, maximum] in mm") }
            thickness = lo...hi
        }
        let orientation = try value(s, "selection", "orientation", String.self)?.uppercased()
        if let o = orientation, !["AXIAL", "CORONAL", "SAGITTAL", "OBLIQUE", "ANY"].contains(o) {
            throw ProfileError(file: path, key: "selection.orientation", detail: "'\(o)' is not AXIAL, CORONAL, SAGITTAL, OBLIQUE or ANY")
        }
        let pattern = try value(s, "selection", "seriesDescription", String.self)
        if let pattern, (try? NSRegularExpression(pattern: pattern)) == nil {
            throw ProfileError(file: path, key: "selection.seriesDescription", detail: "'\(pattern)' is not a valid regular expression")
        }
        selection = Selection(modality: try value(s, "selection", "modality", String.self)?.uppercased(),
                              orientation: orientation == "ANY" ? nil : orientation,
                              minimumSlices: try value(s, "selection", "minimumSlices", Int.self) ?? 1, sliceThickness: thickness,
                              seriesDescription: pattern)

        let inference = try section("inference")
        mirroring = try value(inference, "inference", "mirroring", Bool.self) ?? true
        stepSize = try value(inference, "inference", "stepSize", Double.self) ?? 0.5
        guard stepSize > 0 && stepSize <= 1 else { throw ProfileError(file: path, key: "inference.stepSize", detail: "must be in (0, 1]") }
        allowTilt = try value(try section("geometry"), "geometry", "allowTilt", Bool.self) ?? false

        let outputs = try section("outputs")
        writeSEG = try value(outputs, "outputs", "seg", Bool.self) ?? true
        writeRTSTRUCT = try value(outputs, "outputs", "rtstruct", Bool.self) ?? true
        writeNIfTI = try value(outputs, "outputs", "nifti", Bool.self) ?? true
        writeQASnapshot = try value(outputs, "outputs", "qaSnapshot", Bool.self) ?? true
        seriesNumberSEG = try value(outputs, "outputs", "segSeriesNumber", Int.self) ?? 901
        seriesNumberRTSTRUCT = try value(outputs, "outputs", "rtstructSeriesNumber", Int.self) ?? 902

        guard let list = root["structures"] as? [Any], !list.isEmpty else {
            throw ProfileError(file: path, key: "structures", detail: "required: one entry per model label")
        }
        structures = try list.enumerated().map { i, entry in
            let key = "structures[\(i)]"
            guard let m = entry as? [String: Any] else { throw ProfileError(file: path, key: key, detail: "must be a mapping") }
            guard let label = m["label"] as? Int, label > 0 else { throw ProfileError(file: path, key: "\(key).label", detail: "required positive integer") }
            guard let name = m["name"] as? String, !name.isEmpty, name.utf8.count <= 64 else {
                throw ProfileError(file: path, key: "\(key).name", detail: "required, 1–64 characters")
            }
            func code(_ field: String) throws -> CodedConcept? {
                guard let v = m[field] else { return nil }
                guard let c = v as? [Any], c.count == 3 else {
                    throw ProfileError(file: path, key: "\(key).\(field)", detail: "must be [code value, scheme, meaning]")
                }
                return CodedConcept("\(c[0])", "\(c[1])", "\(c[2])")
            }
            var color: SIMD3<UInt8>?
            if let c = m["color"] {
                guard let rgb = c as? [Int], rgb.count == 3, rgb.allSatisfy({ (0...255).contains($0) }) else {
                    throw ProfileError(file: path, key: "\(key).color", detail: "must be [r, g, b] with values 0–255")
                }
                color = SIMD3(UInt8(rgb[0]), UInt8(rgb[1]), UInt8(rgb[2]))
            }
            let interpreted = (m["interpretedType"] as? String)?.uppercased() ?? "ORGAN"
            let allowed = ["EXTERNAL", "PTV", "CTV", "GTV", "TREATED_VOLUME", "IRRAD_VOLUME", "BOLUS", "AVOIDANCE", "ORGAN", "MARKER",
                           "REGISTRATION", "ISOCENTER", "CONTRAST_AGENT", "CAVITY", "SUPPORT", "FIXATION", "DOSE_REGION", "CONTROL"]
            guard allowed.contains(interpreted) else {
                throw ProfileError(file: path, key: "\(key).interpretedType", detail: "'\(interpreted)' is not an RT ROI Interpreted Type")
            }
            return StructureDescription(label: label, name: name, category: try code("category") ?? .tissue, type: try code("type") ?? .tissue,
                                        modifier: try code("modifier"), color: color, interpretedType: interpreted)
        }
        let labels = structures.map(\.label)
        if Set(labels).count != labels.count { throw ProfileError(file: path, key: "structures", detail: "labels must be unique") }

        let post = try section("postprocessing")
        useModelPostprocessing = try value(post, "postprocessing", "useModel", Bool.self) ?? true
        if let k = post["keepLargestComponent"] {
            guard let list = k as? [Int] else {
                throw ProfileError(file: path, key: "postprocessing.keepLargestComponent", detail: "must be a list of labels")
            }
            keepLargestComponent = list
        } else {
            keepLargestComponent = []
        }
        let describedLabels = Set(structures.map(\.label))
        if let unknownLabel = keepLargestComponent.first(where: { !describedLabels.contains($0) }) {
            throw ProfileError(file: path, key: "postprocessing.keepLargestComponent", detail: "label \(unknownLabel) is not among structures")
        }

        let audit = try section("audit")
        auditDatabase = try value(audit, "audit", "database", String.self)
        storePatientIdentifiers = try value(audit, "audit", "storePatientIdentifiers", Bool.self) ?? false
    }
}
