import Foundation
import NIfTI
import Testing
import TestSupport

/// Region-based training end to end (#21): a toy region dataset made from real Hippocampus cases — the whole
/// hippocampus (labels 1 and 2) and its posterior part (label 2) as overlapping regions with
/// `regions_class_order` — is planned, preprocessed, trained briefly (sigmoid outputs, nnU-Net's Dice + BCE),
/// validated with region metrics, and predicts label maps painted in `regions_class_order`.
struct RegionTrainingCommandTests {
    @Test func aRegionDatasetTrainsValidatesAndPredicts() throws {
        let raw = try SharedData.hippocampusSubset(Array(TrainCommandTests.cases.prefix(8)), name: "Dataset997_Regions")
        let work = raw.deletingLastPathComponent()
        defer { try? FileManager.default.removeItem(at: work) }
        let datasetURL = raw.appendingPathComponent("dataset.json")
        var description = try #require(try SharedData.json(datasetURL) as? [String: Any])
        description["labels"] = ["background": 0, "hippocampus": [1, 2], "posterior": 2] as [String: Any]
        description["regions_class_order"] = [1, 2]
        try JSONSerialization.data(withJSONObject: description).write(to: datasetURL)

        let pre = work.appendingPathComponent("pre"), results = work.appendingPathComponent("results")
        let planned = try CommandRunner.nnseg(["plan", "-d", raw.path, "--output", pre.path])
        #expect(planned.status == 0, "\(planned.stderr.suffix(1000))")
        let preprocessed = try CommandRunner.nnseg(["preprocess", "-d", raw.path, "--output", pre.path, "-c", "3d_fullres"])
        #expect(preprocessed.status == 0, "\(preprocessed.stderr.suffix(1000))")
        let trained = try CommandRunner.nnseg(["train", "-d", raw.path, "--output", pre.path, "--results", results.path, "-c", "3d_fullres", "-f", "0",
                                               "--epochs", "1", "--iterations", "3", "--validation-iterations", "1", "--seed", "5"])
        #expect(trained.status == 0, "\(trained.stderr.suffix(2000))")
        let model = results.appendingPathComponent("Dataset997_Regions/nnUNetTrainer__nnUNetPlans__3d_fullres")
        // Region metrics, keyed as nnU-Net keys them.
        let summary = try #require(try SharedData.json(model.appendingPathComponent("fold_0/validation/summary.json")) as? [String: Any])
        #expect((summary["mean"] as? [String: Any])?.keys.sorted() == ["(1, 2)", "2"])
        let log = try FileManager.default.contentsOfDirectory(atPath: model.appendingPathComponent("fold_0").path).first { $0.hasPrefix("training_log_") }
        let logText = try String(contentsOf: model.appendingPathComponent("fold_0/\(try #require(log))"), encoding: .utf8)
        #expect(logText.contains("pseudo Dice"), "one pseudo-Dice per region is logged")

        // Prediction paints regions in regions_class_order: labels ⊆ {0, 1, 2}; posterior (2) only inside the whole.
        let input = work.appendingPathComponent("input"), output = work.appendingPathComponent("output")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: raw.appendingPathComponent("imagesTr/hippocampus_001_0000.nii.gz"),
                                         to: input.appendingPathComponent("hippocampus_001_0000.nii.gz"))
        let predicted = try CommandRunner.nnseg(["predict", "-m", model.path, "-f", "0", "-i", input.path, "-o", output.path, "--save-probabilities"])
        #expect(predicted.status == 0, "\(predicted.stderr.suffix(1500))")
        let labels = try NIfTIImage(contentsOf: output.appendingPathComponent("hippocampus_001.nii.gz")).labelVolume().voxels
        #expect(Set(labels).isSubset(of: [0, 1, 2]))
        let probabilities = try NumpyArray.npz(output.appendingPathComponent("hippocampus_001.npz"))["probabilities"]
        #expect(probabilities?.shape.first == 2, "one sigmoid channel per region")
        if let p = probabilities {
            let n = p.floats.count / 2
            for v in stride(from: 0, to: n, by: 97) {
                let expected: UInt16 = p.floats[n + v] > 0.5 ? 2 : (p.floats[v] > 0.5 ? 1 : 0)
                #expect(labels[v] == expected, "voxel \(v)")
            }
        }
    }
}
