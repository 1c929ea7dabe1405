import CDNNL
import Testing
import TestSupport
@testable import TensorKernels

/// Every optimised kernel against its plain reference on random shapes (ggml's test-backend-ops idea).
struct KernelParityTests {
    static func random(_ shape: [Int], _ rng: inout SplitMix, scale: Float = 1) -> Tensor {
        Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -scale...scale, using: &rng) })
    }

    /// Normalised mean squared error, as ggml's `max_nmse_err` measures it.
    static func nmse(_ a: Tensor, _ b: Tensor) -> Double {
        var num = 0.0, den = 0.0
        for i in 0..<a.count {
            let d = Double(a.data[i]) - Double(b.data[i])
            num += d * d
            den += Double(b.data[i]) * Double(b.data[i])
        }
        return num / max(den, 1e-30)
    }

    struct ConvCase: CustomStringConvertible, Sendable {
        let input: [Int]
        let outChannels: Int
        let kernel: [Int]
        let stride: [Int]
        var description: String { "in \(input) out \(outChannels) k \(kernel) s \(stride)" }
    }

    static let convolutionCases: [ConvCase] = [
        ConvCase(input: [1, 1, 9, 10, 11], outChannels: 32, kernel: [3, 3, 3], stride: [1, 1, 1]),   // network stem
        ConvCase(input: [1, 32, 8, 9, 10], outChannels: 64, kernel: [3, 3, 3], stride: [2, 2, 2]),   // strided down
        ConvCase(input: [1, 16, 5, 12, 12], outChannels: 20, kernel: [1, 3, 3], stride: [1, 2, 2]),  // anisotropic
        ConvCase(input: [2, 5, 6, 7, 8], outChannels: 3, kernel: [1, 1, 1], stride: [1, 1, 1]),      // seg head, batch 2
        ConvCase(input: [1, 3, 17, 13], outChannels: 16, kernel: [3, 3], stride: [1, 1]),            // 2-D
        ConvCase(input: [1, 16, 16, 14], outChannels: 32, kernel: [3, 3], stride: [2, 2]),
    ]

    @Test(arguments: convolutionCases)
    func convolutionMatchesReference(_ c: ConvCase) throws {
        var rng = SplitMix(state: UInt64(c.input.reduce(7, *) + c.outChannels))
        let context = try DNNLContext()
        let x = Self.random(c.input, &rng)
        let w = Self.random([c.outChannels, c.input[1]] + c.kernel, &rng, scale: 0.3)
        let b = (0..<c.outChannels).map { _ in Float.random(in: -1...1, using: &rng) }
        let geometry = ConvolutionGeometry.same(kernel: c.kernel, stride: c.stride)
        let kernel = try ConvolutionKernel(context: context, kind: .convolution, inputShape: c.input, weights: w, bias: b, geometry: geometry)
        let ours = try kernel(x)
        let reference = ReferenceOps.convolution(x, weights: w, bias: b, geometry: geometry)
        #expect(ours.shape == reference.shape)
        #expect(Self.nmse(ours, reference) < 1e-10, "\(c): nmse \(Self.nmse(ours, reference))")
        #expect(ours.maxAbsDifference(reference) < 1e-4)
        #expect(!kernel.implementation.hasPrefix("ref"), "oneDNN fell back to its reference kernel: \(kernel.implementation)")
    }

    static let transposedCases: [ConvCase] = [
        ConvCase(input: [1, 64, 4, 5, 6], outChannels: 32, kernel: [2, 2, 2], stride: [2, 2, 2]),
        ConvCase(input: [1, 24, 3, 4, 4], outChannels: 5, kernel: [1, 2, 2], stride: [1, 2, 2]),
        ConvCase(input: [1, 32, 6, 7], outChannels: 16, kernel: [2, 2], stride: [2, 2]),
    ]

    @Test(arguments: transposedCases)
    func transposedConvolutionMatchesReference(_ c: ConvCase) throws {
        var rng = SplitMix(state: UInt64(c.input.reduce(3, *) + c.outChannels))
        let context = try DNNLContext()
        let x = Self.random(c.input, &rng)
        let w = Self.random([c.input[1], c.outChannels] + c.kernel, &rng, scale: 0.3)  // PyTorch (I, O, k…)
        let b = (0..<c.outChannels).map { _ in Float.random(in: -1...1, using: &rng) }
        let geometry = ConvolutionGeometry(kernel: c.kernel, stride: c.stride, padding: c.kernel.map { _ in 0 })
        let kernel = try ConvolutionKernel(context: context, kind: .transposed, inputShape: c.input, weights: w, bias: b, geometry: geometry)
        let ours = try kernel(x)
        let reference = ReferenceOps.transposedConvolution(x, weights: w, bias: b, geometry: geometry)
        #expect(ours.shape == reference.shape)
        #expect(Self.nmse(ours, reference) < 1e-10, "\(c)")
        #expect(ours.maxAbsDifference(reference) < 1e-4)
    }

    @Test(arguments: [[1, 32, 5, 6, 7], [1, 5, 4, 4, 4], [2, 16, 9, 8], [1, 40, 3, 5, 2], [1, 64, 6, 7, 5], [1, 320, 2, 3, 2]])
    func instanceNormLeakyReLUOnConvolutionLayout(_ shape: [Int]) throws {
        var rng = SplitMix(state: UInt64(shape.reduce(11, *)))
        let context = try DNNLContext()
        // Produce the tensor with a convolution so that it sits in oneDNN's chosen (blocked) layout.
        let input = [shape[0], 8] + Array(shape.dropFirst(2))
        let x = Self.random(input, &rng)
        let w = Self.random([shape[1], 8] + shape.dropFirst(2).map { _ in 3 }, &rng, scale: 0.5)
        let geometry = ConvolutionGeometry.same(kernel: shape.dropFirst(2).map { _ in 3 }, stride: shape.dropFirst(2).map { _ in 1 })
        let conv = try ConvolutionKernel(context: context, kind: .convolution, inputShape: input, weights: w, bias: nil, geometry: geometry)
        let source = try DNNLMemory(context: context, desc: conv.sourceDesc)
        try source.write(x)
        let y = try conv.makeDestination()
        try conv.run(source: source, destination: y)
        let before = try y.read()
        let gamma = (0..<shape[1]).map { _ in Float.random(in: 0.5...2, using: &rng) }
        let beta = (0..<shape[1]).map { _ in Float.random(in: -1...1, using: &rng) }
        #expect(InstanceNormKernel.groups(of: y) != nil, "the convolution's layout must take the fused fast path")
        try InstanceNormKernel.apply(y, gamma: gamma, beta: beta)
        let ours = try y.read()
        let reference = ReferenceOps.instanceNorm(before, gamma: gamma, beta: beta)
        #expect(ours.maxAbsDifference(reference) < 1e-4, "\(shape)")
    }

    /// The instance-norm kernels on explicit 16- and 8-channel blocks — whichever layout this CPU's convolutions pick —
    /// with odd volumes (an 8-channel pair sweep's last voxel alone) and channel counts that leave padding lanes:
    /// inference against the reference, the training forward (output, μ, 1/σ) and backward (input gradient, ∂γ, ∂β)
    /// against the same kernels on the plain layout, which run channel by channel.
    @Test(arguments: [[2, 32, 5, 6, 7], [1, 20, 3, 5, 3], [1, 8, 4, 4, 4], [2, 40, 9, 7], [1, 16, 1, 1, 3]])
    func instanceNormOnChannelBlocks(_ shape: [Int]) throws {
        let seed = UInt64(shape.reduce(7, *))
        var rng = SplitMix(state: seed)
        let context = try DNNLContext()
        let channels = shape[1], statistics = shape[0] * channels
        let x = Self.random(shape, &rng, scale: 3), dy = Self.random(shape, &rng)
        let gamma = (0..<channels).map { _ in Float.random(in: 0.5...2, using: &rng) }
        let beta = (0..<channels).map { _ in Float.random(in: -1...1, using: &rng) }
        let reference = ReferenceOps.instanceNorm(x, gamma: gamma, beta: beta)

        /// Training forward + backward on one layout: (output, mean, 1/σ, input gradient, ∂γ, ∂β), all plain.
        func train(_ desc: dnnl_memory_desc_t) throws -> (Tensor, [Float], [Float], Tensor, [Float], [Float]) {
            let input = try DNNLMemory(context: context, desc: desc), output = try DNNLMemory(context: context, desc: desc)
            let diff = try DNNLMemory(context: context, desc: desc)
            try input.write(x)
            try diff.write(dy)
            var mean = [Float](repeating: 0, count: statistics), inverse = mean
            var dGamma = [Float](repeating: 0, count: channels), dBeta = dGamma
            TrainingKernels.instanceNormForward(input: input, output: output, gamma: gamma, beta: beta, epsilon: 1e-5, slope: 0.01,
                                                mean: &mean, inverseStd: &inverse)
            // In place, as the network runs it (diffInput = diffOutput).
            TrainingKernels.instanceNormBackward(diffOutput: diff, input: input, output: output, diffInput: diff, gamma: gamma, slope: 0.01,
                                                 mean: mean, inverseStd: inverse, gammaGradient: &dGamma, betaGradient: &dBeta)
            return (try output.read(), mean, inverse, try diff.read(), dGamma, dBeta)
        }
        func close(_ a: [Float], _ b: [Float], _ tolerance: Float) -> Bool {
            zip(a, b).allSatisfy { abs($0 - $1) <= tolerance * max(1, abs($1)) }
        }
        let plain = try train(try DNNLLayout.plain(shape))
        #expect(plain.0.maxAbsDifference(reference) < 1e-4, "plain training forward, \(shape), seed \(seed)")
        for block in [16, 8] {
            let desc = try DNNLLayout.channelBlocked(shape, block: block)
            let memory = try DNNLMemory(context: context, desc: desc)
            #expect(InstanceNormKernel.groups(of: memory) != nil)
            try memory.write(x)
            try InstanceNormKernel.apply(memory, gamma: gamma, beta: beta)
            #expect(try memory.read().maxAbsDifference(reference) < 1e-4, "inference, \(block)-channel blocks, \(shape), seed \(seed)")

            let blocked = try train(desc)
            let what = "\(block)-channel blocks, \(shape), seed \(seed)"
            #expect(blocked.0.maxAbsDifference(plain.0) < 1e-4, "training forward output, \(what)")
            #expect(close(blocked.1, plain.1, 1e-5) && close(blocked.2, plain.2, 1e-4), "μ, 1/σ, \(what)")
            #expect(blocked.3.maxAbsDifference(plain.3) < 1e-4, "input gradient, \(what)")
            #expect(close(blocked.4, plain.4, 1e-3) && close(blocked.5, plain.5, 1e-3), "∂γ, ∂β, \(what)")
        }
    }

    @Test func concatIntoTheNextLayersLayout() throws {
        var rng = SplitMix(state: 99)
        let context = try DNNLContext()
        let a = Self.random([1, 32, 4, 6, 5], &rng), b = Self.random([1, 32, 4, 6, 5], &rng)
        let wa = Self.random([32, 32, 1, 1, 1], &rng), geometry = ConvolutionGeometry.same(kernel: [1, 1, 1], stride: [1, 1, 1])
        let producer = try ConvolutionKernel(context: context, kind: .convolution, inputShape: a.shape, weights: wa, bias: nil, geometry: geometry)
        let consumer = try ConvolutionKernel(context: context, kind: .convolution, inputShape: [1, 64, 4, 6, 5],
                                             weights: Self.random([16, 64, 3, 3, 3], &rng), bias: nil,
                                             geometry: .same(kernel: [3, 3, 3], stride: [1, 1, 1]))
        let ma = try DNNLMemory(context: context, desc: producer.destinationDesc)
        try ma.write(a)
        let mb = try DNNLMemory.plain(context, shape: b.shape)
        try mb.write(b)
        let concat = try ConcatKernel(context: context, sources: [ma.desc, mb.desc], destination: consumer.sourceDesc)
        let out = try concat.makeDestination()
        try concat.run(sources: [ma, mb], destination: out)
        #expect(try out.read() == ReferenceOps.concatenateChannels(a, b))
    }

    @Test func softmaxSumsToOne() {
        var rng = SplitMix(state: 5)
        let x = Self.random([1, 3, 4, 5, 6], &rng, scale: 20)
        let p = ReferenceOps.softmaxChannels(x)
        for i in 0..<120 {
            let s = (0..<3).reduce(Float(0)) { $0 + p.data[$1 * 120 + i] }
            #expect(abs(s - 1) < 1e-6)
        }
    }
}
