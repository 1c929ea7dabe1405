import Dispatch
import TensorKernels
import Training

/// `TrainingBenchmark norm [batch channels d h w [repeats [block]]]`: instance norm + LeakyReLU — training forward,
/// its backward, and the inference kernel in place — on one activation in 16- (default) or 8-channel blocks, each
/// timed alone (median of `repeats`), with the bandwidth each reaches.
func normKernelBenchmark(_ arguments: [String]) throws {
    let numbers = arguments.compactMap { Int($0) }
    let shape = numbers.count >= 5 ? Array(numbers.prefix(5)) : [9, 32, 40, 56, 40]
    let repeats = numbers.count >= 6 ? numbers[5] : 9
    let block = numbers.count >= 7 ? numbers[6] : 16
    let context = try DNNLContext()
    let desc = try DNNLLayout.channelBlocked(shape, block: block)
    let x = try DNNLMemory(context: context, desc: desc), y = try DNNLMemory(context: context, desc: desc)
    let dy = try DNNLMemory(context: context, desc: desc), dx = try DNNLMemory(context: context, desc: desc)
    let floats = DNNLLayout.byteSize(desc) / 4
    var rng = RandomSource(seed: 1)
    for m in [x, y, dx, dy] {
        try m.write(Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in Float(rng.uniform(-2, 2)) }))
    }
    let channels = shape[1], statistics = shape[0] * channels
    let gamma = [Float](repeating: 1.1, count: channels), beta = [Float](repeating: 0.1, count: channels)
    let mean = UnsafeMutablePointer<Float>.allocate(capacity: statistics), inverseStd = UnsafeMutablePointer<Float>.allocate(capacity: statistics)
    let gammaGradient = UnsafeMutablePointer<Float>.allocate(capacity: channels), betaGradient = UnsafeMutablePointer<Float>.allocate(capacity: channels)
    gammaGradient.initialize(repeating: 0, count: channels)
    betaGradient.initialize(repeating: 0, count: channels)
    func median(_ body: () throws -> Void) rethrows -> Double {
        try body()
        var times: [Double] = []
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return times.sorted()[times.count / 2]
    }
    let forward = median {
        TrainingKernels.instanceNormForward(input: x, output: y, gamma: gamma, beta: beta, epsilon: 1e-5, slope: 0.01,
                                            mean: mean, inverseStd: inverseStd)
    }
    let backward = median {
        TrainingKernels.instanceNormBackward(diffOutput: dy, input: x, output: y, diffInput: dx, gamma: gamma, slope: 0.01, mean: mean,
                                             inverseStd: inverseStd, gammaGradient: gammaGradient, betaGradient: betaGradient)
    }
    let inference = try median {
        try InstanceNormKernel.apply(dx, gamma: gamma, beta: beta, epsilon: 1e-5, leakyReLUSlope: 0.01)
    }
    let megabytes = Double(floats * 4) / 1e6
    print("instance norm on \(shape) (\(block)-channel blocks, \(Int(megabytes)) MB per tensor), median of \(repeats):")
    print(String(format: "  forward  %.4f s (%.1f GB/s over 3 reads + 1 write)", forward, 4 * megabytes / forward / 1e3))
    print(String(format: "  backward %.4f s (%.1f GB/s over 5 reads + 1 write)", backward, 6 * megabytes / backward / 1e3))
    print(String(format: "  forward ÷ backward %.2f", forward / backward))
    print(String(format: "  inference (in place, InstanceNormKernel.apply) %.4f s (%.1f GB/s over 3 reads + 1 write)", inference,
                 4 * megabytes / inference / 1e3))
}
