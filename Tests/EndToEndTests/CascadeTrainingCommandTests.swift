import Foundation
import NIfTI
import Testing
import TestSupport

/// Cascade training end to end (#21) on real Hippocampus cases: the plans gain nnU-Net's cascade pair (a
/// 3d_lowres stage at 1.6× the spacing with `next_stage`, and 3d_cascade_fullres inheriting 3d_fullres with
/// `previous_stage`); the first stage trains and its validation writes its labels on the second stage's
/// preprocessed grid (`predicted_next_stage/3d_cascade_fullres/`); the second stage trains with them as one-hot
/// input channels, validates on the first stage's predictions, and predicts through `predict --previous-stage`.
struct CascadeTrainingCommandTests {
    static let cases = Array(TrainCommandTests.cases.prefix(6))

    @Test func aCascadeTrainsOnTheFirstStagesPredictionsAndPredicts() throws {
        let raw = try SharedData.hippocampusSubset(Self.cases, name: "Dataset996_Cascade")
        let work = raw.deletingLastPathComponent()
        defer { try? FileManager.default.removeItem(at: work) }
        let pre = work.appendingPathComponent("pre"), results = work.appendingPathComponent("results")
        #expect(try CommandRunner.nnseg(["plan", "-d", raw.path, "--output", pre.path]).status == 0)
        let plansURL = pre.appendingPathComponent("Dataset996_Cascade/nnUNetPlans.json")
        var plans = try #require(try SharedData.json(plansURL) as? [String: Any])
        var configurations = try #require(plans["configurations"] as? [String: Any])
        var lowres = try #require(configurations["3d_fullres"] as? [String: Any])
        lowres["data_identifier"] = "nnUNetPlans_3d_lowres"
        lowres["spacing"] = (lowres["spacing"] as? [Double])?.map { $0 * 1.6 }
        lowres["next_stage"] = "3d_cascade_fullres"
        configurations["3d_lowres"] = lowres
        configurations["3d_cascade_fullres"] = ["inherits_from": "3d_fullres", "previous_stage": "3d_lowres"]
        plans["configurations"] = configurations
        try JSONSerialization.data(withJSONObject: plans, options: .sortedKeys).write(to: plansURL)

        let preprocessed = try CommandRunner.nnseg(["preprocess", "-d", raw.path, "--output", pre.path, "-c", "3d_lowres", "3d_fullres"])
        #expect(preprocessed.status == 0, "\(preprocessed.stderr.suffix(1000))")
        let common = ["-d", raw.path, "--output", pre.path, "--results", results.path, "--epochs", "1", "--iterations", "2",
                      "--validation-iterations", "1", "--seed", "11"]
        // The second stage before the first: refused, naming what to do.
        let early = try CommandRunner.nnseg(["train", "-c", "3d_cascade_fullres", "-f", "0"] + common)
        #expect(early.status != 0 && early.stderr.contains("train and validate every fold of 3d_lowres first"), "\(early.stderr.suffix(800))")

        let first = try CommandRunner.nnseg(["train", "-c", "3d_lowres", "-f", "all"] + common)
        #expect(first.status == 0, "\(first.stderr.suffix(1500))")
        let dataset = results.appendingPathComponent("Dataset996_Cascade")
        let nextStage = dataset.appendingPathComponent("nnUNetTrainer__nnUNetPlans__3d_lowres/predicted_next_stage/3d_cascade_fullres")
        for id in Self.cases {
            let written = try NumpyArray(contentsOf: nextStage.appendingPathComponent(id + ".npy"))
            let data = try NumpyArray(contentsOf: pre.appendingPathComponent("Dataset996_Cascade/nnUNetPlans_3d_fullres/\(id).npy"))
            #expect(Array(written.shape.dropFirst()) == Array(data.shape.dropFirst()), "\(id): on the second stage's grid")
            #expect(Set(written.floats).isSubset(of: [0, 1, 2]))
        }

        let second = try CommandRunner.nnseg(["train", "-c", "3d_cascade_fullres", "-f", "0"] + common)
        #expect(second.status == 0, "\(second.stderr.suffix(1500))")
        let cascade = dataset.appendingPathComponent("nnUNetTrainer__nnUNetPlans__3d_cascade_fullres")
        #expect(FileManager.default.fileExists(atPath: cascade.appendingPathComponent("fold_0/validation/summary.json").path))

        // Prediction: the first stage, then the second on its output.
        let input = work.appendingPathComponent("input")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: raw.appendingPathComponent("imagesTr/hippocampus_001_0000.nii.gz"),
                                         to: input.appendingPathComponent("hippocampus_001_0000.nii.gz"))
        let lowresOut = work.appendingPathComponent("lowres"), cascadeOut = work.appendingPathComponent("cascade")
        let a = try CommandRunner.nnseg(["predict", "-m", dataset.appendingPathComponent("nnUNetTrainer__nnUNetPlans__3d_lowres").path, "-f", "all",
                                         "-i", input.path, "-o", lowresOut.path])
        #expect(a.status == 0, "\(a.stderr.suffix(1000))")
        let missing = try CommandRunner.nnseg(["predict", "-m", cascade.path, "-f", "0", "-i", input.path, "-o", cascadeOut.path])
        #expect(missing.status != 0 && missing.stderr.contains("needs the predictions of 3d_lowres"), "\(missing.stderr.suffix(800))")
        let b = try CommandRunner.nnseg(["predict", "-m", cascade.path, "-f", "0", "-i", input.path, "-o", cascadeOut.path,
                                         "--previous-stage", lowresOut.path])
        #expect(b.status == 0, "\(b.stderr.suffix(1000))")
        let labels = try NIfTIImage(contentsOf: cascadeOut.appendingPathComponent("hippocampus_001.nii.gz")).labelVolume().voxels
        #expect(Set(labels).isSubset(of: [0, 1, 2]))

