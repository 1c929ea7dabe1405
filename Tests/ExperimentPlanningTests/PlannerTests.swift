import Foundation
import Testing
import TestSupport
import PlansModel
@testable import ExperimentPlanning

struct PlannerTests {
    /// Hippocampus: every planning decision equals the reference nnUNetPlans.json.
    @Test func hippocampusPlansEqualTheReference() throws {
        let reference = try #require(try SharedData.json(SharedData.reference.appendingPathComponent("Dataset004_Hippocampus/nnUNetPlans.json")) as? [String: Any])
        let fingerprint = try #require(try SharedData.json(SharedData.reference.appendingPathComponent("Dataset004_Hippocampus/dataset_fingerprint.json")) as? [String: Any])
        let input = PlannerInput(spacings: (fingerprint["spacings"] as! [[NSNumber]]).map { $0.map(\.doubleValue) },
                                 shapesAfterCrop: fingerprint["shapes_after_crop"] as! [[Int]], channelNames: ["MRI"], labelCount: 3,
                                 numTraining: 260, medianRelativeSizeAfterCropping: 1.0)
        let plan = ExperimentPlanner.plan(input)
        #expect(plan.transposeForward == reference["transpose_forward"] as! [Int])
        #expect(plan.transposeBackward == reference["transpose_backward"] as! [Int])
        #expect(plan.originalMedianShapeAfterTranspose == reference["original_median_shape_after_transp"] as! [Int])
        let configs = reference["configurations"] as! [String: [String: Any]]
        #expect(Set(plan.configurations.keys) == Set(configs.keys))
        for (name, ours) in plan.configurations {
            let theirs = try #require(configs[name])
            let arch = (theirs["architecture"] as! [String: Any])["arch_kwargs"] as! [String: Any]
            #expect(ours.patchSize == theirs["patch_size"] as! [Int], "\(name) patch")
            #expect(ours.batchSize == theirs["batch_size"] as! Int, "\(name) batch")
            #expect(ours.spacing == (theirs["spacing"] as! [NSNumber]).map(\.doubleValue), "\(name) spacing")
            #expect(ours.medianImageSize == (theirs["median_image_size_in_voxels"] as! [NSNumber]).map(\.doubleValue))
            #expect(ours.normalizationSchemes == theirs["normalization_schemes"] as! [String])
            #expect(ours.useMaskForNorm == theirs["use_mask_for_norm"] as! [Bool])
            #expect(ours.batchDice == theirs["batch_dice"] as! Bool, "\(name) batch_dice")
            #expect(ours.dataIdentifier == theirs["data_identifier"] as! String)
            #expect(ours.featuresPerStage == arch["features_per_stage"] as! [Int])
            #expect(ours.kernelSizes == arch["kernel_sizes"] as! [[Int]])
            #expect(ours.strides == arch["strides"] as! [[Int]])
            #expect(ours.convsPerStage == arch["n_conv_per_stage"] as! [Int])
            #expect(ours.convsPerDecoderStage == arch["n_conv_per_stage_decoder"] as! [Int])
        }
        #expect(plan.configurations["3d_fullres"]?.estimate == 19_174_400)
        #expect(plan.configurations["2d"]?.estimate == 651_840)
    }

    /// Spec §3.11 B: the synthetic anisotropic CT with a low-resolution configuration.
    static let ctSpacings: [[Double]] = [[5.0, 0.79, 0.79], [5.0, 0.70, 0.70], [1.5, 0.80, 0.80], [2.5, 0.75, 0.75], [5.0, 0.90, 0.90],
                                         [5.0, 0.78, 0.78], [8.0, 0.85, 0.85], [3.0, 0.68, 0.68], [5.0, 0.82, 0.82]]
    static let ctInput = PlannerInput(spacings: ctSpacings, shapesAfterCrop: [90, 80, 150, 120, 65, 100, 41, 110, 95].map { [$0, 512, 512] },
                                      channelNames: ["CT"], labelCount: 2, numTraining: 9, medianRelativeSizeAfterCropping: 1.0)

