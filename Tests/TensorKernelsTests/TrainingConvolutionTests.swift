import Testing
import TestSupport
@testable import TensorKernels

/// Backward passes checked by adjoint identities against the plain reference forward:
/// `⟨conv(x), g⟩ = ⟨x, ∂x⟩` (data gradient) and `⟨conv_{w′}(x), g⟩ = ⟨∂w, w′⟩` (weight gradient, conv is
/// linear in w). Both sides are computed in double from independent code paths.
struct TrainingConvolutionTests {
    struct Case: CustomStringConvertible, Sendable {
        let kind: ConvolutionKernel.Kind
        let input: [Int]
        let outChannels: Int
        let kernel: [Int]
        let stride: [Int]
        var description: String { "\(kind) in \(input) out \(outChannels) k \(kernel) s \(stride)" }
    }

    static let cases: [Case] = [
        Case(kind: .convolution, input: [2, 1, 7, 8, 6], outChannels: 16, kernel: [3, 3, 3], stride: [1, 1, 1]),
        Case(kind: .convolution, input: [3, 32, 8, 6, 8], outChannels: 32, kernel: [3, 3, 3], stride: [1, 1, 1]),
        Case(kind: .convolution, input: [2, 32, 8, 9, 10], outChannels: 64, kernel: [3, 3, 3], stride: [2, 2, 2]),
        Case(kind: .convolution, input: [2, 16, 5, 12, 12], outChannels: 20, kernel: [1, 3, 3], stride: [1, 2, 2]),
        Case(kind: .convolution, input: [2, 32, 6, 7, 8], outChannels: 3, kernel: [1, 1, 1], stride: [1, 1, 1]),
        Case(kind: .convolution, input: [2, 16, 11, 13], outChannels: 32, kernel: [3, 3], stride: [1, 1]),
        Case(kind: .transposed, input: [2, 64, 4, 5, 6], outChannels: 32, kernel: [2, 2, 2], stride: [2, 2, 2]),
        Case(kind: .transposed, input: [2, 24, 3, 4, 4], outChannels: 16, kernel: [1, 2, 2], stride: [1, 2, 2]),
        Case(kind: .transposed, input: [2, 32, 6, 7], outChannels: 16, kernel: [2, 2], stride: [2, 2]),
    ]

    static func dot(_ a: [Float], _ b: [Float]) -> Double {
        var s = 0.0
        for i in 0..<a.count { s += Double(a[i]) * Double(b[i]) }
        return s
    }

    static func reference(_ c: Case, _ x: Tensor, _ w: Tensor, _ b: [Float]?, _ g: ConvolutionGeometry) -> Tensor {
        c.kind == .convolution ? ReferenceOps.convolution(x, weights: w, bias: b, geometry: g)
            : ReferenceOps.transposedConvolution(x, weights: w, bias: b, geometry: g)
    }

