import Foundation
import PlansModel
import TensorKernels
import Training

/// `TrainingBenchmark initfn <batch folder> <batches> (--seeds <first> <count> | <init.pth>…) [--precision fp32|bf16]`
/// (#25): what the untrained network computes, for many initial draws — nnseg's own (`.kaiming(seed:)`, what
/// `nnseg train --seed` starts from) or given weights files (nnU-Net's, `Ops/bench/nnunet_replay.py --init-only`).
/// One JSON line per draw with statistics of the full-resolution logits on the first <batches> batches of a replay
/// folder: per class the mean and standard deviation of the logit, the share of voxels it wins (argmax), its mean
/// softmax probability, its soft Dice against the labels (batch Dice), and the cross-entropy. The same statistics of
/// torch's draws (`Ops/bench/init_function_stats.py`, on the same batches) show whether the two initialisations have
/// the same law as functions, which per-tensor moments cannot: a one-epoch run's outcome is decided by its initial
/// weights (Ops/bench/README, "Loader or initial weights").
func initialFunctionStatistics(_ arguments: [String]) throws {
    var sources: [(String, TrainingNetwork.Initialization)] = []
    var precision = TrainingConvolution.Precision.float32
    var rest: [String] = []
    var seeds: (UInt64, Int)?
    var index = 0
    while index < arguments.count {
        switch arguments[index] {
        case "--seeds" where index + 2 < arguments.count:
            guard let first = UInt64(arguments[index + 1]), let count = Int(arguments[index + 2]) else { break }
            seeds = (first, count)
            index += 2
        case "--precision" where index + 1 < arguments.count:
            precision = TrainingConvolution.Precision(rawValue: arguments[index + 1]) ?? precision
            index += 1
        default:
            rest.append(arguments[index])
        }
        index += 1
    }
    guard rest.count >= 2, let batches = Int(rest[1]), seeds != nil || rest.count > 2 else {
        print("usage: TrainingBenchmark initfn <batch folder> <batches> (--seeds <first> <count> | <init.pth>…) [--precision fp32|bf16]")
        exit(64)
    }
    let folder = URL(fileURLWithPath: rest[0])
    let configuration = try Plans(contentsOf: folder.appendingPathComponent("plans.json")).configuration("3d_fullres")
    let batch = configuration.batchSize, patch = configuration.patchSize, volume = patch.reduce(1, *)
    let classes = ProcessInfo.processInfo.environment["CLASSES"].flatMap { Int($0) } ?? 3
    if let (first, count) = seeds {
        for seed in first..<(first + UInt64(count)) { sources.append(("nnseg seed \(seed)", .kaiming(seed: seed))) }
    }
    for path in rest.dropFirst(2) {
        sources.append((path, .weights(try checkpointWeights(URL(fileURLWithPath: path), architecture: configuration.architecture,
                                                             classes: classes))))
    }
    let inputs = try (0..<batches).map { i in
        let (input, labels) = try readReplayBatch(folder, i, voxels: batch * volume)
        return (Tensor(shape: [batch, 1] + patch, data: input), labels)
    }
    let context = try DNNLContext()
    for (name, initialization) in sources {
        let network = try TrainingNetwork(architecture: configuration.architecture, inputChannels: 1, numClasses: classes, batch: batch,
                                          patch: patch, initialization: initialization, precision: precision, context: context)
        var statistics = InitialFunctionStatistics(classes: classes)
        for (input, labels) in inputs {
            statistics.add(logits: try network.forward(input)[0], labels: labels)
        }
        var record = statistics.record
        record["source"] = name
        if case .kaiming(let seed) = initialization { record["seed"] = seed }
        var line = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
        line.append(0x0A)
        FileHandle.standardOutput.write(line)
    }
}

/// Running sums over the voxels of full-resolution logits `(N, K, …)` and their labels; the record is the statistics
/// `Ops/bench/init_function_stats.py` computes the same way for torch's network.
struct InitialFunctionStatistics {
    let classes: Int
    var voxels = 0.0
    var logitSum: [Double], logitSquares: [Double], wins: [Double], probability: [Double]
    var intersection: [Double], labelled: [Double]
    var crossEntropy = 0.0

    init(classes: Int) {
        self.classes = classes
        (logitSum, logitSquares, wins, probability, intersection, labelled) = ([Double](repeating: 0, count: classes),
            [Double](repeating: 0, count: classes), [Double](repeating: 0, count: classes), [Double](repeating: 0, count: classes),
            [Double](repeating: 0, count: classes), [Double](repeating: 0, count: classes))
    }

    mutating func add(logits: Tensor, labels: [Int16]) {
        let n = logits.shape[0], k = logits.shape[1], v = logits.spatialShape.reduce(1, *)
        precondition(k == classes && labels.count == n * v)
        var z = [Double](repeating: 0, count: k), e = z
        for sample in 0..<n {
            for voxel in 0..<v {
                var top = 0
                for c in 0..<k {
                    z[c] = Double(logits.data[(sample * k + c) * v + voxel])
                    logitSum[c] += z[c]
                    logitSquares[c] += z[c] * z[c]
                    if z[c] > z[top] { top = c }
                }
                wins[top] += 1
                var total = 0.0
                for c in 0..<k {
                    e[c] = exp(z[c] - z[top])
                    total += e[c]
                }
                let label = Int(labels[sample * v + voxel])
                crossEntropy += -(z[label] - z[top] - log(total))
                labelled[label] += 1
                for c in 0..<k {
                    let p = e[c] / total
                    probability[c] += p
                    if c == label { intersection[c] += p }
                }
            }
        }
        voxels += Double(n * v)
    }

    var record: [String: Any] {
        let mean = logitSum.map { $0 / voxels }
        return ["mean_logit": mean,
                "sd_logit": zip(logitSquares, mean).map { max($0 / voxels - $1 * $1, 0).squareRoot() },
                "argmax_share": wins.map { $0 / voxels },
                "mean_probability": probability.map { $0 / voxels },
                "soft_dice": (0..<classes).map { 2 * intersection[$0] / (probability[$0] + labelled[$0]) },
                "cross_entropy": crossEntropy / voxels]
    }
}
