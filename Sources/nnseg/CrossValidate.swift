import ArgumentParser
import ExperimentPlanning
import Foundation
import Logging
import PlansModel
import Training

/// `nnseg crossval -d <raw dataset> -c 3d_fullres`: merges the trained folds' validation predictions into
/// `crossval_results_folds_0_1_2_3_4/` and scores them together (nnU-Net's cross-validation result).
struct CrossValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crossval",
        abstract: "Merge the folds' validation predictions into nnU-Net's crossval_results folder and score them together.")

    @OptionGroup var source: RawDatasetOptions

    @OptionGroup var model: ModelFolderOptions

    @Option(name: [.customShort("f"), .long], parsing: .upToNextOption, help: "Folds to merge.")
    var folds: [Int] = [0, 1, 2, 3, 4]

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.bootstrap()
        let (raw, _) = try source.open()
        let trainer = model.folder(dataset: raw)
        guard FileManager.default.fileExists(atPath: trainer.path) else { throw CommandFailure("\(trainer.path): no trained model for \(model.configuration)") }
        let (folder, dice) = try CrossValidationResults.merge(trainerFolder: trainer, folds: folds, rawLabels: raw.folder.appendingPathComponent("labelsTr"),
                                                              dataset: raw.description)
        Logger(label: "nnseg.crossval").notice("cross-validation merged", metadata: ["folds": "\(folds)", "mean_dice": "\(String(format: "%.4f", dice))"])
        print(String(format: "folds %@: mean foreground Dice %.4f → %@", folds.map(String.init).joined(separator: ","), dice,
                     folder.appendingPathComponent("summary.json").path))
    }
}

/// `nnseg determine-postprocessing`: nnUNetv2_determine_postprocessing on cross-validation predictions — whether
/// keeping the largest connected component (all foreground, then per label) raises the Dice (#21).
struct DeterminePostprocessingCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "determine-postprocessing",
        abstract: "Find the connected-component postprocessing that improves the cross-validation Dice (nnUNetv2_determine_postprocessing).",
        discussion: """
            Writes postprocessing.json and postprocessing.pkl (nnU-Net's own formats) into the predictions folder, and the
            postprocessed predictions with their summary.json into its postprocessed/ folder. `nnseg predict` and profiles
            (postprocessing.useModel) apply it from the model folder's crossval_results_folds_* folder.
            Either -i and --ref (and --dataset-json unless the folder holds dataset.json), or -d with the model options
            (the configuration's crossval_results_folds_<folds> from `nnseg crossval`).
            """)

    @Option(name: .customShort("i"), help: "Folder of predicted label maps (e.g. crossval_results_folds_0_1_2_3_4).")
    var input: String?
    @Option(help: "Folder of reference labels (labelsTr).")
    var ref: String?
    @Option(help: "dataset.json (default: the one in the predictions folder).")
    var datasetJson: String?

    @Option(name: [.customShort("d"), .long], help: "Raw dataset folder (instead of -i/--ref).")
    var dataset: String?
    @OptionGroup var model: ModelFolderOptions
    @Option(name: [.customShort("f"), .long], parsing: .upToNextOption, help: "Folds of the crossval folder (with -d).")
    var folds: [Int] = [0, 1, 2, 3, 4]

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        if dataset == nil && (input == nil || ref == nil) { throw ValidationError("give -i and --ref, or -d") }
        if dataset != nil && (input != nil || ref != nil) { throw ValidationError("give either -d or -i/--ref, not both") }
    }

    func run() throws {
        logging.bootstrap()
        let predictions: URL, references: URL, description: DatasetDescription
        if let dataset {
            let raw = try RawDataset(folder: URL(fileURLWithPath: dataset))
            predictions = model.folder(dataset: raw).appendingPathComponent("crossval_results_folds_" + folds.map(String.init).joined(separator: "_"))
            references = raw.folder.appendingPathComponent("labelsTr")
            description = raw.description
            guard FileManager.default.fileExists(atPath: predictions.path) else {
                throw CommandFailure("\(predictions.path): no merged cross-validation (run `nnseg crossval` first)")
            }
        } else {
            predictions = URL(fileURLWithPath: input!)
            references = URL(fileURLWithPath: ref!)
            description = try DatasetDescription(contentsOf: datasetJson.map { URL(fileURLWithPath: $0) }
                                                 ?? predictions.appendingPathComponent("dataset.json"))
        }
        let log = Logger(label: "nnseg.postprocessing")
        let outcome = try PostprocessingDetermination.determine(predictions: predictions, references: references, dataset: description,
                                                                progress: { log.info("\($0)") })
        for line in outcome.decisions { print(line) }
        print(String(format: "mean foreground Dice %.5f → %.5f; steps: %@ → %@", outcome.baseline.foregroundDice, outcome.postprocessed.foregroundDice,
                     outcome.steps.isEmpty ? "none" : outcome.steps.map { "keep largest of \($0.map(String.init).joined(separator: "+"))" }.joined(separator: ", "),
                     predictions.appendingPathComponent("postprocessing.json").path))
    }
}