    @Test func anisotropicCTVector() {
        let spacings: [[Double]] = [[5.0, 0.79, 0.79], [5.0, 0.70, 0.70], [1.5, 0.80, 0.80], [2.5, 0.75, 0.75], [5.0, 0.90, 0.90],
                                    [5.0, 0.78, 0.78], [8.0, 0.85, 0.85], [3.0, 0.68, 0.68], [5.0, 0.82, 0.82]]
        let shapes = [90, 80, 150, 120, 65, 100, 41, 110, 95].map { [$0, 512, 512] }
        let input = PlannerInput(spacings: spacings, shapesAfterCrop: shapes, channelNames: ["CT"], labelCount: 2, numTraining: 9,
                                 medianRelativeSizeAfterCropping: 1.0)
        let plan = ExperimentPlanner.plan(input)
        #expect(plan.transposeForward == [0, 1, 2])
        let full = plan.configurations["3d_fullres"]!
        #expect(full.spacing.map { ($0 * 1e6).rounded() / 1e6 } == [2.3, 0.79, 0.79])
        #expect(full.medianImageSize == [143, 512, 512])
        #expect(full.patchSize == [56, 192, 192])
        #expect(full.estimate == 552_964_608)
        #expect(full.batchSize == 2 && full.batchDice)
        #expect(full.kernelSizes == [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]])
        #expect(full.strides == [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]])
        #expect(full.featuresPerStage == [32, 64, 128, 256, 320, 320])
        #expect(full.normalizationSchemes == ["CTNormalization"])
        let low = plan.configurations["3d_lowres"]!
        #expect(zip(low.spacing, [2.82870989, 1.42682788, 1.42682788]).allSatisfy { abs($0 - $1) < 1e-6 })
        #expect(low.patchSize == [64, 192, 192] && low.batchSize == 2 && !low.batchDice && low.nextStage == "3d_cascade_fullres")
        #expect(low.strides == [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]])
        let twoD = plan.configurations["2d"]!
        #expect(twoD.patchSize == [512, 512] && twoD.batchSize == 12 && twoD.estimate == 82_624_512)
        #expect(twoD.featuresPerStage == [32, 64, 128, 256, 512, 512, 512, 512])
    }

    /// Spec §3.11 A: ResEnc M on Hippocampus (no 5 % cap; ResEnc feature-map estimate).
    @Test func resEncMHippocampusVector() throws {
        let fingerprint = try #require(try SharedData.json(SharedData.reference.appendingPathComponent("Dataset004_Hippocampus/dataset_fingerprint.json")) as? [String: Any])
        let input = PlannerInput(spacings: (fingerprint["spacings"] as! [[NSNumber]]).map { $0.map(\.doubleValue) },
                                 shapesAfterCrop: fingerprint["shapes_after_crop"] as! [[Int]], channelNames: ["MRI"], labelCount: 3,
                                 numTraining: 260, medianRelativeSizeAfterCropping: 1.0)
        let plan = ExperimentPlanner.plan(input, preset: .resEncM)
        let full = try #require(plan.configurations["3d_fullres"])
        #expect(full.patchSize == [40, 56, 40] && full.estimate == 23_609_600 && full.batchSize == 58)
        #expect(full.convsPerStage == [1, 3, 4, 6] && full.convsPerDecoderStage == [1, 1, 1] && full.architecture == .residualEncoderUNet)
        #expect(full.dataIdentifier == "nnUNetPlans_3d_fullres")
        let twoD = try #require(plan.configurations["2d"])
        #expect(twoD.patchSize == [56, 40] && twoD.estimate == 1_001_280 && twoD.batchSize == 1618)
    }

