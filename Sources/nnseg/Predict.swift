import ArgumentParser
import CaseLayer
import DICOMImport
import Foundation
import Inference
import Logging
import TensorKernels

/// `nnseg predict`: nnU-Net v2 prediction on a folder of NIfTI cases or DICOM series.
struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Predict segmentations with a trained nnU-Net v2 model folder (as nnUNetv2_predict does).",
        discussion: """
        Input: nnU-Net-style files (<case>_0000.nii.gz, one per channel) or, when the folder has none, the DICOM \
        image series under it (one case per series, named by its Series Instance UID). Output: <case>.nii.gz on the \
        input's geometry, and <case>.npz with --save-probabilities. Several -m folders ensemble their probabilities.
        """)

    @Option(name: .short, help: "Input folder.")
    var input: String

    @Option(name: .short, help: "Output folder (created if missing).")
    var output: String

    @Option(name: .short, help: "Model folder (<Trainer>__<Plans>__<configuration>); repeat to ensemble configurations.")
    var model: [String]

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
        guard !model.isEmpty else { throw ValidationError("give at least one model folder with -m") }
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
        let engines = try model.map { folder -> InferenceEngine in
            let start = DispatchTime.now().uptimeNanoseconds
            let engine = try InferenceEngine(modelFolder: URL(fileURLWithPath: folder), folds: folds.isEmpty ? nil : folds,
                                             checkpointName: checkpoint, precision: arithmetic)
            logger.info("model loaded", metadata: [
                "model": "\(folder)", "configuration": "\(engine.bundle.configurationName)", "precision": "\(arithmetic.rawValue)",
                "trainer": "\(engine.bundle.trainerName)", "folds": "\(engine.bundle.folds.map(\.name).joined(separator: ","))",
                "seconds": "\(seconds(since: start))",
                "activation_arena_mb": "\(engine.networks[0].workspaceBytes >> 20)",
                "activations_unshared_mb": "\(engine.networks[0].unsharedBytes >> 20)",
            ])
            return engine
        }
        let first = engines[0]
        let ensemble = try Ensemble(engines: engines, postprocessing: noPostprocessing ? nil : try Postprocessing.find(in: first.bundle.folder))
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
        let work = FilePrediction(ensemble: ensemble, options: options, outputFolder: outputFolder, ending: ending,
                                  saveProbabilities: saveProbabilities, previousStage: previousStage.map { URL(fileURLWithPath: $0) },
                                  geometryPolicy: GeometryPolicy(allowShear: allowTilt, limits: readerLimits.limits))
        let progress = ProgressReporter(title: "predicting", minimumTotal: 1)
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
        logger.notice("prediction finished", metadata: [
            "cases": "\(entries.count)", "failed": "\(failures)", "seconds": "\(seconds(since: started))",
            "peakMemoryMiB": "\(peakResidentMiB())",
        ])
        if failures > 0 { throw ExitCode(ExitStatus.failed.rawValue) }
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
