import ArgumentParser
import ExperimentPlanning
import Foundation
import Logging
import TensorKernels
import Training

/// `nnseg train -d <raw dataset> -c 3d_fullres -f 0`: nnU-Net's training recipe on the CPU for one fold,
/// reading what `nnseg plan` and `nnseg preprocess` wrote, then the fold's validation with `summary.json`.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train one fold of a planned, preprocessed dataset (nnU-Net's recipe) and validate it.",
        discussion: """
        The model is written to <results>/<dataset>/nnUNetTrainer__<plans>__<configuration>/fold_<f>/ in nnU-Net's layout \
        (checkpoint_final.pth, checkpoint_best.pth, progress.png, training log, validation/summary.json) and can be used \
        with `nnseg predict -m <that folder>`. A checkpoint is written every epoch; `--continue` resumes from it with the \
        same learning-rate schedule.
        """)

    @OptionGroup var source: RawDatasetOptions


    @Option(name: [.customShort("f"), .long], help: "Fold: 0–4 (5-fold cross-validation), a higher number for a random 80:20 split, or 'all'.")
    var fold: String = "0"

    @OptionGroup var model: ModelFolderOptions

    @Option(help: "Epochs (nnU-Net: 1000). The poly learning rate is scheduled over this many epochs.")
    var epochs: Int = 1000

    @Option(help: "Training iterations per epoch (nnU-Net: 250).")
    var iterations: Int = 250

    @Option(help: "Validation iterations per epoch for the pseudo-Dice (nnU-Net: 50).")
    var validationIterations: Int = 50

    @Option(help: "Seed for weight initialisation, case sampling and augmentation (default: from the clock).")
    var seed: UInt64?

    @Option(help: "Convolution arithmetic: fp32, bf16 (mixed precision, float32 master weights; needs AVX-512), or auto (bf16 where it is faster than fp32 on this CPU — AMX, or AVX-512 BF16 on AMD; Intel without AMX runs bf16 slower — else fp32; both reach the same Dice per seed).")
    var precision: String = "auto"

    @Flag(name: .customLong("continue"), help: "Resume from the fold's latest checkpoint (or validate a finished fold again).")
    var resume = false

    @Flag(help: "Skip the final sliding-window validation.")
    var noValidation = false

    @Flag(name: .customLong("val"), help: "Only run the fold's validation (the fold must be trained), as nnUNetv2_train --val.")
    var validationOnly = false

    @Option(help: "Preprocessed data: memory (read whole, cached), mapped (memory-mapped, patches read from disk on demand: datasets larger than memory) or auto (memory when the arrays fit in the cache).")
    var dataStorage: String = "auto"

    @Option(help: "Bound of the data cache in GiB (default: half of the memory this process may use, cgroup limits included).")
    var dataCacheGb: Double?

    @Flag(help: "Also save the validation cases' class probabilities (<case>.npz), as nnUNetv2_train --npz: needed to ensemble configurations in find-best-configuration.")
    var npz = false

    @Flag(name: .customLong("val-best"), help: "Validate with checkpoint_best.pth instead of checkpoint_final.pth.")
    var validateBest = false

    @Option(help: ArgumentHelp("Stop after this many epochs in this invocation (resume later with --continue).", visibility: .hidden))
    var stopAfterEpochs: Int?

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.bootstrap()
        let logger = Logger(label: "nnseg.train")
        guard let foldSpec = FoldSpec(fold) else { throw CommandFailure("--fold \(fold): expected a non-negative number or 'all'") }
        guard epochs > 0, iterations > 0, validationIterations >= 0 else { throw CommandFailure("--epochs and --iterations must be positive") }
        let (raw, root) = try source.open()
        var options = TrainerOptions()
        options.epochs = epochs
        options.iterationsPerEpoch = iterations
        options.validationIterations = validationIterations
        if let seed { options.seed = seed }
        options.resume = resume
        options.skipValidation = noValidation
        options.stopAfterEpochs = stopAfterEpochs
        switch dataStorage {
        case "auto": options.dataStorage = nil
        default:
            guard let storage = PreprocessedDataset.Storage(rawValue: dataStorage) else {
                throw CommandFailure("--data-storage \(dataStorage): expected auto, memory or mapped")
            }
            options.dataStorage = storage
        }
        if let dataCacheGb {
            guard dataCacheGb > 0 else { throw CommandFailure("--data-cache-gb must be positive") }
            options.dataCacheBytes = Int(dataCacheGb * Double(1 << 30))
        }
        switch precision {
        case "auto": options.precision = TrainerOptions.automaticPrecision
        case "fp32", "bf16": options.precision = TrainingConvolution.Precision(rawValue: precision)!
        default: throw CommandFailure("--precision \(precision): expected auto, fp32 or bf16")
        }
        guard options.precision.isAvailable else {
            throw CommandFailure("--precision bf16: bf16 convolutions need AVX-512 (this CPU's oneDNN ISA: \(DNNLContext.effectiveISA)); use fp32 or auto")
        }
        let trainer = try Trainer(preprocessedRoot: root, plansName: model.plans, configuration: model.configuration, fold: foldSpec,
                                  resultsRoot: URL(fileURLWithPath: model.results), options: options, logger: logger)
        logger.notice("training", metadata: [
            "configuration": "\(model.configuration)", "fold": "\(foldSpec)", "train_cases": "\(trainer.split.train.count)",
            "val_cases": "\(trainer.split.val.count)", "epochs": "\(epochs)", "iterations": "\(iterations)", "seed": "\(options.seed)",
            "output": "\(trainer.outputFolder.path)", "precision": "\(options.precision.rawValue)",
        ])
        if validationOnly { return try validate(trainer, raw: raw, logger: logger, foldSpec: foldSpec) }
        let bar = ProgressReporter(title: "epoch", minimumTotal: 1)
        var epochStart = Date()
        var lastEpoch = -1
        var lastDice = ""
        try trainer.run { p in
            if p.epoch != lastEpoch { lastEpoch = p.epoch; epochStart = Date() }
            if let s = p.epochSummary {
                bar.finish()
                lastDice = " pseudo-Dice " + s.pseudoDice.map { String(format: "%.3f", $0) }.joined(separator: "/")
                    + String(format: " (EMA %.3f)", s.emaPseudoDice)
                logger.notice("epoch finished", metadata: [
                    "epoch": "\(s.epoch)", "lr": "\(String(format: "%.6f", s.learningRate))",
                    "train_loss": "\(String(format: "%.4f", s.trainLoss))", "val_loss": "\(String(format: "%.4f", s.validationLoss))",
                    "pseudo_dice": "\(s.pseudoDice.map { String(format: "%.4f", $0) })", "ema": "\(String(format: "%.4f", s.emaPseudoDice))",
                    "seconds": "\(String(format: "%.1f", s.seconds))", "new_best": "\(s.newBest)",
                    "median_iteration_seconds": "\(String(format: "%.3f", s.medianIterationSeconds))",
                    "loader_wait_seconds": "\(String(format: "%.3f", s.meanLoaderWaitSeconds))",
                ])
                return
            }
            let elapsed = Date().timeIntervalSince(epochStart)
            let perIteration = elapsed / Double(p.iteration)
            let remaining = perIteration * Double(p.iterations - p.iteration)
                + perIteration * Double(p.iterations) * Double(p.epochs - p.epoch - 1)
            bar.update(p.iteration, p.iterations, detail: String(format: "epoch %d/%d loss %.4f%@ %.2f s/it ETA %@", p.epoch + 1, p.epochs,
                                                                 p.loss, lastDice, perIteration, Self.duration(remaining)))
        }
        bar.finish()
        if stopAfterEpochs != nil, FileManager.default.fileExists(atPath: trainer.outputFolder.appendingPathComponent("checkpoint_latest.pth").path) {
            print("stopped after \(stopAfterEpochs!) epoch(s); resume with --continue")
            return
        }
        guard !noValidation, !trainer.split.val.isEmpty else {
            print("trained: \(trainer.outputFolder.path)")
            return
        }
        try validate(trainer, raw: raw, logger: logger, foldSpec: foldSpec)
    }

    func validate(_ trainer: Trainer, raw: RawDataset, logger: Logger, foldSpec: FoldSpec) throws {
        let validation = ProgressReporter(title: "validation", minimumTotal: 1)
        let dice = try trainer.validate(rawImages: raw.folder.appendingPathComponent("imagesTr"), rawLabels: raw.folder.appendingPathComponent("labelsTr"),
                                        checkpointName: validateBest ? "checkpoint_best.pth" : "checkpoint_final.pth",
                                        saveProbabilities: npz) {
            validation.update($0, $1)
        }
        validation.finish()
        logger.notice("validation finished", metadata: ["mean_dice": "\(String(format: "%.4f", dice))", "cases": "\(trainer.split.val.count)"])
        print(String(format: "fold %@ validation: mean foreground Dice %.4f (%d cases) → %@", "\(foldSpec)", dice, trainer.split.val.count,
                     trainer.outputFolder.appendingPathComponent("validation/summary.json").path))
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let s = Int(seconds)
        return s >= 3600 ? String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) : String(format: "%dm%02ds", s / 60, s % 60)
    }
}

/// Where a trained model lives: configuration, plans name and results root (shared by train and crossval).
struct ModelFolderOptions: ParsableArguments {
    @Option(name: [.customShort("c"), .long], help: "Configuration.")
    var configuration: String = "3d_fullres"

    @Option(help: "Plans name (the plans file without .json).")
    var plans: String = "nnUNetPlans"

    @Option(help: "Results root.")
    var results: String = "nnseg-results"

    /// The model folder for a raw dataset (`<results>/<dataset>/nnUNetTrainer__<plans>__<configuration>/`).
    func folder(dataset: RawDataset) -> URL {
        Trainer.modelFolder(resultsRoot: URL(fileURLWithPath: results), dataset: dataset.folder.lastPathComponent, plans: plans,
                            configuration: configuration)
    }
}
