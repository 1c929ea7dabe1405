import CaseIdentity
import Digest
import Foundation
import PlansModel
import TorchCheckpoint
import ZIPFoundation

/// Writes a model bundle: nnU-Net's export zip layout (`nnUNetv2_export_model_to_zip`: paths relative to
/// `nnUNet_results`, so `nnUNetv2_install_pretrained_model_from_zip` installs it) plus nnseg's manifest and an
/// optional signature.
///
/// Per model folder, as nnU-Net exports: `plans.json`, `dataset.json`, `dataset_fingerprint.json`; per fold the
/// checkpoint, `debug.json`, `progress.png`, `network_architecture.pdf` and `validation/summary.json` where present;
/// `crossval_results_folds_*/{summary.json, postprocessing.pkl, postprocessing.json}` and the folder's own
/// `postprocessing.json`. nnseg adds each fold's `training_log_*.txt` (the training's provenance). Model folders
/// are placed at `<dataset>/<trainer>__<plans>__<configuration>` whatever their name on disk (configuration and
/// trainer from the checkpoint, as nnU-Net's predictor reads them).
///
/// ```swift
/// let manifest = try BundleExporter(modelFolders: [folder], folds: ["0"]).write(to: zip, id: "hippo-v1", signingKey: key)
/// ```
public struct BundleExporter {
    public let modelFolders: [URL]
    /// Fold names to export; nil: every `fold_<n>` / `fold_all` holding the checkpoint.
    public let folds: [String]?
    public let checkpoint: String

    public init(modelFolders: [URL], folds: [String]? = nil, checkpoint: String = "checkpoint_final.pth") {
        self.modelFolders = modelFolders
        self.folds = folds
        self.checkpoint = checkpoint
    }

    /// One file going into the bundle.
    struct Source {
        var path: String
        var url: URL
    }

    /// Collects, hashes and zips; the zip is written next to `output` and renamed into place when complete.
    @discardableResult
    public func write(to output: URL, id: String?, description: String? = nil, signingKey: SigningKey? = nil,
                      progress: (String) -> Void = { _ in }) throws -> BundleManifest {
        guard !modelFolders.isEmpty else { throw BundleError(.modelInvalid, output.path, "no model folder given") }
        var sources: [Source] = []
        var models: [BundleManifest.Model] = []
        var dataset: BundleManifest.Dataset?
        for folder in modelFolders {
            let (model, files, summary) = try describe(folder)
            if let dataset, dataset.name != summary.name || dataset.labels != summary.labels {
                throw BundleError(.modelInvalid, folder.path, "a bundle holds models of one dataset: this is \(summary.name), the first was \(dataset.name)")
            }
            guard !models.contains(where: { $0.folder == model.folder }) else {
                throw BundleError(.modelInvalid, folder.path, "\(model.folder) is given twice")
            }
            dataset = summary
            models.append(model)
            sources += files
        }
        // Dataset-level files of nnU-Net's results layout, when the (first) model folder sits in one.
        let datasetFolder = modelFolders[0].deletingLastPathComponent()
        if datasetFolder.lastPathComponent == dataset!.name {
            for name in ["inference_information.json", "inference_instructions.txt"] {
                let url = datasetFolder.appendingPathComponent(name)
                if FileManager.default.fileExists(atPath: url.path) { sources.append(Source(path: "\(dataset!.name)/\(name)", url: url)) }
            }
        }

        let bundleID = id ?? Self.defaultIdentifier(dataset: dataset!.name, models: models)
        try BundleManifest.checkIdentifier(bundleID, source: output.path)
        var files: [BundleManifest.File] = []
        for source in sources {
            progress("hashing \(source.path)")
            let size = try Self.size(source.url)
            files.append(BundleManifest.File(path: source.path, sha256: try SHA256.hash(contentsOf: source.url).hex, bytes: size))
        }
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        let manifest = BundleManifest(format: BundleManifest.currentFormat, id: bundleID, created: formatter.string(from: Date()),
                                      nnsegVersion: SoftwareVersion.described, description: description, dataset: dataset!,
                                      models: models, files: files.sorted { $0.path < $1.path })
        let manifestData = try manifest.encoded()
        let signature = try signingKey.map { try BundleSignature.sign(manifestData, with: $0).encoded() }

        let fm = FileManager.default
        let partial = output.deletingLastPathComponent().appendingPathComponent(".\(output.lastPathComponent).partial")
        try? fm.removeItem(at: partial)
        do {
            let archive: Archive
            do { archive = try Archive(url: partial, accessMode: .create) } catch {
                throw BundleError(.modelInvalid, output.path, "cannot create the zip (\(error))")
            }
            for source in sources {
                progress("adding \(source.path)")
                let handle = try FileHandle(forReadingFrom: source.url)
                defer { try? handle.close() }
                try archive.addEntry(with: source.path, type: .file, uncompressedSize: try Self.size(source.url),
                                     compressionMethod: .deflate) { position, size in
                    try handle.seek(toOffset: UInt64(position))
                    return try handle.read(upToCount: size) ?? Data()
                }
            }
            for (name, data) in [("manifest.json", manifestData), ("signature.json", signature)] {
                guard let data else { continue }
                try archive.addEntry(with: "\(manifest.folder)/\(name)", type: .file, uncompressedSize: Int64(data.count),
                                     compressionMethod: .deflate) { position, size in
                    data.subdata(in: Int(position)..<Int(position) + size)
                }
            }
            if fm.fileExists(atPath: output.path) { try fm.removeItem(at: output) }
            try fm.moveItem(at: partial, to: output)
        } catch {
            try? fm.removeItem(at: partial)
            throw error
        }
        return manifest
    }