/// `nnseg find-best-configuration`: nnUNetv2_find_best_configuration — every trained configuration's merged
/// cross-validation and every pair's ensemble scored, the best chosen, its postprocessing determined, and
/// inference_information.json / inference_instructions.txt written for `nnseg predict --instructions` (#21).
struct FindBestConfigurationCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "find-best-configuration",
        abstract: "Choose the best configuration or pairwise ensemble on the cross-validation (nnUNetv2_find_best_configuration).",
        discussion: """
            Candidates: every trainer × plans × configuration given (default: nnU-Net's trainer and plans with 2d, 3d_fullres, \
            3d_lowres and 3d_cascade_fullres); a configuration the plans lack is skipped, one they define but that is not trained \
            is an error. Ensembles need the folds validated with --npz (`nnseg train … --npz`, or `--val --npz` afterwards). \
            Writes <results>/<dataset>/inference_information.json and inference_instructions.txt, ensembles/ and the winner's \
            postprocessing.json/.pkl.
            """)

    @OptionGroup var source: RawDatasetOptions

    @Option(help: "Results root.")
    var results: String = "nnseg-results"

    @Option(name: [.customShort("c"), .long], parsing: .upToNextOption, help: "Configurations to consider.")
    var configurations: [String] = ModelSelection.defaultConfigurations

    @Option(name: .customLong("tr"), parsing: .upToNextOption, help: "Trainers to consider.")
    var trainers: [String] = ["nnUNetTrainer"]

    @Option(name: [.customShort("p"), .long], parsing: .upToNextOption, help: "Plans identifiers to consider.")
    var plans: [String] = ["nnUNetPlans"]

    @Option(name: [.customShort("f"), .long], parsing: .upToNextOption, help: "Folds of the cross-validation.")
    var folds: [Int] = [0, 1, 2, 3, 4]

    @Flag(help: "Do not consider ensembles.")
    var disableEnsembling = false

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.bootstrap()
        let log = Logger(label: "nnseg.find-best-configuration")
        let (raw, preprocessed) = try source.open()
        let resultsDataset = URL(fileURLWithPath: results).appendingPathComponent(raw.folder.lastPathComponent)
        let requested = trainers.flatMap { t in configurations.flatMap { c in plans.map { ModelSelection.Model(trainer: t, plans: $0, configuration: c) } } }
        // The plans as planned (nnU-Net reads nnUNet_preprocessed), else as copied into any trained folder of those plans.
        let (models, skipped) = try ModelSelection.available(requested, resultsDataset: resultsDataset) { plans in
            if let c = ModelSelection.configurations(ofPlans: preprocessed.appendingPathComponent(plans + ".json")) { return c }
            let folders = (try? FileManager.default.contentsOfDirectory(atPath: resultsDataset.path)) ?? []
            return folders.filter { ModelSelection.Model(identifier: $0)?.plans == plans }.sorted().lazy
                .compactMap { ModelSelection.configurations(ofPlans: resultsDataset.appendingPathComponent($0).appendingPathComponent("plans.json")) }.first
        }
        for s in skipped { log.notice("candidate skipped", metadata: ["model": "\(s.model.identifier)", "reason": "\(s.reason)"]) }
        let outcome = try ModelSelection.run(models: models, resultsDataset: resultsDataset, folds: folds, allowEnsembling: !disableEnsembling,
                                             rawLabels: raw.folder.appendingPathComponent("labelsTr"), dataset: raw.description,
                                             progress: { log.info("\($0)") })
        print("***All results:***")
        for c in outcome.candidates { print("\(c.identifier): \(c.dice)") }
        print("\n*Best*: \(outcome.best.identifier): \(outcome.best.dice)")
        for line in outcome.postprocessing.decisions { print(line) }
        print(String(format: "postprocessing: mean foreground Dice %.5f → %.5f", outcome.postprocessing.baseline.foregroundDice,
                     outcome.postprocessing.postprocessed.foregroundDice))
        print("\n" + (try String(contentsOf: outcome.instructions, encoding: .utf8)))
        log.notice("best configuration chosen", metadata: ["best": "\(outcome.best.identifier)", "dice": "\(outcome.best.dice)",
                                                           "information": "\(outcome.information.path)"])
    }
}
