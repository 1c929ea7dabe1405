import CaseLayer
import ExperimentPlanning
import Foundation
import Inference
import NIfTI
import PlansModel
import Preprocessing
import UNet

/// nnU-Net's evaluation (spec 8): per case and foreground label TP/FP/FN/TN, Dice, IoU (NaN when both
/// masks are empty), per-label nanmean over cases, and `foreground_mean` as the plain mean of the label means.
public enum SegmentationMetrics {
    public struct Counts: Sendable {
        public var tp = 0.0, fp = 0.0, fn = 0.0, tn = 0.0
        public init(tp: Double = 0, fp: Double = 0, fn: Double = 0, tn: Double = 0) {
            self.tp = tp
            self.fp = fp
            self.fn = fn
            self.tn = tn
        }
        public var dice: Double { tp + fp + fn == 0 ? .nan : 2 * tp / (2 * tp + fp + fn) }
        public var iou: Double { tp + fp + fn == 0 ? .nan : tp / (tp + fp + fn) }
    }

    public static func counts(prediction: [Double], reference: [Double], labels: [Int], ignoreLabel: Int?) -> [Counts] {
        counts(prediction: prediction, reference: reference, classes: labels.map { [$0] }, ignoreLabel: ignoreLabel)
    }

    /// Counts per class, a class being a set of label values (one label, or a region: the union of its labels).
    public static func counts(prediction: [Double], reference: [Double], classes: [[Int]], ignoreLabel: Int?) -> [Counts] {
        let maximum = max(classes.flatMap { $0 }.max() ?? 0, 0)
        // member[value][k]: label value in class k (values outside 0…maximum are in none).
        var member = [[Bool]](repeating: [Bool](repeating: false, count: classes.count), count: maximum + 1)
        for (k, c) in classes.enumerated() { for v in c where v >= 0 { member[v][k] = true } }
        var result = [Counts](repeating: Counts(), count: classes.count)
        var annotated = 0.0
        for i in 0..<reference.count {
            let r = Int(reference[i]), p = Int(prediction[i])
            if let ignoreLabel, r == ignoreLabel { continue }
            annotated += 1
            let rIn = r >= 0 && r <= maximum ? member[r] : nil, pIn = p >= 0 && p <= maximum ? member[p] : nil
            if rIn == nil && pIn == nil { continue }
            for k in 0..<classes.count {
                let inR = rIn?[k] ?? false, inP = pIn?[k] ?? false
                if inR && inP { result[k].tp += 1 } else if inP { result[k].fp += 1 } else if inR { result[k].fn += 1 }
            }
        }
        for k in result.indices { result[k].tn = annotated - result[k].tp - result[k].fp - result[k].fn }
        return result
    }

    /// Counts for a prediction file against its reference label file (the dataset's foreground labels or
    /// regions, its ignore label left out).
    public static func counts(prediction: URL, reference: URL, dataset: DatasetDescription) throws -> [Counts] {
        let r = try NIfTIImage(contentsOf: reference).voxels.withDoubles { Array($0) }
        let p = try NIfTIImage(contentsOf: prediction).voxels.withDoubles { Array($0) }
        guard r.count == p.count else {
            throw TrainingError.dataset(file: reference.path, problem: "label has \(r.count) voxels, the prediction \(p.count)")
        }
        return counts(prediction: p, reference: r, classes: dataset.evaluationClasses, ignoreLabel: dataset.ignoreLabel)
    }

    /// nnU-Net's key of a class in summary.json: `"1"` for a label, `"(1, 2, 3)"` for a region of several.
    public static func key(_ values: [Int]) -> String {
        values.count == 1 ? "\(values[0])" : "(" + values.map(String.init).joined(separator: ", ") + ")"
    }

    /// `summary.json` with sorted keys (as nnU-Net writes it); returns the data and the foreground mean Dice.
    public static func summary(cases: [(prediction: String, reference: String, counts: [Counts])], labels: [Int]) -> (Data, Double) {
        summary(cases: cases, classes: labels.map { [$0] })
    }

