import DICOMImport
import Foundation
import NIfTI
import VolumeGeometry

/// One training label: its dataset.json name, the SEG segment labels / RTSTRUCT ROI names that mean it
/// (matched case-insensitively), and its value. Written on the command line as `name|alias|…=value`.
public struct LabelRule: Sendable, Equatable {
    public var name: String
    public var aliases: [String]
    public var value: Int

    public init(name: String, aliases: [String] = [], value: Int) {
        self.name = name
        self.aliases = aliases
        self.value = value
    }

    /// Parses `liver|Liver_1|LIVER=1`.
    public init(parsing text: String) throws {
        let parts = text.split(separator: "=", omittingEmptySubsequences: false)
        guard parts.count == 2, let value = Int(parts[1].trimmingCharacters(in: .whitespaces)), value >= 1, value <= 255 else {
            throw DatasetPreprocessingError(file: "--label", detail: "'\(text)' must be name[|alias…]=value with value 1…255")
        }
        let names = parts[0].split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard let first = names.first else { throw DatasetPreprocessingError(file: "--label", detail: "'\(text)' has no name") }
        self.init(name: first, aliases: Array(names.dropFirst()), value: value)
    }

    var names: [String] { [name] + aliases }
    func matches(_ other: String) -> Bool { names.contains { $0.lowercased() == other.lowercased() } }
}

/// Builds an nnU-Net v2 raw dataset (imagesTr, labelsTr, dataset.json) from DICOM image series and the
/// SEG / RTSTRUCT objects that reference them, so that DICOM-annotated data can be planned, preprocessed
/// and trained on like any raw dataset.
public enum DICOMDatasetBuilder {
    public struct Case: Sendable {
        public var identifier: String
        public var seriesInstanceUID: String
        public var labelObject: String
        public var voxelsPerLabel: [String: Int]
        public var overlappingVoxels: Int
    }

    public static let segClasses: Set = [SegmentationReader.segmentationStorage, SegmentationReader.labelMapSegmentationStorage]

