import Dispatch
import ExperimentPlanning
import Foundation
import Logging
import PlansModel
import TensorKernels
import TorchCheckpoint

/// What to train and for how long (nnU-Net's defaults, spec 6.1).
public struct TrainerOptions: Sendable {
    public var epochs = 1000
    public var iterationsPerEpoch = 250
    public var validationIterations = 50
    public var initialLearningRate = 1e-2
    public var seed: UInt64 = UInt64(Date().timeIntervalSince1970 * 1000)
    /// Continue from `checkpoint_latest.pth` (or final/best) in the fold folder.
    public var resume = false
    /// Skip the final sliding-window validation.
    public var skipValidation = false
    /// Convolution arithmetic (default: ``automaticPrecision``).
    public var precision: TrainingConvolution.Precision = TrainerOptions.automaticPrecision

    /// What `--precision auto` trains in: bf16 convolutions where they are faster than float32 on this CPU
    /// (``ConvolutionPrecision/fasterBFloat16``: AMX, or AVX-512 BF16 on AMD), float32 elsewhere — AVX2 has no bf16
    /// convolutions, plain AVX-512 only emulates them, and Intel's AVX-512 BF16 without AMX runs them 1.7× slower
    /// than float32 (#25). bf16 keeps float32 accumulation, activations, weights, gradients and optimiser state. It
    /// does not lose accuracy: one epoch of the Hippocampus reference budget ends at the same validation Dice in bf16
    /// and fp32 for each of seeds 1–3 on AMD Zen 4 (within 0.003; `Ops/bench/README.md`), seed 1 in bf16 on the
    /// Intel Xeon of #25 ends where fp32 does on AVX2, and the CI check (`TrainingQualityTests`) trains both to the
    /// same Dice.
    public static var automaticPrecision: TrainingConvolution.Precision {
        TrainingConvolution.Precision.fasterBFloat16 ? .bfloat16 : .float32
    }
    /// Stop after this many epochs in this invocation (the run can be resumed); nil: run to the end.
    public var stopAfterEpochs: Int?
    /// How the preprocessed cases are held (nil: in memory when their arrays fit in ``dataCacheBytes``, else
    /// memory-mapped and read on demand).
    public var dataStorage: PreprocessedDataset.Storage?
    /// The data cache's bound (nil: half of the memory this process may use, ``memoryLimitBytes()``).
    public var dataCacheBytes: Int?
    public init() {}

    /// The memory this process may use: the cgroup's limit (v2 `memory.max`, v1 `memory.limit_in_bytes`) when
    /// one is set, else the machine's physical memory.
    public static func memoryLimitBytes() -> Int {
        let physical = Int(ProcessInfo.processInfo.physicalMemory)
        for path in ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"] {
            if let text = try? String(contentsOfFile: path, encoding: .utf8),
               let limit = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), limit > 0, limit < physical {
                return limit
            }
        }
        return physical
    }
}

/// Fold selection: an index into the splits (beyond 5: nnU-Net's random 80:20 split) or `all`.
public enum FoldSpec: Sendable, CustomStringConvertible, Equatable {
    case index(Int)
    case all
    public init?(_ text: String) {
        if text == "all" { self = .all } else if let i = Int(text), i >= 0 { self = .index(i) } else { return nil }
    }
    public var description: String { if case .index(let i) = self { return "\(i)" } else { return "all" } }
}

/// One line of training progress (per iteration or at the end of an epoch).
public struct TrainingProgress: Sendable {
    public var epoch: Int
    public var epochs: Int
    public var iteration: Int
    public var iterations: Int
    public var loss: Double
    /// Set at the end of an epoch.
    public var epochSummary: EpochSummary?
}

public struct EpochSummary: Sendable {
    public var epoch: Int
    public var learningRate: Double
    public var trainLoss: Double
    public var validationLoss: Double
    public var pseudoDice: [Double]
    public var emaPseudoDice: Double
    public var seconds: Double
    /// Median wall time of one training iteration (waiting for the loader included; not the validation iterations).
    public var medianIterationSeconds: Double
    /// Mean time per training iteration spent waiting for the background loader's next batch (0 when it keeps ahead).
    public var meanLoaderWaitSeconds: Double
    public var newBest: Bool
}

/// Per-epoch history as nnU-Net's logger keeps it (stored in every checkpoint).
public struct TrainingLog: Sendable {
    public var meanForegroundDice: [Double] = []
    public var emaForegroundDice: [Double] = []
    public var dicePerClass: [[Double]] = []
    public var trainLosses: [Double] = []
    public var validationLosses: [Double] = []
    public var learningRates: [Double] = []
    public var epochStart: [Double] = []
    public var epochEnd: [Double] = []
}

