// Training-step benchmark (issue #9): time per iteration of nnseg's trainer on the Hippocampus
// 3d_fullres configuration (batch 9, patch 40×56×40) against the reference nnU-Net's 6.3 s per iteration
// on the CPU (shared/reference/README.md §2).
//
//   bash Ops/bench/training_step.sh [--znver5]
//
// Steps run on synthetic batches (random intensities, random labels) so the timing is the network,
// loss and optimiser only; the data loader runs on its own thread in real training and is measured
// separately (`--loader`, printed as batches per second on one core).
//
//   TrainingBenchmark loader <plans.json> <configuration> <preprocessed configuration folder> <memory|mapped> <cache MiB> <batches> [seed]
//
// times the data loader alone (one thread: sampling, crop, augmentation) on a preprocessed dataset with the given
// storage and cache bound — Ops/bench/loader.sh runs it on a dataset larger than the memory it is allowed (#21) — and
// prints what the batches hold (label voxel shares, samples without foreground, intensity moments), the line
// Ops/bench/nnunet_batch_stats.py prints for nnU-Net's loader (#25).
//
//   TrainingBenchmark norm [batch channels d h w [repeats [block]]]
//
// times the instance-norm kernels alone (training forward, backward, inference) on one channel-blocked activation.
//
//   TrainingBenchmark loss [batch classes d h w [repeats]]
//
// times the two segmentation losses alone (Dice + CE, Dice + BCE over regions) on one output (default a CT patch's
// full-resolution head, 1 × 26 × 128³).
//
//   TrainingBenchmark replay <folder> [fp32|bf16] [iterations]
//
// trains from nnU-Net's initial weights on the batches its loader drew (Ops/bench/nnunet_replay.py records both and
// nnU-Net's loss per iteration) and prints the two losses side by side (#25).
//
//   TrainingBenchmark dump <preprocessed dataset folder> <fold> <seed> <batches> <out> [init.pth]
//
// writes the batches nnseg's own loader draws for a seed in the same format, for replay (#25).
//
//   TrainingBenchmark score <weights.pth> <batch folder>… [--batches N] [--precision fp32|bf16]
//
// scores batch folders of both loaders with one fixed trained network: loss and per-class Dice per sample (#25).
//
//   TrainingBenchmark augreplay <folder of Ops/bench/nnunet_augmentation_log.py> <preprocessed dataset folder> [tolerance]
//
// gives nnU-Net's recorded random draws, sample by sample, to nnseg's sampler and augmenter and compares the samples (#25).
//
//   TrainingBenchmark drawlog <preprocessed dataset folder> <fold> <seed> <batches> <out.jsonl>
//
// writes nnseg's draws in the same format, for Ops/bench/draw_law_compare.py (#25).
//
//   TrainingBenchmark initfn <batch folder> <batches> (--seeds <first> <count> | <init.pth>…) [--precision fp32|bf16]
//
// statistics of what the untrained network computes on fixed batches, per initial draw, against torch's draws
// (Ops/bench/init_function_stats.py) (#25).
import CPUPeak
import Foundation
import PlansModel
import TensorKernels
import TorchCheckpoint
import Training
import UNet

let arguments = CommandLine.arguments
let subcommands: [String: ([String]) throws -> Void] = [
    "loader": loaderBenchmark, "replay": replayBenchmark, "dump": dumpBatches, "score": scoreBatches, "drawlog": logDraws,
    "augreplay": augmentationReplay, "norm": normKernelBenchmark, "initfn": initialFunctionStatistics, "loss": lossKernelBenchmark,
]
if arguments.count > 1, let subcommand = subcommands[arguments[1]] {
    try subcommand(Array(arguments.dropFirst(2)))
    exit(0)
}
let root = URL(fileURLWithPath: arguments.count > 1 ? arguments[1] : FileManager.default.currentDirectoryPath)
let iterations = arguments.count > 2 ? Int(arguments[2]) ?? 5 : 5
let precision = TrainingConvolution.Precision(rawValue: arguments.count > 3 ? arguments[3] : "fp32") ?? .float32
// REFERENCE_SECONDS: nnU-Net's s/iteration timed live on this machine (training_step.sh with REF_PYTHON); otherwise
// the 6.3 s recorded on another machine (shared/reference/README.md §2), labelled as such.
let liveReference = ProcessInfo.processInfo.environment["REFERENCE_SECONDS"].flatMap(Double.init)
let referenceSeconds = liveReference ?? 6.3
guard precision.isAvailable else {
    print("\(precision.rawValue): not available on this CPU (oneDNN ISA \(DNNLContext.effectiveISA))")
    exit(0)
}

