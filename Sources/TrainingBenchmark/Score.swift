import Foundation
import PlansModel
import TensorKernels
import Training

/// `TrainingBenchmark score <weights.pth> <batch folder>… [--batches N] [--precision fp32|bf16]` (#25): one fixed,
/// trained network scores the batches of several folders in the replay format (nnU-Net's loader via
/// `Ops/bench/nnunet_replay.py --batches-only`, nnseg's via `TrainingBenchmark dump`), without training on them. What
/// the loaders' marginal statistics cannot show — whether the augmented label still lies on the augmented image, per
/// class — shows here: a label moved, flipped or interpolated differently from the image costs a trained network Dice
/// on that loader's batches only. Prints per folder the deep-supervision loss and the per-class Dice of the
/// full-resolution argmax, each as mean ± standard error over samples, for all samples and split into the random and
/// the forced-foreground ones (`PatchSampler.forcesForeground`, nnU-Net's rule).
func scoreBatches(_ arguments: [String]) throws {
    var folders: [String] = []
    var limit = Int.max
    var precision = TrainingConvolution.Precision.float32
    var index = 1
    while index < arguments.count {
        switch arguments[index] {
        case "--batches":
            index += 1
            limit = index < arguments.count ? Int(arguments[index]) ?? limit : limit
        case "--precision":
            index += 1
            precision = index < arguments.count ? TrainingConvolution.Precision(rawValue: arguments[index]) ?? precision : precision
        default:
            folders.append(arguments[index])
        }
        index += 1
    }
    guard let weightsPath = arguments.first, !folders.isEmpty else {
        print("usage: TrainingBenchmark score <weights.pth> <batch folder>… [--batches N] [--precision fp32|bf16]")
        exit(64)
    }
    let plans = try Plans(contentsOf: URL(fileURLWithPath: folders[0]).appendingPathComponent("plans.json"))
    let configuration = try plans.configuration("3d_fullres")
    let batch = configuration.batchSize, patch = configuration.patchSize, volume = patch.reduce(1, *)
    let classes = ProcessInfo.processInfo.environment["CLASSES"].flatMap { Int($0) } ?? 3
    let weights = try checkpointWeights(URL(fileURLWithPath: weightsPath), architecture: configuration.architecture, classes: classes)
    let network = try TrainingNetwork(architecture: configuration.architecture, inputChannels: 1, numClasses: classes, batch: batch,
                                      patch: patch, initialization: .weights(weights), precision: precision)
    let loss = DiceCrossEntropyLoss(numClasses: classes, batchDice: configuration.batchDice)
    let step = TrainingStep(network: network, loss: loss)
    let sampler = PatchSampler(configuration: AugmentationConfiguration(patch: patch), batchSize: batch, training: true)
    let forced = (0..<batch).filter(sampler.forcesForeground).count
    print("scoring with \(weightsPath) (\(precision.rawValue)), batch \(batch) (last \(forced) forced foreground), patch \(patch)")

    struct Scored { var loss: Double; var dice: [Double?]; var forced: Bool }
    func summary(_ values: [Double]) -> String {
        guard values.count > 1 else { return values.first.map { String(format: "%.4f", $0) } ?? "—" }
        let mean = values.reduce(0, +) / Double(values.count)
        let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count - 1)
        return String(format: "%.4f ± %.4f (n %d)", mean, (variance / Double(values.count)).squareRoot(), values.count)
    }
    for folder in folders.map({ URL(fileURLWithPath: $0) }) {
        let record = (try? JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("losses.json")))) as? [String: Any] ?? [:]
        let available = try FileManager.default.contentsOfDirectory(atPath: folder.appendingPathComponent("batches").path)
            .filter { $0.hasSuffix(".data") }.count
        var samples: [Scored] = []
        for i in 0..<min(available, limit) {
            let (input, labels) = try readReplayBatch(folder, i, voxels: batch * volume)
            let targets = step.targets(labels)
            let outputs = try network.forward(Tensor(shape: [batch, 1] + patch, data: input))
            for n in 0..<batch {
                var value = 0.0
                for (k, output) in outputs.enumerated() where step.weights[k] > 0 {
                    let v = output.spatialShape.reduce(1, *), c = output.shape[1]
                    let one = Tensor(shape: [1] + output.shape.dropFirst(), data: Array(output.data[(n * c * v)..<((n + 1) * c * v)]))
                    value += step.weights[k] * loss(logits: one, target: Array(targets[k][(n * v)..<((n + 1) * v)])).loss
                }
                let c = outputs[0].shape[1]
                let top = Tensor(shape: [1] + outputs[0].shape.dropFirst(), data: Array(outputs[0].data[(n * c * volume)..<((n + 1) * c * volume)]))
                let (tp, fp, fn) = loss.pseudoDiceCounts(logits: top, labels: Array(labels[(n * volume)..<((n + 1) * volume)]))
                // A class absent from the sample and not predicted has no Dice (nnU-Net's summary leaves it out too).
                let dice = (0..<tp.count).map { k -> Double? in
                    let d = SegmentationMetrics.Counts(tp: tp[k], fp: fp[k], fn: fn[k]).dice
                    return d.isNaN ? nil : d
                }
                samples.append(Scored(loss: value, dice: dice, forced: sampler.forcesForeground(n)))
            }
            if (i + 1) % 50 == 0 { print("  \(folder.lastPathComponent): batch \(i + 1)") }
        }
        print("\(folder.path) — \(record["source"] ?? "nnU-Net's loader"), seed \(record["seed"] ?? "?"), \(samples.count / batch) batches")
        for (name, group) in [("all", samples), ("random", samples.filter { !$0.forced }), ("forced foreground", samples.filter(\.forced))] {
            var line = "  \(name): loss \(summary(group.map(\.loss)))"
            for k in 0..<(classes - 1) {
                line += "; Dice class \(k + 1) \(summary(group.compactMap { $0.dice[k] }))"
            }
            print(line)
        }
    }
}

/// Batch `index` of a replay folder: `batches/NNNNN.data` (float32) and `.target` (int16), `voxels` values each.
func readReplayBatch(_ folder: URL, _ index: Int, voxels: Int) throws -> (input: [Float], labels: [Int16]) {
    let stem = "batches/" + String(format: "%05d", index)
    return (try readRaw(folder.appendingPathComponent("\(stem).data"), count: voxels, as: Float.self),
            try readRaw(folder.appendingPathComponent("\(stem).target"), count: voxels, as: Int16.self))
}

/// A raw little-endian array of `count` elements (the replay format's .data / .target files).
func readRaw<T>(_ url: URL, count: Int, as: T.Type) throws -> [T] {
    let data = try Data(contentsOf: url)
    guard data.count == count * MemoryLayout<T>.stride else {
        throw CocoaError(.fileReadCorruptFile, userInfo: [NSFilePathErrorKey: url.path])
    }
    return data.withUnsafeBytes { Array($0.bindMemory(to: T.self)) }
}