    /// As above for classes that may be regions (keyed as nnU-Net keys them, ``key(_:)``).
    public static func summary(cases: [(prediction: String, reference: String, counts: [Counts])], classes: [[Int]]) -> (Data, Double) {
        let labels = classes.map(key)
        func metrics(_ c: Counts) -> [String: Any] {
            ["Dice": json(c.dice), "FN": c.fn, "FP": c.fp, "IoU": json(c.iou), "TN": c.tn, "TP": c.tp, "n_pred": c.tp + c.fp, "n_ref": c.tp + c.fn]
        }
        var perCase: [[String: Any]] = []
        for c in cases {
            var m: [String: Any] = [:]
            for (k, label) in labels.enumerated() { m["\(label)"] = metrics(c.counts[k]) }
            perCase.append(["metrics": m, "prediction_file": c.prediction, "reference_file": c.reference])
        }
        var means: [String: Any] = [:]
        var labelDice: [Double] = [], labelIoU: [Double] = []
        var fg = [String: Double]()
        for (k, label) in labels.enumerated() {
            let rows = cases.map { $0.counts[k] }
            let n = Double(max(rows.count, 1))
            let mean: [String: Double] = [
                "Dice": nanmean(rows.map(\.dice)), "IoU": nanmean(rows.map(\.iou)),
                "TP": rows.map(\.tp).reduce(0, +) / n, "FP": rows.map(\.fp).reduce(0, +) / n, "FN": rows.map(\.fn).reduce(0, +) / n,
                "TN": rows.map(\.tn).reduce(0, +) / n, "n_pred": rows.map { $0.tp + $0.fp }.reduce(0, +) / n,
                "n_ref": rows.map { $0.tp + $0.fn }.reduce(0, +) / n,
            ]
            means["\(label)"] = mean.mapValues(json)
            labelDice.append(mean["Dice"]!)
            labelIoU.append(mean["IoU"]!)
            for (key, v) in mean { fg[key, default: 0] += v / Double(labels.count) }
        }
        fg["Dice"] = labelDice.reduce(0, +) / Double(max(labels.count, 1))
        fg["IoU"] = labelIoU.reduce(0, +) / Double(max(labels.count, 1))
        let root: [String: Any] = ["foreground_mean": fg.mapValues(json), "mean": means, "metric_per_case": perCase]
        let data = (try? JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys])) ?? Data()
        return (data, fg["Dice"]!)
    }

    /// The mean over the values that are not NaN (NaN when none is): nnU-Net's per-label mean over cases.
    public static func nanmean(_ v: [Double]) -> Double {
        let f = v.filter { !$0.isNaN }
        return f.isEmpty ? .nan : f.reduce(0, +) / Double(f.count)
    }

    /// NaN is not JSON: written as the string "NaN" would break readers, so as null.
    static func json(_ v: Double) -> Any { v.isNaN ? NSNull() : v }
}