// PLANS_FILE / CONFIGURATION / BATCH / CLASSES: another configuration than Hippocampus 3d_fullres (e.g. the CT
// benchmark's, Ops/bench/loader.sh), with a smaller batch where the planned one does not fit in memory.
let environment = ProcessInfo.processInfo.environment
let plansURL = environment["PLANS_FILE"].map { URL(fileURLWithPath: $0) }
    ?? root.deletingLastPathComponent().appendingPathComponent("shared/reference/Dataset004_Hippocampus/nnUNetPlans.json")
let plans = try Plans(contentsOf: plansURL)
let configurationName = environment["CONFIGURATION"] ?? "3d_fullres"
let configuration = try plans.configuration(configurationName)
let batch = environment["BATCH"].flatMap { Int($0) } ?? configuration.batchSize, patch = configuration.patchSize
let classes = environment["CLASSES"].flatMap { Int($0) } ?? 3
// WEIGHTS=<checkpoint.pth> starts from trained weights (e.g. to see whether timing drifts as training proceeds).
var initialization = TrainingNetwork.Initialization.kaiming(seed: 1)
if let path = ProcessInfo.processInfo.environment["WEIGHTS"] {
    initialization = .weights(try checkpointWeights(URL(fileURLWithPath: path), architecture: configuration.architecture, classes: classes))
    print("weights from \(path)")
}
let network = try TrainingNetwork(architecture: configuration.architecture, inputChannels: 1, numClasses: classes, batch: batch, patch: patch,
                                  initialization: initialization, precision: precision)
let step = TrainingStep(network: network, loss: DiceCrossEntropyLoss(numClasses: classes, batchDice: configuration.batchDice))
var rng = SystemRandomNumberGenerator()
let input = Tensor(shape: [batch, 1] + patch, data: (0..<(batch * patch.reduce(1, *))).map { _ in Float.random(in: -2...2, using: &rng) })
let labels = (0..<(batch * patch.reduce(1, *))).map { _ in Int16.random(in: 0...Int16(classes - 1), using: &rng) }
print("\(plansURL.deletingLastPathComponent().lastPathComponent) \(configurationName): precision \(precision.rawValue), batch \(batch), patch \(patch), \(ProcessInfo.processInfo.activeProcessorCount) cores, oneDNN ISA \(DNNLContext.effectiveISA)")
print("implementations: \(network.implementations.sorted()); `train --precision auto` here: \(TrainerOptions.automaticPrecision.rawValue)")
_ = try step.train(input: input, labels: labels, learningRate: 0.01)  // warm-up
network.profiling = true
var times: [Double] = []
for _ in 0..<iterations {
    let start = DispatchTime.now().uptimeNanoseconds
    _ = try step.train(input: input, labels: labels, learningRate: 0.01)
    times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
}
let median = times.sorted()[times.count / 2]
let flops = 3 * 2 * Double(network.multiplyAccumulates)
print(String(format: "time per iteration: median %.2f s over %d (min %.2f); ~%.0f GFLOP/s (3× forward MACs)", median, iterations,
             times.min()!, flops / median / 1e9))
let phases = step.phaseSeconds.sorted { $0.value > $1.value }.map { String(format: "%@ %.2f s", $0.key, $0.value / Double(iterations + 1)) }
print("per iteration: " + phases.joined(separator: ", "))
print("network: " + network.profile.sorted { $0.value > $1.value }.map { String(format: "%@ %.2f s", $0.key, $0.value / Double(iterations)) }.joined(separator: ", "))
// The convolutions' rate against this CPU's float32 FMA peak (CPUPeak: independent FMAs in the widest vectors, one per
// oneDNN thread) — how far a faster float32 step could go here (#25). bf16 can exceed it where bf16 dot products run at
// twice the FMA rate (AMD Zen 4/5) or on AMX.
let peakThreads = max(1, Int(environment["OMP_NUM_THREADS"] ?? "") ?? ProcessInfo.processInfo.activeProcessorCount)
let fmaPeak = nnseg_fma_peak_gflops_threads(1.0, Int32(peakThreads), nil, nil)
let convolutionSeconds = ["conv forward", "conv backward data", "conv backward weights"].map { network.profile[$0] ?? 0 }.reduce(0, +) / Double(iterations)
let convolutionRate = flops / convolutionSeconds / 1e9
// Depth-split Winograd layers (AVX-512 fp32) do ~4× fewer multiplications than the direct FLOPs counted here, so the
// rate can exceed the peak: it is then the direct-convolution equivalent.
let winograd = network.implementations.contains { $0.hasPrefix("depth-split") }
print(String(format: "convolutions: %.2f s per iteration, ~%.0f GFLOP/s%@ = %.0f%% of this CPU's measured float32 FMA peak (%.0f GFLOP/s, %d thread(s)); the rest of the step: %.2f s",
             convolutionSeconds, convolutionRate, winograd ? " (direct-convolution equivalent; the Winograd layers multiply less)" : "",
             100 * convolutionRate / fmaPeak, fmaPeak, peakThreads, median - convolutionSeconds))
