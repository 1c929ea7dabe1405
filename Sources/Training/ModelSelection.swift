import CaseLayer
import Inference
import Foundation
import NIfTI
import PlansModel

/// nnU-Net's model selection (spec §10, `nnUNetv2_find_best_configuration`): every trained configuration's
/// merged cross-validation, every pair of them ensembled (their validation probabilities averaged), the
/// highest foreground-mean Dice wins (on a tie the first: single models come before ensembles), the
/// winner's postprocessing is determined (§9), and `inference_information.json` plus
/// `inference_instructions.txt` say how to predict with it (`nnseg predict --instructions`).
public enum ModelSelection {
    /// A trained model as nnU-Net names it: `<trainer>__<plans>__<configuration>`.
    public struct Model: Sendable, Equatable, Hashable {
        public var trainer: String
        public var plans: String
        public var configuration: String

        public init(trainer: String = "nnUNetTrainer", plans: String = "nnUNetPlans", configuration: String) {
            self.trainer = trainer
            self.plans = plans
            self.configuration = configuration
        }

        /// Parses `<trainer>__<plans>__<configuration>`.
        public init?(identifier: String) {
            let parts = identifier.components(separatedBy: "__")
            guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty }) else { return nil }
            self.init(trainer: parts[0], plans: parts[1], configuration: parts[2])
        }

        public var identifier: String { "\(trainer)__\(plans)__\(configuration)" }
    }

    /// nnU-Net's default candidates: its trainer and plans with every configuration.
    public static let defaultConfigurations = ["2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"]

    /// The requested models whose configuration the plans define (nnU-Net's `filter_available_models`): one the
    /// plans lack is skipped with a reason; one the plans define but that has no model folder is an error.
    /// `plansConfigurations` gives the configurations of a plans identifier (nil: no such plans).
    public static func available(_ requested: [Model], resultsDataset: URL, plansConfigurations: (String) -> Set<String>?)
        throws -> (models: [Model], skipped: [(model: Model, reason: String)]) {
        var models: [Model] = [], skipped: [(model: Model, reason: String)] = []
        for model in requested {
            guard let configurations = plansConfigurations(model.plans) else {
                skipped.append((model, "no plans \(model.plans) for this dataset"))
                continue
            }
            guard configurations.contains(model.configuration) else {
                skipped.append((model, "configuration \(model.configuration) is not in plans \(model.plans)"))
                continue
            }
            let folder = resultsDataset.appendingPathComponent(model.identifier)
            guard FileManager.default.fileExists(atPath: folder.path) else {
                throw TrainingError.modelSelection(file: folder.path, problem: "configuration \(model.configuration) is planned but not trained: "
                    + "train its folds (with --npz to ensemble it), or leave it out with -c")
            }
            models.append(model)
        }
        return (models, skipped)
    }

    /// The configurations a plans file defines.
    public static func configurations(ofPlans url: URL) -> Set<String>? {
        guard let data = try? Data(contentsOf: url),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let configurations = json["configurations"] as? [String: Any] else { return nil }
        return Set(configurations.keys)
    }

    /// `ensemble___<model 1>___<model 2>___<folds>`.
    public static func ensembleIdentifier(_ models: [Model], folds: [Int]) -> String {
        (["ensemble"] + models.map(\.identifier) + [folds.map(String.init).joined(separator: "_")]).joined(separator: "___")
    }

    /// One candidate's cross-validation score.
    public struct Candidate: Sendable {
        public var identifier: String
        public var models: [Model]
        /// The merged (or ensembled) predictions with their `summary.json`.
        public var source: URL
        public var dice: Double
    }

    public struct Outcome {
        /// Every candidate in nnU-Net's order: single models, then the pairs.
        public var candidates: [Candidate]
        public var best: Candidate
        public var postprocessing: PostprocessingDetermination.Outcome
        public var information: URL
        public var instructions: URL
    }

    /// Runs the selection over `models` (available, trained) in `resultsDataset` (`<results>/<dataset name>`).
    public static func run(models: [Model], resultsDataset: URL, folds: [Int], allowEnsembling: Bool, rawLabels: URL,
                           dataset: DatasetDescription, progress: (String) -> Void = { _ in }) throws -> Outcome {
        guard !models.isEmpty else {
            throw TrainingError.modelSelection(file: resultsDataset.path, problem: "no trained model to choose from")
        }
        var candidates: [Candidate] = []
        for model in models {
            progress("cross-validation of \(model.identifier)")
            let (folder, dice) = try CrossValidationResults.merge(trainerFolder: resultsDataset.appendingPathComponent(model.identifier),
                                                                  folds: folds, rawLabels: rawLabels, dataset: dataset)
            candidates.append(Candidate(identifier: model.identifier, models: [model], source: folder, dice: dice))
        }
        if allowEnsembling {
            for i in models.indices {
                for j in models.indices where j > i {
                    let pair = [models[i], models[j]]
                    let identifier = ensembleIdentifier(pair, folds: folds)
                    progress("ensembling \(identifier)")
                    let output = resultsDataset.appendingPathComponent("ensembles").appendingPathComponent(identifier)
                    let dice = try ensembleCrossValidations(pair.map { resultsDataset.appendingPathComponent($0.identifier) }, output: output,
                                                            folds: folds, rawLabels: rawLabels, dataset: dataset)
                    candidates.append(Candidate(identifier: identifier, models: pair, source: output, dice: dice))
                }
            }
        }
        // Highest Dice; on a tie the first (nnU-Net: "ensembles come after single configs").
        var best = candidates[0]
        for c in candidates.dropFirst() where c.dice > best.dice || (best.dice.isNaN && !c.dice.isNaN) { best = c }
        progress("best: \(best.identifier) (\(best.dice)); determining its postprocessing")
        let postprocessing = try PostprocessingDetermination.determine(predictions: best.source, references: rawLabels, dataset: dataset,
                                                                       progress: progress)
        let information = resultsDataset.appendingPathComponent("inference_information.json")
        let datasetName = resultsDataset.lastPathComponent
        let root: [String: Any] = [
            "folds": folds,
            "dataset_name_or_id": datasetName,
            "considered_models": models.map { ["plans": $0.plans, "configuration": $0.configuration, "trainer": $0.trainer] },
            "ensembling_allowed": allowEnsembling,
            "all_results": Dictionary(candidates.map { ($0.identifier, SegmentationMetrics.json($0.dice)) }, uniquingKeysWith: { a, _ in a }),
            "best_model_or_ensemble": [
                "result_on_crossval_pre_pp": SegmentationMetrics.json(best.dice),
                "result_on_crossval_post_pp": SegmentationMetrics.json(postprocessing.postprocessed.foregroundDice),
                "postprocessing_file": best.source.appendingPathComponent("postprocessing.pkl").path,
                "some_plans_file": best.source.appendingPathComponent("plans.json").path,
                "selected_model_or_models": best.models.map {
                    ["configuration": $0.configuration, "trainer": $0.trainer, "plans_identifier": $0.plans]
                },
            ] as [String: Any],
        ]
        let data = try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: information, options: .atomic)
        let instructions = resultsDataset.appendingPathComponent("inference_instructions.txt")
        try instructionsText(information: information, best: best, folds: folds, datasetName: datasetName)
            .write(to: instructions, atomically: true, encoding: .utf8)
        return Outcome(candidates: candidates, best: best, postprocessing: postprocessing, information: information, instructions: instructions)
    }

    /// How to predict with the winner: nnseg's one command, and the same steps with nnU-Net's tools.
    static func instructionsText(information: URL, best: Candidate, folds: [Int], datasetName: String) -> String {
        let foldList = folds.map(String.init).joined(separator: " ")
        var lines = ["***Run inference like this:***", "",
                     "nnseg predict --instructions \(information.path) -i INPUT_FOLDER -o OUTPUT_FOLDER", "",
                     "(\(best.models.count > 1 ? "the ensemble of " : "")\(best.models.map(\.identifier).joined(separator: " and ")), folds \(foldList), "
                        + "with the postprocessing determined on the cross-validation)", "",
                     "***The same with nnU-Net's tools:***", ""]
        let ensemble = best.models.count > 1
        var outputs: [String] = []
        for (k, m) in best.models.enumerated() {
            let output = ensemble ? "OUTPUT_FOLDER_MODEL_\(k + 1)" : "OUTPUT_FOLDER"
            outputs.append(output)
            lines.append("nnUNetv2_predict -d \(datasetName) -i INPUT_FOLDER -o \(output) -f  \(foldList) -tr \(m.trainer) -c \(m.configuration) -p \(m.plans)"
                         + (ensemble ? " --save_probabilities" : ""))
        }
        if ensemble {
            lines += ["", "nnUNetv2_ensemble -i \(outputs.joined(separator: " ")) -o OUTPUT_FOLDER"]
        }
        lines += ["", "nnUNetv2_apply_postprocessing -i OUTPUT_FOLDER -o OUTPUT_FOLDER_PP -pp_pkl_file \(best.source.appendingPathComponent("postprocessing.pkl").path) "
                  + "-plans_json \(best.source.appendingPathComponent("plans.json").path)", ""]
        return lines.joined(separator: "\n")
    }

    /// nnU-Net's `ensemble_crossvalidations` followed by its evaluation: per case, the models' validation
    /// probabilities (`fold_<f>/validation/<case>.npz`) averaged in float32 in the models' order, the argmax
    /// written on the first model's prediction geometry into `output`, with dataset.json, plans.json and the
    /// scored `summary.json`. Returns the foreground mean Dice.
    public static func ensembleCrossValidations(_ modelFolders: [URL], output: URL, folds: [Int], rawLabels: URL,
                                                dataset: DatasetDescription) throws -> Double {
        guard !dataset.isRegionBased else {
            throw TrainingError.modelSelection(file: output.path, problem: "ensembling region-based models is not supported yet")
        }
        let fm = FileManager.default
        // case file name (.npz) → its file, per model
        var perModel: [[String: URL]] = []
        for folder in modelFolders {
            var files: [String: URL] = [:]
            for fold in folds {
                let validation = folder.appendingPathComponent("fold_\(fold)/validation")
                guard fm.fileExists(atPath: validation.path) else {
                    throw TrainingError.modelSelection(file: validation.path, problem: "fold \(fold) has no validation: train it first")
                }
                let names = try fm.contentsOfDirectory(atPath: validation.path).filter { $0.hasSuffix(".npz") }.sorted()
                guard !names.isEmpty else {
                    throw TrainingError.modelSelection(file: validation.path, problem: "no .npz probabilities: validate again with "
                        + "`nnseg train --val --npz` (nnUNetv2_train --val --npz) to ensemble this model")
                }
                for name in names {
                    if files[name] != nil {
                        throw TrainingError.modelSelection(file: validation.appendingPathComponent(name).path,
                                                           problem: "case is validated in more than one fold: the folds overlap")
                    }
                    files[name] = validation.appendingPathComponent(name)
                }
            }
            perModel.append(files)
        }
        let names = Set(perModel.flatMap(\.keys)).sorted()
        for (k, files) in perModel.enumerated() {
            let missing = names.filter { files[$0] == nil }
            if !missing.isEmpty {
                throw TrainingError.modelSelection(file: modelFolders[k].path, problem: "lacks the predictions of \(missing.count) case(s) the other "
                    + "model has: \(missing.prefix(5).map { String($0.dropLast(4)) }.joined(separator: ", "))")
            }
        }
        let staging = output.deletingLastPathComponent().appendingPathComponent(".\(output.lastPathComponent).partial")
        try? fm.removeItem(at: staging)
        try fm.createDirectory(at: staging, withIntermediateDirectories: true)
        var rows: [(prediction: String, reference: String, counts: [SegmentationMetrics.Counts])] = []
        for name in names {
            let id = String(name.dropLast(4))
            var summed: [[Float]]?
            var shape: [Int] = []
            for files in perModel {
                let (s, p) = try CaseReader.readProbabilities(files[name]!)
                if let first = summed, s != shape || p.count != first.count {
                    throw TrainingError.modelSelection(file: files[name]!.path, problem: "probabilities of shape \([p.count] + s), the first model's are \([first.count] + shape)")
                }
                shape = s
                Ensemble.accumulate(&summed, p)
            }
            let labels = Ensemble.average(summed!, count: perModel.count).labels
            // The geometry of the first model's prediction of this case (nnU-Net: the properties of its first file).
            let firstPrediction = perModel[0][name]!.deletingLastPathComponent().appendingPathComponent(id + dataset.fileEnding)
            let geometry: NIfTIImage
            do { geometry = try NIfTIImage(contentsOf: firstPrediction) } catch {
                throw TrainingError.modelSelection(file: firstPrediction.path, problem: "the prediction beside the probabilities cannot be read (\(error))")
            }
            let g = geometry.shape
            guard [g.z, g.y, g.x] == shape else {
                throw TrainingError.modelSelection(file: firstPrediction.path, problem: "shape \([g.z, g.y, g.x]) differs from its probabilities' \(shape)")
            }
            let target = staging.appendingPathComponent(id + dataset.fileEnding)
            try CaseWriter.writeSegmentation(CasePrediction(shape: shape, segmentation: labels), geometry: geometry.geometry, to: target)
            let reference = rawLabels.appendingPathComponent(id + dataset.fileEnding)
            rows.append((output.appendingPathComponent(id + dataset.fileEnding).path, reference.path,
                         try SegmentationMetrics.counts(prediction: target, reference: reference, dataset: dataset)))
        }
        return try CrossValidationResults.finish(staging, into: output, rows: rows, copyingFrom: modelFolders[0], dataset: dataset)
    }
}

