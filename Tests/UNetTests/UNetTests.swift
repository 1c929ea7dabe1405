import Foundation
import PlansModel
import TensorKernels
import Testing
import TestSupport
@testable import UNet

struct UNetTests {
    static let modelFolder = SharedData.reference.appendingPathComponent("Dataset004_Hippocampus/model/nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres")

    @Test func bundleReadsConfigurationFromTheCheckpoint() throws {
        let bundle = try ModelBundle(folder: Self.modelFolder)
        #expect(bundle.folds.map(\.name) == ["0"])
        #expect(bundle.configurationName == "3d_fullres")
        #expect(bundle.trainerName == "nnUNetTrainer_1epoch")
        #expect(bundle.inferenceAllowedMirroringAxes == [0, 1, 2])
        #expect(bundle.configuration.patchSize == [40, 56, 40])
        #expect(bundle.inputChannels == 1)
        #expect(bundle.dataset.segmentationHeads == 3)
        let a = bundle.configuration.architecture
        #expect(a.kind == .plainConvUNet && a.featuresPerStage == [32, 64, 128, 256] && a.dimension == 3)
        // 188 state-dict entries, of which the distinct parameters are kept.
        let weights = try bundle.weights(bundle.folds[0])
        #expect(weights.count == UNet.expectedTensors(a, inputChannels: 1, numClasses: 3).count)
        #expect(!weights.keys.contains { $0.contains("all_modules") || $0.hasPrefix("decoder.encoder") })
    }

    /// The real model against torch's fp32 output on the same tile (Fixtures/golden/network).
    @Test(arguments: ["hippocampus_017", "hippocampus_164"])
    func logitsMatchTorch(_ caseName: String) throws {
        let bundle = try ModelBundle(folder: Self.modelFolder)
        let network = try UNet(bundle: bundle, fold: bundle.folds[0])
        let patch = bundle.configuration.patchSize
        let compiled = try network.compile(patch: patch)
        print("implementations: \(compiled.implementations.sorted())")
        #expect(!compiled.implementations.contains { $0.hasPrefix("ref") }, "slow reference kernel in use: \(compiled.implementations)")
        // Liveness planning: the activations share one arena; dead encoder and decoder buffers are reused.
        print("activation arena \(compiled.workspaceBytes >> 10) KiB (peak live \(compiled.peakLiveBytes >> 10) KiB), \(compiled.unsharedBytes >> 10) KiB unshared")
        #expect(compiled.workspaceBytes * 2 < compiled.unsharedBytes, "arena \(compiled.workspaceBytes) of \(compiled.unsharedBytes) bytes")
        #expect(Double(compiled.workspaceBytes) <= 1.25 * Double(compiled.peakLiveBytes), "arena \(compiled.workspaceBytes), peak live \(compiled.peakLiveBytes)")
        let tile = try Self.firstTile(caseName, patch: patch)
        let logits = try compiled.forward(tile)
        let golden = try NumpyArray(contentsOf: SharedData.fixtures.appendingPathComponent("golden/network/\(caseName)_tile0_logits.npy"))
        #expect(golden.shape == [3] + patch)
        let difference = logits.maxAbsDifference(Tensor(shape: [1] + golden.shape, data: golden.floats))
        print("network parity \(caseName): max |ours − torch| = \(difference)")
        #expect(difference < 1e-3)
    }

    /// The tile nnU-Net feeds the network first: preprocessed case padded to the patch (constant 0,
    /// extra voxel at the high end), window at the origin.
    static func firstTile(_ caseName: String, patch: [Int]) throws -> Tensor {
        let stages = try NumpyArray.npz(SharedData.reference.appendingPathComponent("Dataset004_Hippocampus/predictions/stages/\(caseName).npz"))
        let pre = try #require(stages["preprocessed"])
        let shape = Array(pre.shape.dropFirst())
        let padded = zip(shape, patch).map { max($0, $1) }
        let below = zip(shape, patch).map { max($1 - $0, 0) / 2 }
        var tile = Tensor(zeros: [1, 1] + patch)
        for z in 0..<patch[0] { for y in 0..<patch[1] { for x in 0..<patch[2] {
            let (sz, sy, sx) = (z - below[0], y - below[1], x - below[2])
            guard z < padded[0], sz >= 0, sz < shape[0], sy >= 0, sy < shape[1], sx >= 0, sx < shape[2] else { continue }
            tile.data[(z * patch[1] + y) * patch[2] + x] = pre.floats[(sz * shape[1] + sy) * shape[2] + sx]
        } } }
        return tile
    }