if environment["PLANS_FILE"] == nil {
    print(String(format: "nnU-Net (torch, CPU, %@): %.2f s per iteration → nnseg's network step is %.2f× faster (goal ≥ 2×)",
                 liveReference == nil ? "recorded on another machine" : "live on this machine", referenceSeconds, referenceSeconds / median))
}
print(String(format: "RESULT step batch=%d median_s=%.3f", batch, median))

// Data loader: batches per second on one core (the background thread's budget), when a preprocessed
// configuration folder is given (LOADER_DATA=<preprocessed>/<dataset>/nnUNetPlans_3d_fullres).
if let folder = ProcessInfo.processInfo.environment["LOADER_DATA"] {
    let data = try PreprocessedDataset(folder: URL(fileURLWithPath: folder))
    let augmentation = AugmentationConfiguration(patch: patch)
    let sampler = PatchSampler(configuration: augmentation, batchSize: batch, training: true)
    let augmenter = Augmenter(configuration: augmentation)
    var rng = RandomSource(seed: 1)
    for id in data.identifiers { _ = try data.load(id) }
    var loaderTimes: [Double] = []
    for _ in 0..<10 {
        let start = DispatchTime.now().uptimeNanoseconds
        _ = try sampler.batch(data, identifiers: data.identifiers, augmenter: augmenter, &rng)
        loaderTimes.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    print(String(format: "data loader: median %.3f s per augmented batch of %d on one thread (%.0f%% of a bf16 iteration's wall time on the other core budget)",
                 loaderTimes.sorted()[5], batch, 100 * loaderTimes.sorted()[5] / median))
}

/// The loader on its own: per batch seconds, cases read from disk, the cache's bytes and the peak RSS.
func loaderBenchmark(_ a: [String]) throws {
    guard a.count >= 6, let storage = PreprocessedDataset.Storage(rawValue: a[3]), let cacheMiB = Int(a[4]), let batches = Int(a[5]) else {
        print("usage: TrainingBenchmark loader <plans.json> <configuration> <folder> <memory|mapped> <cache MiB> <batches> [seed]")
        exit(64)
    }
    let plans = try Plans(contentsOf: URL(fileURLWithPath: a[0]))
    let configuration = try plans.configuration(a[1])
    let folder = URL(fileURLWithPath: a[2])
    let ids = try PreprocessedDataset(folder: folder).identifiers
    let data = try PreprocessedDataset(folder: folder, identifiers: ids, storage: storage, cacheBytes: cacheMiB << 20)
    let bytes = PreprocessedDataset.arrayBytes(folder: folder, identifiers: ids)
    let augmentation = AugmentationConfiguration(patch: configuration.patchSize)
    let sampler = PatchSampler(configuration: augmentation, batchSize: configuration.batchSize, training: true)
    let augmenter = Augmenter(configuration: augmentation, useMaskForNorm: configuration.useMaskForNorm)
    var rng = RandomSource(seed: a.count > 6 ? UInt64(a[6]) ?? 1 : 1)
    print(String(format: "loader: %d cases, %.2f GiB of arrays, storage %@, cache %d MiB, batch %d, patch %@", ids.count,
                 Double(bytes) / Double(1 << 30), storage.rawValue, cacheMiB, configuration.batchSize, "\(configuration.patchSize)"))
    var times: [Double] = []
    // What the network is shown (to compare with nnU-Net's loader, #25): voxel share of each label, and the share of
    // samples without any foreground, over all batches.
    var labelCounts: [Int16: Int] = [:], samples = 0, emptySamples = 0, intensitySum = 0.0, intensitySquares = 0.0, values = 0.0
    var shape = BatchShapeStatistics()
    for b in 0..<batches {
        let start = DispatchTime.now().uptimeNanoseconds
        let batch = try sampler.batch(data, identifiers: ids, augmenter: augmenter, &rng)
        times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        print(String(format: "batch %d/%d: %.3f s (cases read from disk so far %d)", b + 1, batches, times.last!, data.reads))
        let perSample = batch.labels.count / configuration.batchSize
        for j in 0..<configuration.batchSize {
            var foreground = false
            for label in batch.labels[(j * perSample)..<((j + 1) * perSample)] {
                labelCounts[label, default: 0] += 1
                foreground = foreground || label > 0
            }
            samples += 1
            emptySamples += foreground ? 0 : 1
        }
        for v in batch.input.data { intensitySum += Double(v); intensitySquares += Double(v) * Double(v) }
        values += Double(batch.input.data.count)
        shape.add(input: batch.input.data, labels: batch.labels, samples: configuration.batchSize, patch: configuration.patchSize)
    }
    let voxels = Double(labelCounts.values.reduce(0, +))
    let mean = intensitySum / values
    print("label shares: " + labelCounts.keys.sorted().map { String(format: "%d %.4f", $0, Double(labelCounts[$0]!) / voxels) }.joined(separator: ", ")
          + String(format: "; samples without foreground %.3f; intensity mean %.3f sd %.3f", Double(emptySamples) / Double(samples), mean,
                   (intensitySquares / values - mean * mean).squareRoot()))
    print(shape.line)
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let sorted = times.sorted()
    print(String(format: "RESULT loader storage=%@ cache_mib=%d batches=%d median_s=%.3f mean_s=%.3f max_s=%.3f reads=%d cached_mib=%d peak_rss_mib=%d",
                 storage.rawValue, cacheMiB, batches, sorted[sorted.count / 2], times.reduce(0, +) / Double(times.count), sorted.last!,
                 data.reads, data.cachedByteCount >> 20, Int(usage.ru_maxrss) / 1024))
}

/// Second-order statistics of what the loader shows the network (#25), defined exactly as `nnunet_batch_stats.py`
/// prints them: the mean squared difference of neighbouring intensities along each axis (blur, low resolution, noise
/// and interpolation show there), the share of neighbouring voxel pairs whose labels differ (the shape of the
/// interpolated segmentation), the share of samples containing each label, and the intensity shares exactly 0
/// (padding no transform touched) and beyond ±2. 3-D patches; the first input channel.
struct BatchShapeStatistics {
    var squaredSteps = [0.0, 0.0, 0.0], steps = [0.0, 0.0, 0.0], labelEdges = 0.0
    var present: [Int16: Int] = [:], samples = 0, zeros = 0, tails = 0, voxels = 0

    mutating func add(input: [Float], labels: [Int16], samples count: Int, patch: [Int]) {
        let (nz, ny, nx) = (patch[0], patch[1], patch[2])
        let volume = nz * ny * nx
        let strides = [ny * nx, nx, 1]
        let inputPerSample = input.count / count  // the first channel of each sample is measured
        for j in 0..<count {
            let base = j * volume, inputBase = j * inputPerSample
            for axis in 0..<3 {
                var sum = 0.0, edges = 0, n = 0
                for z in 0..<(nz - (axis == 0 ? 1 : 0)) {
                    for y in 0..<(ny - (axis == 1 ? 1 : 0)) {
                        for x in 0..<(nx - (axis == 2 ? 1 : 0)) {
                            let offset = (z * ny + y) * nx + x
                            let d = Double(input[inputBase + offset + strides[axis]] - input[inputBase + offset])
                            sum += d * d
                            edges += labels[base + offset + strides[axis]] != labels[base + offset] ? 1 : 0
                            n += 1
                        }
                    }
                }
                squaredSteps[axis] += sum
                steps[axis] += Double(n)
                labelEdges += Double(edges)
            }
            for label in Set(labels[base..<(base + volume)]) { present[label, default: 0] += 1 }
            for v in input[inputBase..<(inputBase + volume)] {
                zeros += v == 0 ? 1 : 0
                tails += abs(v) > 2 ? 1 : 0
            }
            voxels += volume
            samples += 1
        }
    }

    var line: String {
        let roughness = (0..<3).map { String(format: "%.4f", squaredSteps[$0] / steps[$0]) }.joined(separator: " / ")
        let presence = present.keys.sorted().map { String(format: "%d %.3f", $0, Double(present[$0]!) / Double(samples)) }.joined(separator: ", ")
        return "neighbour squared difference z / y / x \(roughness); label edges per pair "
            + String(format: "%.5f", labelEdges / steps.reduce(0, +)) + "; samples containing label \(presence); intensity exactly 0 "
            + String(format: "%.4f, beyond ±2 %.4f", Double(zeros) / Double(voxels), Double(tails) / Double(voxels))
    }
}