    /// Spec §3.11 B: the ResEnc M and L presets on the anisotropic CT vector.
    @Test func resEncPresetsOnAnisotropicCT() throws {
        let m = ExperimentPlanner.plan(Self.ctInput, preset: .resEncM)
        #expect(m.configurations["3d_fullres"]?.patchSize == [48, 192, 192] && m.configurations["3d_fullres"]?.batchSize == 2)
        #expect(m.configurations["2d"]?.patchSize == [512, 512] && m.configurations["2d"]?.batchSize == 13)
        let defaultLow = try #require(ExperimentPlanner.plan(Self.ctInput).configurations["3d_lowres"])
        let mLow = try #require(m.configurations["3d_lowres"])
        #expect(mLow.patchSize == defaultLow.patchSize && mLow.spacing == defaultLow.spacing && mLow.dataIdentifier == "nnUNetResEncUNetMPlans_3d_lowres")
        let l = ExperimentPlanner.plan(Self.ctInput, preset: .resEncL)
        let lFull = try #require(l.configurations["3d_fullres"])
        #expect(lFull.patchSize == [80, 256, 256] && lFull.batchSize == 2 && lFull.strides.count == 7)
        #expect(l.configurations["3d_lowres"] == nil && !lFull.batchDice)
        #expect(l.configurations["2d"]?.batchSize == 35)
    }
}

struct PlansWriterTests {
    /// Our plans file for Hippocampus is byte-identical to the reference nnUNetPlans.json, and our own
    /// plans reader (the one inference uses) reads it back.
    @Test func hippocampusPlansFileIsByteIdentical() throws {
        let folder = SharedData.reference.appendingPathComponent("Dataset004_Hippocampus")
        let referenceText = try String(contentsOf: folder.appendingPathComponent("nnUNetPlans.json"), encoding: .utf8)
        let fingerprint = try #require(try SharedData.json(folder.appendingPathComponent("dataset_fingerprint.json")) as? [String: Any])
        let input = PlannerInput(spacings: (fingerprint["spacings"] as! [[NSNumber]]).map { $0.map(\.doubleValue) },
                                 shapesAfterCrop: fingerprint["shapes_after_crop"] as! [[Int]], channelNames: ["MRI"], labelCount: 3,
                                 numTraining: 260, medianRelativeSizeAfterCropping: 1.0)
        // JSONDecoder parses floats exactly (JSONSerialization is off by an ulp on some values).
        struct Statistics: Decodable { var foreground_intensity_properties_per_channel: [String: [String: Double]] }
        let statistics = try JSONDecoder().decode(Statistics.self, from: Data(contentsOf: folder.appendingPathComponent("dataset_fingerprint.json")))
            .foreground_intensity_properties_per_channel["0"]!
        let text = ExperimentPlanner.plan(input).plansJSON(datasetName: "Dataset004_Hippocampus", foregroundIntensityProperties: [statistics]).pythonText()
        #expect(text == referenceText)
        let plans = try Plans(data: Data(text.utf8), source: "written")
        #expect(try plans.configuration("3d_fullres").patchSize == [40, 56, 40])
    }

    /// A cascade plan (anisotropic CT vector) and a ResEnc plan are readable by our plans reader, with the
    /// cascade configuration inheriting from 3d_fullres.
    @Test func cascadeAndResEncPlansRoundTrip() throws {
        for preset in [PlannerPreset.default, .resEncM] {
            let plan = ExperimentPlanner.plan(PlannerTests.ctInput, preset: preset)
            let text = plan.plansJSON(datasetName: "Dataset999_Synthetic", preset: preset,
                                      foregroundIntensityProperties: [["max": 1, "mean": 0, "median": 0, "min": -1, "percentile_00_5": -1,
                                                                       "percentile_99_5": 1, "std": 1]]).pythonText()
            let plans = try Plans(data: Data(text.utf8), source: "written")
            let cascade = try plans.configuration(preset == .default ? "3d_cascade_fullres" : "3d_fullres")
            #expect(cascade.patchSize == plan.configurations["3d_fullres"]!.patchSize)
            #expect(try plans.configuration("3d_lowres").patchSize == [64, 192, 192])
            let json = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
            #expect(json["plans_name"] as? String == preset.plansName)
        }
    }
}
