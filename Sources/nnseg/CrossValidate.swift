import ArgumentParser
import ExperimentPlanning
import Foundation
import Logging
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
