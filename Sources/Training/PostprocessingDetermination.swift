import Foundation
import Inference
import NIfTI
import PlansModel
import TorchCheckpoint

/// `nnUNetv2_determine_postprocessing` (training spec §9) on cross-validation predictions: whether keeping only
/// the largest connected component of the foreground, then of each label, raises the cross-validation Dice.
///
/// 1. Baseline: the predictions scored against the references (nnU-Net's evaluation, `SegmentationMetrics`).
/// 2. All foreground labels together: keep the largest component(s) of their union (26-connected; ties kept);
///    accepted if the foreground mean Dice rises strictly and no label's mean Dice falls.
/// 3. With more than one label, each label in ascending order on top of the current best: accepted if that label's
///    mean Dice rises strictly.
///
/// Writes, as nnU-Net does, `postprocessing.json` (nnU-Net's fields: `input_folder` and `postprocessed` scores,
/// `postprocessing_fns`, `postprocessing_kwargs`) and `postprocessing.pkl` (the same as a pickle of nnU-Net's
/// function references, so `nnUNetv2_apply_postprocessing -pp_pkl_file` takes it) into the predictions folder, and
/// the postprocessed predictions with their `summary.json` into `postprocessed/`. `nnseg predict` applies the
/// accepted steps when the model folder holds the file (``Postprocessing/find(in:)``).
public enum PostprocessingDetermination {
    public struct Scores: Sendable, Equatable {
        public var foregroundDice: Double
        /// Mean Dice per foreground label, in the dataset's label order.
        public var labelDice: [Double]
    }

    public struct Outcome: Sendable {
        /// Accepted steps in order: the label set whose largest component is kept.
        public var steps: [[Int]]
        /// Whether the first step is the all-foreground one (nnU-Net writes its labels as a list even for one label;
        /// per-label steps as a single label).
        public var keepsLargestForeground: Bool
        public var baseline: Scores
        public var postprocessed: Scores
        /// One line per decision (what was tried, before → after, accepted or not).
        public var decisions: [String]
    }

    struct Case {
        var name: String
        var image: NIfTIImage
        var labels: [UInt16]
        var shape: [Int]
        var reference: [Double]
    }

    /// - Parameters:
    ///   - predictions: a folder of predicted label maps (`<case><file_ending>`), e.g. `crossval_results_folds_0_1_2_3_4`.
    ///   - references: the reference labels (`labelsTr`); every prediction needs its reference.
    public static func determine(predictions: URL, references: URL, dataset: DatasetDescription,
                                 progress: (String) -> Void = { _ in }) throws -> Outcome {
        guard !dataset.isRegionBased else {
            throw TrainingError.dataset(file: predictions.path, problem: "postprocessing of region-based predictions is not supported yet")
        }
        let fm = FileManager.default
        let names = try fm.contentsOfDirectory(atPath: predictions.path).filter { $0.hasSuffix(dataset.fileEnding) }.sorted()
        guard !names.isEmpty else { throw TrainingError.dataset(file: predictions.path, problem: "no predictions (*\(dataset.fileEnding))") }
        let referenceNames = Set((try? fm.contentsOfDirectory(atPath: references.path)) ?? []).filter { $0.hasSuffix(dataset.fileEnding) }
        if referenceNames.count > names.count {
            progress("warning: \(referenceNames.count - names.count) reference case(s) have no prediction; postprocessing should be determined on the whole cross-validation")
        }
        var cases: [Case] = []
        for name in names {
            let referenceURL = references.appendingPathComponent(name)
            guard fm.fileExists(atPath: referenceURL.path) else {
                throw TrainingError.dataset(file: referenceURL.path, problem: "missing: the prediction \(name) has no reference label")
            }
            let image = try NIfTIImage(contentsOf: predictions.appendingPathComponent(name))
            let labels = try image.labelVolume(path: predictions.appendingPathComponent(name).path).voxels
            let reference = try NIfTIImage(contentsOf: referenceURL).voxels.withDoubles { Array($0) }
            guard reference.count == labels.count else {
                throw TrainingError.dataset(file: referenceURL.path, problem: "label has \(reference.count) voxels, the prediction \(labels.count)")
            }
            let s = image.shape
            cases.append(Case(name: name, image: image, labels: labels, shape: [s.z, s.y, s.x], reference: reference))
        }
        let foreground = dataset.foregroundLabels
        func score(_ segmentations: [[UInt16]]) -> (Scores, Data) {
            let rows = zip(cases, segmentations).map { c, seg in
                (prediction: c.name, reference: c.name,
                 counts: SegmentationMetrics.counts(prediction: seg.map(Double.init), reference: c.reference, labels: foreground,
                                                    ignoreLabel: dataset.ignoreLabel))
            }
            let (data, dice) = SegmentationMetrics.summary(cases: rows, labels: foreground)
            let means = foreground.indices.map { k in SegmentationMetrics.nanmean(rows.map { $0.counts[k].dice }) }
            return (Scores(foregroundDice: dice, labelDice: means), data)
        }
        func keepLargest(_ segmentations: [[UInt16]], _ labels: [Int]) -> [[UInt16]] {
            zip(cases, segmentations).map { c, seg in
                var copy = seg
                Postprocessing(steps: [labels]).apply(&copy, shape: c.shape)
                return copy
            }
        }
        func text(_ v: Double) -> String { String(format: "%.5f", v) }

        let original = cases.map(\.labels)
        let (baseline, baselineSummary) = score(original)
        var current = original, currentScores = baseline, currentSummary = baselineSummary
        var steps: [[Int]] = []
        var decisions: [String] = []

        progress("keep the largest foreground component")
        let all = keepLargest(current, foreground)
        let (allScores, allSummary) = score(all)
        // Python's comparisons: NaN is never greater (nor smaller).
        var accept = allScores.foregroundDice > baseline.foregroundDice
        if accept, zip(allScores.labelDice, baseline.labelDice).contains(where: { $0 < $1 }) { accept = false }
        decisions.append("largest foreground component (labels \(foreground.map(String.init).joined(separator: ", "))): mean Dice "
                         + "\(text(baseline.foregroundDice)) → \(text(allScores.foregroundDice)): \(accept ? "accepted" : "not better")")
        if accept {
            steps.append(foreground)
            (current, currentScores, currentSummary) = (all, allScores, allSummary)
        }
        if foreground.count > 1 {
            for (k, label) in foreground.enumerated() {
                progress("keep the largest component of label \(label)")
                let candidate = keepLargest(current, [label])
                let (scores, summary) = score(candidate)
                let better = scores.labelDice[k] > currentScores.labelDice[k]
                decisions.append("largest component of label \(label): Dice \(text(currentScores.labelDice[k])) → \(text(scores.labelDice[k])): "
                                 + (better ? "accepted" : "not better"))
                if better {
                    steps.append([label])
                    (current, currentScores, currentSummary) = (candidate, scores, summary)
                }
            }
        }

        // Outputs: postprocessed predictions and their summary, then nnU-Net's two files.
        let output = predictions.appendingPathComponent("postprocessed")
        try? fm.removeItem(at: output)
        try fm.createDirectory(at: output, withIntermediateDirectories: true)
        for (c, seg) in zip(cases, current) {
            var image = c.image
            image.voxels = relabelled(c.image.voxels, seg)
            try image.write(to: output.appendingPathComponent(c.name))
        }
        try currentSummary.write(to: output.appendingPathComponent("summary.json"), options: .atomic)
        if !fm.fileExists(atPath: predictions.appendingPathComponent("summary.json").path) {
            try baselineSummary.write(to: predictions.appendingPathComponent("summary.json"), options: .atomic)
        }
        let outcome = Outcome(steps: steps, keepsLargestForeground: accept, baseline: baseline, postprocessed: currentScores, decisions: decisions)
        try json(outcome, baselineSummary: baselineSummary, postprocessedSummary: currentSummary)
            .write(to: predictions.appendingPathComponent("postprocessing.json"), options: .atomic)
        try pickle(outcome).write(to: predictions.appendingPathComponent("postprocessing.pkl"), options: .atomic)
        return outcome
    }

