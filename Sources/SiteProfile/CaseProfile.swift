import DICOMExport
import DICOMImport
import DICOMNetwork
import Digest
import PlansModel
import ConfigDecoding
import Foundation
import ModelSharing
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
    /// A model bundle as the profile pinned it: ID, the full hash found installed, and the key that signed it
    /// when the profile asked for one.
    public struct ModelBundleReference: Sendable, Equatable {
        public var id: String
        public var sha256: String
        public var signedBy: String?
    }

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
    /// The installed bundle `model.bundle` named (nil when the profile names a folder); verified at load.
    public var modelBundle: ModelBundleReference?
    public var folds: [String]?
    public var checkpoint: String
    public var selection: Selection
    public var mirroring: Bool
    public var stepSize: Double
    /// `inference.precision`: the convolutions' arithmetic, "fp32" (default, nnU-Net's parity mode) or "bf16"
    /// (AVX-512 CPUs); recorded in the audit log and in the outputs' algorithm parameters.
    public var precision: String
    public var allowTilt: Bool
    /// `geometry.maximumFrames` / `geometry.maximumSeriesVoxels` (defaults ``ReaderLimits/standard``).
    public var readerLimits: ReaderLimits
    public var writeSEG: Bool
    public var writeRTSTRUCT: Bool
    public var writeNIfTI: Bool
    public var writeQASnapshot: Bool
    /// `outputs.report`: the self-contained `report.html` (default true).
    public var writeReport: Bool
    public var structures: [StructureDescription]
    public var auditDatabase: String?
    public var storePatientIdentifiers: Bool
    /// `audit.pseudonymKey` / `audit.signingKey` / `audit.anchor` (#18): key files outside the database (else
    /// `NNSEG_PSEUDONYM_KEY` / `NNSEG_SIGNING_KEY` / `NNSEG_AUDIT_ANCHOR`), resolved against the profile's folder.
    public var pseudonymKeyFile: String?
    public var signingKeyFile: String?
    public var auditAnchor: String?
    public var seriesNumberSEG: Int
    public var seriesNumberRTSTRUCT: Int
    /// `outputs.repairMissingUIDs` (research data only): reference instances by their file-meta SOP Instance
    /// UIDs and derive missing Study/Series UIDs; recorded in the audit log and in the outputs.
    public var repairMissingUIDs: Bool
    /// `outputs.segEncoding`: binary (default, every viewer) or labelmap (Label Map Segmentation Storage).
    public var segEncoding: SegmentationOptions.Encoding
    /// `outputs.uidRoot`: the site's UID root for output UIDs (nil: 2.25, UUID-derived).
    public var uidRoot: String?
    /// What the RTSTRUCT's contours leave out and how many points they may have (`outputs.minimumIslandMM3`,
    /// `fillHolesMM3`, `pointBudgetPerROI`, `pointBudgetPerFile`, `strict`; per structure `minimumIslandMM3`).
    public var contourCleanup: ContourCleanup

    public struct ContourCleanup: Sendable, Equatable {
        public var minimumIslandMM3: Double
        public var fillHolesMM3: Double
        public var pointBudgetPerROI: Int
        public var pointBudgetPerFile: Int
        /// Over a point budget: the case fails (`POINT_BUDGET_EXCEEDED`) instead of a warning.
        public var strict: Bool
        /// `outputs.contours`: smooth (default) or exact.
        public var mode: RTStructOptions.ContourMode
        /// `outputs.holes`: separate (default) or keyhole.
        public var holes: RTStructOptions.HoleMode
        public var minimumIslandMM3ByLabel: [Int: Double] = [:]
    }
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

        let base = url.deletingLastPathComponent()
        func resolve(_ reference: String) -> URL {
            reference.hasPrefix("/") ? URL(fileURLWithPath: reference) : base.appendingPathComponent(reference).standardizedFileURL
        }
        switch (document.model?.folder, document.model?.bundle) {
        case (let folder?, nil):
            let m = document.model!
            if let key = [("sha256", m.sha256), ("models", m.models), ("configuration", m.configuration), ("publicKey", m.publicKey)].first(where: { $0.1 != nil })?.0 {
                throw ProfileError(file: path, key: "model.\(key)", detail: "only with model.bundle (a folder is named by model.folder alone)")
            }
            modelFolder = resolve(folder)
            modelBundle = nil
        case (nil, let id?):
            let models = document.model?.models ?? ProcessInfo.processInfo.environment["NNSEG_MODELS"]
            guard let models else {
                throw ProfileError(file: path, key: "model.models", detail: "required with model.bundle: the models folder it is installed in (or NNSEG_MODELS)")
            }
            guard let pinned = document.model?.sha256 else {
                throw ProfileError(file: path, key: "model.sha256", detail: "required with model.bundle: the bundle's hash (`nnseg model list` shows it; 16 hex digits or more)")
            }
            // The bundle must be installed with exactly that hash, every file must still match its manifest, and
            // with publicKey it must carry that key's signature.
            do {
                let bundle = try ModelStore(folder: resolve(models)).bundle(id: id, sha256: pinned)
                let key = try document.model?.publicKey.map { try VerifyingKey(contentsOf: resolve($0).path) }
                try bundle.verify(publicKey: key)
                modelFolder = try bundle.modelFolder(configuration: document.model?.configuration)
                modelBundle = ModelBundleReference(id: id, sha256: bundle.sha256, signedBy: key?.id)
            } catch let error as BundleError {
                throw ProfileError(file: path, key: "model.bundle", detail: error.description)
            } catch let error as KeyFileError {
                throw ProfileError(file: path, key: "model.publicKey", detail: error.description)
            }
        case (_?, _?):
            throw ProfileError(file: path, key: "model", detail: "name either folder or bundle, not both")
        case (nil, nil):
            throw ProfileError(file: path, key: "model.folder", detail: "required: the nnU-Net model folder (or model.bundle with models and sha256)")
        }
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
        precision = document.inference?.precision ?? "fp32"
        guard ["fp32", "bf16"].contains(precision) else {
            throw ProfileError(file: path, key: "inference.precision", detail: "must be fp32 or bf16, not \(precision)")
        }
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
        writeReport = outputs?.report ?? true
        seriesNumberSEG = outputs?.segSeriesNumber ?? 901
        seriesNumberRTSTRUCT = outputs?.rtstructSeriesNumber ?? 902
        repairMissingUIDs = outputs?.repairMissingUIDs ?? false
        segEncoding = try Self.choice(outputs?.segEncoding, default: .binary, key: "outputs.segEncoding", file: path)
        uidRoot = outputs?.uidRoot
        contourCleanup = ContourCleanup(minimumIslandMM3: outputs?.minimumIslandMM3 ?? RTStructOptions.defaultMinimumIslandMM3,
                                        fillHolesMM3: outputs?.fillHolesMM3 ?? RTStructOptions.defaultFillHolesMM3,
                                        pointBudgetPerROI: outputs?.pointBudgetPerROI ?? RTStructOptions.defaultPointBudgetPerROI,
                                        pointBudgetPerFile: outputs?.pointBudgetPerFile ?? RTStructOptions.defaultPointBudgetPerFile,
                                        strict: outputs?.strict ?? false,
                                        mode: try Self.choice(outputs?.contours, default: .smooth, key: "outputs.contours", file: path),
                                        holes: try Self.choice(outputs?.holes, default: .separate, key: "outputs.holes", file: path))
        for (key, value) in [("minimumIslandMM3", contourCleanup.minimumIslandMM3), ("fillHolesMM3", contourCleanup.fillHolesMM3)]
            where !(value >= 0 && value.isFinite) {
            throw ProfileError(file: path, key: "outputs.\(key)", detail: "must be a size in mm³, 0 or more")
        }
        for (key, value) in [("pointBudgetPerROI", contourCleanup.pointBudgetPerROI), ("pointBudgetPerFile", contourCleanup.pointBudgetPerFile)]
            where value < 1 {
            throw ProfileError(file: path, key: "outputs.\(key)", detail: "must be at least 1")
        }
        if let root = uidRoot, let problem = OutputUIDs.problem(withRoot: root) {
            throw ProfileError(file: path, key: "outputs.uidRoot", detail: problem)
        }

        // Structures: one per model label (names from the model's dataset.json, codes and colours from
        // StructureCatalog when the name is known), each overridable by a profile entry (#24).
        let modelLabels = try Self.modelLabels(modelFolder, profile: path)
        var described = Dictionary(uniqueKeysWithValues: modelLabels.map { ($0.value, StructureCatalog.describe(label: $0.value, name: $0.name)) })
        var pinned = Set<Int>()
        var seen = Set<Int>()
        var islandByLabel: [Int: Double] = [:]
        for (i, m) in (document.structures ?? []).enumerated() {
            let key = "structures[\(i)]"
            guard let base = described[m.label] else {
                throw ProfileError(file: path, key: "\(key).label", detail: "\(m.label) is not a label of the model (\(modelLabels.map { "\($0.value) \($0.name)" }.joined(separator: ", ")))")
            }
            guard seen.insert(m.label).inserted else { throw ProfileError(file: path, key: "structures", detail: "labels must be unique") }
            var s = base
            if let name = m.name {
                guard !name.isEmpty, name.utf8.count <= 64 else {
                    throw ProfileError(file: path, key: "\(key).name", detail: "1–64 characters")
                }
                s.name = name
            }
            func code(_ field: String, _ value: [ProfileDocument.Scalar]?) throws -> CodedConcept? {
                guard let c = value else { return nil }
                guard c.count == 3 else { throw ProfileError(file: path, key: "\(key).\(field)", detail: "must be [code value, scheme, meaning]") }
                return CodedConcept(c[0].text, c[1].text, c[2].text)
            }
            if let rgb = m.color {
                guard rgb.count == 3, rgb.allSatisfy({ (0...255).contains($0) }) else {
                    throw ProfileError(file: path, key: "\(key).color", detail: "must be [r, g, b] with values 0–255")
                }
                s.color = SIMD3(UInt8(rgb[0]), UInt8(rgb[1]), UInt8(rgb[2]))
                pinned.insert(m.label)
            }
            if let interpreted = m.interpretedType?.uppercased() {
                let allowed = ["EXTERNAL", "PTV", "CTV", "GTV", "TREATED_VOLUME", "IRRAD_VOLUME", "BOLUS", "AVOIDANCE", "ORGAN", "MARKER",
                               "REGISTRATION", "ISOCENTER", "CONTRAST_AGENT", "CAVITY", "SUPPORT", "FIXATION", "DOSE_REGION", "CONTROL"]
                guard allowed.contains(interpreted) else {
                    throw ProfileError(file: path, key: "\(key).interpretedType", detail: "'\(interpreted)' is not an RT ROI Interpreted Type")
                }
                s.interpretedType = interpreted
            }
            if let c = try code("category", m.category) { s.category = c }
            if let c = try code("type", m.type) { s.type = c }
            if let c = try code("modifier", m.modifier) { s.modifier = c }
            if let island = m.minimumIslandMM3 {
                guard island >= 0 && island.isFinite else {
                    throw ProfileError(file: path, key: "\(key).minimumIslandMM3", detail: "must be a size in mm³, 0 or more")
                }
                islandByLabel[m.label] = island
            }
            described[m.label] = s
        }
        structures = StructureCatalog.distinctColors(described.values.sorted { $0.label < $1.label }, pinned: pinned)
        contourCleanup.minimumIslandMM3ByLabel = islandByLabel
        let names = structures.map { $0.name.lowercased() }
        if let duplicate = names.first(where: { name in names.filter { $0 == name }.count > 1 }) {
            throw ProfileError(file: path, key: "structures", detail: "ROI names must be unique (case-insensitively): '\(duplicate)' is used twice")
        }

        useModelPostprocessing = document.postprocessing?.useModel ?? true
        keepLargestComponent = document.postprocessing?.keepLargestComponent ?? []
        let describedLabels = Set(structures.map(\.label))
        if let unknownLabel = keepLargestComponent.first(where: { !describedLabels.contains($0) }) {
            throw ProfileError(file: path, key: "postprocessing.keepLargestComponent", detail: "label \(unknownLabel) is not among structures")
        }

        auditDatabase = document.audit?.database
        storePatientIdentifiers = document.audit?.storePatientIdentifiers ?? false
        // Key files and the anchor, relative to the profile's folder (keys never live in the profile itself).
        func resolved(_ value: String?) -> String? {
            guard let value, !value.isEmpty else { return nil }
            return value.hasPrefix("/") ? value : base.appendingPathComponent(value).standardizedFileURL.path
        }
        pseudonymKeyFile = resolved(document.audit?.pseudonymKey)
        signingKeyFile = resolved(document.audit?.signingKey)
        auditAnchor = resolved(document.audit?.anchor)

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