    /// Writes the dataset into `output` (which must not exist; it appears whole, by one rename). Every
    /// label object must resolve to a series in `folder`; a case that lacks one of the labels is refused
    /// unless `allowMissing`, naming what the object does contain.
    public static func build(from folder: URL, labels rules: [LabelRule], output: URL, allowMissing: Bool = false, prefix: String = "case",
                             progress: ((Int, Int) -> Void)? = nil) throws -> [Case] {
        let fm = FileManager.default
        guard !fm.fileExists(atPath: output.path) else {
            throw DatasetPreprocessingError(file: output.path, detail: "already exists; choose a new dataset folder")
        }
        guard !rules.isEmpty, Set(rules.map(\.value)).count == rules.count, Set(rules.map { $0.name.lowercased() }).count == rules.count else {
            throw DatasetPreprocessingError(file: "--label", detail: "give at least one label; names and values must be unique")
        }
        let scan = try DICOMScanner().scan(folder)
        let objects = scan.nonVolumeObjects
            .filter { segClasses.contains($0.sopClassUID) || $0.sopClassUID == StructureSetReader.rtStructureSetStorage }
            .sorted { $0.path < $1.path }
        guard !objects.isEmpty else {
            throw DatasetPreprocessingError(file: folder.path, detail: "no DICOM SEG or RTSTRUCT found; nothing to train on")
        }
        let staging = output.deletingLastPathComponent().appendingPathComponent(".\(output.lastPathComponent).partial-\(UUID().uuidString)")
        try fm.createDirectory(at: staging.appendingPathComponent("imagesTr"), withIntermediateDirectories: true)
        try fm.createDirectory(at: staging.appendingPathComponent("labelsTr"), withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: staging) }
        var cases: [Case] = []
        var modalities = Set<String>()
        for (index, object) in objects.enumerated() {
            let url = URL(fileURLWithPath: object.path)
            let file = try DICOMFile(path: object.path)
            let isSEG = segClasses.contains(object.sopClassUID)
            let referenced = isSEG ? file.string(atPath: "0008,1115[0]/0020,000e")
                : file.string(atPath: "3006,0010[0]/3006,0012[0]/3006,0014[0]/0020,000e")
            guard let seriesUID = referenced, !seriesUID.isEmpty else {
                throw DatasetPreprocessingError(file: object.path, detail: "does not name the image series it annotates")
            }
            let stacks = scan.stacks.filter { $0.seriesInstanceUID == seriesUID }
            guard stacks.count == 1, let stack = stacks.first else {
                throw DatasetPreprocessingError(file: object.path, detail: stacks.isEmpty
                    ? "its image series \(seriesUID) is not under \(folder.path)"
                    : "its image series \(seriesUID) holds \(stacks.count) geometric stacks; one volume is needed")
            }
            let series = try DICOMSeriesLoader().load(stack)
            let grid = series.volume.geometry, shape = series.volume.shape
            var labelMap = Volume<UInt8>(shape: shape, geometry: grid, repeating: 0)
            var found: [String: Int] = [:]
            var available: [String] = []
            var overlaps = 0
            if isSEG {
                let seg = try SegmentationReader.read(url, onto: grid, shape: shape)
                available = seg.segments.map(\.label)
                var valueOf: [UInt16: UInt8] = [:]
                for segment in seg.segments {
                    if let rule = rules.first(where: { $0.matches(segment.label) }) { valueOf[UInt16(segment.number)] = UInt8(rule.value) }
                }
                for i in 0..<seg.labels.voxels.count where seg.labels.voxels[i] != 0 {
                    if let v = valueOf[seg.labels.voxels[i]] { labelMap.voxels[i] = v }
                }
                overlaps = seg.overlappingVoxels
            } else {
                let mapping = rules.sorted { $0.value < $1.value }.flatMap { rule in rule.names.map { ($0, rule.value) } }
                let set = try StructureSetReader.read(url, onto: grid, shape: shape, mapping: mapping)
                available = set.rois.map(\.name)
                for i in 0..<set.labels.voxels.count where set.labels.voxels[i] != 0 { labelMap.voxels[i] = UInt8(set.labels.voxels[i]) }
                overlaps = set.overlappingVoxels
            }
            for rule in rules { found[rule.name] = labelMap.voxels.lazy.filter { $0 == UInt8(rule.value) }.count }
            let missing = rules.filter { found[$0.name] == 0 }.map(\.name)
            if !missing.isEmpty && !allowMissing {
                throw DatasetPreprocessingError(file: object.path, detail: "no voxels for label(s) \(missing); the object holds \(available) "
                                                + "(add aliases with name|alias=value, or --allow-missing if the structure is truly absent)")
            }
            let identifier = String(format: "%@_%03d", prefix, index + 1)
            try NIfTIImage(volume: series.volume).write(to: staging.appendingPathComponent("imagesTr/\(identifier)_0000.nii.gz"))
            try NIfTIImage(volume: labelMap).write(to: staging.appendingPathComponent("labelsTr/\(identifier).nii.gz"))
            modalities.insert(stack.modality)
            cases.append(Case(identifier: identifier, seriesInstanceUID: seriesUID, labelObject: object.path, voxelsPerLabel: found,
                              overlappingVoxels: overlaps))
            progress?(index + 1, objects.count)
        }
        guard modalities.count == 1, let modality = modalities.first else {
            throw DatasetPreprocessingError(file: folder.path, detail: "the annotated series mix modalities \(modalities.sorted()); one channel needs one modality")
        }
        var labelObject: [String: Any] = ["background": 0]
        for rule in rules { labelObject[rule.name] = rule.value }
        let description: [String: Any] = [
            "channel_names": ["0": modality.uppercased() == "CT" ? "CT" : modality],
            "labels": labelObject,
            "numTraining": cases.count,
            "file_ending": ".nii.gz",
            "name": output.lastPathComponent,
            "description": "Built by nnseg from DICOM series and their SEG/RTSTRUCT annotations",
        ]
        try JSONSerialization.data(withJSONObject: description, options: [.prettyPrinted, .sortedKeys])
            .write(to: staging.appendingPathComponent("dataset.json"))
        let sources = cases.map { ["case": $0.identifier, "series_instance_uid": $0.seriesInstanceUID,
                                   "label_object": $0.labelObject, "overlapping_voxels": $0.overlappingVoxels] as [String: Any] }
        try JSONSerialization.data(withJSONObject: sources, options: [.prettyPrinted, .sortedKeys])
            .write(to: staging.appendingPathComponent("dicom_sources.json"))
        try fm.moveItem(at: staging, to: output)
        return cases
    }
}