/// nnU-Net's trainer (`nnUNetTrainer`, spec 6) for one fold of one configuration, on the CPU:
/// splits, data loading on a background thread, augmentation, SGD with poly LR, deep supervision,
/// pseudo-Dice with EMA, checkpoints every epoch (resume), best/final checkpoints in PyTorch format,
/// progress.png, and the final sliding-window validation with `summary.json`.
public final class Trainer: @unchecked Sendable {
    public let plans: Plans
    public let plansJSON: Any
    public let datasetJSON: Any
    public let configurationName: String
    public let configuration: ConfigurationPlan
    public let dataset: DatasetDescription
    public let fold: FoldSpec
    public let options: TrainerOptions
    public let preprocessedRoot: URL
    /// `<preprocessed>/<plans>.json`.
    public let plansFile: URL
    public let outputFolder: URL
    public let trainerFolder: URL
    public let split: CrossValidation.Split
    /// A cascade stage's first stage: its model folder (`<trainer>__<plans>__<previous_stage>`).
    public let previousStageFolder: URL?
    /// The first stage's labels on this configuration's preprocessed grid (`predicted_next_stage/<configuration>/`).
    public var previousStagePredictions: URL? {
        previousStageFolder?.appendingPathComponent("predicted_next_stage").appendingPathComponent(configurationName)
    }
    let logger: Logger
    public static let trainerName = "nnUNetTrainer"

    public var foldFolder: URL { outputFolder }

    /// `<results>/<dataset>/nnUNetTrainer__<plans>__<configuration>/`: the model folder (all folds).
    public static func modelFolder(resultsRoot: URL, dataset: String, plans: String, configuration: String) -> URL {
        resultsRoot.appendingPathComponent(dataset).appendingPathComponent("\(trainerName)__\(plans)__\(configuration)")
    }

    /// - Parameters:
    ///   - preprocessedRoot: `<output>/<dataset>/` with the plans, `dataset.json` and the configuration's data folder.
    ///   - resultsRoot: results root; the model lands in `<results>/<dataset>/nnUNetTrainer__<plans>__<configuration>/fold_<f>/`.
    public init(preprocessedRoot: URL, plansName: String = "nnUNetPlans", configuration name: String, fold: FoldSpec, resultsRoot: URL,
                options: TrainerOptions, logger: Logger = Logger(label: "nnseg.train")) throws {
        self.preprocessedRoot = preprocessedRoot
        let plansURL = preprocessedRoot.appendingPathComponent("\(plansName).json")
        let datasetURL = preprocessedRoot.appendingPathComponent("dataset.json")
        for url in [plansURL, datasetURL] where !FileManager.default.fileExists(atPath: url.path) {
            throw TrainingError.dataset(file: url.path, problem: "missing; run `nnseg plan` and `nnseg preprocess` first")
        }
        plansFile = plansURL
        plans = try Plans(contentsOf: plansURL)
        plansJSON = try JSONSerialization.jsonObject(with: Data(contentsOf: plansURL))
        datasetJSON = try JSONSerialization.jsonObject(with: Data(contentsOf: datasetURL))
        dataset = try DatasetDescription(contentsOf: datasetURL)
        configurationName = name
        configuration = try plans.configuration(name)
        self.fold = fold
        self.options = options
        self.logger = logger
        if dataset.isRegionBased {
            guard let order = dataset.regionClassOrder, order.count == dataset.foregroundRegions.count else {
                throw TrainingError.dataset(file: datasetURL.path, problem: "a region-based dataset needs regions_class_order with one label per region "
                    + "(\(dataset.foregroundRegions.count) regions)")
            }
        }

        let dataFolder = preprocessedRoot.appendingPathComponent(configuration.dataIdentifier)
        let all = try PreprocessedDataset(folder: dataFolder).identifiers
        // Splits: splits_final.json if present, else created once (nnU-Net's KFold) and written.
        let splitsURL = preprocessedRoot.appendingPathComponent("splits_final.json")
        let splits: [CrossValidation.Split]
        if FileManager.default.fileExists(atPath: splitsURL.path) {
            splits = try CrossValidation.read(splitsURL, cases: Set(all))
        } else {
            splits = try CrossValidation.fiveFold(all)
            try CrossValidation.json(splits).write(to: splitsURL, options: .atomic)
            logger.notice("created 5-fold splits", metadata: ["file": "\(splitsURL.path)", "cases": "\(all.count)"])
        }
        switch fold {
        case .all: split = CrossValidation.Split(train: all, val: all)
        case .index(let f) where f < splits.count: split = splits[f]
        case .index(let f): split = CrossValidation.randomSplit(all, fold: f)
        }
        guard !split.train.isEmpty else { throw TrainingError.dataset(file: splitsURL.path, problem: "fold \(fold) has no training cases") }
        trainerFolder = Self.modelFolder(resultsRoot: resultsRoot, dataset: preprocessedRoot.lastPathComponent, plans: plansName, configuration: name)
        outputFolder = trainerFolder.appendingPathComponent("fold_\(fold)")
        previousStageFolder = configuration.previousStage.map {
            Self.modelFolder(resultsRoot: resultsRoot, dataset: preprocessedRoot.lastPathComponent, plans: plansName, configuration: $0)
        }
        if let previous = previousStagePredictions, !FileManager.default.fileExists(atPath: previous.path) {
            throw TrainingError.dataset(file: previous.path, problem: "\(name) is a cascade stage: train and validate every fold of "
                + "\(configuration.previousStage ?? "the first stage") first (its validation writes these predictions)")
        }
    }

