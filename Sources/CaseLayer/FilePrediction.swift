import DICOMImport
import Foundation
import Inference
import NIfTI
import VolumeGeometry

/// `nnseg predict`'s work for one case, as nnUNetv2_predict does it: read the case, add the previous
/// cascade stage's labels when the models need them, predict with the ensemble, write `<id><ending>` (and
/// `<id>.npz` with the probabilities when asked).
public struct FilePrediction: Sendable {
    public var ensemble: Ensemble
    public var options: InferenceEngine.Options
    public var outputFolder: URL
    /// The models' file ending (`.nii.gz`).
    public var ending: String
    public var saveProbabilities: Bool
    /// Folder of the previous cascade stage's predictions (`<id><ending>`), for cascade models.
    public var previousStage: URL?
    public var geometryPolicy: GeometryPolicy

    public init(ensemble: Ensemble, options: InferenceEngine.Options, outputFolder: URL, ending: String, saveProbabilities: Bool,
                previousStage: URL?, geometryPolicy: GeometryPolicy) {
        self.ensemble = ensemble
        self.options = options
        self.outputFolder = outputFolder
        self.ending = ending
        self.saveProbabilities = saveProbabilities
        self.previousStage = previousStage
        self.geometryPolicy = geometryPolicy
    }

    public struct Done: Sendable {
        public var item: InferenceCase
        /// Seconds per stage: read, the models' stages, write.
        public var timings: [(stage: String, seconds: Double)]
    }

    public func run(_ entry: CaseSource.Entry) throws -> Done {
        var timings: [(stage: String, seconds: Double)] = []
        var start = Date()
        let item = try CaseSource.load(entry, policy: geometryPolicy)
        timings.append(("read", Date().timeIntervalSince(start)))
        var previous: [Float]?
        if let previousStage {
            let url = previousStage.appendingPathComponent(item.identifier + ending)
            let labels = try NIfTIImage(contentsOf: url).labelVolume(path: url.path)
            guard labels.shape.zyx == item.channels.shape else {
                throw CaseSourceError(subject: url.path, detail: "size \(labels.shape) differs from the image \(item.channels.shape)")
            }
            previous = labels.voxels.map(Float.init)
        }
        let result = try ensemble.predict(item.image, probabilities: saveProbabilities, previousStage: previous, options: options)
        timings += result.timings
        start = Date()
        try CaseWriter.writeSegmentation(result.prediction, geometry: item.geometry, to: outputFolder.appendingPathComponent(item.identifier + ending))
        if saveProbabilities, let p = result.prediction.probabilities {
            try CaseWriter.writeProbabilities(p, shape: result.prediction.shape, to: outputFolder.appendingPathComponent(item.identifier + ".npz"))
        }
        timings.append(("write", Date().timeIntervalSince(start)))
        return Done(item: item, timings: timings)
    }
}
