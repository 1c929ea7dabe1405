import ArgumentParser
import ExperimentPlanning
import Foundation
import Logging

/// `nnseg dataset-from-dicom`: DICOM series + their SEG/RTSTRUCT annotations → an nnU-Net v2 raw dataset,
/// ready for `nnseg plan` and `nnseg preprocess`.
struct DatasetFromDICOM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dataset-from-dicom",
        abstract: "Build a raw training dataset (imagesTr, labelsTr, dataset.json) from DICOM series and the SEG/RTSTRUCT objects that annotate them.")

    @Argument(help: "Folder scanned recursively for image series and SEG / RTSTRUCT objects.")
    var folder: String

    @Option(help: "The new dataset folder, e.g. nnUNet_raw/Dataset010_Liver (must not exist).")
    var output: String

    @Option(name: .customLong("label"), help: "name[|alias…]=value: a training label and the segment / ROI names that mean it (case-insensitive). Repeat per label.")
    var labels: [String] = []

    @Flag(help: "Accept cases in which a label has no voxels (the structure is absent), instead of refusing them.")
    var allowMissing = false

    @Option(help: "Case identifier prefix.")
    var prefix: String = "case"

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.bootstrap()
        let logger = Logger(label: "nnseg.dataset")
        let rules = try labels.map(LabelRule.init(parsing:))
        let progress = ProgressReporter(title: "cases", minimumTotal: 2)
        let cases = try DICOMDatasetBuilder.build(from: URL(fileURLWithPath: folder), labels: rules, output: URL(fileURLWithPath: output),
                                                  allowMissing: allowMissing, prefix: prefix) { done, total in progress.update(done, total) }
        progress.finish()
        for c in cases {
            let counts = rules.map { "\($0.name) \(c.voxelsPerLabel[$0.name] ?? 0)" }.joined(separator: ", ")
            print("\(c.identifier): \(counts)\(c.overlappingVoxels > 0 ? " (\(c.overlappingVoxels) overlapping voxels)" : "")")
            if c.overlappingVoxels > 0 {
                logger.warning("structures overlap; the higher label value was kept", metadata: ["case": "\(c.identifier)", "voxels": "\(c.overlappingVoxels)"])
            }
        }
        print("dataset: \(output) (\(cases.count) case(s)); next: nnseg plan -d \(output)")
    }
}