    /// nnU-Net's function, as its pickle names it.
    static let function = (module: "nnunetv2.postprocessing.remove_connected_components",
                           name: "remove_all_but_largest_component_from_segmentation")

    /// Each step's `labels_or_regions`: the label list for the foreground step, a single label for a per-label step.
    static func isList(_ index: Int, _ outcome: Outcome) -> Bool { index == 0 && outcome.keepsLargestForeground }

    /// `postprocessing.json` as nnU-Net writes it (sorted keys; scores from the two summaries).
    static func json(_ outcome: Outcome, baselineSummary: Data, postprocessedSummary: Data) throws -> Data {
        func scores(_ summary: Data) throws -> [String: Any] {
            let object = try JSONSerialization.jsonObject(with: summary) as? [String: Any] ?? [:]
            return ["foreground_mean": object["foreground_mean"] ?? [:], "mean": object["mean"] ?? [:]]
        }
        let root: [String: Any] = [
            "input_folder": try scores(baselineSummary),
            "postprocessed": try scores(postprocessedSummary),
            "postprocessing_fns": outcome.steps.map { _ in function.name },
            "postprocessing_kwargs": outcome.steps.enumerated().map { i, step -> [String: Any] in
                ["labels_or_regions": isList(i, outcome) ? step as Any : step[0] as Any]
            },
        ]
        return try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys])
    }

    /// `postprocessing.pkl`: `(list of nnU-Net's function, list of kwargs dicts)`, protocol 2.
    static func pickle(_ outcome: Outcome) throws -> Data {
        let functions = outcome.steps.map { _ in PickleWritable.global(module: function.module, name: function.name) }
        let kwargs = outcome.steps.enumerated().map { i, step -> PickleWritable in
            let value: PickleWritable = isList(i, outcome) ? .list(step.map { .int($0) }) : .int(step[0])
            return .dict([(.string("labels_or_regions"), value)])
        }
        return try CheckpointWriter.pickle(.tuple([.list(functions), .list(kwargs)]))
    }

    /// The label map in the source file's voxel type.
    static func relabelled(_ original: NIfTIVoxels, _ labels: [UInt16]) -> NIfTIVoxels {
        switch original {
        case .uint8: return .uint8(labels.map { UInt8(truncatingIfNeeded: $0) })
        case .int8: return .int8(labels.map { Int8(truncatingIfNeeded: $0) })
        case .int16: return .int16(labels.map { Int16(truncatingIfNeeded: $0) })
        case .uint16: return .uint16(labels)
        case .int32: return .int32(labels.map { Int32($0) })
        case .uint32: return .uint32(labels.map { UInt32($0) })
        case .int64: return .int64(labels.map { Int64($0) })
        case .uint64: return .uint64(labels.map { UInt64($0) })
        case .float32: return .float32(labels.map { Float($0) })
        case .float64: return .float64(labels.map { Double($0) })
        }
    }
}
