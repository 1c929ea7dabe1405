import Foundation
import Inference
import NIfTI
import Testing
import TestSupport

/// nnU-Net's workflow after training, end to end through the CLI (#21): two configurations of real Hippocampus
/// cases trained briefly with `--npz`, `find-best-configuration` (singles, their ensemble, the winner's
/// postprocessing, inference_information.json), then `predict --instructions` gives what predicting with the
/// chosen models and applying the chosen postprocessing by hand gives.
struct FindBestConfigurationCommandTests {
    @Test func trainedConfigurationsAreComparedEnsembledAndPredictedAsChosen() throws {
        let raw = try SharedData.hippocampusSubset(Array(TrainCommandTests.cases.prefix(8)), name: "Dataset004_Hippocampus")
        let work = raw.deletingLastPathComponent()
        defer { try? FileManager.default.removeItem(at: work) }
        let pre = work.appendingPathComponent("pre"), results = work.appendingPathComponent("results")
        #expect(try CommandRunner.nnseg(["plan", "-d", raw.path, "--output", pre.path]).status == 0)
        let preprocessed = try CommandRunner.nnseg(["preprocess", "-d", raw.path, "--output", pre.path, "-c", "2d", "3d_fullres"])
        #expect(preprocessed.status == 0, "\(preprocessed.stderr.suffix(1000))")
        for configuration in ["3d_fullres", "2d"] {
            let trained = try CommandRunner.nnseg(["train", "-d", raw.path, "--output", pre.path, "--results", results.path, "-c", configuration,
                                                   "-f", "0", "--epochs", "1", "--iterations", "2", "--validation-iterations", "1", "--seed", "3", "--npz"])
            #expect(trained.status == 0, "\(configuration): \(trained.stderr.suffix(1500))")
        }
        let dataset = results.appendingPathComponent("Dataset004_Hippocampus")
        let validation = dataset.appendingPathComponent("nnUNetTrainer__nnUNetPlans__2d/fold_0/validation")
        let npz = try FileManager.default.contentsOfDirectory(atPath: validation.path).filter { $0.hasSuffix(".npz") }
        #expect(!npz.isEmpty, "--npz saves the validation probabilities")

        // 3d_lowres is not planned for Hippocampus: skipped. Both trained configurations and their ensemble compete.
        let found = try CommandRunner.nnseg(["find-best-configuration", "-d", raw.path, "--output", pre.path, "--results", results.path,
                                             "-c", "2d", "3d_fullres", "3d_lowres", "-f", "0"])
        #expect(found.status == 0, "\(found.stderr.suffix(2000))")
        #expect(found.stdout.contains("nnUNetTrainer__nnUNetPlans__2d: ") && found.stdout.contains("nnUNetTrainer__nnUNetPlans__3d_fullres: "))
        #expect(found.stdout.contains("ensemble___nnUNetTrainer__nnUNetPlans__2d___nnUNetTrainer__nnUNetPlans__3d_fullres___0: "))
        #expect(found.stderr.contains("3d_lowres is not in plans"))
        let informationURL = dataset.appendingPathComponent("inference_information.json")
        let information = try #require(try SharedData.json(informationURL) as? [String: Any])
        let best = try #require(information["best_model_or_ensemble"] as? [String: Any])
        let selected = try #require(best["selected_model_or_models"] as? [[String: String]])
        #expect((information["all_results"] as? [String: Any])?.count == 3)
        #expect(FileManager.default.fileExists(atPath: dataset.appendingPathComponent("inference_instructions.txt").path))

        // predict --instructions = predict with the selected models' fold 0, then the selected postprocessing.
        let input = work.appendingPathComponent("input")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        for id in ["hippocampus_001", "hippocampus_004"] {
            try FileManager.default.copyItem(at: raw.appendingPathComponent("imagesTr/\(id)_0000.nii.gz"), to: input.appendingPathComponent("\(id)_0000.nii.gz"))
        }
        let chosen = work.appendingPathComponent("chosen"), byHand = work.appendingPathComponent("by-hand")
        let predicted = try CommandRunner.nnseg(["predict", "--instructions", informationURL.path, "-i", input.path, "-o", chosen.path])
        #expect(predicted.status == 0, "\(predicted.stderr.suffix(1500))")
        var manual = ["predict", "-i", input.path, "-o", byHand.path, "-f", "0", "--no-postprocessing"]
        for m in selected { manual += ["-m", dataset.appendingPathComponent("\(m["trainer"]!)__\(m["plans_identifier"]!)__\(m["configuration"]!)").path] }
        let manualRun = try CommandRunner.nnseg(manual)
        #expect(manualRun.status == 0, "\(manualRun.stderr.suffix(1500))")
        let pkl = try #require(best["postprocessing_file"] as? String)
        let postprocessing = try Postprocessing(contentsOf: URL(fileURLWithPath: String(pkl.dropLast(4)) + ".json"))
        for id in ["hippocampus_001", "hippocampus_004"] {
            let a = try NIfTIImage(contentsOf: chosen.appendingPathComponent(id + ".nii.gz"))
            var b = try NIfTIImage(contentsOf: byHand.appendingPathComponent(id + ".nii.gz")).labelVolume().voxels
            postprocessing.apply(&b, shape: [a.shape.z, a.shape.y, a.shape.x])
            #expect(try a.labelVolume().voxels == b, "\(id)")
        }
        // Instructions and models are both given: refused before anything runs.
        let both = try CommandRunner.nnseg(["predict", "--instructions", informationURL.path, "-m", validation.path, "-i", input.path, "-o", chosen.path])
        #expect(both.status == 64)
    }
}