    /// bf16 only where oneDNN implements it (AVX-512); AVX2-only machines run the float32 cases.
    @Test(arguments: cases, TrainingConvolution.Precision.allCases.filter(\.isAvailable))
    func gradientsSatisfyAdjointIdentities(_ c: Case, _ precision: TrainingConvolution.Precision) throws {
        // bf16 rounds inputs, weights and output gradients to 8 significant bits, so each product carries a
        // relative error below 2⁻⁸: its bound is 1 % of the sum of |products|, computed with |x|, |w|, |g|.
        let bf16 = precision == .bfloat16
        var rng = SplitMix(state: UInt64(c.input.reduce(11, *) &+ c.outChannels))
        func random(_ shape: [Int], _ scale: Float = 1) -> Tensor {
            Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -scale...scale, using: &rng) })
        }
        let context = try DNNLContext()
        let geometry = c.kind == .convolution ? ConvolutionGeometry.same(kernel: c.kernel, stride: c.stride)
            : ConvolutionGeometry(kernel: c.kernel, stride: c.stride, padding: c.kernel.map { _ in 0 })
        let conv = try TrainingConvolution(context: context, kind: c.kind, inputShape: c.input, outputChannels: c.outChannels,
                                           geometry: geometry, bias: true, precision: precision)
        let x = random(c.input), w = random(conv.weightShape, 0.3), w2 = random(conv.weightShape, 0.3)
        let bias = (0..<c.outChannels).map { _ in Float.random(in: -1...1, using: &rng) }
        try w.data.withUnsafeBufferPointer { wp in try bias.withUnsafeBufferPointer { try conv.loadWeights(wp.baseAddress!, bias: $0.baseAddress!) } }

        // Forward matches the reference.
        let source = try conv.makeSource()
        try source.write(x)
        let destination = try conv.makeDestination()
        try conv.runForward(source: source, destination: destination)
        let y = try destination.read()
        let yRef = Self.reference(c, x, w, bias, geometry)
        #expect(y.maxAbsDifference(yRef) < Float(precision == .float32 ? 1e-3 : 0.1), "\(c): forward differs by \(y.maxAbsDifference(yRef))")

        let g = random(conv.outputShape)
        // Data gradient.
        let gData = try DNNLMemory(context: context, desc: conv.dataDiffDestinationDesc!)
        try gData.write(g)
        let dx = try DNNLMemory(context: context, desc: conv.diffSourceDesc!)
        try conv.runBackwardData(diffDestination: gData, diffSource: dx)
        let noBias = Self.reference(c, x, w, nil, geometry)
        let lhs = Self.dot(noBias.data, g.data), rhs = Self.dot(x.data, try dx.read().data)
        let absolute = { (t: Tensor) in Tensor(shape: t.shape, data: t.data.map(abs)) }
        let dataBound = bf16 ? 1e-2 * Self.dot(Self.reference(c, absolute(x), absolute(w), nil, geometry).data, g.data.map(abs))
            : 1e-4 * max(1, abs(lhs))
        #expect(abs(lhs - rhs) <= dataBound, "\(c): ⟨conv x, g⟩ \(lhs) vs ⟨x, ∂x⟩ \(rhs)")

        // Weight and bias gradients (accumulated onto a non-zero start to check the +=).
        let src2 = try DNNLMemory(context: context, desc: conv.weightsSourceDesc)
        try src2.write(x)
        let gWeights = try DNNLMemory(context: context, desc: conv.weightsDiffDestinationDesc)
        try gWeights.write(g)
        var dw = [Float](repeating: 0.5, count: conv.weightCount), db = [Float](repeating: -0.25, count: c.outChannels)
        try dw.withUnsafeMutableBufferPointer { wp in
            try db.withUnsafeMutableBufferPointer { try conv.runBackwardWeights(source: src2, diffDestination: gWeights,
                                                                                  weightGradient: wp.baseAddress!, biasGradient: $0.baseAddress!) }
        }
        let along = Self.reference(c, x, w2, nil, geometry)
        let lhsW = Self.dot(along.data, g.data)
        let rhsW = Self.dot(dw.map { $0 - 0.5 }, w2.data)
        let weightBound = bf16 ? 1e-2 * Self.dot(Self.reference(c, absolute(x), absolute(w2), nil, geometry).data, g.data.map(abs))
            : 1e-4 * max(1, abs(lhsW))
        #expect(abs(lhsW - rhsW) <= weightBound, "\(c): ⟨conv_w′ x, g⟩ \(lhsW) vs ⟨∂w, w′⟩ \(rhsW)")
        let volume = conv.outputShape.dropFirst(2).reduce(1, *)
        for o in 0..<c.outChannels {
            var s = 0.0, sa = 0.0
            for n in 0..<c.input[0] { for v in 0..<volume { s += Double(g.data[(n * c.outChannels + o) * volume + v]); sa += Double(abs(g.data[(n * c.outChannels + o) * volume + v])) } }
            #expect(abs(Double(db[o] + 0.25) - s) < (bf16 ? 1e-2 * sa : 1e-3 * max(1, abs(s))), "\(c): bias gradient \(o)")
        }
        for name in conv.implementations {
            #expect(!name.hasPrefix("ref"), "\(c): oneDNN fell back to its reference kernel: \(name)")
        }
    }

    /// Layers sharing one depth-padding scratch (#25) — of different shapes, so each one's interior covers the
    /// others' padding planes — give the weight gradients they give with a scratch of their own, in any order.
    @Test func layersSharingADepthPaddingScratchGiveTheirOwnGradients() throws {
        let context = try DNNLContext()
        var rng = SplitMix(state: 2512)
        let shapes: [([Int], Int)] = [([2, 8, 6, 7, 5], 8), ([1, 16, 9, 4, 6], 8), ([2, 8, 3, 9, 8], 16)]
        let shared = DepthPaddingScratch(context: context)
        func layer(_ shape: [Int], _ out: Int, _ scratch: DepthPaddingScratch?) throws -> TrainingConvolution {
            try TrainingConvolution(context: context, kind: .convolution, inputShape: shape, outputChannels: out,
                                    geometry: .same(kernel: [3, 3, 3], stride: [1, 1, 1]), bias: false, depthPaddingScratch: scratch)
        }
        let sharing = try shapes.map { try layer($0.0, $0.1, shared) }
        let alone = try shapes.map { try layer($0.0, $0.1, nil) }
        func random(_ shape: [Int]) -> Tensor {
            Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in Float.random(in: 1...2, using: &rng) })
        }
        let inputs = shapes.map { random($0.0) }, diffs = sharing.map { random($0.outputShape) }
        func gradient(_ conv: TrainingConvolution, _ i: Int) throws -> [Float] {
            let source = try DNNLMemory(context: context, desc: conv.weightsSourceDesc)
            try source.write(inputs[i])
            let diff = try DNNLMemory(context: context, desc: conv.weightsDiffDestinationDesc)
            try diff.write(diffs[i])
            var dw = [Float](repeating: 0, count: conv.weightCount)
            try dw.withUnsafeMutableBufferPointer {
                try conv.runBackwardWeights(source: source, diffDestination: diff, weightGradient: $0.baseAddress!, biasGradient: nil)
            }
            return dw
        }
        let expected = try alone.indices.map { try gradient(alone[$0], $0) }
        for i in [0, 1, 2, 0, 2, 1, 1, 0] {
            let g = try gradient(sharing[i], i)
            let worst = zip(g, expected[i]).map { abs($0 - $1) }.max()!
            #expect(g == expected[i], "layer \(i) \(shapes[i].0): gradient differs from its own scratch's by up to \(worst)")
        }
        let padded = sharing.filter { $0.depthPadding != nil }.count
        print("depth-padded layers: \(padded) of \(sharing.count) (ISA \(DNNLContext.effectiveISA)); shared scratch \(shared.allocatedBytes) bytes")
        if padded == sharing.count {
            // One buffer as large as the largest padded source (2×8×8×7×5, 1×16×11×4×6, 2×8×5×9×8 floats) plus the largest zero planes.
            #expect(shared.allocatedBytes == (2 * 8 * 5 * 9 * 8 + 2 * 8 * 1 * 9 * 8) * 4)
        }
    }

    /// The depth-split Winograd path (#25: 3×3×3 stride-1 layers as one 2-D Winograd convolution over the depth slices)
    /// gives what the direct kernels give — forward, data, weight and bias gradients — for volumes of 1, 2 and more
    /// slices, with layers sharing one scratch and their backward passes interleaved (all weight gradients first, then
    /// all data gradients, so each data gradient must rebuild the shared stacked buffer).
    @Test func depthSplitWinogradMatchesDirectKernels() throws {
        let context = try DNNLContext()
        guard DNNLContext.effectiveISA.hasPrefix("avx512") else {
            print("depth-split Winograd: oneDNN's Winograd kernel needs AVX-512 (ISA \(DNNLContext.effectiveISA)); direct kernels only here")
            return
        }
        var rng = SplitMix(state: 2605)
        let shapes: [([Int], Int)] = [([2, 32, 5, 12, 10], 32), ([1, 16, 1, 9, 7], 48), ([3, 64, 2, 8, 8], 16), ([2, 16, 4, 6, 5], 32)]
        let scratch = DepthSplitScratch(context: context)
        func layer(_ shape: [Int], _ out: Int, _ scratch: DepthSplitScratch?) throws -> TrainingConvolution {
            try TrainingConvolution(context: context, kind: .convolution, inputShape: shape, outputChannels: out,
                                    geometry: .same(kernel: [3, 3, 3], stride: [1, 1, 1]), bias: true, depthSplitScratch: scratch)
        }
        let split = try shapes.map { try layer($0.0, $0.1, scratch) }, direct = try shapes.map { try layer($0.0, $0.1, nil) }
        // One sample per pass: each layer's scratch bounded to a single sample's stacked buffer (what a 128³ CT
        // patch at batch 2 gets under the default 1 GiB).
        let chunked = try shapes.map { shape, out in
            try layer(shape, out, DepthSplitScratch(context: context, maximumStackedBytes: shape[2] * 3 * out * shape[3] * shape[4] * 4))
        }
        for (conv, shape) in zip(split, shapes) {
            #expect(conv.depthSplit != nil, "\(shape): no depth-split path (\(conv.implementations))")
            #expect(conv.depthSplit?.chunk == shape.0[0])
        }
        for (conv, shape) in zip(chunked, shapes) {
            #expect(conv.depthSplit?.chunk == 1, "\(shape.0): \(conv.implementations)")
        }
        let tooSmall = try layer(shapes[0].0, shapes[0].1, DepthSplitScratch(context: context, maximumStackedBytes: 1024))
        #expect(tooSmall.depthSplit == nil, "a sample over the bound must keep the direct kernels")
        #expect(direct.allSatisfy { $0.depthSplit == nil })
        func random(_ shape: [Int], _ scale: Float = 1) -> Tensor {
            Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -scale...scale, using: &rng) })
        }
        let inputs = shapes.map { random($0.0) }, diffs = split.map { random($0.outputShape) }
        let weights = split.map { random($0.weightShape, 0.3) }, biases = shapes.map { random([$0.1]) }
        /// Largest difference relative to the largest magnitude of the direct result.
        func relative(_ a: [Float], _ b: [Float]) -> Float {
            zip(a, b).map { abs($0 - $1) }.max()! / max(1e-6, b.map(abs).max()!)
        }
        // Split twice (the second run must repeat the first bit for bit: training runs are reproducible), then direct,
        // then split one sample at a time.
        var results: [[String: [Float]]] = [[:], [:], [:], [:]]
        for (side, convs) in [split, split, direct, chunked].enumerated() {
            var sources: [DNNLMemory] = [], diffMemories: [DNNLMemory] = []
            for (i, conv) in convs.enumerated() {
                try weights[i].data.withUnsafeBufferPointer { w in
                    try biases[i].data.withUnsafeBufferPointer { try conv.loadWeights(w.baseAddress!, bias: $0.baseAddress!) }
                }
                let source = try conv.makeSource(), destination = try conv.makeDestination()
                try source.write(inputs[i])
                try conv.runForward(source: source, destination: destination)
                results[side]["forward \(i)"] = try destination.read().data
                sources.append(source)
                let diff = try DNNLMemory(context: context, desc: conv.weightsDiffDestinationDesc)
                try diff.write(diffs[i])
                diffMemories.append(diff)
            }
            for (i, conv) in convs.enumerated() {
                var dw = [Float](repeating: 0.5, count: conv.weightCount), db = [Float](repeating: -0.25, count: shapes[i].1)
                try dw.withUnsafeMutableBufferPointer { wp in
                    try db.withUnsafeMutableBufferPointer {
                        try conv.runBackwardWeights(source: sources[i], diffDestination: diffMemories[i], weightGradient: wp.baseAddress!,
                                                    biasGradient: $0.baseAddress!)
                    }
                }
                results[side]["weights \(i)"] = dw
                results[side]["bias \(i)"] = db
            }
            for (i, conv) in convs.enumerated() {
                let dx = try DNNLMemory(context: context, desc: conv.diffSourceDesc!)
                try conv.runBackwardData(diffDestination: diffMemories[i], diffSource: dx)
                results[side]["data \(i)"] = try dx.read().data
            }
        }
        #expect(results[0] == results[1], "the depth-split path gave different results in two runs")
        var worst: Float = 0, worstChunked: Float = 0
        for key in results[2].keys.sorted() {
            let r = relative(results[0][key]!, results[2][key]!), c = relative(results[3][key]!, results[2][key]!)
            worst = max(worst, r)
            worstChunked = max(worstChunked, c)
            let shape = shapes[Int(key.split(separator: " ").last!)!]
            #expect(r < 1e-5, "\(key) (\(shape)): depth-split differs from direct by \(r) of the largest value")
            #expect(c < 1e-5, "\(key) (\(shape)): depth-split one sample at a time differs from direct by \(c) of the largest value")
        }
        print("depth-split against direct: worst relative difference \(worst), one sample per pass \(worstChunked); scratch \(scratch.allocatedBytes) bytes; "
              + "\(split[0].implementations); \(chunked[0].implementations)")
    }

    /// The layouts and implementations oneDNN picks for the Hippocampus network at batch 9 (printed for the
    /// record; the test fails if any primitive is the reference kernel, or if a 3×3×3 layer after the first computes
    /// its weight gradient with im2col + gemm — oneDNN 2.6's choice on AVX2 for depth padding, #25).
    @Test func hippocampusLayersUseFastKernels() throws {
        let context = try DNNLContext()
        let layers: [(ConvolutionKernel.Kind, [Int], Int, [Int], [Int])] = [
            (.convolution, [9, 1, 40, 56, 40], 32, [3, 3, 3], [1, 1, 1]),
            (.convolution, [9, 32, 40, 56, 40], 32, [3, 3, 3], [1, 1, 1]),
            (.convolution, [9, 32, 40, 56, 40], 64, [3, 3, 3], [2, 2, 2]),
            (.convolution, [9, 128, 10, 14, 10], 256, [3, 3, 3], [2, 2, 2]),
            (.transposed, [9, 256, 5, 7, 5], 128, [2, 2, 2], [2, 2, 2]),
            (.transposed, [9, 64, 20, 28, 20], 32, [2, 2, 2], [2, 2, 2]),
            (.convolution, [9, 64, 40, 56, 40], 32, [3, 3, 3], [1, 1, 1]),
            (.convolution, [9, 32, 40, 56, 40], 3, [1, 1, 1], [1, 1, 1]),
        ]
        for precision in TrainingConvolution.Precision.allCases where precision.isAvailable {
        for (kind, input, out, k, s) in layers {
            let g = kind == .convolution ? ConvolutionGeometry.same(kernel: k, stride: s) : ConvolutionGeometry(kernel: k, stride: s, padding: [0, 0, 0])
            let conv = try TrainingConvolution(context: context, kind: kind, inputShape: input, outputChannels: out, geometry: g, bias: true,
                                               needsDataGradient: input[1] != 1, precision: precision)
            print("\(precision.rawValue) \(kind) \(input) → \(out): \(conv.implementations) src \(layoutName(conv.sourceDesc)) dst \(layoutName(conv.destinationDesc)) "
                  + "bwdD dd \(conv.dataDiffDestinationDesc.map(layoutName) ?? "-") ds \(conv.diffSourceDesc.map(layoutName) ?? "-") "
                  + "bwdW s \(layoutName(conv.weightsSourceDesc)) dd \(layoutName(conv.weightsDiffDestinationDesc))")
            for name in conv.implementations { #expect(!name.hasPrefix("ref"), "\(kind) \(input) \(precision): \(name)") }
            if kind == .convolution, k == [3, 3, 3], input[1] % 8 == 0 {
                #expect(!conv.implementations.last!.contains("gemm"), "\(input) → \(out) \(precision): backward weights \(conv.implementations.last!)")
            }
        }
        }
    }
}