    // MARK: Random architectures against the reference ops

    static func randomWeights(_ a: NetworkArchitecture, inputChannels: Int, classes: Int, seed: UInt64) -> [String: Tensor] {
        var rng = SplitMix(state: seed)
        var out: [String: Tensor] = [:]
        for (name, shape) in UNet.expectedTensors(a, inputChannels: inputChannels, numClasses: classes) {
            let fan = shape.count > 1 ? shape.dropFirst().reduce(1, *) : 1
            let scale = name.hasSuffix("norm.weight") ? 0.5 : Float(1.0 / Double(fan).squareRoot())
            let offset: Float = name.hasSuffix("norm.weight") ? 1 : 0
            out[name] = Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in offset + Float.random(in: -scale...scale, using: &rng) })
        }
        return out
    }

    struct ArchitectureCase: CustomStringConvertible, Sendable {
        let architecture: NetworkArchitecture
        let patch: [Int]
        var description: String { "\(architecture.kind) \(architecture.dimension)D \(architecture.featuresPerStage) patch \(patch)" }
    }

    static let architectures: [ArchitectureCase] = [
        ArchitectureCase(architecture: NetworkArchitecture(kind: .plainConvUNet, dimension: 3, featuresPerStage: [8, 16, 24],
                                                           kernelSizes: [[1, 3, 3], [3, 3, 3], [3, 3, 3]], strides: [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
                                                           blocksPerStage: [2, 2, 1], convsPerDecoderStage: [1, 2]), patch: [4, 8, 12]),
        ArchitectureCase(architecture: NetworkArchitecture(kind: .plainConvUNet, dimension: 2, featuresPerStage: [16, 32, 32, 48],
                                                           kernelSizes: [[3, 3], [3, 3], [3, 3], [3, 3]], strides: [[1, 1], [2, 2], [2, 2], [2, 1]],
                                                           blocksPerStage: [2, 2, 2, 2], convsPerDecoderStage: [2, 2, 2]), patch: [16, 12]),
        ArchitectureCase(architecture: NetworkArchitecture(kind: .residualEncoderUNet, dimension: 3, featuresPerStage: [8, 16, 16],
                                                           kernelSizes: [[3, 3, 3], [3, 3, 3], [1, 3, 3]], strides: [[1, 1, 1], [2, 2, 2], [1, 2, 2]],
                                                           blocksPerStage: [1, 2, 2], convsPerDecoderStage: [1, 1]), patch: [6, 8, 8]),
        ArchitectureCase(architecture: NetworkArchitecture(kind: .residualEncoderUNet, dimension: 2, featuresPerStage: [16, 32, 64],
                                                           kernelSizes: [[3, 3], [3, 3], [3, 3]], strides: [[1, 1], [2, 2], [2, 2]],
                                                           blocksPerStage: [1, 3, 2], convsPerDecoderStage: [1, 1]), patch: [12, 16]),
    ]

    @Test(arguments: architectures)
    func compiledNetworkMatchesReferenceOps(_ c: ArchitectureCase) throws {
        let weights = Self.randomWeights(c.architecture, inputChannels: 2, classes: 3, seed: UInt64(c.patch.reduce(1, *)))
        let network = try UNet(architecture: c.architecture, inputChannels: 2, numClasses: 3, weights: weights)
        var rng = SplitMix(state: 42)
        let input = Tensor(shape: [1, 2] + c.patch, data: (0..<(2 * c.patch.reduce(1, *))).map { _ in Float.random(in: -2...2, using: &rng) })
        let ours = try network.compile(patch: c.patch).forward(input)
        let reference = ReferenceUNet.forward(c.architecture, weights: weights, input: input)
        #expect(ours.shape == reference.shape)
        let difference = ours.maxAbsDifference(reference)
        #expect(difference < 1e-3, "\(c): max difference \(difference)")
    }

    /// The arena plan never lets two buffers that live at a common step share a byte, and needs no more
    /// than the sum of the buffers; random lifetimes and sizes, seeded.
    @Test func arenaPlanKeepsCoLiveBuffersApart() throws {
        let seed: UInt64 = 20261202
        var rng = SplitMix(state: seed)
        for round in 0..<200 {
            let n = Int.random(in: 1...40, using: &rng)
            let sizes = (0..<n).map { _ in Int.random(in: 1...100_000, using: &rng) }
            let lifetimes = (0..<n).map { _ -> ClosedRange<Int> in
                let start = Int.random(in: -1...60, using: &rng)
                return start...(start + Int.random(in: 0...12, using: &rng))
            }
            let plan = DNNLArena.plan(sizes: sizes, lifetimes: lifetimes)
            var peakLive = 0
            for step in -1...72 { peakLive = max(peakLive, sizes.indices.filter { lifetimes[$0].contains(step) }.map { sizes[$0] }.reduce(0, +)) }
            #expect(plan.byteCount >= peakLive, "seed \(seed) round \(round)")
            #expect(plan.byteCount <= sizes.map { ($0 + 63) / 64 * 64 }.reduce(0, +), "seed \(seed) round \(round)")
            for i in 0..<n {
                #expect(plan.offsets[i] % DNNLArena.alignment == 0 && plan.offsets[i] + sizes[i] <= plan.byteCount)
                for j in (i + 1)..<max(i + 1, n) where lifetimes[i].overlaps(lifetimes[j]) {
                    let apart = plan.offsets[i] + sizes[i] <= plan.offsets[j] || plan.offsets[j] + sizes[j] <= plan.offsets[i]
                    #expect(apart, "seed \(seed) round \(round): buffers \(i) and \(j) overlap while both live")
                }
            }
        }
    }

    /// Folds share one activation arena: alternating forward passes of two networks over it give what each
    /// gives with its own.
    @Test func foldsShareOneWorkspace() throws {
        let c = Self.architectures[2]
        let networks = try [7, 8].map { seed in
            try UNet(architecture: c.architecture, inputChannels: 2, numClasses: 3,
                     weights: Self.randomWeights(c.architecture, inputChannels: 2, classes: 3, seed: UInt64(seed)))
        }
        var rng = SplitMix(state: 9)
        let input = Tensor(shape: [1, 2] + c.patch, data: (0..<(2 * c.patch.reduce(1, *))).map { _ in Float.random(in: -2...2, using: &rng) })
        let alone = try networks.map { try $0.compile(patch: c.patch).forward(input) }
        let first = try networks[0].compile(patch: c.patch)
        let second = try networks[1].compile(patch: c.patch, sharingWorkspaceWith: first)
        #expect(first.arena === second.arena)
        for _ in 0..<2 {
            #expect(try second.forward(input) == alone[1])
            #expect(try first.forward(input) == alone[0])
        }
    }

    @Test func weightMismatchesNameTheTensor() throws {
        let a = Self.architectures[0].architecture
        var weights = Self.randomWeights(a, inputChannels: 1, classes: 2, seed: 1)
        weights["decoder.transpconvs.0.weight"] = Tensor(zeros: [24, 16, 2, 2, 1])
        let wrongShape = #expect(throws: WeightError.self) { try UNet(architecture: a, inputChannels: 1, numClasses: 2, weights: weights) }
        #expect(wrongShape?.description == "WEIGHTS_MISMATCH: decoder.transpconvs.0.weight: shape [24, 16, 2, 2, 1], expected [24, 16, 2, 2, 2]")
        weights["decoder.transpconvs.0.weight"] = nil
        let missing = #expect(throws: WeightError.self) { try UNet(architecture: a, inputChannels: 1, numClasses: 2, weights: weights) }
        #expect(missing?.tensor == "decoder.transpconvs.0.weight")
        weights = Self.randomWeights(a, inputChannels: 1, classes: 2, seed: 1)
        weights["encoder.stages.9.0.convs.0.conv.weight"] = Tensor(zeros: [1])
        let extra = #expect(throws: WeightError.self) { try UNet(architecture: a, inputChannels: 1, numClasses: 2, weights: weights) }
        #expect(extra?.detail.contains("unexpected") == true)
    }

    @Test func plansErrorsNameTheKey() throws {
        let plans = try Plans(contentsOf: Self.modelFolder.appendingPathComponent("plans.json"))
        #expect(plans.configurationNames == ["2d", "3d_fullres"])
        let missing = #expect(throws: PlansError.self) { try plans.configuration("3d_lowres") }
        #expect(missing?.detail.contains("available: 2d, 3d_fullres") == true)
        let broken = #"{"dataset_name": "x", "plans_name": "p", "transpose_forward": [0,1,2], "transpose_backward": [0,1,2], "configurations": {"a": {"inherits_from": "b"}, "b": {"inherits_from": "a"}}}"#
        let cyclic = try Plans(data: Data(broken.utf8), source: "cyclic.json")
        let cycle = #expect(throws: PlansError.self) { try cyclic.configuration("a") }
        #expect(cycle?.detail.contains("cycle a → b → a") == true)
    }
}
