import ArgumentParser
import CaseIdentity

struct NNSeg: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nnseg",
        abstract: "nnU-Net as a DICOM-native clinical batch processor.",
        version: SoftwareVersion.number,
        subcommands: [Run.self, Watch.self, Worker.self, Serve.self, ConsoleCommand.self, OutboxCommand.self, InitModel.self, ProfileCommand.self, WatchWorker.self, WatchIdentify.self, ServeSCP.self, OutboxSend.self, Status.self, Inspect.self, Predict.self, Export.self, Audit.self, KeysCommand.self, ModelCommand.self, PlanCommand.self, PreprocessCommand.self, DatasetFromDICOM.self, TrainCommand.self, CrossValidateCommand.self, DeterminePostprocessingCommand.self, FindBestConfigurationCommand.self]
    )
}