    /// The seeds of the training and validation loaders' random streams for a run's seed, starting (or resuming) at
    /// `epoch`; the batches a seed draws are a function of these alone (one producer thread per loader).
    public static func loaderSeeds(seed: UInt64, epoch: Int) -> (training: UInt64, validation: UInt64) {
        var seeds = RandomSource(seed: seed &+ UInt64(epoch) &* 7919)
        let training = seeds.next()
        return (training, seeds.next())
    }

    /// Runs (or resumes) training to the last epoch and writes `checkpoint_final.pth` (then call
    /// ``validate(rawImages:rawLabels:progress:)``). With `stopAfterEpochs` it returns early, leaving
    /// `checkpoint_latest.pth` to resume from.
    public func run(progress: @escaping (TrainingProgress) -> Void = { _ in }) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: outputFolder, withIntermediateDirectories: true)
        // The model folder stands on its own, as nnU-Net's: plans (as plans.json), dataset and fingerprint.
        for (file, name) in [(plansFile, "plans.json"), (preprocessedRoot.appendingPathComponent("dataset.json"), "dataset.json"),
                             (preprocessedRoot.appendingPathComponent("dataset_fingerprint.json"), "dataset_fingerprint.json")] {
            let to = trainerFolder.appendingPathComponent(name)
            if fm.fileExists(atPath: file.path) && !fm.fileExists(atPath: to.path) { try fm.copyItem(at: file, to: to) }
        }

        let augmentation = AugmentationConfiguration(patch: configuration.patchSize)
        let ignoreLabel = dataset.ignoreLabel
        let cascadeLabels = previousStageFolder == nil ? [] : dataset.foregroundLabels
        let network = try TrainingNetwork(architecture: configuration.architecture, inputChannels: dataset.channelNames.count + cascadeLabels.count,
                                          numClasses: dataset.segmentationHeads, batch: configuration.batchSize,
                                          patch: configuration.patchSize, initialization: .kaiming(seed: options.seed),
                                          precision: options.precision)
        let loss: any SegmentationLoss = dataset.isRegionBased
            ? RegionDiceBCELoss(regions: dataset.foregroundRegions, batchDice: configuration.batchDice, ignoreLabel: ignoreLabel)
            : DiceCrossEntropyLoss(numClasses: dataset.segmentationHeads, batchDice: configuration.batchDice, ignoreLabel: ignoreLabel)
        let step = TrainingStep(network: network, loss: loss)
        var state = CheckpointState(epoch: 0, log: TrainingLog(), bestEMA: nil)
        let final = outputFolder.appendingPathComponent("checkpoint_final.pth")
        if options.resume {
            let candidates = ["checkpoint_latest.pth", "checkpoint_final.pth", "checkpoint_best.pth"].map { outputFolder.appendingPathComponent($0) }
            if let url = candidates.first(where: { fm.fileExists(atPath: $0.path) }) {
                state = try TrainingCheckpoint.load(url, into: network, optimizer: step.optimizer)
                logger.notice("resuming", metadata: ["checkpoint": "\(url.lastPathComponent)", "epoch": "\(state.epoch)"])
            } else {
                logger.notice("no checkpoint to resume from; starting a new run", metadata: ["folder": "\(outputFolder.path)"])
            }
        } else if fm.fileExists(atPath: final.path) {
            throw TrainingError.checkpoint(file: final.path, problem: "this fold is already trained; use --continue to resume/validate or another results folder")
        }

        let dataFolder = preprocessedRoot.appendingPathComponent(configuration.dataIdentifier)
        let identifiers = Array(Set(split.train + split.val)).sorted()
        let cacheBytes = options.dataCacheBytes ?? TrainerOptions.memoryLimitBytes() / 2
        let storage = options.dataStorage ?? PreprocessedDataset.automaticStorage(folder: dataFolder, identifiers: identifiers, budget: cacheBytes)
        let data = try PreprocessedDataset(folder: dataFolder, identifiers: identifiers, previousStage: previousStagePredictions,
                                           storage: storage, cacheBytes: cacheBytes)
        logger.info("preprocessed data", metadata: [
            "storage": "\(storage.rawValue)", "cache_mib": "\(cacheBytes >> 20)",
            "arrays_mib": "\(PreprocessedDataset.arrayBytes(folder: dataFolder, identifiers: identifiers) >> 20)",
        ])
        let trainSampler = PatchSampler(configuration: augmentation, batchSize: configuration.batchSize, training: true, ignoreLabel: ignoreLabel,
                                        cascadeLabels: cascadeLabels)
        let valSampler = PatchSampler(configuration: augmentation, batchSize: configuration.batchSize, training: false, ignoreLabel: ignoreLabel,
                                      cascadeLabels: cascadeLabels)
        let augmenter = Augmenter(configuration: augmentation, useMaskForNorm: configuration.useMaskForNorm, cascadeLabels: cascadeLabels)
        let trainIDs = split.train, valIDs = split.val
        let seeds = Self.loaderSeeds(seed: options.seed, epoch: state.epoch)
        let trainLoader = BackgroundLoader(make: { rng in try trainSampler.batch(data, identifiers: trainIDs, augmenter: augmenter, &rng) },
                                           seed: seeds.training)
        defer { trainLoader.stop() }
        let valLoader = valIDs.isEmpty ? nil
            : BackgroundLoader(capacity: 2, make: { rng in try valSampler.batch(data, identifiers: valIDs, augmenter: nil, &rng) }, seed: seeds.validation)
        defer { valLoader?.stop() }

        let logFile = try TrainingLogFile(folder: outputFolder)
        logFile.write("nnseg training: \(configurationName), fold \(fold), \(trainIDs.count) training and \(valIDs.count) validation cases, "
                      + "batch \(configuration.batchSize), patch \(configuration.patchSize), enlarged patch \(augmentation.initialPatch), "
                      + "epochs \(options.epochs) × \(options.iterationsPerEpoch) iterations, seed \(options.seed), precision \(options.precision.rawValue)")
        var epochsThisRun = 0
        while state.epoch < options.epochs {
            if let stop = options.stopAfterEpochs, epochsThisRun >= stop { return }
            let epoch = state.epoch
            let start = Date()
            let lr = polyLearningRate(initial: options.initialLearningRate, epoch: epoch, maxEpochs: options.epochs)
            var losses: [Double] = []
            var iterationSeconds: [Double] = [], loaderWaitSeconds: [Double] = []
            var iterationStart = start
            for i in 0..<options.iterationsPerEpoch {
                let batch = try trainLoader.next()
                loaderWaitSeconds.append(Date().timeIntervalSince(iterationStart))
                let value = try step.train(input: batch.input, labels: batch.labels, learningRate: lr)
                let now = Date()
                iterationSeconds.append(now.timeIntervalSince(iterationStart))
                iterationStart = now
                guard value.isFinite else {
                    throw TrainingError.unsupported("the training loss became \(value) at epoch \(epoch), iteration \(i); stopping (the last checkpoint is kept)")
                }
                losses.append(value)
                progress(TrainingProgress(epoch: epoch, epochs: options.epochs, iteration: i + 1, iterations: options.iterationsPerEpoch,
                                          loss: losses.reduce(0, +) / Double(losses.count)))
            }
            var valLosses: [Double] = []
            let K = dataset.evaluationClasses.count
            var tp = [Double](repeating: 0, count: K), fp = tp, fn = tp
            if let valLoader {
                for _ in 0..<options.validationIterations {
                    let batch = try valLoader.next()
                    let r = try step.validate(input: batch.input, labels: batch.labels)
                    valLosses.append(r.loss)
                    for k in 0..<K { tp[k] += r.tp[k]; fp[k] += r.fp[k]; fn[k] += r.fn[k] }
                }
            }
            // nnU-Net's online pseudo-Dice: NaN for a class absent from prediction and labels alike.
            let dice = (0..<K).map { SegmentationMetrics.Counts(tp: tp[$0], fp: fp[$0], fn: fn[$0]).dice }
            let finite = dice.filter { !$0.isNaN }
            let meanDice = finite.isEmpty ? Double.nan : finite.reduce(0, +) / Double(finite.count)
            let ema = state.log.emaForegroundDice.last.map { 0.9 * $0 + 0.1 * meanDice } ?? meanDice
            let trainLoss = losses.reduce(0, +) / Double(max(losses.count, 1))
            let valLoss = valLosses.isEmpty ? Double.nan : valLosses.reduce(0, +) / Double(valLosses.count)
            state.log.trainLosses.append(trainLoss)
            state.log.validationLosses.append(valLoss)
            state.log.meanForegroundDice.append(meanDice)
            state.log.emaForegroundDice.append(ema)
            state.log.dicePerClass.append(dice)
            state.log.learningRates.append(lr)
            state.log.epochStart.append(start.timeIntervalSince1970)
            state.log.epochEnd.append(Date().timeIntervalSince1970)
            state.epoch += 1
            epochsThisRun += 1
            let newBest = state.bestEMA.map { ema > $0 } ?? true
            if newBest { state.bestEMA = ema }
            let context = checkpointContext(augmentation)
            if newBest {
                try TrainingCheckpoint.save(network: network, optimizer: step.optimizer, state: state, context: context,
                                            to: outputFolder.appendingPathComponent("checkpoint_best.pth"))
            }
            if state.epoch < options.epochs {
                try TrainingCheckpoint.save(network: network, optimizer: step.optimizer, state: state, context: context,
                                            to: outputFolder.appendingPathComponent("checkpoint_latest.pth"))
            }
            try TrainingCurve.png(state.log).write(to: outputFolder.appendingPathComponent("progress.png"), options: .atomic)
            let seconds = Date().timeIntervalSince(start)
            let summary = EpochSummary(epoch: epoch, learningRate: lr, trainLoss: trainLoss, validationLoss: valLoss, pseudoDice: dice,
                                       emaPseudoDice: ema, seconds: seconds,
                                       medianIterationSeconds: iterationSeconds.isEmpty ? 0 : iterationSeconds.sorted()[iterationSeconds.count / 2],
                                       meanLoaderWaitSeconds: loaderWaitSeconds.reduce(0, +) / Double(max(loaderWaitSeconds.count, 1)), newBest: newBest)
            logFile.write(String(format: "epoch %d: lr %.6f, train loss %.4f, val loss %.4f, pseudo Dice %@, EMA %.4f, %.1f s%@", epoch, lr,
                                 trainLoss, valLoss, dice.map { String(format: "%.4f", $0) }.joined(separator: " "), ema, seconds,
                                 newBest ? ", new best EMA" : ""))
            progress(TrainingProgress(epoch: epoch, epochs: options.epochs, iteration: options.iterationsPerEpoch,
                                      iterations: options.iterationsPerEpoch, loss: trainLoss, epochSummary: summary))
        }
        if !fm.fileExists(atPath: final.path) || options.resume {
            try TrainingCheckpoint.save(network: network, optimizer: step.optimizer, state: state, context: checkpointContext(augmentation), to: final)
        }
        try? fm.removeItem(at: outputFolder.appendingPathComponent("checkpoint_latest.pth"))
    }

    func checkpointContext(_ augmentation: AugmentationConfiguration) -> CheckpointContext {
        CheckpointContext(plans: plansJSON, dataset: datasetJSON, configuration: configurationName, fold: fold,
                          trainerName: Self.trainerName, mirrorAxes: augmentation.inferenceMirrorAxes)
    }
}

/// `training_log_<timestamp>.txt` in the fold folder (one line per event, flushed).
final class TrainingLogFile: @unchecked Sendable {
    let handle: FileHandle?
    init(folder: URL) throws {
        let f = DateFormatter()
        f.dateFormat = "yyyy_M_d_HH_mm_ss"
        f.timeZone = TimeZone(identifier: "UTC")
        let url = folder.appendingPathComponent("training_log_\(f.string(from: Date())).txt")
        FileManager.default.createFile(atPath: url.path, contents: nil)
        handle = try FileHandle(forWritingTo: url)
    }
    func write(_ line: String) {
        let stamp = ISO8601DateFormatter().string(from: Date())
        handle?.write(Data("\(stamp): \(line)\n".utf8))
    }
    deinit { try? handle?.close() }
}