        // Instructions choosing the cascade run its first stage (same folds) before it: the same as the two steps by hand.
        let lowresFold0 = try CommandRunner.nnseg(["train", "-c", "3d_lowres", "-f", "0"] + common)
        #expect(lowresFold0.status == 0, "\(lowresFold0.stderr.suffix(1000))")
        let information = dataset.appendingPathComponent("inference_information.json")
        let chosen: [String: Any] = ["folds": [0], "best_model_or_ensemble": [
            "selected_model_or_models": [["configuration": "3d_cascade_fullres", "trainer": "nnUNetTrainer", "plans_identifier": "nnUNetPlans"]]]]
        try JSONSerialization.data(withJSONObject: chosen).write(to: information)
        let instructed = work.appendingPathComponent("instructed"), byHand = work.appendingPathComponent("by-hand"), stage = work.appendingPathComponent("stage")
        let c = try CommandRunner.nnseg(["predict", "--instructions", information.path, "-i", input.path, "-o", instructed.path])
        #expect(c.status == 0 && c.stderr.contains("cascade: predicting the first stage"), "\(c.stderr.suffix(1000))")
        #expect(try CommandRunner.nnseg(["predict", "-m", dataset.appendingPathComponent("nnUNetTrainer__nnUNetPlans__3d_lowres").path, "-f", "0",
                                         "-i", input.path, "-o", stage.path]).status == 0)
        #expect(try CommandRunner.nnseg(["predict", "-m", cascade.path, "-f", "0", "-i", input.path, "-o", byHand.path,
                                         "--previous-stage", stage.path]).status == 0)
        let viaInstructions = try NIfTIImage(contentsOf: instructed.appendingPathComponent("hippocampus_001.nii.gz")).labelVolume().voxels
        let viaHand = try NIfTIImage(contentsOf: byHand.appendingPathComponent("hippocampus_001.nii.gz")).labelVolume().voxels
        #expect(viaInstructions == viaHand)
    }
}
