import Dispatch
import Foundation
import PlansModel
import Preprocessing
import TensorKernels
import UNet

/// A model bundle ready to predict: every requested fold's network compiled for the patch size, plus
/// the preprocessor and exporter its plans describe. Composes the pipeline top to bottom:
/// preprocess → sliding window (TTA, folds) → export.
public final class InferenceEngine: @unchecked Sendable {
    public let bundle: ModelBundle
    public let preprocessor: Preprocessor
    public let exporter: PredictionExporter
    public let networks: [CompiledUNet]
    /// The convolutions' arithmetic (recorded with every prediction: audit log, SEG/RTSTRUCT algorithm parameters).
    public let precision: ConvolutionPrecision

    public struct Options: Sendable {
        public var mirroring: Bool = true
        public var stepSize: Double = 0.5
        public var accumulation: Accumulation = .float16Reference
        /// Keep the float16 logits in the result (a second class × volume copy; for parity checks).
        public var keepLogits = false
        /// Also the per-voxel confidence (``CasePrediction/confidence``) smooth contours are drawn from.
        public var confidence = false
        public init(mirroring: Bool = true, stepSize: Double = 0.5, accumulation: Accumulation = .float16Reference, keepLogits: Bool = false,
                    confidence: Bool = false) {
            self.mirroring = mirroring
            self.stepSize = stepSize
            self.accumulation = accumulation
            self.keepLogits = keepLogits
            self.confidence = confidence
        }
    }

    public struct Result: Sendable {
        /// The fold-averaged logits on the preprocessed grid, when ``Options/keepLogits``.
        public var logits: HalfLogits?
        public var properties: PreprocessingProperties
        public var prediction: CasePrediction
        /// Seconds per stage: preprocessing, prediction, export.
        public var timings: [(stage: String, seconds: Double)]
    }

    public convenience init(modelFolder: URL, folds: [String]? = nil, checkpointName: String = "checkpoint_final.pth",
                            precision: ConvolutionPrecision = .float32) throws {
        try self.init(bundle: ModelBundle(folder: modelFolder, folds: folds, checkpointName: checkpointName), precision: precision)
    }

    /// - Parameter precision: the convolutions' arithmetic (`.float32`, the default, is nnU-Net's parity mode;
    ///   `.bfloat16` needs AVX-512 — `ConvolutionPrecision.isAvailable`).
    public init(bundle: ModelBundle, precision: ConvolutionPrecision = .float32) throws {
        self.bundle = bundle
        self.precision = precision
        preprocessor = Preprocessor(plans: bundle.plans, configuration: bundle.configuration)
        exporter = PredictionExporter(plans: bundle.plans, configuration: bundle.configuration, dataset: bundle.dataset)
        let context = try DNNLContext()
        // Folds run one after another: they share the first one's activation arena.
        var compiled: [CompiledUNet] = []
        for fold in bundle.folds {
            compiled.append(try UNet(bundle: bundle, fold: fold).compile(patch: bundle.configuration.patchSize, context: context,
                                                                          sharingWorkspaceWith: compiled.first, precision: precision))
        }
        networks = compiled
    }

    public var numClasses: Int { bundle.dataset.segmentationHeads }

    /// The spatial axes mirroring TTA flips, from the checkpoint (none when it allows none).
    public func mirrorAxes(_ mirroring: Bool) -> [Int] {
        mirroring ? (bundle.inferenceAllowedMirroringAxes ?? []) : []
    }

    /// True when this configuration is a cascade's second stage (needs the first stage's labels).
    public var needsPreviousStage: Bool { bundle.configuration.previousStage != nil }

    public func predict(_ image: ChannelArray, spacing: [Double], mirroring: Bool = true, probabilities: Bool = false,
                        previousStage: [Float]? = nil, options: Options? = nil,
                        progress: ((Int, Int) -> Void)? = nil) throws -> Result {
        if needsPreviousStage && previousStage == nil {
            throw PreprocessingError(detail: "configuration \(bundle.configurationName) is a cascade stage: it needs the predictions of \(bundle.configuration.previousStage ?? "the previous stage")")
        }
        let o = options ?? Options(mirroring: mirroring)
        var timings: [(String, Double)] = []
        func timed<T>(_ stage: String, _ body: () throws -> T) rethrows -> T {
            let start = DispatchTime.now().uptimeNanoseconds
            defer { timings.append((stage, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)) }
            return try body()
        }
        let (data, properties) = try timed("preprocessing") {
            try preprocessor.run(image, spacing: spacing, previousStage: previousStage, foregroundLabels: bundle.dataset.foregroundLabels)
        }
        let predictor = SlidingWindowPredictor(networks: networks, patchSize: bundle.configuration.patchSize, numClasses: numClasses,
                                               mirrorAxes: mirrorAxes(o.mirroring), stepSize: o.stepSize, accumulation: o.accumulation)
        var networkSeconds = 0.0
        let logits = try timed("sliding window") { try predictor.predictLogits(data, networkSeconds: &networkSeconds, progress: progress) }
        // The network's share of the sliding window (not a stage of its own: it is inside "sliding window").
        timings.append(("network", networkSeconds))
        let kept = o.keepLogits ? logits : nil
        let prediction = timed("export") { exporter.export(consume logits, properties: properties, probabilities: probabilities, confidence: o.confidence) }
        return Result(logits: kept, properties: properties, prediction: prediction, timings: timings)
    }
}