    /// `<dataset>_<configurations>_folds<…>`, e.g. `Dataset004_Hippocampus_3d_fullres_folds0-1-2-3-4`.
    static func defaultIdentifier(dataset: String, models: [BundleManifest.Model]) -> String {
        let configurations = models.map(\.configuration).joined(separator: "+")
        let folds = Array(Set(models.flatMap { $0.folds.map(\.name) })).sorted().joined(separator: "-")
        return "\(dataset)_\(configurations)_folds\(folds)"
    }

    static func size(_ url: URL) throws -> Int64 {
        guard let size = (try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.int64Value else {
            throw BundleError(.modelInvalid, url.path, "cannot read the file's size")
        }
        return size
    }

    /// One model folder: its manifest entry, its files and the dataset it was trained on.
    func describe(_ folder: URL) throws -> (BundleManifest.Model, [Source], BundleManifest.Dataset) {
        let fm = FileManager.default
        func file(_ name: String) -> URL { folder.appendingPathComponent(name) }
        let plans: Plans, description: DatasetDescription
        do {
            plans = try Plans(contentsOf: file("plans.json"))
            description = try DatasetDescription(contentsOf: file("dataset.json"))
        } catch {
            throw BundleError(.modelInvalid, folder.path, "not an nnU-Net model folder: \(error)")
        }
        let names: [String]
        if let folds {
            names = folds
        } else {
            let entries = (try? fm.contentsOfDirectory(atPath: folder.path)) ?? []
            names = entries.filter { $0.hasPrefix("fold_") && fm.fileExists(atPath: folder.appendingPathComponent("\($0)/\(checkpoint)").path) }
                .map { String($0.dropFirst(5)) }
                .sorted { (Int($0) ?? Int.max, $0) < (Int($1) ?? Int.max, $1) }
        }
        guard !names.isEmpty else { throw BundleError(.modelInvalid, folder.path, "no fold_N/\(checkpoint) to export") }

        // Configuration and trainer from the first fold's checkpoint.
        let first = file("fold_\(names[0])/\(checkpoint)")
        let metadata: TorchCheckpoint
        do { metadata = try TorchCheckpoint(contentsOf: first) } catch {
            throw BundleError(.modelInvalid, first.path, "\(error)")
        }
        guard let configurationName = metadata.root["init_args"]?["configuration"]?.stringValue else {
            throw BundleError(.modelInvalid, first.path, "the checkpoint names no configuration (init_args.configuration)")
        }
        let configuration: ConfigurationPlan
        do { configuration = try plans.configuration(configurationName) } catch {
            throw BundleError(.modelInvalid, folder.path, "\(error)")
        }
        let trainer = metadata.root["trainer_name"]?.stringValue ?? "nnUNetTrainer"
        let target = "\(plans.datasetName)/\(trainer)__\(plans.plansName)__\(configurationName)"

        var sources: [Source] = []
        func add(_ relative: String, required: Bool = false) throws {
            let url = file(relative)
            var isFolder: ObjCBool = false
            if fm.fileExists(atPath: url.path, isDirectory: &isFolder), !isFolder.boolValue {
                sources.append(Source(path: "\(target)/\(relative)", url: url))
            } else if required {
                throw BundleError(.modelInvalid, url.path, "missing")
            }
        }
        try add("plans.json", required: true)
        try add("dataset.json", required: true)
        try add("dataset_fingerprint.json")
        try add("postprocessing.json")
        let labelNames = Dictionary(description.labels.map { ($0.values.map(String.init).joined(separator: ","), $0.name) },
                                    uniquingKeysWith: { a, _ in a })
        var folds: [BundleManifest.Fold] = []
        for name in names {
            let fold = "fold_\(name)"
            try add("\(fold)/\(checkpoint)", required: true)
            for extra in ["debug.json", "progress.png", "network_architecture.pdf", "validation/summary.json"] { try add("\(fold)/\(extra)") }
            let logs = ((try? fm.contentsOfDirectory(atPath: file(fold).path)) ?? []).filter { $0.hasPrefix("training_log") && $0.hasSuffix(".txt") }.sorted()
            for log in logs { try add("\(fold)/\(log)") }
            var entry = BundleManifest.Fold(name: name, checkpoint: "\(target)/\(fold)/\(checkpoint)")
            let root: PickleValue
            if name == names[0] {
                root = metadata.root
            } else {
                let checkpointFile = file("\(fold)/\(checkpoint)")
                do { root = try TorchCheckpoint(contentsOf: checkpointFile).root } catch {
                    throw BundleError(.modelInvalid, checkpointFile.path, "\(error)")
                }
            }
            entry.epochs = root["current_epoch"]?.intValue.map { Int($0) }
            if let data = try? Data(contentsOf: file("\(fold)/validation/summary.json")),
               let summary = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
                if let mean = summary["mean"] as? [String: Any] {
                    var dice: [String: Double] = [:]
                    for (key, value) in mean {
                        guard let d = (value as? [String: Any])?["Dice"] as? Double else { continue }
                        // Keys are label values ("1") or region tuples ("(1, 2)"); named through dataset.json.
                        let normalized = key.filter { $0.isNumber || $0 == "," }
                        dice[labelNames[normalized] ?? key] = (d * 10_000).rounded() / 10_000
                    }
                    entry.validationDice = dice.isEmpty ? nil : dice
                }
                if let foreground = (summary["foreground_mean"] as? [String: Any])?["Dice"] as? Double {
                    entry.validationForegroundDice = (foreground * 10_000).rounded() / 10_000
                }
            }
            if let log = logs.last, let text = try? String(contentsOf: file("\(fold)/\(log)"), encoding: .utf8) {
                entry.training = text.split(separator: "\n").first { $0.contains("nnseg training:") }.map {
                    String($0[$0.range(of: "nnseg training:")!.lowerBound...])
                }
            }
            folds.append(entry)
        }
        // nnU-Net's cross-validation summary and postprocessing for these folds.
        let crossval = ((try? fm.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.hasPrefix("crossval_results_folds_") }.sorted()
        for folderName in crossval {
            for name in ["summary.json", "postprocessing.pkl", "postprocessing.json"] { try add("\(folderName)/\(name)") }
        }
        let labels = Dictionary(description.labels.map { ($0.name, $0.values) }, uniquingKeysWith: { a, _ in a })
        let dataset = BundleManifest.Dataset(name: plans.datasetName, labels: labels, channels: description.channelNames,
                                             numTraining: description.numTraining, fileEnding: description.fileEnding)
        let model = BundleManifest.Model(folder: target, configuration: configurationName, trainer: trainer, plans: plans.plansName,
                                         patchSize: configuration.patchSize, spacing: configuration.spacing, folds: folds)
        return (model, sources, dataset)
    }
}
