import CaseLayer
import Digest
import Foundation
import Inference
import NIfTI
import PlansModel
import Testing
import TestSupport
@testable import Training

/// `find-best-configuration` (#21) against nnU-Net 2.8.1's `find_best_configuration` on the same cross-validation
/// (Fixtures/golden/model_selection, made by Ops/golden/make_model_selection_golden.py): four "trained models"
/// built from the reference model's real probabilities of 5 cases (mirrored, unmirrored, each also shifted by one
/// voxel; one with a 3×3×3 corner island), case k validated in fold k; 4 models and 6 pairwise ensembles scored.
struct ModelSelectionTests {
    static let golden = SharedData.fixtures.appendingPathComponent("golden/model_selection/hippocampus_5cases.json")
    static let reference = SharedData.reference.appendingPathComponent("Dataset004_Hippocampus")
    static let referenceModel = reference.appendingPathComponent("model/nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres")
    /// identifier, probabilities folder, roll axis (of (c, z, y, x)), as the golden script lists them.
    static let models: [(String, String, Int?)] = [
        ("nnUNetTrainer__nnUNetPlans__3d_fullres", "tta", nil),
        ("nnUNetTrainer__nnUNetPlans__2d", "notta", nil),
        ("nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres", "tta", 3),
        ("nnUNetTrainer_1epoch__nnUNetPlans__2d", "notta", 2),
    ]
    static let islandModel = "nnUNetTrainer__nnUNetPlans__3d_fullres"

    /// The golden's results tree: `<work>/Dataset004_Hippocampus/<model>/fold_k/validation/<case>.{npz,nii.gz}`.
    static func buildResults(_ work: URL, cases: [String]) throws -> URL {
        let fm = FileManager.default
        let results = work.appendingPathComponent("Dataset004_Hippocampus")
        for (identifier, source, axis) in models {
            let folder = results.appendingPathComponent(identifier)
            try fm.createDirectory(at: folder, withIntermediateDirectories: true)
            for file in ["plans.json", "dataset.json"] {
                try fm.copyItem(at: referenceModel.appendingPathComponent(file), to: folder.appendingPathComponent(file))
            }
            for (fold, c) in cases.enumerated() {
                let validation = folder.appendingPathComponent("fold_\(fold)/validation")
                try fm.createDirectory(at: validation, withIntermediateDirectories: true)
                var (shape, p) = try CaseReader.readProbabilities(reference.appendingPathComponent("predictions/\(source)/\(c).npz"))
                let (d, h, w) = (shape[0], shape[1], shape[2])
                if let axis {
                    // np.roll(p, 1, axis): element i moves to i + 1 (wrapping).
                    p = p.map { channel in
                        var out = channel
                        for z in 0..<d { for y in 0..<h { for x in 0..<w {
                            let (sz, sy, sx) = axis == 3 ? (z, y, (x + w - 1) % w) : (z, (y + h - 1) % h, x)
                            out[(z * h + y) * w + x] = channel[(sz * h + sy) * w + sx]
                        } } }
                        return out
                    }
                }
                if identifier == islandModel {
                    for z in 0..<3 { for y in 0..<3 { for x in 0..<3 {
                        let v = (z * h + y) * w + x
                        for k in p.indices { p[k][v] = 0 }
                        p[0][v] = 0.125
                        p[1 + fold % 2][v] = 0.875
                    } } }
                }
                try CaseWriter.writeProbabilities(p, shape: shape, to: validation.appendingPathComponent(c + ".npz"))
                var labels = [UInt16](repeating: 0, count: p[0].count)
                for v in labels.indices { for k in 1..<p.count where p[k][v] > p[Int(labels[v])][v] { labels[v] = UInt16(k) } }
                let image = try NIfTIImage(contentsOf: SharedData.dataFile("Dataset004_Hippocampus/imagesTr/\(c)_0000.nii.gz"))
                try CaseWriter.writeSegmentation(CasePrediction(shape: shape, segmentation: labels), geometry: image.geometry,
                                                 to: validation.appendingPathComponent(c + ".nii.gz"))
            }
        }
        return results
    }

