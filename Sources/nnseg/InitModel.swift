import ArgumentParser
import Foundation
import UNet

/// `nnseg init-model`: a model folder with seeded random weights for a plans configuration (benchmarks such as
/// Ops/bench/ct_fullres.sh; no trained model is needed to measure speed and memory).
struct InitModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init-model",
        abstract: "Write a model folder in nnU-Net's layout with seeded random weights (for benchmarks).")

    @Option(help: "plans.json (nnseg plan or nnU-Net).") var plans: String
    @Option(help: "dataset.json of the dataset.") var datasetJson: String
    @Option(name: .shortAndLong, help: "Configuration in the plans.") var configuration = "3d_fullres"
    @Option(help: "Seed of the weights.") var seed: UInt64 = 1
    @Option(help: "Fold folder to write (fold_<n>).") var fold = 0
    @Option(name: .shortAndLong, help: "Model folder to write.") var output: String

    func run() throws {
        try UntrainedModel.write(plans: URL(fileURLWithPath: plans), dataset: URL(fileURLWithPath: datasetJson), configuration: configuration,
                                 seed: seed, fold: fold, to: URL(fileURLWithPath: output))
        print("model folder \(output) (\(configuration), fold_\(fold), seed \(seed))")
    }
}
