import Foundation
import NIfTI
import PlansModel
import Inference
import VolumeGeometry
import Testing
import TestSupport
@testable import Training

/// `determine-postprocessing` (#21) against nnU-Net 2.8.1's own decisions on the same cross-validation predictions
/// (Fixtures/golden/postprocessing, made by Ops/golden/make_postprocessing_golden.py): the reference 1-epoch model's
/// 52 fold-0 validation predictions as they are, and with a seeded-free deterministic island per case.
struct PostprocessingDeterminationTests {
    static let model = SharedData.reference.appendingPathComponent("Dataset004_Hippocampus/model/nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres")
    static let golden = SharedData.repositoryRoot.appendingPathComponent("Fixtures/golden/postprocessing/hippocampus_fold0.json")

    /// The golden's scenario: fns, kwargs and the Dice of baseline and postprocessed predictions.
    struct Scenario {
        var kwargs: [Any]
        var baseline: (Double, [String: Double])
        var postprocessed: (Double, [String: Double])
    }

    static func scenario(_ name: String) throws -> Scenario {
        let root = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: golden)) as? [String: Any])
        let s = try #require((root["scenarios"] as? [String: Any])?[name] as? [String: Any])
        func dice(_ key: String) throws -> (Double, [String: Double]) {
            let d = try #require(s[key] as? [String: Any])
            return (try #require(d["foreground_mean"] as? Double), try #require(d["mean"] as? [String: Double]))
        }
        #expect((s["postprocessing_fns"] as? [String])?.allSatisfy { $0 == "remove_all_but_largest_component_from_segmentation" } == true)
        return Scenario(kwargs: (s["postprocessing_kwargs"] as? [[String: Any]])?.compactMap { $0["labels_or_regions"] } ?? [],
                        baseline: try dice("baseline"), postprocessed: try dice("postprocessed"))
    }

    @Test(arguments: ["as_predicted", "with_islands"])
    func decisionsEqualNnUNets(_ scenario: String) throws {
        let expected = try Self.scenario(scenario)
        let work = try SharedData.temporaryDirectory("postprocessing-\(scenario)")
        defer { try? FileManager.default.removeItem(at: work) }
        let predictions = work.appendingPathComponent("crossval_results_folds_0")
        try FileManager.default.createDirectory(at: predictions, withIntermediateDirectories: true)
        let validation = Self.model.appendingPathComponent("fold_0/validation")
        let cases = try FileManager.default.contentsOfDirectory(atPath: validation.path).filter { $0.hasSuffix(".nii.gz") }.sorted()
        #expect(cases.count == 52)
        for (i, file) in cases.enumerated() {
            var image = try NIfTIImage(contentsOf: validation.appendingPathComponent(file))
            if scenario == "with_islands" {
                // The golden's island: array corner [0:2, 0:2, 0:2] (z, y, x; x fastest) set to 1 (even) or 2 (odd).
                var labels = try image.labelVolume().voxels
                let s = image.shape
                for z in 0..<2 { for y in 0..<2 { for x in 0..<2 { labels[(z * s.y + y) * s.x + x] = UInt16(1 + i % 2) } } }
                image.voxels = PostprocessingDetermination.relabelled(image.voxels, labels)
            }
            try image.write(to: predictions.appendingPathComponent(file))
        }
        let dataset = try DatasetDescription(contentsOf: Self.model.appendingPathComponent("dataset.json"))
        let outcome = try PostprocessingDetermination.determine(predictions: predictions,
                                                                references: SharedData.dataFile("Dataset004_Hippocampus/labelsTr"), dataset: dataset)
        // nnU-Net accepted the foreground step in both (a list of both labels) and no per-label step.
        let expectedSteps = expected.kwargs.map { ($0 as? [Int]) ?? [$0 as! Int] }
        #expect(outcome.steps == expectedSteps, "\(outcome.decisions)")
        #expect(outcome.keepsLargestForeground == (expected.kwargs.first is [Int]))
        #expect(abs(outcome.baseline.foregroundDice - expected.baseline.0) < 1e-9, "\(outcome.baseline) vs \(expected.baseline)")
        #expect(abs(outcome.postprocessed.foregroundDice - expected.postprocessed.0) < 1e-9, "\(outcome.postprocessed) vs \(expected.postprocessed)")
        for (k, label) in dataset.foregroundLabels.enumerated() {
            #expect(abs(outcome.baseline.labelDice[k] - expected.baseline.1["\(label)"]!) < 1e-9)
            #expect(abs(outcome.postprocessed.labelDice[k] - expected.postprocessed.1["\(label)"]!) < 1e-9)
        }
        // nnU-Net's files: postprocessing.json with the same steps, which predict reads back; the pickle; the
        // postprocessed predictions with their summary.
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: predictions.appendingPathComponent("postprocessing.json"))) as? [String: Any])
        #expect((json["postprocessing_kwargs"] as? [[String: Any]])?.map { "\($0["labels_or_regions"]!)" } == expected.kwargs.map { "\($0)" })
        #expect(try Postprocessing(contentsOf: predictions.appendingPathComponent("postprocessing.json")).steps == expectedSteps)
        #expect(try Postprocessing.find(in: work)?.steps == expectedSteps, "found in crossval_results_folds_0 as predict looks for it")
        let pickle = try CommandRunner.run("/usr/bin/python3", ["-c", "import pickletools, sys; pickletools.dis(open(sys.argv[1], 'rb'))",
                                                                predictions.appendingPathComponent("postprocessing.pkl").path])
        #expect(pickle.status == 0, "\(pickle.stderr)")
        #expect(pickle.stdout.contains("GLOBAL     'nnunetv2.postprocessing.remove_connected_components remove_all_but_largest_component_from_segmentation'"),
                "\(pickle.stdout)")
        let postprocessed = try FileManager.default.contentsOfDirectory(atPath: predictions.appendingPathComponent("postprocessed").path)
        #expect(postprocessed.filter { $0.hasSuffix(".nii.gz") }.count == 52 && postprocessed.contains("summary.json"))
        if scenario == "with_islands" {
            // The islands are gone from the postprocessed maps.
            let first = try NIfTIImage(contentsOf: predictions.appendingPathComponent("postprocessed/\(cases[0])")).labelVolume().voxels
            #expect(first[0] == 0)
        }
    }

    /// A per-label step accepted (the golden has none): label 2 has a stray piece touching label 1, so the
    /// foreground step keeps it and only the per-label step removes it.
    @Test func aPerLabelStepIsAcceptedWhenItHelpsThatLabel() throws {
        let work = try SharedData.temporaryDirectory("postprocessing-per-label")
        defer { try? FileManager.default.removeItem(at: work) }
        let predictions = work.appendingPathComponent("pred"), references = work.appendingPathComponent("ref")
        for f in [predictions, references] { try FileManager.default.createDirectory(at: f, withIntermediateDirectories: true) }
        let shape = VolumeShape(z: 6, y: 8, x: 12)
        func write(_ labels: [UInt16], _ url: URL) throws {
            try NIfTIImage(voxels: .uint8(labels.map(UInt8.init)), shape: shape, geometry: VolumeGeometry(spacing: SIMD3(1, 1, 1))).write(to: url)
        }
        for c in 0..<2 {
            var reference = [UInt16](repeating: 0, count: shape.count)
            func box(_ labels: inout [UInt16], _ value: UInt16, x: Range<Int>) {
                for z in 1..<5 { for y in 2..<6 { for xx in x { labels[(z * shape.y + y) * shape.x + xx] = value } } }
            }
            box(&reference, 1, x: 1..<5)
            box(&reference, 2, x: 5..<8)
            var prediction = reference
            // A label-2 piece on the far side of label 1, touching it (one foreground component), not in the reference.
            for z in 1..<3 { for y in 2..<4 { prediction[(z * shape.y + y) * shape.x + 0] = 2 } }
            _ = c
            try write(reference, references.appendingPathComponent("case_\(c).nii.gz"))
            try write(prediction, predictions.appendingPathComponent("case_\(c).nii.gz"))
        }
        var dataset = try DatasetDescription(contentsOf: Self.model.appendingPathComponent("dataset.json"))
        dataset.fileEnding = ".nii.gz"
        let outcome = try PostprocessingDetermination.determine(predictions: predictions, references: references, dataset: dataset)
        #expect(outcome.steps == [[2]] && !outcome.keepsLargestForeground, "\(outcome.decisions)")
        #expect(outcome.postprocessed.labelDice[1] == 1 && outcome.baseline.labelDice[1] < 1)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: predictions.appendingPathComponent("postprocessing.json"))) as? [String: Any])
        #expect((json["postprocessing_kwargs"] as? [[String: Any]])?.first?["labels_or_regions"] as? Int == 2)
    }
}
