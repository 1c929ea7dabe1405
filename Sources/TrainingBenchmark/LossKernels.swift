import Dispatch
import Foundation
import TensorKernels
import Training

/// `TrainingBenchmark loss [batch classes d h w [repeats]]`: the two segmentation losses alone (value and gradient of
/// one deep-supervision output) on random logits and labels — by default a CT patch's full-resolution head, 1 × 26 ×
/// 128³ (#25: 1.4–2.3 s of a 10 s CT step). The labels include an ignore value on one voxel in ten.
func lossKernelBenchmark(_ arguments: [String]) throws {
    let numbers = arguments.compactMap { Int($0) }
    let shape = numbers.count >= 5 ? Array(numbers.prefix(5)) : [1, 26, 128, 128, 128]
    let repeats = numbers.count >= 6 ? numbers[5] : 5
    let (batch, classes) = (shape[0], shape[1])
    let voxels = shape.dropFirst(2).reduce(1, *)
    var rng = RandomSource(seed: 1)
    let logits = Tensor(shape: shape, data: (0..<(batch * classes * voxels)).map { _ in Float(rng.uniform(-4, 4)) })
    let ignore = classes
    let labels = (0..<(batch * voxels)).map { _ -> Int16 in
        rng.uniform(0, 1) < 0.1 ? Int16(ignore) : Int16(min(classes - 1, Int(rng.uniform(0, Double(classes)))))
    }
    /// The loss's bits and a checksum of the gradient's bits: two builds compute the same loss exactly when both agree.
    func fingerprint(_ result: (loss: Double, gradient: Tensor)) -> String {
        let sum = result.gradient.data.enumerated().reduce(UInt64(0)) { $0 &+ UInt64($1.element.bitPattern) &* UInt64($1.offset | 1) }
        return String(format: "%016llx/%016llx", result.loss.bitPattern, sum)
    }
    func median(_ body: () -> (loss: Double, gradient: Tensor)) -> (seconds: Double, value: String) {
        let value = fingerprint(body())
        var times: [Double] = []
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            _ = body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return (times.sorted()[times.count / 2], value)
    }
    let softmax = median { DiceCrossEntropyLoss(numClasses: classes, batchDice: false, ignoreLabel: ignore)(logits: logits, target: labels) }
    let regions = (1..<classes).map { [$0] }
    let regionLogits = Tensor(shape: [batch, classes - 1] + shape.dropFirst(2), data: Array(logits.data.prefix(batch * (classes - 1) * voxels)))
    let sigmoid = median { RegionDiceBCELoss(regions: regions, batchDice: false, ignoreLabel: ignore)(logits: regionLogits, target: labels) }
    let megabytes = Double(logits.count * 4) / 1e6
    print("losses on logits \(shape) (\(Int(megabytes)) MB), \(ProcessInfo.processInfo.activeProcessorCount) cores, median of \(repeats):")
    print(String(format: "  Dice + CE (softmax)        %.3f s  (loss/gradient bits %@)", softmax.seconds, softmax.value))
    print(String(format: "  Dice + BCE (%d regions)    %.3f s  (loss/gradient bits %@)", classes - 1, sigmoid.seconds, sigmoid.value))
    print(String(format: "RESULT loss shape=%@ dice_ce_s=%.4f dice_bce_s=%.4f", "\(shape)".replacingOccurrences(of: " ", with: ""), softmax.seconds, sigmoid.seconds))
}
