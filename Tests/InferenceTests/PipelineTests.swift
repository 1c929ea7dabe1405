import Foundation
import PlansModel
import Preprocessing
import TensorKernels
import Testing
import TestSupport
import UNet
@testable import Inference

/// Pieces of the predictor that the five reference cases do not reach: 2-D networks, mirroring on its
/// own, fp32 accumulation, cascades, postprocessing.
struct PipelineTests {
    static func network2D() throws -> CompiledUNet {
        let a = NetworkArchitecture(kind: .plainConvUNet, dimension: 2, featuresPerStage: [8, 16], kernelSizes: [[3, 3], [3, 3]],
                                    strides: [[1, 1], [2, 2]], blocksPerStage: [1, 1], convsPerDecoderStage: [1])
        var rng = SplitMix(state: 3)
        var weights: [String: Tensor] = [:]
        for (name, shape) in UNet.expectedTensors(a, inputChannels: 1, numClasses: 2) {
            weights[name] = Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in
                name.hasSuffix("norm.weight") ? 1 : Float.random(in: -0.5...0.5, using: &rng)
            })
        }
        return try UNet(architecture: a, inputChannels: 1, numClasses: 2, weights: weights).compile(patch: [8, 12])
    }

    /// A 2-D configuration predicts a 3-D array slice by slice; with one tile per slice, fp32
    /// accumulation returns the network's own output (÷ Gaussian × Gaussian), and mirroring equals
    /// the average of the explicitly flipped passes.
    @Test func twoDimensionalSlidingWindowAndMirroring() throws {
        let net = try Self.network2D()
        var rng = SplitMix(state: 9)
        let data = ChannelArray(shape: [3, 8, 12], channels: [(0..<288).map { _ in Float.random(in: -1...1, using: &rng) }])
        let plain = SlidingWindowPredictor(networks: [net], patchSize: [8, 12], numClasses: 2, mirrorAxes: [], accumulation: .float32)
        let logits = try plain.predictLogits(data)
        for d in 0..<3 {
            let slice = Tensor(shape: [1, 1, 8, 12], data: Array(data.channels[0][(d * 96)..<((d + 1) * 96)]))
            let direct = try net.forward(slice)
            for k in 0..<2 {
                for i in 0..<96 {
                    #expect(abs(Float(logits.channels[k][d * 96 + i]) - Float(Float16(direct.data[k * 96 + i]))) <= Float(Float16(direct.data[k * 96 + i]).ulp))
                }
            }
        }
        let mirrored = SlidingWindowPredictor(networks: [net], patchSize: [8, 12], numClasses: 2, mirrorAxes: [0, 1], accumulation: .float32)
        #expect(mirrored.mirrorCombinations == [[0], [1], [0, 1]])
        let slice = Tensor(shape: [1, 1, 8, 12], data: Array(data.channels[0][0..<96]))
        var networkSeconds = 0.0
        let tta = try mirrored.mirroredPrediction(slice, network: net, networkSeconds: &networkSeconds)
        var manual = try net.forward(slice)
        for axes in [[0], [1], [0, 1]] {
            let back = SlidingWindowPredictor.flip(try net.forward(SlidingWindowPredictor.flip(slice, axes: axes)), axes: axes)
            for i in 0..<manual.count { manual.data[i] += back.data[i] }
        }
        #expect(tta.maxAbsDifference(Tensor(shape: manual.shape, data: manual.data.map { $0 / 4 })) < 1e-6)
    }

    @Test func fp32AccumulationAgreesWithTheReferenceMode() throws {
        let engine = try ParityTests.engine.get()
        let (image, spacing, _) = try ParityTests.input("hippocampus_164")
        let half = try engine.predict(image, spacing: spacing, options: .init(mirroring: false))
        let single = try engine.predict(image, spacing: spacing, options: .init(mirroring: false, accumulation: .float32))
        let agree = zip(half.prediction.segmentation, single.prediction.segmentation).filter { $0 == $1 }.count
        #expect(Double(agree) / Double(half.prediction.segmentation.count) > 0.999)
    }

    @Test func cascadeAppendsOneHotPreviousStage() throws {
        let engine = try ParityTests.engine.get()
        let (image, spacing, _) = try ParityTests.input("hippocampus_305")
        // A fake previous-stage map: label 1 in one corner block, label 2 elsewhere inside, 0 outside.
        var previous = [Float](repeating: 0, count: image.voxelCount)
        for i in 0..<previous.count where image.channels[0][i] != 0 { previous[i] = i % 7 == 0 ? 1 : 2 }
        let (data, properties) = try engine.preprocessor.run(image, spacing: spacing, previousStage: previous, foregroundLabels: [1, 2])
        #expect(data.channels.count == 3)
        let (plain, _) = try engine.preprocessor.run(image, spacing: spacing)
        #expect(data.channels[0] == plain.channels[0])
        // One-hot channels mirror the cropped previous map.
        let box = properties.boundingBox
        var i = 0
        for z in box[0][0]..<box[0][1] { for y in box[1][0]..<box[1][1] { for x in box[2][0]..<box[2][1] {
            let label = previous[(z * image.shape[1] + y) * image.shape[2] + x]
            #expect(data.channels[1][i] == (label == 1 ? 1 : 0) && data.channels[2][i] == (label == 2 ? 1 : 0))
            i += 1
        } } }
        let error = #expect(throws: PreprocessingError.self) {
            try engine.preprocessor.run(image, spacing: spacing, previousStage: [0, 1], foregroundLabels: [1])
        }
        #expect(error?.detail.contains("previous-stage segmentation has 2 voxels") == true)
    }

    @Test func postprocessingKeepsTheLargestComponent() throws {
        // Two blobs of label 1 (sizes 8 and 1), one of label 2, diagonal neighbours count (26-connectivity).
        let shape = [4, 4, 4]
        var seg = [UInt16](repeating: 0, count: 64)
        func at(_ z: Int, _ y: Int, _ x: Int) -> Int { (z * 4 + y) * 4 + x }
        for z in 0..<2 { for y in 0..<2 { for x in 0..<2 { seg[at(z, y, x)] = 1 } } }
        seg[at(3, 3, 3)] = 1
        seg[at(2, 2, 2)] = 2
        var labelOne = seg
        Postprocessing(steps: [[1]]).apply(&labelOne, shape: shape)
        #expect(labelOne[at(3, 3, 3)] == 0 && labelOne[at(0, 0, 0)] == 1 && labelOne[at(2, 2, 2)] == 2)
        // As one foreground object (1 ∪ 2), the corner voxel touches label 2 diagonally and the 2 touches
        // the cube diagonally: one component, nothing removed.
        var union = seg
        Postprocessing(steps: [[1, 2]]).apply(&union, shape: shape)
        #expect(union == seg)

        let dir = try SharedData.temporaryDirectory("pp")
        defer { try? FileManager.default.removeItem(at: dir) }
        let json = #"{"postprocessing_fns": ["remove_all_but_largest_component_from_segmentation"], "postprocessing_kwargs": [{"labels_or_regions": [1, 2]}]}"#
        try Data(json.utf8).write(to: dir.appendingPathComponent("postprocessing.json"))
        #expect(try Postprocessing.find(in: dir)?.steps == [[1, 2]])
        try Data(#"{"postprocessing_fns": ["os.system"], "postprocessing_kwargs": [{}]}"#.utf8).write(to: dir.appendingPathComponent("postprocessing.json"))
        #expect(throws: PlansError.self) { try Postprocessing.find(in: dir) }
    }
}
