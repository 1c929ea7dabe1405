import Foundation
import Inference
import Preprocessing

/// One or more model bundles predicting one case together (nnUNetv2_ensemble's rule): with several models
/// their probabilities are averaged in float32, in the given order, and the argmax taken again; the model's
/// postprocessing applies to a single model only (as nnU-Net: an ensemble has none of its own). Every
/// command that predicts goes through here.
public final class Ensemble: @unchecked Sendable {
    public let engines: [InferenceEngine]
    public let postprocessing: Postprocessing?

    /// The models must share their labels (names, in order). `postprocessing`: applied after the argmax — to a
    /// single model's prediction, or to an ensemble's when `appliesToEnsemble` (postprocessing determined for
    /// that ensemble, as find-best-configuration's instructions name it).
    public init(engines: [InferenceEngine], postprocessing: Postprocessing?, appliesToEnsemble: Bool = false) throws {
        guard let first = engines.first else { throw CaseLayerError(.noModel, "", "give at least one model") }
        let labels = first.bundle.dataset.labels.map(\.name)
        for e in engines.dropFirst() where e.bundle.dataset.labels.map(\.name) != labels {
            throw CaseLayerError(.modelsIncompatible, e.bundle.folder.path,
                                 "models to ensemble must share their labels: \(e.bundle.folder.path) differs from \(first.bundle.folder.path)")
        }
        self.engines = engines
        self.postprocessing = engines.count > 1 && !appliesToEnsemble ? nil : postprocessing
    }

    public var first: InferenceEngine { engines[0] }

    /// nnUNetv2_ensemble's sum: the first model's probabilities, then each further model's added in order (float32).
    public static func accumulate(_ summed: inout [[Float]]?, _ probabilities: [[Float]]) {
        guard summed != nil else { summed = probabilities; return }
        for k in 0..<probabilities.count { for v in 0..<probabilities[k].count { summed![k][v] += probabilities[k][v] } }
    }

    /// The sum of `count` models' probabilities divided by `count`, and its argmax (the first maximum).
    public static func average(_ summed: [[Float]], count: Int) -> (probabilities: [[Float]], labels: [UInt16]) {
        let n = Float(count)
        let averaged = summed.map { $0.map { $0 / n } }
        var labels = [UInt16](repeating: 0, count: averaged.first?.count ?? 0)
        for v in labels.indices {
            var best = 0
            for k in 1..<averaged.count where averaged[k][v] > averaged[best][v] { best = k }
            labels[v] = UInt16(best)
        }
        return (averaged, labels)
    }
    public var needsPreviousStage: Bool { engines.contains { $0.needsPreviousStage } }

    public struct Result: Sendable {
        public var prediction: CasePrediction
        /// Seconds per stage (preprocessing, sliding window, export of every model, then ensembling).
        public var timings: [(stage: String, seconds: Double)]
    }

    /// Predicts `image`. `previousStage`: the first cascade stage's labels on the image grid (cascade models).
    public func predict(_ image: CaseImage, probabilities: Bool = false, previousStage: [Float]? = nil,
                        options: InferenceEngine.Options) throws -> Result {
        let averaging = engines.count > 1
        var timings: [(stage: String, seconds: Double)] = []
        var prediction: CasePrediction?
        var summed: [[Float]]?
        // Averaged models: the confidence comes from the averaged probabilities, not from each model.
        var engineOptions = options
        if averaging { engineOptions.confidence = false }
        for engine in engines {
            let result = try engine.predict(image.channels, spacing: image.spacing, probabilities: probabilities || averaging,
                                            previousStage: engine.needsPreviousStage ? previousStage : nil, options: engineOptions)
            timings += result.timings
            guard averaging, let p = result.prediction.probabilities else {
                prediction = result.prediction
                continue
            }
            Self.accumulate(&summed, p)
            prediction = result.prediction
        }
        guard var final = prediction else { throw CaseLayerError(.noModel, "", "no model produced a prediction") }
        if let summed {
            let start = Date()
            let (averaged, labels) = Self.average(summed, count: engines.count)
            final.probabilities = probabilities ? averaged : nil
            final.confidence = options.confidence ? CasePrediction.confidence(fromProbabilities: averaged) : nil
            final.segmentation = labels
            timings.append(("ensemble", Date().timeIntervalSince(start)))
        }
        if let postprocessing { postprocessing.apply(&final.segmentation, shape: final.shape) }
        return Result(prediction: final, timings: timings)
    }
}

/// A failure of the case layer, with a stable code.
public struct CaseLayerError: Error, CustomStringConvertible, Equatable {
    public enum Code: String, Sendable, CaseIterable {
        case noModel = "NO_MODEL"
        case modelsIncompatible = "MODELS_INCOMPATIBLE"
        /// The SEG or RTSTRUCT just written does not read back as the label map (see ``OutputVerification``).
        case outputVerificationFailed = "OUTPUT_VERIFICATION_FAILED"
    }

    public let code: Code
    public let subject: String
    public let detail: String

    public init(_ code: Code, _ subject: String, _ detail: String) {
        self.code = code
        self.subject = subject
        self.detail = detail
    }

    public var description: String { subject.isEmpty ? "\(code.rawValue): \(detail)" : "\(code.rawValue): \(subject): \(detail)" }
}
