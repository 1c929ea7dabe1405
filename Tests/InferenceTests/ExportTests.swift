import Foundation
import PlansModel
@testable import Preprocessing
import Resampling
import TensorKernels
import Testing
import TestSupport
import UNet
@testable import Inference

/// Issue #16: the export resamples logits back one class at a time (memory: one class in float64, not all);
/// the result equals resampling every class together, as before.
struct ExportTests {
    /// The demo model's exporter (3d_fullres), for tests that then adjust its spacing or regions.
    static func demoExporter() throws -> PredictionExporter {
        let model = SharedData.fixtures.appendingPathComponent("demo/model")
        let plans = try Plans(contentsOf: model.appendingPathComponent("plans.json"))
        let dataset = try DatasetDescription(contentsOf: model.appendingPathComponent("dataset.json"))
        return PredictionExporter(plans: plans, configuration: try plans.configuration("3d_fullres"), dataset: dataset)
    }

    @Test func classByClassResamplingEqualsTheWholeStack() throws {
        var exporter = try Self.demoExporter()
        exporter.configurationSpacing = [1.5, 1.5, 1.5]
        // Seeded logits for 3 classes on a 12×10×9 grid, exported to a 17×15×13 original (spacing 1 → 1.5).
        var random = SplitMix(state: 16)
        let shape = [12, 10, 9], original = [17, 15, 13]
        let channels = (0..<3).map { _ in (0..<shape.reduce(1, *)).map { _ in Float16(Float.random(in: -4...4, using: &random)) } }
        let properties = PreprocessingProperties(spacing: [1, 1, 1], shapeBeforeCropping: original,
                                                 boundingBox: original.map { [0, $0] }, shapeAfterCropping: original)
        let result = exporter.export(HalfLogits(shape: shape, channels: channels), properties: properties, probabilities: true)
        // The previous formulation: every class resampled in one call, then argmax / softmax.
        let grids = channels.map { Grid3D(shape: shape, values: $0.map { Double(Float($0)) }) }
        let resized = Resample.channels(grids, newShape: original, currentSpacing: exporter.configurationSpacing,
                                        targetSpacing: [1, 1, 1], options: exporter.probabilityResampling).map { $0.values.map { Float16($0) } }
        let voxels = original.reduce(1, *)
        let expected = (0..<voxels).map { v -> UInt16 in
            var best = 0
            for k in 1..<3 where resized[k][v] > resized[best][v] { best = k }
            return UInt16(best)
        }
        #expect(result.shape == original)
        #expect(result.segmentation == expected)
        #expect(Set(result.segmentation).count > 1, "the test exercises more than one class")
        #expect(result.probabilities?.count == 3)
    }

    /// Region-based models (sigmoid per region, later regions paint over earlier ones): thresholded one
    /// region at a time; probabilities only when asked, equal either way.
    @Test func regionsAreThresholdedOneAtATime() throws {
        var exporter = try Self.demoExporter()
        exporter.regionClassOrder = [1, 2, 3]
        let shape = [6, 7, 8]
        var random = SplitMix(state: 1616)
        let channels = (0..<3).map { _ in (0..<shape.reduce(1, *)).map { _ in Float16(Float.random(in: -3...3, using: &random)) } }
        let properties = PreprocessingProperties(spacing: exporter.configurationSpacing, shapeBeforeCropping: shape,
                                                 boundingBox: shape.map { [0, $0] }, shapeAfterCropping: shape)
        let plain = exporter.export(HalfLogits(shape: shape, channels: channels), properties: properties, probabilities: false)
        let withProbabilities = exporter.export(HalfLogits(shape: shape, channels: channels), properties: properties, probabilities: true)
        let expected = (0..<shape.reduce(1, *)).map { v -> UInt16 in
            var label: UInt16 = 0
            for k in 0..<3 where 1 / (1 + exp(-Float(channels[k][v]))) > 0.5 { label = UInt16(k + 1) }
            return label
        }
        #expect(plain.segmentation == expected)
        #expect(withProbabilities.segmentation == expected)
        #expect(Set(expected).count == 4, "every region wins somewhere")
        #expect(plain.probabilities == nil)
        #expect(withProbabilities.probabilities?[2] == channels[2].map { 1 / (1 + exp(-Float($0))) })
    }
}

