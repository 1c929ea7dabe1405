import Foundation
import NIfTI
import Preprocessing
import Testing
import TestSupport
import UNet
@testable import Inference

/// Stage-by-stage parity with nnU-Net v2.8.1 on the five reference cases (spec §13 acceptance).
struct ParityTests {
    static let reference = SharedData.reference.appendingPathComponent("Dataset004_Hippocampus")
    static let cases = ["hippocampus_017", "hippocampus_033", "hippocampus_164", "hippocampus_210", "hippocampus_305"]

    /// One shared model per test process (loading and compiling once).
    static let engine: Result<InferenceEngine, Error> = Result {
        try InferenceEngine(modelFolder: reference.appendingPathComponent("model/nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres"), folds: ["0"])
    }

    static func input(_ name: String) throws -> (ChannelArray, [Double], NIfTIImage) {
        let image = try NIfTIImage(contentsOf: reference.appendingPathComponent("predictions/input/\(name)_0000.nii.gz"))
        let volume = image.floatVolume()
        let s = volume.geometry.spacing
        return (ChannelArray(shape: volume.shape.zyx, channels: [volume.voxels]), [s.z, s.y, s.x], image)
    }

    @Test(arguments: cases)
    func preprocessingIsBitExact(_ name: String) throws {
        let engine = try Self.engine.get()
        let (image, spacing, _) = try Self.input(name)
        let (data, properties) = try engine.preprocessor.run(image, spacing: spacing)
        let stages = try NumpyArray.npz(Self.reference.appendingPathComponent("predictions/stages/\(name).npz"))
        let expected = try #require(stages["preprocessed"])
        #expect([1] + data.shape == expected.shape)
        let diffs = zip(data.channels[0], expected.floats).map { abs($0 - $1) }
        let maxDiff = diffs.max() ?? 0
        print("preprocessing \(name): max |ours − reference| = \(maxDiff), \(diffs.filter { $0 != 0 }.count) of \(diffs.count) voxels differ")
        #expect(maxDiff <= 1e-4)
        let info = try #require(try SharedData.json(Self.reference.appendingPathComponent("predictions/stages/\(name).json")) as? [String: Any])
        #expect(properties.boundingBox == info["bbox_used_for_cropping_zyx"] as! [[Int]])
        #expect(properties.shapeBeforeCropping == info["shape_before_cropping_zyx"] as! [Int])
    }

    @Test(arguments: cases)
    func logitsProbabilitiesAndSegmentationMatch(_ name: String) throws {
        let engine = try Self.engine.get()
        let (image, spacing, nifti) = try Self.input(name)
        let stages = try NumpyArray.npz(Self.reference.appendingPathComponent("predictions/stages/\(name).npz"))
        for (mode, mirroring) in [("notta", false), ("tta", true)] {
            let result = try engine.predict(image, spacing: spacing, probabilities: true,
                                            options: .init(mirroring: mirroring, keepLogits: true))
            // Logits: float16 on both sides. The network is not bit-exact (≈5e-5 against torch), and the
            // reference rounds twice (accumulator, then division) — at image borders the accumulator holds
            // value × a tiny Gaussian weight, so its rounding step is coarse. Require ≥ 99.9 % bit-equal
            // values and no difference above two fp16 ulps of the largest logit.
            let expected = try #require(stages["logits_\(mode)"])
            let ours = try #require(result.logits).channels.flatMap { $0 }
            var maxDiff: Float = 0, beyondTwoULPs = 0, beyondOneULP = 0, equal = 0
            for (a, b) in zip(ours, expected.floats) {
                let d = abs(Float(a) - b)
                maxDiff = max(maxDiff, d)
                if d == 0 { equal += 1 }
                let ulp = Float(max(abs(Float16(b)), abs(a)).ulp)
                if d > ulp * 1.0001 { beyondOneULP += 1 }
                if d > 2 * ulp * 1.0001 { beyondTwoULPs += 1 }
            }
            // Segmentation against the reference NIfTI.
            let referenceSeg = try NIfTIImage(contentsOf: Self.reference.appendingPathComponent("predictions/\(mode)/\(name).nii.gz")).labelVolume()
            let agree = zip(result.prediction.segmentation, referenceSeg.voxels).filter { UInt16($1) == $0 }.count
            let agreement = Double(agree) / Double(referenceSeg.voxels.count)
            // Probabilities against the reference npz.
            let probabilities = try #require(try NumpyArray.npz(Self.reference.appendingPathComponent("predictions/\(mode)/\(name).npz"))["probabilities"])
            let ourProbabilities = try #require(result.prediction.probabilities).flatMap { $0 }
            let probabilityDiff = zip(ourProbabilities, probabilities.floats).map { abs($0 - $1) }.max() ?? 0
            print("\(name) \(mode): logits max diff \(maxDiff) (\(equal)/\(ours.count) bit-equal, \(beyondOneULP) over 1 ulp, \(beyondTwoULPs) over 2 ulps of their own magnitude); "
                  + "segmentation agreement \(String(format: "%.4f", agreement * 100)) %; probabilities max diff \(probabilityDiff)")
            let largest = expected.floats.map { abs($0) }.max() ?? 1
            #expect(maxDiff <= 2 * Float(Float16(largest).ulp))
            #expect(Double(equal) / Double(ours.count) > 0.999)
            #expect(agreement >= 0.9999)
            #expect(probabilityDiff <= 1e-3)
            #expect(result.prediction.shape == nifti.shape.zyx)
        }
    }

    @Test func slidingWindowStepsAndGaussian() {
        // Spec §8.2 worked examples.
        #expect(SlidingWindow.steps(imageSize: [47, 312, 287], patchSize: [40, 160, 160], stepSize: 0.5) == [[0, 7], [0, 76, 152], [0, 64, 127]])
        #expect(SlidingWindow.steps(imageSize: [47, 312, 287], patchSize: [40, 160, 160], stepSize: 0.8) == [[0, 7], [0, 76, 152], [0, 127]])
        #expect(SlidingWindow.steps(imageSize: [110], patchSize: [64], stepSize: 0.5) == [[0, 23, 46]])
        // Spec §8.3 worked example, patch (40, 160, 160).
        let g = SlidingWindow.gaussian(patchSize: [40, 160, 160])
        func at(_ a: Int, _ b: Int, _ c: Int) -> Float16 { g[(a * 160 + b) * 160 + c] }
        #expect(at(20, 80, 80) == 10)
        #expect(at(20, 40, 80) == 1.353515625)
        #expect(Float(at(0, 80, 80)) == Float(Float16(3.3550262e-3)))
        #expect(Float(at(0, 0, 0)) == Float(Float16(5.9604645e-8)))
        #expect(g.filter { $0 == Float16(5.9604645e-8) }.count >= 4505)
        // Spec §8.5 worked example: fp16 running sums.
        var acc: Float16 = 0
        for w: Float16 in [3.679688, 0.539551, 0.120361, 0.017639, 1.380859, 0.202393, 0.045166, 0.006622] {
            acc = Float16(Float(acc) + Float(w))
        }
        #expect(acc == 6)
        let padding = SlidingWindow.padding(imageSize: [32, 48, 35], patchSize: [40, 56, 40])
        #expect(padding.map(\.below) == [4, 4, 2] && padding.map(\.above) == [4, 4, 3])
    }
}