extension Trainer {
    /// Final validation (spec 6.8): the fold's validation cases predicted from the raw images with the
    /// final (or given) checkpoint's weights (sliding window, Gaussian, mirroring), written to `validation/`, and scored against
    /// the raw labels into `validation/summary.json`. Returns the foreground mean Dice. `saveProbabilities`:
    /// also `<case>.npz` with the class probabilities (nnUNetv2_train --npz; needed to ensemble configurations).
    public func validate(rawImages: URL, rawLabels: URL, checkpointName: String = "checkpoint_final.pth", saveProbabilities: Bool = false,
                         progress: @escaping (Int, Int) -> Void = { _, _ in }) throws -> Double {
        let checkpoint = outputFolder.appendingPathComponent(checkpointName)
        guard FileManager.default.fileExists(atPath: checkpoint.path) else {
            throw TrainingError.checkpoint(file: checkpoint.path, problem: "missing: the fold has not been trained (to the end)")
        }
        let bundle = try ModelBundle(folder: trainerFolder, folds: ["\(fold)"], checkpointName: checkpointName)
        let engine = try InferenceEngine(bundle: bundle)
        let folder = outputFolder.appendingPathComponent("validation")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let (entries, _) = try CaseSource.discover(rawImages, fileEnding: dataset.fileEnding, channels: dataset.channelNames.count)
        let byID = Dictionary(entries.map { ($0.identifier, $0) }, uniquingKeysWith: { a, _ in a })
        var rows: [(prediction: String, reference: String, counts: [SegmentationMetrics.Counts])] = []
        // A first stage also writes its labels on each next stage's preprocessed grid (the cascade's training input).
        let nextStages = try configuration.nextStage.map { name -> (name: String, preprocessor: Preprocessor, folder: URL, data: URL) in
            let next = try plans.configuration(name)
            let folder = trainerFolder.appendingPathComponent("predicted_next_stage").appendingPathComponent(name)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            return (name, Preprocessor(plans: plans, configuration: next), folder, preprocessedRoot.appendingPathComponent(next.dataIdentifier))
        }
        for (i, id) in split.val.enumerated() {
            guard let entry = byID[id] else {
                throw TrainingError.dataset(file: rawImages.path, problem: "no image for validation case \(id)")
            }
            let c = try CaseSource.load(entry)
            let previous = try previousStageLabels(id, ending: dataset.fileEnding, count: c.channels.voxelCount)
            let result = try engine.predict(c.channels, spacing: c.spacing, mirroring: true, probabilities: saveProbabilities, previousStage: previous)
            for next in nextStages {
                let (data, seg, _) = try next.preprocessor.preprocess(c.channels, spacing: c.spacing, segmentation: result.prediction.segmentation.map(Float.init))
                let shape = [1] + data.shape
                let expected = next.data.appendingPathComponent(id + ".npy")
                if FileManager.default.fileExists(atPath: expected.path), let header = try? NPYArray(contentsOf: expected),
                   Array(header.shape.dropFirst()) != data.shape {
                    throw TrainingError.dataset(file: expected.path, problem: "preprocessed shape \(header.shape) differs from the \(next.name) grid of "
                        + "this validation (\(data.shape)): preprocess \(next.name) again with the same plans")
                }
                let labels = (seg ?? []).map { Int16(max($0, 0)) }
                try NumpyFile.data(labels, shape: shape).write(to: next.folder.appendingPathComponent(id + ".npy"), options: .atomic)
            }
            let out = folder.appendingPathComponent(id + dataset.fileEnding)
            try CaseWriter.writeSegmentation(result.prediction, geometry: c.geometry, to: out)
            if saveProbabilities, let p = result.prediction.probabilities {
                try CaseWriter.writeProbabilities(p, shape: result.prediction.shape, to: folder.appendingPathComponent(id + ".npz"))
            } else {
                // A stale file from an earlier --npz validation would be ensembled with the new labels.
                try? FileManager.default.removeItem(at: folder.appendingPathComponent(id + ".npz"))
            }
            let referenceURL = rawLabels.appendingPathComponent(id + dataset.fileEnding)
            rows.append((out.path, referenceURL.path, try SegmentationMetrics.counts(prediction: out, reference: referenceURL, dataset: dataset)))
            progress(i + 1, split.val.count)
        }
        let (data, dice) = SegmentationMetrics.summary(cases: rows, classes: dataset.evaluationClasses)
        try data.write(to: folder.appendingPathComponent("summary.json"), options: .atomic)
        return dice
    }

    /// A cascade stage's input for validation case `id`: the first stage's prediction of it on the image grid
    /// (its validation output in the same fold, else in any fold); nil for other configurations.
    func previousStageLabels(_ id: String, ending: String, count: Int) throws -> [Float]? {
        guard let first = previousStageFolder else { return nil }
        let folds = ((try? FileManager.default.contentsOfDirectory(atPath: first.path)) ?? []).filter { $0.hasPrefix("fold_") }.sorted()
        let candidates = ["fold_\(fold)"] + folds
        guard let url = candidates.map({ first.appendingPathComponent($0).appendingPathComponent("validation").appendingPathComponent(id + ending) })
            .first(where: { FileManager.default.fileExists(atPath: $0.path) }) else {
            throw TrainingError.dataset(file: first.path, problem: "no first-stage validation prediction of \(id): validate every fold of "
                + "\(configuration.previousStage ?? "the first stage") first")
        }
        let labels = try NIfTIImage(contentsOf: url).labelVolume(path: url.path).voxels.map(Float.init)
        guard labels.count == count else {
            throw TrainingError.dataset(file: url.path, problem: "\(labels.count) voxels, the image \(count)")
        }
        return labels
    }
}

