import Foundation
import PlansModel
import TensorKernels
import Testing
import TestSupport
@testable import Training
import UNet

/// The training network against the inference network (forward) and against finite differences
/// (backward through every layer kind: conv, strided conv, instance norm + LeakyReLU, transposed conv,
/// concat, deep-supervision heads and the Dice + CE loss).
struct TrainingNetworkTests {
    static func architecture(_ dimension: Int, features: [Int], residual: Bool = false) -> NetworkArchitecture {
        let k = [Int](repeating: 3, count: dimension), one = [Int](repeating: 1, count: dimension), two = [Int](repeating: 2, count: dimension)
        return NetworkArchitecture(kind: residual ? .residualEncoderUNet : .plainConvUNet, dimension: dimension, featuresPerStage: features,
                                   kernelSizes: features.map { _ in k }, strides: [one] + features.dropFirst().map { _ in two },
                                   blocksPerStage: residual ? Array([1, 2, 2, 2].prefix(features.count)) : features.map { _ in 2 },
                                   convsPerDecoderStage: features.dropFirst().map { _ in residual ? 1 : 2 })
    }

    static func random(_ shape: [Int], _ rng: inout SplitMix) -> Tensor {
        Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -1...1, using: &rng) })
    }

    @Test func forwardMatchesInferenceNetwork() throws {
        var rng = SplitMix(state: 5)
        let a = Self.architecture(3, features: [16, 32, 64])
        let net = try TrainingNetwork(architecture: a, inputChannels: 2, numClasses: 3, batch: 2, patch: [8, 12, 8],
                                      initialization: .kaiming(seed: 3))
        // Non-trivial norm affine parameters and biases.
        for p in net.parameters where p.shape.count == 1 { for i in 0..<p.count { p.value[i] = Float.random(in: 0.5...1.5, using: &rng) } }
        let x = Self.random([2, 2, 8, 12, 8], &rng)
        let outputs = try net.forward(x)
        #expect(outputs.map(\.shape) == [[2, 3, 8, 12, 8], [2, 3, 4, 6, 4]])
        let inference = try UNet(architecture: a, inputChannels: 2, numClasses: 3, weights: net.stateDict()).compile(patch: [8, 12, 8])
        let volume = 2 * 8 * 12 * 8
        for n in 0..<2 {
            let sample = Tensor(shape: [1, 2, 8, 12, 8], data: Array(x.data[(n * volume)..<((n + 1) * volume)]))
            let reference = try inference.forward(sample)
            let ours = Tensor(shape: [1, 3, 8, 12, 8], data: Array(outputs[0].data[(n * 3 * 768)..<((n + 1) * 3 * 768)]))
            #expect(ours.maxAbsDifference(reference) < 1e-3, "sample \(n): max |Δ| \(ours.maxAbsDifference(reference))")
        }
        #expect(!net.implementations.contains { $0.hasPrefix("ref") }, "\(net.implementations)")
    }

    struct GradientCase: CustomStringConvertible, Sendable {
        let name: String
        let dimension: Int
        let features: [Int]
        let patch: [Int]
        let batch: Int
        let batchDice: Bool
        let ignoreLabel: Int?
        var description: String { name }
    }

    /// Loss and every parameter gradient against nnU-Net's own loss and torch autograd in float64
    /// (Fixtures/golden/training, generator Ops/golden/make_training_gradient_golden.py).
    @Test(arguments: [
        GradientCase(name: "plain3d", dimension: 3, features: [16, 16, 16, 32], patch: [8, 16, 8], batch: 2, batchDice: false, ignoreLabel: nil),
        GradientCase(name: "plain2d_batchdice_ignore", dimension: 2, features: [8, 16, 16, 16], patch: [16, 24], batch: 3, batchDice: true,
                     ignoreLabel: 3),
        GradientCase(name: "resenc3d", dimension: 3, features: [16, 16, 16, 32], patch: [8, 16, 8], batch: 2, batchDice: false, ignoreLabel: nil),
        // Region-based (#21): sigmoid outputs for regions (1, 2) and (2), nnU-Net's DC_and_BCE_loss.
        GradientCase(name: "plain3d_regions", dimension: 3, features: [16, 16, 16, 32], patch: [8, 16, 8], batch: 2, batchDice: false, ignoreLabel: nil),
        GradientCase(name: "plain2d_regions_batchdice_ignore", dimension: 2, features: [8, 16, 16, 16], patch: [16, 24], batch: 3, batchDice: true,
                     ignoreLabel: 3),
    ])
    func lossAndGradientsMatchTorch(_ c: GradientCase) throws {
        try check(c, precision: .float32)
    }

    /// Mixed precision (bf16 convolutions) stays close to the float64 reference: loss within 1 % and the
    /// whole gradient pointing the same way (cosine > 0.97). Per tensor, this tiny network (instance norm
    /// over 2 voxels in the bottleneck) amplifies bf16 rounding by orders of magnitude in its deepest
    /// layers, so per-tensor errors are not bounded here; training quality is judged by the Hippocampus run.
    @Test(.enabled(if: TrainingConvolution.Precision.bfloat16.isAvailable, "bf16 convolutions need AVX-512"), arguments: [
        GradientCase(name: "plain3d", dimension: 3, features: [16, 16, 16, 32], patch: [8, 16, 8], batch: 2, batchDice: false, ignoreLabel: nil),
    ])
    func bfloat16StaysCloseToTorch(_ c: GradientCase) throws {
        try check(c, precision: .bfloat16)
    }

    /// Five steps of nnU-Net's train_step against torch in float64 (#25; Ops/golden/make_training_gradient_golden.py
    /// plain3d_sgd): the loss before each update, the gradient norm before clipping, and what the five updates did to
    /// every weight (SGD-Nesterov with momentum 0.99, weight decay, clipping — at norm 0.5 so that it acts here).
    /// The updates are compared, not the weights: five small steps barely move a weight, so a wrong update would
    /// hide inside a weight-level tolerance.
    @Test func fiveOptimizerStepsMatchTorch() throws {
        let (golden, weights) = try Self.trainingGolden("plain3d_sgd")
        let patch = [8, 16, 8]
        let net = try TrainingNetwork(architecture: Self.architecture(3, features: [16, 16, 16, 32]), inputChannels: 1, numClasses: 3, batch: 2,
                                      patch: patch, initialization: .weights(weights), precision: .float32)
        let step = TrainingStep(network: net, loss: DiceCrossEntropyLoss(numClasses: 3, batchDice: false))
        step.gradientClip = 0.5
        for k in 0..<5 {
            let x = Tensor(shape: [2, 1] + patch, data: golden["x\(k)"]!.floats)
            let loss = try step.train(input: x, labels: golden["target\(k)"]!.floats.map { Int16($0) }, learningRate: 0.01)
            let expectedLoss = Double(golden["loss\(k)"]!.floats[0]), expectedNorm = Double(golden["norm\(k)"]!.floats[0])
            #expect(abs(loss - expectedLoss) < 1e-4, "step \(k): loss \(loss) vs torch \(expectedLoss)")
            #expect(abs(step.lastGradientNorm - expectedNorm) < 1e-3 * expectedNorm, "step \(k): gradient norm \(step.lastGradientNorm) vs torch \(expectedNorm)")
        }
        // Tolerance: torch itself in float32 differs from its float64 run by up to 0.56 % (relative L2 of the five
        // updates; first norm's weight), so 1 % per tensor, 3 % in the bottleneck (instance norm over 2 voxels). Conv
        // biases in front of instance norm have a true gradient of 0 (torch moves them by 1e-18, weight decay on 0);
        // both sides move them by rounding only, so they are judged against the whole update's size.
        var updates: [(name: String, ours: [Double], theirs: [Double])] = []
        for p in net.parameters {
            let initial = try #require(golden["w:\(p.name)"]).floats, final = try #require(golden["final:\(p.name)"]).floats
            updates.append((p.name, (0..<p.count).map { Double(p.value[$0]) - Double(initial[$0]) },
                            (0..<p.count).map { Double(final[$0]) - Double(initial[$0]) }))
        }
        let whole = updates.reduce(0.0) { $0 + $1.theirs.reduce(0.0) { $0 + $1 * $1 } }.squareRoot()
        var worst = (name: "", error: 0.0)
        for u in updates {
            let num = zip(u.ours, u.theirs).reduce(0.0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }, den = u.theirs.reduce(0.0) { $0 + $1 * $1 }
            let relative = (num / max(den, 1e-30)).squareRoot()
            let bottleneck = u.name.hasPrefix("encoder.stages.3.")
            let ok = relative < (bottleneck ? 3e-2 : 1e-2) || num.squareRoot() < 1e-6 * whole
            if relative > worst.error && num.squareRoot() >= 1e-6 * whole { worst = (u.name, relative) }
            #expect(ok, "\(u.name): the five updates differ from torch's by \(relative) (relative L2; torch moved it by \(den.squareRoot()))")
        }
        #expect(updates.count == golden.keys.filter { $0.hasPrefix("final:") }.count)
        print("five SGD steps vs torch: worst update error \(worst.name) \(worst.error)")
    }

    /// The counts a training step keeps when asked (#25's replay prints them per iteration) are those of the prediction
    /// before its update — what the validation step counts on the same batch — and counting leaves the step unchanged.
    @Test func trainingStepCountsThePredictionBeforeItsUpdate() throws {
        let (golden, weights) = try Self.trainingGolden("plain3d_sgd")
        let patch = [8, 16, 8]
        func makeStep() throws -> TrainingStep {
            let net = try TrainingNetwork(architecture: Self.architecture(3, features: [16, 16, 16, 32]), inputChannels: 1, numClasses: 3,
                                          batch: 2, patch: patch, initialization: .weights(weights), precision: .float32)
            return TrainingStep(network: net, loss: DiceCrossEntropyLoss(numClasses: 3, batchDice: false))
        }
        let labels = golden["target0"]!.floats.map { Int16($0) }
        let x = Tensor(shape: [2, 1] + patch, data: golden["x0"]!.floats)
        let expected = try makeStep().validate(input: x, labels: labels)
        let counting = try makeStep(), plain = try makeStep()
        counting.countsTrainingPredictions = true
        #expect(plain.lastTrainingCounts == nil)
        let loss = try counting.train(input: x, labels: labels, learningRate: 0.01)
        #expect(try plain.train(input: x, labels: labels, learningRate: 0.01) == loss)
        let counts = try #require(counting.lastTrainingCounts)
        #expect(counts.tp == expected.tp && counts.fp == expected.fp && counts.fn == expected.fn)
        #expect(counts.tp.count == 2 && counts.tp.reduce(0, +) + counts.fn.reduce(0, +) == Double(labels.filter { $0 > 0 }.count))
        #expect(plain.lastTrainingCounts == nil)
    }

    /// A training golden (torch, `golden/training/<name>.npz`) and its initial weights by state-dict name.
    static func trainingGolden(_ name: String) throws -> ([String: NumpyArray], [String: Tensor]) {
        let golden = try NumpyArray.npz(SharedData.fixtures.appendingPathComponent("golden/training/\(name).npz"))
        var weights: [String: Tensor] = [:]
        for (key, value) in golden where key.hasPrefix("w:") {
            weights[String(key.dropFirst(2))] = Tensor(shape: value.shape, data: value.floats)
        }
        return (golden, weights)
    }

    func check(_ c: GradientCase, precision: TrainingConvolution.Precision) throws {
        let (golden, weights) = try Self.trainingGolden(c.name)
        let a = Self.architecture(c.dimension, features: c.features, residual: c.name.hasPrefix("resenc"))
        let regions = c.name.contains("regions")
        let net = try TrainingNetwork(architecture: a, inputChannels: 1, numClasses: regions ? 2 : 3, batch: c.batch, patch: c.patch,
                                      initialization: .weights(weights), precision: precision)
        let bf16 = precision == .bfloat16
        let x = Tensor(shape: [c.batch, 1] + c.patch, data: golden["x"]!.floats)
        let labels = golden["target"]!.floats.map { Int16($0) }
        let loss: any SegmentationLoss = regions ? RegionDiceBCELoss(regions: [[1, 2], [2]], batchDice: c.batchDice, ignoreLabel: c.ignoreLabel)
            : DiceCrossEntropyLoss(numClasses: 3, batchDice: c.batchDice, ignoreLabel: c.ignoreLabel)
        let dsWeights = deepSupervisionWeights(outputs: net.activeHeads)
        let outputs = try net.forward(x)
        var total = 0.0
        var grads: [Tensor?] = []
        for (i, o) in outputs.enumerated() {
            guard dsWeights[i] > 0 else { grads.append(nil); continue }
            let t = downsampleLabels(labels, samples: c.batch, from: c.patch, to: Array(o.shape.dropFirst(2)))
            var (l, g) = loss(logits: o, target: t)
            total += dsWeights[i] * l
            for j in 0..<g.count { g.data[j] *= Float(dsWeights[i]) }
            grads.append(g)
        }
        let expectedLoss = Double(golden["loss"]!.floats[0])
        #expect(abs(total - expectedLoss) < (bf16 ? 1e-2 * abs(expectedLoss) : 1e-4), "\(c): loss \(total) vs torch \(expectedLoss)")
        try net.backward(grads)
        // Conv biases in front of instance norm have a true gradient of 0 (the norm removes per-channel
        // constants); both sides are rounding noise there, so errors are also judged against the global norm.
        var global = 0.0
        for (key, value) in golden where key.hasPrefix("g:") { for v in value.floats { global += Double(v) * Double(v) } }
        global = global.squareRoot()
        var checked = 0
        var dotAll = 0.0, oursAll = 0.0
        for p in net.parameters {
            guard let reference = golden["g:\(p.name)"] else {
                #expect(!p.hasGradient, "\(c): \(p.name) has a gradient, torch has none")
                continue
            }
            #expect(p.hasGradient, "\(c): \(p.name) has no gradient")
            var num = 0.0, den = 0.0
            for i in 0..<p.count {
                let d = Double(p.gradient[i]) - Double(reference.floats[i])
                num += d * d
                den += Double(reference.floats[i]) * Double(reference.floats[i])
            }
            let relative = (num / max(den, 1e-30)).squareRoot()
            dotAll += zip(p.gradient, reference.floats).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            oursAll += p.gradient.reduce(0.0) { $0 + Double($1) * Double($1) }
            // The bottleneck normalises over 2 voxels (patch / 8): there float32 rounding is amplified ~10×.
            let bottleneck = p.name.hasPrefix("encoder.stages.\(c.features.count - 1).")
            #expect(bf16 || relative < (bottleneck ? 3e-2 : 5e-3) || num.squareRoot() < 1e-6 * global,
                    "\(c) \(precision.rawValue): \(p.name) relative L2 error \(relative)")
            checked += 1
        }
        #expect(checked == golden.keys.filter { $0.hasPrefix("g:") }.count)
        let cosine = dotAll / (oursAll.squareRoot() * global)
        #expect(cosine > (bf16 ? 0.97 : 0.99999), "\(c) \(precision.rawValue): gradient cosine \(cosine)")
    }

    @Test func lossMatchesHandComputedValues() {
        // One sample, two classes, two voxels: logits (0, 0) and (0, ln 3).
        let logits = Tensor(shape: [1, 2, 2], data: [0, 0, 0, Float(log(3.0))])
        let (l, g) = DiceCrossEntropyLoss(numClasses: 2, batchDice: false)(logits: logits, target: [0, 1])
        // p1 = (0.5, 0.75); CE = −(ln 0.5 + ln 0.75)/2; Dice: I = 0.75, P = 1.25, G = 1.
        let ce = -(log(0.5) + log(0.75)) / 2
        let dice = -(2 * 0.75 + 1e-5) / (1 + 1.25 + 1e-5)
        #expect(abs(l - (ce + dice)) < 1e-6)
        #expect(g.shape == [1, 2, 2])
        #expect(deepSupervisionWeights(outputs: 3).map { ($0 * 1e4).rounded() } == [6667, 3333, 0])
        #expect(deepSupervisionWeights(outputs: 5).map { ($0 * 1e4).rounded() } == [5333, 2667, 1333, 667, 0])
        #expect(deepSupervisionScales(strides: [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]) == [[1, 1, 1], [1, 0.5, 0.5], [0.5, 0.25, 0.25]])
        #expect(downsampleLabels([0, 1, 2, 3, 4, 5], samples: 1, from: [6], to: [3]) == [1, 3, 5])
        #expect(abs(polyLearningRate(epoch: 999, maxEpochs: 1000) - 2.0e-5) < 1e-6)
    }

    /// The mean soft Dice (smooth 1e-5) of the `scoring` classes from plain per-sample sums `[n·K + k]`, per sample or
    /// over the batch: the reference the blocked losses are checked against.
    static func plainMeanDice(inter: [Double], pred: [Double], truth: [Double], samples N: Int, classes K: Int,
                              scoring: Range<Int>, batchDice: Bool) -> Double {
        let groups = batchDice ? [Array(0..<N)] : (0..<N).map { [$0] }
        var dice = 0.0
        for group in groups {
            for k in scoring {
                let i = group.map { inter[$0 * K + k] }.reduce(0, +), p = group.map { pred[$0 * K + k] }.reduce(0, +)
                let t = group.map { truth[$0 * K + k] }.reduce(0, +)
                dice += (2 * i + 1e-5) / (t + p + 1e-5)
            }
        }
        return dice / Double(groups.count * scoring.count)
    }

    /// The loss sums a sample in blocks of voxels on all threads (a CT patch is millions of voxels per sample): over
    /// several blocks (the last one short) it must give the loss of a plain double-precision sum, and the gradient of
    /// the same loss computed in one block.
    @Test(arguments: [false, true]) func lossInBlocksEqualsOneBlock(batchDice: Bool) {
        var rng = SplitMix(state: 2512)
        let N = 2, K = 4, V = 70_001, ignore = 3
        let logits = Tensor(shape: [N, K, V], data: (0..<(N * K * V)).map { _ in Float.random(in: -3...3, using: &rng) })
        // Labels 0…2 and the ignore label 3 (one voxel in ten); class 2 absent from the second sample.
        let target = (0..<(N * V)).map { i -> Int16 in
            Int.random(in: 0..<10, using: &rng) == 0 ? Int16(ignore) : Int16(Int.random(in: 0..<(i < V ? 3 : 2), using: &rng))
        }
        let blocked = DiceCrossEntropyLoss(numClasses: K, batchDice: batchDice, ignoreLabel: ignore)
        var single = blocked
        single.blockVoxels = V
        #expect(DiceCrossEntropyLoss.blocks(voxels: V, size: blocked.blockVoxels).count == 3)
        let (l, g) = blocked(logits: logits, target: target), (l1, g1) = single(logits: logits, target: target)
        // Plain reference: CE over the annotated voxels, soft Dice of classes 1…K−1 without background.
        var ce = 0.0, annotated = 0.0
        var inter = [Double](repeating: 0, count: N * K), pred = inter, truth = inter
        for n in 0..<N {
            for v in 0..<V where target[n * V + v] != Int16(ignore) {
                let z = (0..<K).map { Double(logits.data[(n * K + $0) * V + v]) }
                let m = z.max()!, s = z.map { exp($0 - m) }.reduce(0, +)
                let y = Int(target[n * V + v])
                ce -= z[y] - m - log(s)
                annotated += 1
                for k in 0..<K {
                    let p = exp(z[k] - m) / s
                    pred[n * K + k] += p
                    if k == y { inter[n * K + k] += p; truth[n * K + k] += 1 }
                }
            }
        }
        let dice = Self.plainMeanDice(inter: inter, pred: pred, truth: truth, samples: N, classes: K, scoring: 1..<K, batchDice: batchDice)
        let reference = ce / annotated - dice
        #expect(abs(l - reference) < 1e-6 * abs(reference), "blocked \(l) vs plain \(reference) (seed 2512)")
        #expect(abs(l - l1) < 1e-9 * abs(l1))
        let worst = zip(g.data, g1.data).map { abs($0 - $1) }.max()!, largest = g1.data.map(abs).max()!
        #expect(worst <= 1e-6 * largest, "gradient in blocks vs one block: \(worst) of \(largest) (seed 2512)")
    }

    /// The region loss (sigmoid, BCE + Dice with every region scored) sums in blocks too: against a plain
    /// double-precision loss and against one block, with and without an ignore label.
    @Test(arguments: [false, true]) func regionLossInBlocksEqualsOneBlock(withIgnore: Bool) {
        var rng = SplitMix(state: 2612)
        let N = 2, V = 70_001, regions = [[1, 2], [2], [3]], K = regions.count, ignore = 4
        let logits = Tensor(shape: [N, K, V], data: (0..<(N * K * V)).map { _ in Float.random(in: -4...4, using: &rng) })
        // Labels 0…3; with the ignore label 4 on one voxel in ten; label 3 absent from the second sample.
        let target = (0..<(N * V)).map { i -> Int16 in
            withIgnore && Int.random(in: 0..<10, using: &rng) == 0 ? Int16(ignore) : Int16(Int.random(in: 0..<(i < V ? 4 : 3), using: &rng))
        }
        for batchDice in [false, true] {
            let blocked = RegionDiceBCELoss(regions: regions, batchDice: batchDice, ignoreLabel: withIgnore ? ignore : nil)
            var single = blocked
            single.blockVoxels = V
            let (l, g) = blocked(logits: logits, target: target), (l1, g1) = single(logits: logits, target: target)
            var bce = 0.0, annotated = 0.0
            var inter = [Double](repeating: 0, count: N * K), pred = inter, truth = inter
            for n in 0..<N {
                for v in 0..<V where !(withIgnore && target[n * V + v] == Int16(ignore)) {
                    annotated += 1
                    for k in 0..<K {
                        let z = Double(logits.data[(n * K + k) * V + v]), p = 1 / (1 + exp(-z))
                        let y = regions[k].contains(Int(target[n * V + v])) ? 1.0 : 0.0
                        bce -= y * log(p) + (1 - y) * log(1 - p)
                        pred[n * K + k] += p
                        inter[n * K + k] += y * p
                        truth[n * K + k] += y
                    }
                }
            }
            let dice = Self.plainMeanDice(inter: inter, pred: pred, truth: truth, samples: N, classes: K, scoring: 0..<K, batchDice: batchDice)
            let reference = bce / (withIgnore ? annotated : Double(N * K * V)) - dice
            #expect(abs(l - reference) < 1e-6 * abs(reference), "blocked \(l) vs plain \(reference) (seed 2612, batch Dice \(batchDice))")
            #expect(abs(l - l1) < 1e-9 * abs(l1))
            let worst = zip(g.data, g1.data).map { abs($0 - $1) }.max()!, largest = g1.data.map(abs).max()!
            #expect(worst <= 1e-6 * largest, "gradient in blocks vs one block: \(worst) of \(largest) (seed 2612)")
            // Ignored voxels get no gradient.
            if withIgnore {
                let masked = (0..<(N * V)).first { target[$0] == Int16(ignore) }!
                let (n, v) = (masked / V, masked % V)
                #expect((0..<K).allSatisfy { g.data[(n * K + $0) * V + v] == 0 })
            }
        }
    }
}
