import ArgumentParser
import CaseLayer
import DICOMImport
import Foundation
import Inference
import Logging
import TensorKernels
import Training

/// `nnseg predict`: nnU-Net v2 prediction on a folder of NIfTI cases or DICOM series.
struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Predict segmentations with a trained nnU-Net v2 model folder (as nnUNetv2_predict does).",
        discussion: """
        Input: nnU-Net-style files (<case>_0000.nii.gz, one per channel) or, when the folder has none, the DICOM \
        image series under it (one case per series, named by its Series Instance UID). Output: <case>.nii.gz on the \
        input's geometry, and <case>.npz with --save-probabilities. Several -m folders ensemble their probabilities. \
        --instructions FILE runs what `find-best-configuration` (or nnUNetv2_find_best_configuration) chose: its model or \
        ensemble with its folds and the postprocessing determined for it (a cascade's first stage is predicted first).
        """)

    @Option(name: .short, help: "Input folder.")
    var input: String

    @Option(name: .short, help: "Output folder (created if missing).")
    var output: String

    @Option(name: .short, help: "Model folder (<Trainer>__<Plans>__<configuration>); repeat to ensemble configurations.")
    var model: [String] = []

    @Option(help: "inference_information.json from find-best-configuration: predict with the model or ensemble it chose (instead of -m).")
    var instructions: String?

    @Option(name: .short, parsing: .upToNextOption, help: "Folds to use (default: every fold_N with a checkpoint).")
    var folds: [String] = []

    @Option(help: "Checkpoint file name inside each fold folder.")
    var checkpoint = "checkpoint_final.pth"

    @Flag(help: "Disable mirroring test-time augmentation.")
    var disableTta = false

    @Option(help: "Sliding-window step as a fraction of the patch size (0, 1].")
    var stepSize = 0.5

    @Option(help: "Tile accumulation: fp16 (nnU-Net's, default) or fp32.")
    var accumulation: String = Accumulation.float16Reference.rawValue

    @Option(help: "Convolution arithmetic: fp32 (nnU-Net's parity mode) or bf16 (AVX-512 CPUs; float32 accumulation).")
    var precision: String = ConvolutionPrecision.float32.rawValue

    @Flag(help: "Also write <case>.npz with the class probabilities.")
    var saveProbabilities = false

    @Option(help: "Folder with the previous stage's predictions (cascade second stage).")
    var previousStage: String?

    @Flag(help: "Do not apply the model's postprocessing.json even when present.")
    var noPostprocessing = false

    @Flag(help: "Accept gantry-tilted DICOM stacks on their native (sheared) grid.")
    var allowTilt = false

    @OptionGroup var readerLimits: ReaderLimitOptions
    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard stepSize > 0 && stepSize <= 1 else { throw ValidationError("--step-size must be in (0, 1]") }
        guard Accumulation(rawValue: accumulation) != nil else { throw ValidationError("--accumulation must be fp16 or fp32") }
        guard model.isEmpty != (instructions == nil) else { throw ValidationError("give model folders with -m, or --instructions") }
        guard ConvolutionPrecision(rawValue: precision) != nil else { throw ValidationError("--precision must be fp32 or bf16") }
    }

    func run() throws {
        logging.bootstrap()
        let logger = Logger(label: "nnseg.predict")
        let started = DispatchTime.now().uptimeNanoseconds
        let arithmetic = ConvolutionPrecision(rawValue: precision)!
        guard arithmetic.isAvailable else {
            throw CommandOutcome(code: "PRECISION_UNAVAILABLE", message: "PRECISION_UNAVAILABLE: --precision \(precision): \(arithmetic.unavailableReason)")
        }
        var folders = model.map { URL(fileURLWithPath: $0) }
        var foldNames = folds
        var chosenPostprocessing: Postprocessing?
        if let instructions {
            let chosen = try InferenceInstructions(contentsOf: URL(fileURLWithPath: instructions))
            folders = chosen.modelFolders
            if foldNames.isEmpty { foldNames = chosen.folds }
            if !noPostprocessing, let url = chosen.postprocessing { chosenPostprocessing = try Postprocessing(contentsOf: url) }
            logger.notice("instructions", metadata: ["file": "\(instructions)", "models": "\(chosen.models.map(\.identifier))",
                                                     "folds": "\(foldNames)", "postprocessing": "\(chosen.postprocessing?.path ?? "none")"])
        }
        let engines = try folders.map { try loadEngine($0, folds: foldNames, precision: arithmetic, logger: logger) }
        let first = engines[0]
        let ensemble = instructions == nil
            ? try Ensemble(engines: engines, postprocessing: noPostprocessing ? nil : try Postprocessing.find(in: first.bundle.folder))
            : try Ensemble(engines: engines, postprocessing: chosenPostprocessing, appliesToEnsemble: true)
        if let postprocessing = ensemble.postprocessing { logger.notice("applying postprocessing", metadata: ["file": "\(postprocessing.source)"]) }

        let outputFolder = URL(fileURLWithPath: output)
        try FileManager.default.createDirectory(at: outputFolder, withIntermediateDirectories: true)
        let ending = first.bundle.dataset.fileEnding
        let (entries, skipped) = try CaseSource.discover(URL(fileURLWithPath: input), fileEnding: ending,
                                                         channels: first.bundle.dataset.channelNames.count,
                                                         limits: readerLimits.limits)
        for s in skipped { logger.info("input file skipped", metadata: ["file": "\(s.path)", "reason": "\(s.code?.rawValue ?? "DUPLICATE")"]) }
        logger.notice("cases found", metadata: ["cases": "\(entries.count)", "input": "\(input)"])

        let options = InferenceEngine.Options(mirroring: !disableTta, stepSize: stepSize, accumulation: Accumulation(rawValue: accumulation)!)
        var previousStageFolder = previousStage.map { URL(fileURLWithPath: $0) }
        if instructions != nil, previousStageFolder == nil, let cascade = engines.first(where: \.needsPreviousStage) {
            // As nnU-Net's instructions: the cascade's first stage (same trainer, plans and folds) predicts first.
            guard let stage = cascade.bundle.configuration.previousStage else {
                throw CommandFailure("\(cascade.bundle.folder.path): a cascade stage without previous_stage in its plans")
            }
            let folder = cascade.bundle.folder.deletingLastPathComponent()
                .appendingPathComponent(cascade.bundle.folder.lastPathComponent.replacingOccurrences(of: "__" + cascade.bundle.configurationName, with: "__" + stage))
            let stageEngine = try loadEngine(folder, folds: foldNames, precision: arithmetic, logger: logger)
            let stageOutput = outputFolder.appendingPathComponent(".previous_stage_" + stage)
            try FileManager.default.createDirectory(at: stageOutput, withIntermediateDirectories: true)
            let stageWork = FilePrediction(ensemble: try Ensemble(engines: [stageEngine], postprocessing: nil), options: options, outputFolder: stageOutput,
                                           ending: ending, saveProbabilities: false, previousStage: nil,
                                           geometryPolicy: GeometryPolicy(allowShear: allowTilt, limits: readerLimits.limits))
            logger.notice("cascade: predicting the first stage", metadata: ["model": "\(folder.path)", "output": "\(stageOutput.path)"])
            _ = predictAll(entries, with: stageWork, title: "first stage", logger: logger)
            previousStageFolder = stageOutput
        }
        let work = FilePrediction(ensemble: ensemble, options: options, outputFolder: outputFolder, ending: ending,
                                  saveProbabilities: saveProbabilities, previousStage: previousStageFolder,
                                  geometryPolicy: GeometryPolicy(allowShear: allowTilt, limits: readerLimits.limits))
        let failures = predictAll(entries, with: work, title: "predicting", logger: logger)
        logger.notice("prediction finished", metadata: [
            "cases": "\(entries.count)", "failed": "\(failures)", "seconds": "\(seconds(since: started))",
            "peakMemoryMiB": "\(peakResidentMiB())",
        ])
        if failures > 0 { throw ExitCode(ExitStatus.failed.rawValue) }
    }

    func loadEngine(_ folder: URL, folds: [String], precision: ConvolutionPrecision, logger: Logger) throws -> InferenceEngine {
        let start = DispatchTime.now().uptimeNanoseconds
        let engine = try InferenceEngine(modelFolder: folder, folds: folds.isEmpty ? nil : folds, checkpointName: checkpoint, precision: precision)
        logger.info("model loaded", metadata: [
            "model": "\(folder.path)", "configuration": "\(engine.bundle.configurationName)", "precision": "\(precision.rawValue)",
            "trainer": "\(engine.bundle.trainerName)", "folds": "\(engine.bundle.folds.map(\.name).joined(separator: ","))",
            "seconds": "\(seconds(since: start))",
            "activation_arena_mb": "\(engine.networks[0].workspaceBytes >> 20)",
            "activations_unshared_mb": "\(engine.networks[0].unsharedBytes >> 20)",
        ])
        return engine
    }

    /// Predicts every case; a failed case is logged and counted, the others go on.
    func predictAll(_ entries: [CaseSource.Entry], with work: FilePrediction, title: String, logger: Logger) -> Int {
        let progress = ProgressReporter(title: title, minimumTotal: 1)
        var failures = 0
        for (index, entry) in entries.enumerated() {
            do {
                let done = try work.run(entry)
                var metadata: Logger.Metadata = ["case": "\(done.item.identifier)", "source": "\(done.item.source)",
                                                 "shape": "\(done.item.channels.shape.map(String.init).joined(separator: "x"))"]
                for (stage, s) in done.timings { metadata[stage.replacingOccurrences(of: " ", with: "_") + "_s"] = "\(String(format: "%.3f", s))" }
                logger.info("case done", metadata: metadata)
            } catch {
                failures += 1
                logger.error("case failed", metadata: ["case": "\(entry.identifier)", "error": "\(error)"])
            }
            progress.update(index + 1, entries.count)
        }
        progress.finish()
        return failures
    }
}

func elapsed(since start: UInt64) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func seconds(since start: UInt64) -> String {
    String(format: "%.3f", elapsed(since: start))
}

/// Peak resident set size of this process, MiB.
func peakResidentMiB() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Int(usage.ru_maxrss) / 1024
}