/// nnU-Net's cross-validation merge (the first step of `nnUNetv2_find_best_configuration`): the validation
/// predictions of the given folds copied into `crossval_results_folds_<folds>/` beside the folds, with
/// plans.json and dataset.json, and scored together against the raw labels into its `summary.json`.
public enum CrossValidationResults {
    public static func merge(trainerFolder: URL, folds: [Int], rawLabels: URL, dataset: DatasetDescription) throws -> (folder: URL, dice: Double) {
        let fm = FileManager.default
        let out = trainerFolder.appendingPathComponent("crossval_results_folds_" + folds.map(String.init).joined(separator: "_"))
        let staging = trainerFolder.appendingPathComponent(".\(out.lastPathComponent).partial")
        try? fm.removeItem(at: staging)
        try fm.createDirectory(at: staging, withIntermediateDirectories: true)
        var seen: [String: Int] = [:]
        var rows: [(prediction: String, reference: String, counts: [SegmentationMetrics.Counts])] = []
        for fold in folds {
            let validation = trainerFolder.appendingPathComponent("fold_\(fold)/validation")
            // As nnU-Net's accumulate_cv_results: the predictions in the fold's validation folder (a summary.json is not needed).
            let files = ((try? fm.contentsOfDirectory(atPath: validation.path)) ?? []).filter { $0.hasSuffix(dataset.fileEnding) }.sorted()
            guard !files.isEmpty else {
                throw TrainingError.dataset(file: validation.path, problem: "fold \(fold) has no finished validation (train it, or run `nnseg train --val`)")
            }
            for file in files {
                let id = String(file.dropLast(dataset.fileEnding.count))
                if let other = seen[id] {
                    throw TrainingError.dataset(file: validation.appendingPathComponent(file).path,
                                                problem: "case \(id) is validated in fold \(other) and fold \(fold): the folds overlap")
                }
                seen[id] = fold
                let target = staging.appendingPathComponent(file)
                try fm.copyItem(at: validation.appendingPathComponent(file), to: target)
                let referenceURL = rawLabels.appendingPathComponent(file)
                rows.append((out.appendingPathComponent(file).path, referenceURL.path,
                             try SegmentationMetrics.counts(prediction: target, reference: referenceURL, dataset: dataset)))
            }
        }
        return (out, try finish(staging, into: out, rows: rows, copyingFrom: trainerFolder, dataset: dataset))
    }

    /// Completes a merged (or ensembled) predictions folder built in `staging`: the model's plans.json and
    /// dataset.json beside the predictions, their scored summary.json, then `staging` moved into place as `out`.
    /// Returns the foreground mean Dice.
    static func finish(_ staging: URL, into out: URL, rows: [(prediction: String, reference: String, counts: [SegmentationMetrics.Counts])],
                       copyingFrom model: URL, dataset: DatasetDescription) throws -> Double {
        let fm = FileManager.default
        for file in ["plans.json", "dataset.json"] {
            let from = model.appendingPathComponent(file)
            if fm.fileExists(atPath: from.path) { try fm.copyItem(at: from, to: staging.appendingPathComponent(file)) }
        }
        let (data, dice) = SegmentationMetrics.summary(cases: rows, classes: dataset.evaluationClasses)
        try data.write(to: staging.appendingPathComponent("summary.json"))
        try? fm.removeItem(at: out)
        try fm.createDirectory(at: out.deletingLastPathComponent(), withIntermediateDirectories: true)
        try fm.moveItem(at: staging, to: out)
        return dice
    }
}
