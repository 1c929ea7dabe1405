import Dispatch
import Foundation
import TensorKernels

/// One optimisation step as nnU-Net's `train_step` does it: forward, deep-supervision Dice + CE loss,
/// backward, gradient clipping at norm 12, SGD-Nesterov update. Also the validation step (loss and
/// pseudo-Dice counts, no update).
public final class TrainingStep: @unchecked Sendable {
    public let network: TrainingNetwork
    public let loss: any SegmentationLoss
    public let optimizer: SGDNesterov
    public let weights: [Double]
    public var gradientClip: Double = 12
    /// The gradients' L2 norm before clipping, at the last training step.
    public private(set) var lastGradientNorm: Double = 0
    /// Seconds per phase, accumulated over steps (forward, loss, backward, optimiser).
    public private(set) var phaseSeconds: [String: Double] = [:]
    /// When set, each training step also counts TP, FP, FN per scored class of its full-resolution output on the
    /// batch it trains on (before the update), in ``lastTrainingCounts`` — to follow when a class is learnt or lost.
    public var countsTrainingPredictions = false
    public private(set) var lastTrainingCounts: (tp: [Double], fp: [Double], fn: [Double])?

    public init(network: TrainingNetwork, loss: any SegmentationLoss, optimizer: SGDNesterov = SGDNesterov()) {
        self.network = network
        self.loss = loss
        self.optimizer = optimizer
        weights = deepSupervisionWeights(outputs: network.activeHeads)
    }

    /// Targets for every head from the full-resolution labels `(N × patch)`.
    public func targets(_ labels: [Int16]) -> [[Int16]] {
        network.headShapes.map { downsampleLabels(labels, samples: network.batch, from: network.patch, to: Array($0.dropFirst(2))) }
    }

    func timed<T>(_ phase: String, _ body: () throws -> T) rethrows -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        defer { phaseSeconds[phase, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        return try body()
    }

    func lossAndGradients(_ outputs: [Tensor], _ targets: [[Int16]]) -> (Double, [Tensor?]) {
        var total = 0.0
        var gradients: [Tensor?] = []
        for (i, output) in outputs.enumerated() {
            guard weights[i] > 0 else { gradients.append(nil); continue }
            var (l, g) = loss(logits: output, target: targets[i])
            total += weights[i] * l
            let w = Float(weights[i])
            g.data.withUnsafeMutableBufferPointer { p in for j in 0..<p.count { p[j] *= w } }
            gradients.append(g)
        }
        return (total, gradients)
    }

    /// One training step on a batch `(N, C, patch…)` with labels `N × patch` (−1 already mapped to 0 or the
    /// ignore label). Returns the loss before the update.
    @discardableResult
    public func train(input: Tensor, labels: [Int16], learningRate: Double) throws -> Double {
        let targets = timed("targets") { self.targets(labels) }
        let outputs = try timed("forward") { try network.forward(input) }
        if countsTrainingPredictions { lastTrainingCounts = loss.pseudoDiceCounts(logits: outputs[0], labels: labels) }
        let (value, gradients) = timed("loss") { lossAndGradients(outputs, targets) }
        try timed("backward") { try network.backward(gradients) }
        timed("optimiser") {
            lastGradientNorm = clipGradientNorm(network.parameters, maxNorm: gradientClip)
            optimizer.step(network.parameters, learningRate: Float(learningRate))
        }
        return value
    }

    /// Validation step: loss and the pseudo-Dice counts (TP, FP, FN per foreground class or region) of the
    /// full-resolution output (argmax, or sigmoid > 0.5 per region), ignore-label voxels excluded.
    public func validate(input: Tensor, labels: [Int16]) throws -> (loss: Double, tp: [Double], fp: [Double], fn: [Double]) {
        let targets = self.targets(labels)
        let outputs = try network.forward(input)
        var total = 0.0
        for (i, output) in outputs.enumerated() where weights[i] > 0 {
            total += weights[i] * loss(logits: output, target: targets[i]).loss
        }
        let (tp, fp, fn) = loss.pseudoDiceCounts(logits: outputs[0], labels: labels)
        return (total, tp, fp, fn)
    }
}