extension CaseProfile {
    /// A setting that names one of an enumeration's cases (case-insensitive), or its default when absent.
    static func choice<T: RawRepresentable & CaseIterable>(_ text: String?, default value: T, key: String, file: String) throws -> T
        where T.RawValue == String {
        guard let text else { return value }
        guard let chosen = T(rawValue: text.lowercased()) else {
            throw ProfileError(file: file, key: key, detail: "'\(text)' is not " + T.allCases.map(\.rawValue).joined(separator: " or "))
        }
        return chosen
    }

    /// The model's output labels with their dataset.json names (region-based models: the region class order
    /// with the regions' names), background excluded.
    static func modelLabels(_ folder: URL, profile: String) throws -> [(value: Int, name: String)] {
        let description: DatasetDescription
        do { description = try DatasetDescription(contentsOf: folder.appendingPathComponent("dataset.json")) } catch {
            throw ProfileError(file: profile, key: "model.folder", detail: "\(error)")
        }
        let foreground = description.labels.filter { $0.values != [0] }
        if let order = description.regionClassOrder {
            return zip(order, foreground).map { (value: $0.0, name: $0.1.name) }
        }
        return foreground.map { (value: $0.values[0], name: $0.name) }
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
        var bundle: String?
        var sha256: String?
        var models: String?
        var configuration: String?
        var publicKey: String?
        var folds: [Scalar]?
        var checkpoint: String?
        enum CodingKeys: String, CodingKey, CaseIterable { case folder, bundle, sha256, models, configuration, publicKey, folds, checkpoint }
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
        var precision: String?
        enum CodingKeys: String, CodingKey, CaseIterable { case mirroring, stepSize, precision }
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
        var report: Bool?
        var segSeriesNumber: Int?
        var rtstructSeriesNumber: Int?
        var repairMissingUIDs: Bool?
        var uidRoot: String?
        var minimumIslandMM3: Double?
        var fillHolesMM3: Double?
        var pointBudgetPerROI: Int?
        var pointBudgetPerFile: Int?
        var strict: Bool?
        var contours: String?
        var holes: String?
        var segEncoding: String?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case contours, holes, segEncoding, seg, rtstruct, nifti, qaSnapshot, report, segSeriesNumber, rtstructSeriesNumber, repairMissingUIDs, uidRoot, minimumIslandMM3,
                 fillHolesMM3, pointBudgetPerROI, pointBudgetPerFile, strict
        }
    }

    struct Structure: Decodable {
        var label: Int
        var name: String?
        var color: [Int]?
        var interpretedType: String?
        var category: [Scalar]?
        var type: [Scalar]?
        var modifier: [Scalar]?
        var minimumIslandMM3: Double?
        enum CodingKeys: String, CodingKey, CaseIterable { case label, name, color, interpretedType, category, type, modifier, minimumIslandMM3 }
    }

    struct Postprocessing: Decodable {
        var useModel: Bool?
        var keepLargestComponent: [Int]?
        enum CodingKeys: String, CodingKey, CaseIterable { case useModel, keepLargestComponent }
    }

    struct Audit: Decodable {
        var database: String?
        var storePatientIdentifiers: Bool?
        var pseudonymKey: String?
        var signingKey: String?
        var anchor: String?
        enum CodingKeys: String, CodingKey, CaseIterable { case database, storePatientIdentifiers, pseudonymKey, signingKey, anchor }
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

extension CaseProfile {
    /// A commented starting profile for a model folder (`nnseg profile init`): every section with its defaults,
    /// and one line per model label showing what the structure catalog gives it (a site edits or deletes those
    /// lines; without them the same values apply).
    /// - Parameter folderReference: the model folder as the profile should name it (relative to the profile's folder, or absolute).
    public static func starterText(modelFolder: URL, folderReference: String) throws -> String {
        let labels = try modelLabels(modelFolder, profile: modelFolder.path)
        let plans = try? Plans(contentsOf: modelFolder.appendingPathComponent("plans.json"))
        let isCT = (plans?.configurationNames ?? []).contains { (try? plans?.configuration($0))??.normalizationSchemes.first == "CTNormalization" }
        let name = (plans?.datasetName ?? modelFolder.lastPathComponent).lowercased().replacingOccurrences(of: "_", with: "-")
        func quoted(_ s: String) -> String { "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
        let structures = StructureCatalog.distinctColors(labels.map { StructureCatalog.describe(label: $0.value, name: $0.name) })
        var lines = [
            "# nnseg profile for \(plans?.datasetName ?? modelFolder.lastPathComponent) (written by `nnseg profile init`; edit, then try it with `nnseg run`).",
            "# Paths are relative to this file.",
            "name: \(name)",
            "model:",
            "  folder: \(quoted(folderReference))",
            "  # folds: [0, 1, 2, 3, 4]        # default: every fold_N folder with the checkpoint",
            "  checkpoint: checkpoint_final.pth",
            "selection:",
            isCT ? "  modality: CT" : "  # modality: MR                  # the model is not CT-normalised: say which modality it expects",
            "  orientation: ANY               # AXIAL, CORONAL, SAGITTAL, OBLIQUE or ANY",
            "  minimumSlices: 10",
            "inference:",
            "  mirroring: true                # test-time mirroring as nnU-Net (8 passes in 3-D; false: 1, faster)",
            "  stepSize: 0.5",
            "  precision: fp32               # bf16 on AVX-512 CPUs: faster, agreement with fp32 measured in the README",
            "geometry:",
            "  allowTilt: false               # true: accept gantry-tilted (sheared) series",
            "outputs:",
            "  seg: true",
            "  rtstruct: true",
            "  nifti: true",
            "  qaSnapshot: true               # qa.png (more pages: qa-2.png, …): slices, outlines, legend, banner",
            "  report: true                   # report.html: the QA pages, provenance and the outputs' verification",
            "  segSeriesNumber: 901",
            "  segEncoding: binary            # binary: every viewer; labelmap: one frame per slice (Label Map Segmentation)",
            "  rtstructSeriesNumber: 902",
            "  repairMissingUIDs: false       # research data only: reference anonymised series through their file-meta UIDs",
            "  # uidRoot: \"1.2.826.0.1.3680043.10.xxx\"  # the site's UID root for output UIDs (default 2.25.<name-based>)",
            "  minimumIslandMM3: \(Int(RTStructOptions.defaultMinimumIslandMM3))          # RTSTRUCT: islands below this left out (0 keeps all; SEG stays exact)",
            "  fillHolesMM3: \(Int(RTStructOptions.defaultFillHolesMM3))               # RTSTRUCT: holes up to this filled (0 fills none)",
            "  pointBudgetPerROI: \(RTStructOptions.defaultPointBudgetPerROI)       # over budget: a named warning in the audit log and on status",
            "  pointBudgetPerFile: \(RTStructOptions.defaultPointBudgetPerFile)",
            "  strict: false                  # true: over a point budget fails the case (POINT_BUDGET_EXCEEDED)",
            "  contours: smooth               # smooth: sub-voxel, simplified; exact: the voxel boundary (staircases)",
            "  holes: separate                # separate: holes as their own contours; keyhole: for TPSs that take the union",
            "# One line per model label: what nnseg uses when this section is left out (names from dataset.json mapped to",
            "# TG-263 where known, SNOMED CT codes, distinct colours). Change what the site needs; delete the rest.",
            "structures:",
        ]
        for s in structures {
            var fields = ["label: \(s.label)", "name: \(quoted(s.name))", "color: [\(s.color.x), \(s.color.y), \(s.color.z)]",
                          "interpretedType: \(s.interpretedType)",
                          "category: [\(quoted(s.category.value)), \(s.category.scheme), \(quoted(s.category.meaning))]",
                          "type: [\(quoted(s.type.value)), \(s.type.scheme), \(quoted(s.type.meaning))]"]
            if let m = s.modifier { fields.append("modifier: [\(quoted(m.value)), \(m.scheme), \(quoted(m.meaning))]") }
            let source = labels.first { $0.value == s.label }?.name ?? ""
            lines.append("  - {\(fields.joined(separator: ", "))}   # model: \(source)")
        }
        lines += [
            "postprocessing:",
            "  useModel: true                 # the model's postprocessing.json, when it has one",
            "  keepLargestComponent: []",
            "audit:",
            "  storePatientIdentifiers: false # true stores patient IDs as they are; false needs a pseudonym key",
            "  # pseudonymKey: /etc/nnseg/pseudonym.key   # or NNSEG_PSEUDONYM_KEY; `nnseg keys init` makes keys",
            "  # signingKey: /etc/nnseg/audit-signing.key # or NNSEG_SIGNING_KEY: every closed case is signed",
            "  # anchor: /var/log/nnseg/audit-anchor.jsonl # append-only receipts outside the database",
        ]
        return lines.joined(separator: "\n") + "\n"
    }
}
