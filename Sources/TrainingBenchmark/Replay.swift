import Foundation
import PlansModel
import TensorKernels
import TorchCheckpoint
import Training
import UNet

/// `TrainingBenchmark replay <folder> [fp32|bf16] [iterations] [epochs]` (#25): trains nnseg from nnU-Net's initial weights on
/// the batches nnU-Net's own loader drew, both recorded by `Ops/bench/nnunet_replay.py`, and prints nnseg's loss
/// beside nnU-Net's at every iteration. The first loss compares the forward passes and losses on identical inputs;
/// the curves after it compare the whole step (backward, clipping, SGD-Nesterov) — they drift apart slowly by
/// rounding, but a systematic difference in what a step does shows as one curve falling faster than the other.
/// Also checks nnseg's deep-supervision targets against the ones nnU-Net's transform computed, and writes nnseg's
/// weights after the last iteration to `<folder>/final-nnseg-<precision>.pth` (validate with `nnseg train --val`).
/// NNSEG_INIT_SEED=<seed>: start from nnseg's own initial weights for that seed (what `nnseg train --seed` draws)
/// instead of init.pth — nnseg's draw of the weights with nnU-Net's draw of the batches, to tell which of the two
/// decides a seed's epoch; the weights file is then `final-nnseg-<precision>-init<seed>.pth`.
/// Each iteration also prints the Dice per class of the network's prediction on the batch it trains on (before the
/// update), and the summary its mean per window: whether a class an epoch ends without was never learnt or was lost.
/// `epochs` > 1 splits the iterations into that many epochs with nnU-Net's poly learning rate over them (the recorded
/// rate is the initial one), as `nnseg train --epochs <epochs> --iterations <iterations / epochs>` trains.
func replayBenchmark(_ arguments: [String]) throws {
    guard let folderPath = arguments.first else {
        say("usage: TrainingBenchmark replay <folder written by Ops/bench/nnunet_replay.py> [fp32|bf16] [iterations] [epochs]")
        return
    }
    let folder = URL(fileURLWithPath: folderPath)
    let precision = TrainingConvolution.Precision(rawValue: arguments.count > 1 ? arguments[1] : "fp32") ?? .float32
    guard precision.isAvailable else {
        say("\(precision.rawValue): not available on this CPU (oneDNN ISA \(DNNLContext.effectiveISA))")
        return
    }
    let record = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("losses.json"))) as? [String: Any] ?? [:]
    let reference = record["loss"] as? [Double] ?? []
    let learningRate = record["learning_rate"] as? Double ?? 0.01
    // Folders written with --batches-only hold batches without nnU-Net's losses: nnseg's curve alone.
    let available = record["batches"] as? Int ?? reference.count
    let iterations = min(arguments.count > 2 ? Int(arguments[2]) ?? available : available, available)
    let epochs = arguments.count > 3 ? Int(arguments[3]) ?? 1 : 1
    guard epochs >= 1, iterations % epochs == 0 else {
        say("\(iterations) iterations do not split into \(epochs) epochs of equal length")
        return
    }
    let iterationsPerEpoch = iterations / epochs
    let plans = try Plans(contentsOf: folder.appendingPathComponent("plans.json"))
    let configuration = try plans.configuration("3d_fullres")
    let batch = configuration.batchSize, patch = configuration.patchSize, volume = patch.reduce(1, *)
    let classes = ProcessInfo.processInfo.environment["CLASSES"].flatMap { Int($0) } ?? 3

    let initSeed = ProcessInfo.processInfo.environment["NNSEG_INIT_SEED"].flatMap { UInt64($0) }
    let initialization: TrainingNetwork.Initialization
    let origin: String
    if let initSeed {
        initialization = .kaiming(seed: initSeed)
        origin = "nnseg's initial weights for seed \(initSeed)"
    } else {
        let weights = try checkpointWeights(folder.appendingPathComponent("init.pth"), architecture: configuration.architecture, classes: classes)
        initialization = .weights(weights)
        origin = "\(weights.count) tensors from init.pth"
    }
    let network = try TrainingNetwork(architecture: configuration.architecture, inputChannels: 1, numClasses: classes, batch: batch,
                                      patch: patch, initialization: initialization, precision: precision)
    let step = TrainingStep(network: network, loss: DiceCrossEntropyLoss(numClasses: classes, batchDice: configuration.batchDice))
    step.countsTrainingPredictions = true
    say("replay of \(iterations) batches (\(record["source"] ?? "nnU-Net's loader"), seed \(record["seed"] ?? "?")), precision \(precision.rawValue), learning rate \(learningRate)"
          + (epochs > 1 ? " (poly over \(epochs) epochs of \(iterationsPerEpoch))" : "") + ", "
          + "batch \(batch), patch \(patch), \(origin)")

    var ours: [Double] = []
    var trainDice: [[Double]] = []  // per iteration, per foreground class: Dice of the prediction on its batch
    var targetMismatches = 0, targetVoxels = 0
    for i in 0..<iterations {
        let stem = String(format: "%05d", i)
        let (input, labels) = try readReplayBatch(folder, i, voxels: batch * volume)
        for (k, mine) in step.targets(labels).enumerated().dropFirst() {
            let url = folder.appendingPathComponent("ds/\(stem).target\(k)")
            guard FileManager.default.fileExists(atPath: url.path) else { continue }
            let theirs = try readRaw(url, count: mine.count, as: Int16.self)
            targetMismatches += zip(mine, theirs).filter { $0 != $1 }.count
            targetVoxels += mine.count
        }
        let rate = polyLearningRate(initial: learningRate, epoch: i / iterationsPerEpoch, maxEpochs: epochs)
        let loss = try step.train(input: Tensor(shape: [batch, 1] + patch, data: input), labels: labels, learningRate: rate)
        ours.append(loss)
        let counts = step.lastTrainingCounts ?? (tp: [], fp: [], fn: [])
        let dice = counts.tp.indices.map { SegmentationMetrics.Counts(tp: counts.tp[$0], fp: counts.fp[$0], fn: counts.fn[$0]).dice }
        trainDice.append(dice)
        let diceText = "  batch Dice " + dice.map { String(format: "%.3f", $0) }.joined(separator: " / ")
        if i < reference.count {
            say(String(format: "iteration %d: nnseg %.6f  nnU-Net %.6f  difference %+.6f", i + 1, loss, reference[i], loss - reference[i]) + diceText)
        } else {
            say(String(format: "iteration %d: nnseg %.6f", i + 1, loss) + diceText)
        }
    }
    let final = folder.appendingPathComponent("final-nnseg-\(precision.rawValue)\(initSeed.map { "-init\($0)" } ?? "").pth")
    try network.saveWeights(configuration: "3d_fullres", mirrorAxes: Array(0..<patch.count), to: final)
    say("weights after iteration \(iterations): \(final.path)")
    say("deep-supervision targets: \(targetMismatches) of \(targetVoxels) voxels differ from nnU-Net's")
    // When each class is learnt: one-epoch runs first collapse to background, then pick up the classes one by one,
    // and a class picked up late is the one the epoch ends without.
    for k in 0..<(trainDice.first?.count ?? 0) {
        let series = trainDice.map { $0[k].isNaN ? 0 : $0[k] }
        let learnt = series.count < 10 ? nil : (10...series.count).first { series[($0 - 10)..<$0].reduce(0, +) / 10 >= 0.2 }
        say("class \(k + 1): batch Dice first averages 0.2 over ten iterations " + (learnt.map { "at iteration \($0)" } ?? "in none of the \(iterations)"))
    }
    var start = 0
    for end in [1, 10, 50, 100, 150, 200, 250, 500, 750, Int.max] where start < iterations {
        let stop = min(end, iterations)
        let a = ours[start..<stop]
        let meanA = a.reduce(0, +) / Double(a.count)
        let window = trainDice[start..<stop]
        let meanDice = (0..<(window.first?.count ?? 0)).map { k in
            let finite = window.map { $0[k] }.filter { !$0.isNaN }
            return finite.isEmpty ? Double.nan : finite.reduce(0, +) / Double(finite.count)
        }
        let diceText = ", batch Dice " + meanDice.map { String(format: "%.3f", $0) }.joined(separator: " / ")
        if stop <= reference.count {
            let b = reference[start..<stop]
            let meanB = b.reduce(0, +) / Double(b.count)
            let meanAbs = zip(a, b).map { abs($0 - $1) }.reduce(0, +) / Double(a.count)
            say(String(format: "iterations %d–%d: mean loss nnseg %.4f, nnU-Net %.4f (nnseg − nnU-Net %+.4f), mean |difference| %.4f",
                         start + 1, stop, meanA, meanB, meanA - meanB, meanAbs) + diceText)
        } else {
            say(String(format: "iterations %d–%d: mean loss nnseg %.4f", start + 1, stop, meanA) + diceText)
        }
        start = stop
    }
}

/// One line to standard output, unbuffered: a replay into a log file shows its progress per iteration.
private func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// A checkpoint's `network_weights` as the training network takes them: the first of each aliased name, and only the
/// tensors the architecture has (nnU-Net's `all_modules.*` / `decoder.encoder.*` aliases dropped).
func checkpointWeights(_ url: URL, architecture: NetworkArchitecture, classes: Int) throws -> [String: Tensor] {
    let checkpoint = try TorchCheckpoint(contentsOf: url)
    let names = Set(UNet.expectedTensors(architecture, inputChannels: 1, numClasses: classes).map(\.name))
    var weights: [String: Tensor] = [:]
    for (name, entry) in try checkpoint.stateDict(at: "network_weights") where names.contains(name) && weights[name] == nil {
        let t = try checkpoint.tensor(entry)
        weights[name] = Tensor(shape: t.shape, data: t.floats())
    }
    return weights
}