/// Issue #16: two folds over one shared arena, averaged in parallel chunks, give the reference's fp16
/// sequence (sum rounded to fp16, then divided and rounded) of each fold alone; with mirroring.
struct FoldAveragingTests {
    @Test func twoFoldsAverageAsTheReferenceDoes() throws {
        let architecture = NetworkArchitecture(kind: .plainConvUNet, dimension: 3, featuresPerStage: [4, 8],
                                               kernelSizes: [[3, 3, 3], [3, 3, 3]], strides: [[1, 1, 1], [2, 2, 2]],
                                               blocksPerStage: [1, 1], convsPerDecoderStage: [1])
        let patch = [8, 8, 8]
        var rng = SplitMix(state: 1_606)
        func weights() -> [String: Tensor] {
            var out: [String: Tensor] = [:]
            for (name, shape) in UNet.expectedTensors(architecture, inputChannels: 1, numClasses: 3) {
                let scale: Float = name.hasSuffix("norm.weight") ? 0.3 : 0.4
                let offset: Float = name.hasSuffix("norm.weight") ? 1 : 0
                out[name] = Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in offset + Float.random(in: -scale...scale, using: &rng) })
            }
            return out
        }
        let first = try UNet(architecture: architecture, inputChannels: 1, numClasses: 3, weights: weights()).compile(patch: patch)
        let second = try UNet(architecture: architecture, inputChannels: 1, numClasses: 3, weights: weights())
            .compile(patch: patch, sharingWorkspaceWith: first)
        let shape = [13, 11, 10]
        let data = ChannelArray(shape: shape, channels: [(0..<shape.reduce(1, *)).map { _ in Float.random(in: -2...2, using: &rng) }])
        func predict(_ networks: [CompiledUNet]) throws -> HalfLogits {
            try SlidingWindowPredictor(networks: networks, patchSize: patch, numClasses: 3, mirrorAxes: [0, 1, 2]).predictLogits(data)
        }
        let (a, b, both) = (try predict([first]), try predict([second]), try predict([first, second]))
        for k in 0..<3 {
            let expected = zip(a.channels[k], b.channels[k]).map { Float16(Float(Float16(Float($0) + Float($1))) / 2) }
            #expect(both.channels[k] == expected, "class \(k)")
        }
        #expect(a.channels != b.channels, "the folds differ")
    }
}

/// Issue #17: the confidence smooth contours follow — the winning logit minus the runner-up's, from the streaming
/// argmax and from the probabilities alike (log p_best/p_second), and certain outside the crop box.
struct ExportConfidenceTests {
    @Test func confidenceIsTheMarginOverTheRunnerUp() throws {
        let exporter = try ExportTests.demoExporter()
        var random = SplitMix(state: 1717)
        let shape = [5, 6, 7], original = [7, 6, 9]
        let box = [[1, 6], [0, 6], [2, 9]]
        let channels = (0..<4).map { _ in (0..<shape.reduce(1, *)).map { _ in Float16(Float.random(in: -5...5, using: &random)) } }
        let properties = PreprocessingProperties(spacing: exporter.configurationSpacing, shapeBeforeCropping: original,
                                                 boundingBox: box, shapeAfterCropping: shape)
        let streamed = exporter.export(HalfLogits(shape: shape, channels: channels), properties: properties, probabilities: false, confidence: true)
        let viaProbabilities = exporter.export(HalfLogits(shape: shape, channels: channels), properties: properties, probabilities: true, confidence: true)
        let plain = exporter.export(HalfLogits(shape: shape, channels: channels), properties: properties, probabilities: false)
        #expect(plain.confidence == nil)
        let margins = try #require(streamed.confidence), fromProbabilities = try #require(viaProbabilities.confidence)
        #expect(margins.count == original.reduce(1, *) && streamed.segmentation == plain.segmentation)
        var inside = 0
        for z in 0..<original[0] { for y in 0..<original[1] { for x in 0..<original[2] {
            let v = (z * original[1] + y) * original[2] + x
            guard (box[0][0]..<box[0][1]).contains(z), (box[2][0]..<box[2][1]).contains(x) else {
                #expect(margins[v] == 64 && streamed.segmentation[v] == 0)
                continue
            }
            let c = ((z - box[0][0]) * shape[1] + y) * shape[2] + (x - box[2][0])
            let sorted = channels.map { Float($0[c]) }.sorted(by: >)
            #expect(abs(Float(margins[v]) - (sorted[0] - sorted[1])) < 0.01, "voxel \(v)")
            #expect(abs(Float(fromProbabilities[v]) - (sorted[0] - sorted[1])) < 0.02, "voxel \(v) from probabilities")
            inside += 1
        } } }
        #expect(inside == shape.reduce(1, *))
    }
}
