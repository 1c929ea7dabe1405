import Foundation
import PlansModel
import TorchCheckpoint

/// A model folder in nnU-Net's layout (`plans.json`, `dataset.json`, `fold_<f>/checkpoint_final.pth`) with
/// seeded random weights for a plans configuration: what the CT benchmark (issue #16) predicts with, since no
/// trained CT model ships with the project. Convolution weights are He-normal (nnU-Net's `InitWeights_He(1e-2)`),
/// biases 0, instance-norm scales 1 — deterministic for a seed.
public enum UntrainedModel {
    public static func write(plans plansURL: URL, dataset datasetURL: URL, configuration: String, seed: UInt64, fold: Int = 0,
                             to folder: URL) throws {
        let plans = try Plans(contentsOf: plansURL)
        let dataset = try DatasetDescription(contentsOf: datasetURL)
        let architecture = try plans.configuration(configuration).architecture
        let tensors = UNet.expectedTensors(architecture, inputChannels: dataset.channelNames.count, numClasses: dataset.segmentationHeads)
        var random = SeededNormal(seed: seed)
        var storages: [String: [Float]] = [:]
        var weights: [(String, PickleWritable)] = []
        for (i, t) in tensors.enumerated() {
            let count = t.shape.reduce(1, *)
            let values: [Float]
            if t.name.hasSuffix(".bias") {
                values = [Float](repeating: 0, count: count)
            } else if t.shape.count == 1 {
                values = [Float](repeating: 1, count: count)  // normalisation scale
            } else {
                let fanIn = Float(t.shape.dropFirst().reduce(1, *))
                let std = (2 / (1 + 1e-4) / fanIn).squareRoot()
                values = (0..<count).map { _ in random.next() * std }
            }
            storages["\(i)"] = values
            // Under every key nnU-Net's module registers it, so that the reference loads the checkpoint too.
            for key in UNet.stateDictionaryKeys(t.name) { weights.append((key, .float32Tensor(shape: t.shape, storage: "\(i)"))) }
        }
        let fm = FileManager.default
        let foldFolder = folder.appendingPathComponent("fold_\(fold)")
        try fm.createDirectory(at: foldFolder, withIntermediateDirectories: true)
        for (source, name) in [(plansURL, "plans.json"), (datasetURL, "dataset.json")] {
            let target = folder.appendingPathComponent(name)
            if fm.fileExists(atPath: target.path) { try fm.removeItem(at: target) }
            try fm.copyItem(at: source, to: target)
        }
        let plansJSON = try JSONSerialization.jsonObject(with: Data(contentsOf: plansURL))
        let datasetJSON = try JSONSerialization.jsonObject(with: Data(contentsOf: datasetURL))
        let axes = architecture.dimension == 2 ? [0, 1] : [0, 1, 2]
        let root: PickleWritable = .dict([
            (.string("network_weights"), .orderedDict(weights)),
            (.string("optimizer_state"), .none),
            (.string("grad_scaler_state"), .none),
            (.string("current_epoch"), .int(0)),
            (.string("init_args"), .dict([
                (.string("plans"), .json(plansJSON)), (.string("configuration"), .string(configuration)), (.string("fold"), .int(fold)),
                (.string("dataset_json"), .json(datasetJSON)), (.string("device"), .device("cpu")),
            ])),
            (.string("trainer_name"), .string("nnUNetTrainer")),
            (.string("inference_allowed_mirroring_axes"), .tuple(axes.map { .int($0) })),
            (.string("nnseg_untrained_seed"), .int(Int(truncatingIfNeeded: seed))),
        ])
        try CheckpointWriter.write(root, storages: storages, to: foldFolder.appendingPathComponent("checkpoint_final.pth"))
    }
}

/// Standard normal numbers from SplitMix64 (Box–Muller): the same sequence for a seed on every machine.
struct SeededNormal {
    var state: UInt64
    var spare: Float?

    init(seed: UInt64) { state = seed }

    mutating func uniform() -> Double {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Double((z ^ (z >> 31)) >> 11) / Double(1 << 53)
    }

    mutating func next() -> Float {
        if let s = spare { spare = nil; return s }
        let u1 = max(uniform(), 1e-300), u2 = uniform()
        let r = (-2 * log(u1)).squareRoot()
        spare = Float(r * sin(2 * .pi * u2))
        return Float(r * cos(2 * .pi * u2))
    }
}