    @Test func choicesEqualNnUNets() throws {
        let golden = try #require(try SharedData.json(Self.golden) as? [String: Any])
        let cases = try #require(golden["cases"] as? [String])
        let work = try SharedData.temporaryDirectory("model-selection")
        defer { try? FileManager.default.removeItem(at: work) }
        let results = try Self.buildResults(work, cases: cases)
        let dataset = try DatasetDescription(contentsOf: Self.referenceModel.appendingPathComponent("dataset.json"))
        let requested = ["nnUNetTrainer", "nnUNetTrainer_1epoch"].flatMap { t in ["2d", "3d_fullres"].map { ModelSelection.Model(trainer: t, configuration: $0) } }
            + [ModelSelection.Model(configuration: "3d_lowres")]
        let plans = Self.reference.appendingPathComponent("nnUNetPlans.json")
        let (models, skipped) = try ModelSelection.available(requested, resultsDataset: results) { $0 == "nnUNetPlans" ? ModelSelection.configurations(ofPlans: plans) : nil }
        #expect(skipped.map(\.model.configuration) == ["3d_lowres"], "the plans have no 3d_lowres: skipped, as nnU-Net does")
        let outcome = try ModelSelection.run(models: models, resultsDataset: results, folds: [0, 1, 2, 3, 4], allowEnsembling: true,
                                             rawLabels: SharedData.dataFile("Dataset004_Hippocampus/labelsTr"), dataset: dataset)

        // Every candidate's cross-validation Dice (overall and per label), in nnU-Net's order.
        let information = try #require(golden["inference_information"] as? [String: Any])
        let allResults = try #require(information["all_results"] as? [String: Double])
        let candidates = try #require(golden["candidates"] as? [String: [String: Any]])
        #expect(Set(outcome.candidates.map(\.identifier)) == Set(allResults.keys))
        #expect(outcome.candidates.count == 10)
        for c in outcome.candidates {
            #expect(abs(c.dice - allResults[c.identifier]!) < 1e-12, "\(c.identifier): \(c.dice) vs nnU-Net \(allResults[c.identifier]!)")
            let summary = try #require(try SharedData.json(c.source.appendingPathComponent("summary.json")) as? [String: Any])
            let means = try #require(summary["mean"] as? [String: [String: Any]])
            let expected = try #require(candidates[c.identifier]?["mean"] as? [String: Double])
            for (label, dice) in expected { #expect(abs((means[label]?["Dice"] as? Double ?? .nan) - dice) < 1e-12, "\(c.identifier) label \(label)") }
        }
        // The ensembled label maps are nnU-Net's, voxel for voxel.
        let ensembles = try #require(golden["ensembles"] as? [String: [String: [String: Any]]])
        #expect(ensembles.count == 6)
        for (identifier, perCase) in ensembles {
            for (c, expected) in perCase {
                let url = results.appendingPathComponent("ensembles/\(identifier)/\(c).nii.gz")
                let labels = try NIfTIImage(contentsOf: url).labelVolume().voxels.map { UInt8($0) }
                #expect(SHA256.hash(labels).hex == expected["sha256"] as? String, "\(identifier) \(c)")
            }
        }
        // The winner, its postprocessing and inference_information.json as nnU-Net writes them.
        let best = try #require(information["best_model_or_ensemble"] as? [String: Any])
        let selected = try #require(best["selected_model_or_models"] as? [[String: String]])
        #expect(outcome.best.models.map { ["configuration": $0.configuration, "trainer": $0.trainer, "plans_identifier": $0.plans] } == selected)
        let pp = try #require(golden["postprocessing"] as? [String: Any])
        #expect(outcome.postprocessing.steps.isEmpty == ((pp["postprocessing_fns"] as? [Any])?.isEmpty ?? false))
        let written = try #require(try SharedData.json(outcome.information) as? [String: Any])
        for key in ["folds", "dataset_name_or_id", "ensembling_allowed", "considered_models"] {
            func canonical(_ value: Any?) throws -> String {
                String(decoding: try JSONSerialization.data(withJSONObject: [value ?? NSNull()], options: .sortedKeys), as: UTF8.self)
            }
            #expect(try canonical(written[key]) == (try canonical(information[key])), "\(key)")
        }
        let writtenBest = try #require(written["best_model_or_ensemble"] as? [String: Any])
        #expect(abs((writtenBest["result_on_crossval_pre_pp"] as? Double ?? 0) - (best["result_on_crossval_pre_pp"] as! Double)) < 1e-12)
        #expect(abs((writtenBest["result_on_crossval_post_pp"] as? Double ?? 0) - (best["result_on_crossval_post_pp"] as! Double)) < 1e-12)
        let root = work.path + "/"
        #expect((writtenBest["postprocessing_file"] as? String).map { $0.replacingOccurrences(of: root, with: "") } == best["postprocessing_file"] as? String)
        #expect((writtenBest["some_plans_file"] as? String).map { $0.replacingOccurrences(of: root, with: "") } == best["some_plans_file"] as? String)
        #expect(FileManager.default.fileExists(atPath: outcome.best.source.appendingPathComponent("postprocessing.pkl").path))

        // What predict --instructions reads back: the ensemble's folders, the folds, the postprocessing beside it —
        // also after the results tree moved.
        let moved = work.appendingPathComponent("moved")
        try FileManager.default.createDirectory(at: moved, withIntermediateDirectories: true)
        try FileManager.default.moveItem(at: results, to: moved.appendingPathComponent("Dataset004_Hippocampus"))
        let instructions = try InferenceInstructions(contentsOf: moved.appendingPathComponent("Dataset004_Hippocampus/inference_information.json"))
        #expect(instructions.modelFolders.map(\.lastPathComponent) == outcome.best.models.map(\.identifier))
        #expect(instructions.folds == ["0", "1", "2", "3", "4"])
        #expect(instructions.postprocessing?.path.hasPrefix(moved.path) == true)
        let text = try String(contentsOf: moved.appendingPathComponent("Dataset004_Hippocampus/inference_instructions.txt"), encoding: .utf8)
        #expect(text.contains("nnseg predict --instructions") && text.contains("nnUNetv2_ensemble"))
    }

    @Test func refusalsNameTheFileAndWhatIsWrong() throws {
        let golden = try #require(try SharedData.json(Self.golden) as? [String: Any])
        let cases = try #require(golden["cases"] as? [String])
        let work = try SharedData.temporaryDirectory("model-selection-refusals")
        defer { try? FileManager.default.removeItem(at: work) }
        let results = try Self.buildResults(work, cases: cases)
        let dataset = try DatasetDescription(contentsOf: Self.referenceModel.appendingPathComponent("dataset.json"))
        let labels = SharedData.dataFile("Dataset004_Hippocampus/labelsTr")
        let fm = FileManager.default
        // A planned configuration without a model folder.
        #expect {
            _ = try ModelSelection.available([ModelSelection.Model(configuration: "2d"), ModelSelection.Model(trainer: "Other", configuration: "2d")],
                                             resultsDataset: results) { _ in ["2d", "3d_fullres"] }
        } throws: { "\($0)".hasPrefix("MODEL_SELECTION:") && "\($0)".contains("Other__nnUNetPlans__2d") && "\($0)".contains("not trained") }
        // A model validated without --npz cannot be ensembled; one that lacks a case neither.
        let a = results.appendingPathComponent("nnUNetTrainer__nnUNetPlans__2d"), b = results.appendingPathComponent("nnUNetTrainer__nnUNetPlans__3d_fullres")
        try fm.removeItem(at: b.appendingPathComponent("fold_2/validation/\(cases[2]).npz"))
        #expect {
            _ = try ModelSelection.ensembleCrossValidations([a, b], output: work.appendingPathComponent("e"), folds: [0, 1, 2, 3, 4], rawLabels: labels, dataset: dataset)
        } throws: { "\($0)".contains("3d_fullres") && "\($0)".contains("--npz") }
        try fm.copyItem(at: a.appendingPathComponent("fold_2/validation/\(cases[2]).npz"), to: b.appendingPathComponent("fold_2/validation/\(cases[2]).npz"))
        let renamed = b.appendingPathComponent("fold_3/validation/hippocampus_999.npz")
        try fm.moveItem(at: b.appendingPathComponent("fold_3/validation/\(cases[3]).npz"), to: renamed)
        #expect {
            _ = try ModelSelection.ensembleCrossValidations([a, b], output: work.appendingPathComponent("e"), folds: [0, 1, 2, 3, 4], rawLabels: labels, dataset: dataset)
        } throws: { "\($0)".contains("nnUNetTrainer__nnUNetPlans__2d: lacks the predictions of 1 case(s)") && "\($0)".contains("hippocampus_999") }
        try fm.moveItem(at: renamed, to: b.appendingPathComponent("fold_3/validation/\(cases[3]).npz"))
        // Overlapping folds.
        try fm.copyItem(at: a.appendingPathComponent("fold_0/validation/\(cases[0]).npz"), to: a.appendingPathComponent("fold_1/validation/\(cases[0]).npz"))
        #expect {
            _ = try ModelSelection.ensembleCrossValidations([a, b], output: work.appendingPathComponent("e"), folds: [0, 1, 2, 3, 4], rawLabels: labels, dataset: dataset)
        } throws: { "\($0)".contains("more than one fold") }
        #expect(!fm.fileExists(atPath: work.appendingPathComponent("e").path), "nothing half-written is left")
        // A damaged probabilities file is named.
        try Data("not a zip".utf8).write(to: b.appendingPathComponent("fold_4/validation/\(cases[4]).npz"))
        try fm.removeItem(at: a.appendingPathComponent("fold_1/validation/\(cases[0]).npz"))
        #expect {
            _ = try ModelSelection.ensembleCrossValidations([a, b], output: work.appendingPathComponent("e"), folds: [0, 1, 2, 3, 4], rawLabels: labels, dataset: dataset)
        } throws: { "\($0)".contains("\(cases[4]).npz") && "\($0)".contains("not a readable .npz") }
        // Instructions naming a postprocessing file that is gone.
        let info = work.appendingPathComponent("Dataset004_Hippocampus/inference_information.json")
        let json: [String: Any] = ["folds": [0], "best_model_or_ensemble": [
            "selected_model_or_models": [["configuration": "2d", "trainer": "nnUNetTrainer", "plans_identifier": "nnUNetPlans"]],
            "postprocessing_file": "/nowhere/Dataset004_Hippocampus/x/postprocessing.pkl"]]
        try JSONSerialization.data(withJSONObject: json).write(to: info)
        #expect { _ = try InferenceInstructions(contentsOf: info) } throws: { "\($0)".contains("postprocessing") && "\($0)".contains("--no-postprocessing") }
    }
}
