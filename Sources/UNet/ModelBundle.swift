import Foundation
import PlansModel
import TensorKernels
import TorchCheckpoint

/// A problem with a model folder: names the file and what is wrong.
public struct ModelBundleError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let detail: String
    public var description: String { "MODEL_INVALID: \(path): \(detail)" }
}

/// A trained nnU-Net v2 results folder as users have it (`dataset.json`, `plans.json`,
/// `fold_N/checkpoint_final.pth`), standing on its own (STYLE.md §1).
///
/// The configuration and trainer are read from the first fold's checkpoint (`init_args.configuration`,
/// `trainer_name`), not from the folder name; so are the mirroring axes allowed at inference.
///
/// ```swift
/// let bundle = try ModelBundle(folder: url, folds: ["0"])
/// let network = try UNet(bundle: bundle, fold: bundle.folds[0])
/// ```
public struct ModelBundle: Sendable {
    public struct Fold: Sendable, Equatable {
        /// "0"…"4" or "all".
        public var name: String
        public var checkpoint: URL
    }

    public let folder: URL
    public let plans: Plans
    public let dataset: DatasetDescription
    public let folds: [Fold]
    public let configurationName: String
    public let configuration: ConfigurationPlan
    public let trainerName: String
    /// Spatial axes (0-based, in the network's array order) mirroring TTA may flip; nil: none allowed.
    public let inferenceAllowedMirroringAxes: [Int]?
    /// Fold 0's checkpoint, read once for the metadata above and handed to the first ``weights(_:)`` call
    /// for that fold (then released), so the file is parsed once.
    private let firstCheckpoint: CheckpointHandOff

    /// - Parameters:
    ///   - folds: fold names; nil finds every `fold_<int>` folder holding the checkpoint (not `fold_all`).
    public init(folder: URL, folds: [String]? = nil, checkpointName: String = "checkpoint_final.pth") throws {
        self.folder = folder
        plans = try Plans(contentsOf: folder.appendingPathComponent("plans.json"))
        dataset = try DatasetDescription(contentsOf: folder.appendingPathComponent("dataset.json"))
        let names: [String]
        if let folds {
            names = folds
        } else {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
            names = entries.filter { $0.hasPrefix("fold_") && Int($0.dropFirst(5)) != nil }
                .filter { FileManager.default.fileExists(atPath: folder.appendingPathComponent("\($0)/\(checkpointName)").path) }
                .map { String($0.dropFirst(5)) }.sorted { Int($0)! < Int($1)! }
        }
        guard !names.isEmpty else {
            throw ModelBundleError(path: folder.path, detail: "no fold_N/\(checkpointName) found")
        }
        self.folds = try names.map { name in
            let url = folder.appendingPathComponent("fold_\(name)/\(checkpointName)")
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw ModelBundleError(path: url.path, detail: "checkpoint for fold \(name) is missing")
            }
            return Fold(name: name, checkpoint: url)
        }
        let first = try TorchCheckpoint(contentsOf: self.folds[0].checkpoint)
        firstCheckpoint = CheckpointHandOff(first, url: self.folds[0].checkpoint)
        guard let configuration = first.root["init_args"]?["configuration"]?.stringValue else {
            throw ModelBundleError(path: self.folds[0].checkpoint.path, detail: "init_args.configuration is missing")
        }
        configurationName = configuration
        self.configuration = try plans.configuration(configuration)
        trainerName = first.root["trainer_name"]?.stringValue ?? "nnUNetTrainer"
        if let axes = first.root["inference_allowed_mirroring_axes"], !axes.isNone {
            inferenceAllowedMirroringAxes = axes.elements?.compactMap { $0.intValue.map { Int($0) } }
        } else {
            inferenceAllowedMirroringAxes = nil
        }
    }

    /// Input channels: image channels, plus one per foreground label for a cascade's second stage.
    public var inputChannels: Int {
        dataset.channelNames.count + (configuration.previousStage != nil ? dataset.foregroundLabels.count : 0)
    }

    /// The fold's `network_weights`, one tensor per distinct parameter: the aliases that
    /// dynamic-network-architectures registers twice (`…all_modules.N…`, `decoder.encoder.…`) are dropped
    /// after checking that they share storage with (or equal) their canonical tensor.
    public func weights(_ fold: Fold) throws -> [String: Tensor] {
        let checkpoint = try firstCheckpoint.take(for: fold.checkpoint) ?? TorchCheckpoint(contentsOf: fold.checkpoint)
        let entries = try checkpoint.stateDict(at: "network_weights")
        let byName = Dictionary(entries.map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        var weights: [String: Tensor] = [:]
        for (name, reference) in entries where Self.canonicalName(name) == name {
            let data = try checkpoint.tensor(reference)
            weights[name] = Tensor(shape: data.shape.isEmpty ? [1] : data.shape, data: data.floats())
        }
        for (name, reference) in entries {
            let canonical = Self.canonicalName(name)
            guard canonical != name else { continue }
            guard let original = byName[canonical] else { continue }  // alias without canonical twin: ignored, validated by UNet
            if original != reference {
                let a = try checkpoint.tensor(original), b = try checkpoint.tensor(reference)
                guard a == b else {
                    throw ModelBundleError(path: fold.checkpoint.path, detail: "tensor \(name) differs from its alias \(canonical)")
                }
            }
        }
        return weights
    }

    /// The canonical name of a possibly aliased state-dict key.
    static func canonicalName(_ name: String) -> String {
        var n = name
        if n.hasPrefix("decoder.encoder.") { n = String(n.dropFirst("decoder.".count)) }
        // `X.all_modules.0.p` is the conv `X.conv.p`; `X.all_modules.1.p` the norm (no dropout in nnU-Net plans).
        if let range = n.range(of: ".all_modules.0.") { n.replaceSubrange(range, with: ".conv.") }
        else if let range = n.range(of: ".all_modules.1.") { n.replaceSubrange(range, with: ".norm.") }
        else if let range = n.range(of: ".all_modules.2.") { n.replaceSubrange(range, with: ".norm.") }  // with dropout
        return n
    }
}

/// Holds one parsed checkpoint until its first user takes it.
final class CheckpointHandOff: @unchecked Sendable {
    private let lock = NSLock()
    private var checkpoint: TorchCheckpoint?
    private let url: URL

    init(_ checkpoint: TorchCheckpoint, url: URL) {
        self.checkpoint = checkpoint
        self.url = url
    }

    /// The held checkpoint if it is the one at `url` (once), else nil.
    func take(for url: URL) -> TorchCheckpoint? {
        lock.lock()
        defer { lock.unlock() }
        guard url == self.url, let held = checkpoint else { return nil }
        checkpoint = nil
        return held
    }
}