/// What `inference_information.json` (nnUNetv2_find_best_configuration's, or nnseg's) says to run.
public struct InferenceInstructions: Sendable {
    public var models: [ModelSelection.Model]
    /// The model folders (`<results>/<dataset>/<identifier>`), in the file's order.
    public var modelFolders: [URL]
    public var folds: [String]
    /// The postprocessing determined for the selection (its `postprocessing.json`); nil when the file names none.
    public var postprocessing: URL?
    public let source: URL

    /// Model folders and the postprocessing file are looked up beside the information file (its folder is the
    /// dataset's results folder), so a results tree that moved still works; an absolute path that exists is used as it is.
    public init(contentsOf url: URL) throws {
        source = url
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) } catch {
            throw TrainingError.modelSelection(file: url.path, problem: "not readable JSON (\(error.localizedDescription))")
        }
        guard let root = object as? [String: Any], let best = root["best_model_or_ensemble"] as? [String: Any],
              let selected = best["selected_model_or_models"] as? [[String: Any]], !selected.isEmpty else {
            throw TrainingError.modelSelection(file: url.path, problem: "no best_model_or_ensemble.selected_model_or_models")
        }
        models = try selected.enumerated().map { i, entry in
            guard let c = entry["configuration"] as? String, let t = entry["trainer"] as? String, let p = entry["plans_identifier"] as? String else {
                throw TrainingError.modelSelection(file: url.path, problem: "selected_model_or_models[\(i)] needs configuration, trainer and plans_identifier")
            }
            return ModelSelection.Model(trainer: t, plans: p, configuration: c)
        }
        guard let foldValues = root["folds"] as? [Any], !foldValues.isEmpty else {
            throw TrainingError.modelSelection(file: url.path, problem: "no folds")
        }
        folds = foldValues.map { "\($0)" }
        let resultsDataset = url.deletingLastPathComponent()
        modelFolders = models.map { resultsDataset.appendingPathComponent($0.identifier) }
        postprocessing = nil
        if let pkl = best["postprocessing_file"] as? String {
            let json = String(pkl.dropLast(pkl.hasSuffix(".pkl") ? 4 : 0)) + (pkl.hasSuffix(".pkl") ? ".json" : "")
            var candidates = [URL(fileURLWithPath: json)]
            // The part below the dataset's results folder, resolved here.
            let marker = "/" + resultsDataset.lastPathComponent + "/"
            if let r = json.range(of: marker, options: .backwards) {
                candidates.insert(resultsDataset.appendingPathComponent(String(json[r.upperBound...])), at: 0)
            }
            guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0.path) }) else {
                throw TrainingError.modelSelection(file: url.path, problem: "names the postprocessing \(pkl), but neither its .json twin there nor "
                    + "\(candidates[0].path) exists (predict with --no-postprocessing to go without)")
            }
            postprocessing = found
        }
    }
}
