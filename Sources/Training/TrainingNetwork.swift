import Dispatch
import Foundation
import PlansModel
import TensorKernels
import UNet

/// One learnable tensor under its nnU-Net state-dict name, with its gradient (PyTorch layouts).
public final class Parameter: @unchecked Sendable {
    public let name: String
    public let shape: [Int]
    public var value: [Float]
    public var gradient: [Float]
    /// False when nothing in the loss depends on it this step (PyTorch's `grad is None`: the optimiser skips it).
    public var hasGradient = false

    init(name: String, shape: [Int], value: [Float]) {
        self.name = name
        self.shape = shape
        self.value = value
        gradient = [Float](repeating: 0, count: value.count)
    }

    public var count: Int { value.count }
}

/// nnU-Net's PlainConvUNet or ResidualEncoderUNet for training: a fixed batch and patch, forward pass producing the
/// deep-supervision logits (highest resolution first) and a backward pass filling every parameter's
/// gradient. Convolutions run through oneDNN (forward-training, backward-data and backward-weights,
/// layouts chosen by oneDNN); instance norm and LeakyReLU through ``TrainingKernels``.
///
/// ```swift
/// let net = try TrainingNetwork(architecture: plans.architecture, inputChannels: 1, numClasses: 3,
///                               batch: 9, patch: [40, 56, 40], initialization: .kaiming(seed: 1))
/// let logits = try net.forward(batch)                  // [(9, 3, 40, 56, 40), (9, 3, 20, 28, 20), …]
/// try net.backward(logitGradients)                     // parameters[i].gradient filled
/// ```
public final class TrainingNetwork: @unchecked Sendable {
    public let architecture: NetworkArchitecture
    public let inputChannels: Int
    public let numClasses: Int
    public let batch: Int
    public let patch: [Int]
    public private(set) var parameters: [Parameter] = []
    var parameterIndex: [String: Int] = [:]
    /// Heads whose logits are computed (index 0 = full resolution); heads beyond are left out (weight 0).
    public let activeHeads: Int

    let context: DNNLContext
    /// Activation memories and their gradients (same layout, allocated lazily).
    var values: [DNNLMemory] = []
    var diffs: [DNNLMemory?] = []
    var diffWritten: [Bool] = []

    struct ConvUnit {
        let conv: TrainingConvolution
        let weight: Int, bias: Int?, gamma: Int?, beta: Int?
        let input: Int, convOutput: Int, output: Int
        let activation: Bool
        var mean: [Float], inverseStd: [Float]
    }
    struct Transposed { let conv: TrainingConvolution; let weight: Int, bias: Int?; let input: Int, output: Int }
    struct Concat { let kernel: ConcatKernel; let up: Int, skip: Int, output: Int }
    struct Head { let conv: TrainingConvolution; let weight: Int, bias: Int; let input: Int, output: Int; let level: Int }
    struct Pool { let kernel: TrainingPooling; let input: Int, output: Int }
    struct Residual { let main: Int, skip: Int, output: Int }
    enum Op { case unit(Int), transposed(Int), concat(Int), head(Int), pool(Int), residual(Int) }

    var units: [ConvUnit] = []
    var transposed: [Transposed] = []
    var concats: [Concat] = []
    var heads: [Head] = []
    var pools: [Pool] = []
    var residuals: [Residual] = []
    var ops: [Op] = []
    let inputValue: Int
    public let precision: TrainingConvolution.Precision
    /// Multiply-accumulates of one forward pass over the batch.
    public private(set) var multiplyAccumulates = 0

    public enum Initialization: Sendable {
        /// He/Kaiming normal (a = 0.01, fan-in), zero biases, norm γ = 1, β = 0 (nnU-Net's InitWeights_He);
        /// ResEnc's second norm of every residual block starts at γ = β = 0.
        case kaiming(seed: UInt64)
        /// Given tensors by state-dict name (e.g. from a checkpoint).
        case weights([String: Tensor])
    }

    public init(architecture a: NetworkArchitecture, inputChannels: Int, numClasses: Int, batch: Int, patch: [Int],
                initialization: Initialization, deepSupervisionHeads: Int? = nil, precision: TrainingConvolution.Precision = .float32,
                context: DNNLContext? = nil) throws {
        precondition(patch.count == a.dimension)
        architecture = a
        self.inputChannels = inputChannels
        self.numClasses = numClasses
        self.batch = batch
        self.patch = patch
        self.precision = precision
        let context = try context ?? DNNLContext()
        self.context = context
        activeHeads = min(deepSupervisionHeads ?? (a.stages - 1), a.stages - 1)

        // Parameters in state-dict order.
        // Standard normal draws in Box–Muller pairs (both halves used, across tensors).
        var rng = RandomSource(seed: { if case .kaiming(let s) = initialization { return s } else { return 0 } }() &+ 0x9E37_79B9_7F4A_7C15)
        var spare: Double?
        func normal() -> Double {
            if let s = spare { spare = nil; return s }
            let (first, second) = rng.normalPair()
            spare = second
            return first
        }
        for (name, shape) in UNet.expectedTensors(a, inputChannels: inputChannels, numClasses: numClasses) {
            let count = shape.reduce(1, *)
            var value: [Float]
            switch initialization {
            case .weights(let w):
                guard let t = w[name] else { throw WeightError(tensor: name, detail: "missing (expected shape \(shape))") }
                guard t.shape == shape else { throw WeightError(tensor: name, detail: "shape \(t.shape), expected \(shape)") }
                value = t.data
            case .kaiming:
                if a.kind == .residualEncoderUNet && (name.hasSuffix(".conv2.norm.weight") || name.hasSuffix(".conv2.norm.bias")) {
                    // ResEnc starts every residual branch at zero (init_last_bn_before_add_to_0).
                    value = [Float](repeating: 0, count: count)
                } else if name.hasSuffix("norm.weight") {
                    value = [Float](repeating: 1, count: count)
                } else if shape.count > 1 {
                    // fan_in = shape[1] × kernel volume (for transposed convs that is the output channels).
                    let fanIn = shape[1] * shape.dropFirst(2).reduce(1, *)
                    let std = (2 / (1 + 0.01 * 0.01) / Double(fanIn)).squareRoot()
                    value = (0..<count).map { _ in Float(normal() * std) }
                } else {
                    value = [Float](repeating: 0, count: count)
                }
            }
            parameterIndex[name] = parameters.count
            parameters.append(Parameter(name: name, shape: shape, value: value))
        }

        inputValue = 0
        let ones = [Int](repeating: 1, count: a.dimension)

        // Values are created by their producers; the input gets the first conv's layout.
        func addValue(_ desc: DNNLMemoryDescriptor) throws -> Int {
            values.append(try DNNLMemory(context: context, desc: desc))
            diffs.append(nil)
            diffWritten.append(false)
            return values.count - 1
        }
        func param(_ name: String) -> Int? { parameterIndex[name] }

        var pendingInput = true
        var current = -1
        // The convolutions run one at a time: one scratch serves all their depth-padded backward-weights sources.
        let depthPaddingScratch = DepthPaddingScratch(context: context)
        let depthSplitScratch = DepthSplitScratch(context: context)
        func convUnit(_ prefix: String, source: Int, inputShape: [Int], outChannels: Int, kernel: [Int], stride: [Int],
                      activation: Bool = true) throws -> (Int, [Int]) {
            let first = pendingInput
            let conv = try TrainingConvolution(context: context, kind: .convolution, inputShape: inputShape, outputChannels: outChannels,
                                               geometry: .same(kernel: kernel, stride: stride), bias: param("\(prefix).conv.bias") != nil,
                                               needsDataGradient: !first, precision: precision, depthPaddingScratch: depthPaddingScratch,
                                               depthSplitScratch: depthSplitScratch)
            var src = source
            if first {
                src = try addValue(conv.sourceDesc)
                pendingInput = false
            }
            let y = try addValue(conv.destinationDesc)
            let out = try addValue(conv.destinationDesc)
            units.append(ConvUnit(conv: conv, weight: param("\(prefix).conv.weight")!, bias: param("\(prefix).conv.bias"),
                                  gamma: param("\(prefix).norm.weight"), beta: param("\(prefix).norm.bias"),
                                  input: src, convOutput: y, output: out, activation: activation,
                                  mean: [Float](repeating: 0, count: batch * outChannels),
                                  inverseStd: [Float](repeating: 0, count: batch * outChannels)))
            ops.append(.unit(units.count - 1))
            multiplyAccumulates += conv.outputShape.reduce(1, *) * inputShape[1] * kernel.reduce(1, *)
            return (out, conv.outputShape)
        }

        let n = a.stages, f = a.featuresPerStage
        var shape = [batch, inputChannels] + patch
        var skips: [(Int, [Int])] = []
        switch a.kind {
        case .plainConvUNet:
            for s in 0..<n {
                for i in 0..<a.blocksPerStage[s] {
                    (current, shape) = try convUnit("encoder.stages.\(s).0.convs.\(i)", source: current, inputShape: shape, outChannels: f[s],
                                                    kernel: a.kernelSizes[s], stride: i == 0 ? a.strides[s] : ones)
                }
                skips.append((current, shape))
            }
        case .residualEncoderUNet:
            (current, shape) = try convUnit("encoder.stem.convs.0", source: current, inputShape: shape, outChannels: a.stemChannels ?? f[0],
                                            kernel: a.kernelSizes[0], stride: ones)
            for s in 0..<n {
                for b in 0..<a.blocksPerStage[s] {
                    let prefix = "encoder.stages.\(s).blocks.\(b)"
                    let stride = b == 0 ? a.strides[s] : ones
                    let strided = stride.contains { $0 != 1 }
                    let (blockInput, inputShape) = (current, shape)
                    let (main1, shape1) = try convUnit("\(prefix).conv1", source: blockInput, inputShape: inputShape, outChannels: f[s],
                                                       kernel: a.kernelSizes[s], stride: stride)
                    let (main, mainShape) = try convUnit("\(prefix).conv2", source: main1, inputShape: shape1, outChannels: f[s],
                                                         kernel: a.kernelSizes[s], stride: ones, activation: false)
                    var (skip, skipShape) = (blockInput, inputShape)
                    if strided {
                        let pool = try TrainingPooling(context: context, source: values[skip].desc, inputShape: skipShape, window: stride)
                        let pooled = try addValue(pool.destinationDesc)
                        pools.append(Pool(kernel: pool, input: skip, output: pooled))
                        ops.append(.pool(pools.count - 1))
                        (skip, skipShape) = (pooled, pool.outputShape)
                    }
                    if inputShape[1] != f[s] {
                        (skip, skipShape) = try convUnit("\(prefix).skip.\(strided ? 1 : 0)", source: skip, inputShape: skipShape, outChannels: f[s],
                                                         kernel: ones, stride: ones, activation: false)
                    }
                    guard skipShape == mainShape else {
                        throw TrainingError.invalidPatch("patch \(patch): residual branches \(mainShape) and \(skipShape) differ in \(prefix)")
                    }
                    let joined = try addValue(values[main].desc)
                    residuals.append(Residual(main: main, skip: skip, output: joined))
                    ops.append(.residual(residuals.count - 1))
                    (current, shape) = (joined, mainShape)
                }
                skips.append((current, shape))
            }
        }
        for s in 0..<(n - 1) {
            let (skip, skipShape) = skips[n - 2 - s]
            let stride = a.strides[n - 1 - s]
            let up = try TrainingConvolution(context: context, kind: .transposed, inputShape: shape, outputChannels: f[n - 2 - s],
                                             geometry: ConvolutionGeometry(kernel: stride, stride: stride, padding: zeros(a.dimension)),
                                             bias: a.convBias, precision: precision)
            guard up.outputShape == skipShape else {
                throw TrainingError.invalidPatch("patch \(patch): upsampled \(up.outputShape) does not meet skip \(skipShape); the patch must be divisible by the total stride")
            }
            let upValue = try addValue(up.destinationDesc)
            transposed.append(Transposed(conv: up, weight: param("decoder.transpconvs.\(s).weight")!, bias: param("decoder.transpconvs.\(s).bias"),
                                         input: current, output: upValue))
            ops.append(.transposed(transposed.count - 1))
            multiplyAccumulates += shape.reduce(1, *) * up.outputShape[1] * stride.reduce(1, *)
            var catShape = skipShape
            catShape[1] *= 2
            let concat = try ConcatKernel(context: context, sources: [values[upValue].desc, values[skip].desc], destination: nil)
            let cat = try addValue(concat.destinationDesc)
            concats.append(Concat(kernel: concat, up: upValue, skip: skip, output: cat))
            ops.append(.concat(concats.count - 1))
            (current, shape) = try convUnit("decoder.stages.\(s).convs.0", source: cat, inputShape: catShape, outChannels: f[n - 2 - s],
                                            kernel: a.kernelSizes[n - 2 - s], stride: ones)
            for i in 1..<max(1, a.convsPerDecoderStage[s]) {
                (current, shape) = try convUnit("decoder.stages.\(s).convs.\(i)", source: current, inputShape: shape, outChannels: f[n - 2 - s],
                                                kernel: a.kernelSizes[n - 2 - s], stride: ones)
            }
            // Head level: 0 = full resolution (decoder stage n−2).
            let level = n - 2 - s
            if level < activeHeads {
                let head = try TrainingConvolution(context: context, kind: .convolution, inputShape: shape, outputChannels: numClasses,
                                                   geometry: .same(kernel: ones, stride: ones), bias: true, precision: precision)
                let out = try addValue(head.destinationDesc)
                heads.append(Head(conv: head, weight: param("decoder.seg_layers.\(s).weight")!, bias: param("decoder.seg_layers.\(s).bias")!,
                                  input: current, output: out, level: level))
                ops.append(.head(heads.count - 1))
                multiplyAccumulates += head.outputShape.reduce(1, *) * shape[1]
            }
        }
    }

    /// Output shapes of the active heads, full resolution first.
    public var headShapes: [[Int]] { byLevel.map(\.conv.outputShape) }

    /// oneDNN implementations in use (none should be "ref").
    public var implementations: Set<String> {
        Set(units.flatMap(\.conv.implementations) + transposed.flatMap(\.conv.implementations) + heads.flatMap(\.conv.implementations))
    }

    func loadWeights(_ conv: TrainingConvolution, _ w: Int, _ b: Int?) throws {
        try parameters[w].value.withUnsafeBufferPointer { wp in
            if let b {
                try parameters[b].value.withUnsafeBufferPointer { try conv.loadWeights(wp.baseAddress!, bias: $0.baseAddress!) }
            } else {
                try conv.loadWeights(wp.baseAddress!, bias: nil)
            }
        }
    }

    /// Forward pass; returns the logits of each active head (full resolution first), plain `(N, K, …)`.
    public func forward(_ input: Tensor) throws -> [Tensor] {
        precondition(input.shape == [batch, inputChannels] + patch, "input \(input.shape)")
        try values[inputValue].write(input)
        for op in ops {
            switch op {
            case .unit(let i):
                let u = units[i]
                try timed("load weights") { try loadWeights(u.conv, u.weight, u.bias) }
                try timed("conv forward") { try u.conv.runForward(source: try converted(u.input, u.conv.sourceDesc), destination: values[u.convOutput]) }
                let gamma = u.gamma.map { parameters[$0].value } ?? [Float](repeating: 1, count: u.conv.outputShape[1])
                let beta = u.beta.map { parameters[$0].value } ?? [Float](repeating: 0, count: u.conv.outputShape[1])
                var mean = u.mean, inv = u.inverseStd
                timed("norm forward") {
                mean.withUnsafeMutableBufferPointer { m in
                    inv.withUnsafeMutableBufferPointer { r in
                        TrainingKernels.instanceNormForward(input: values[u.convOutput], output: values[u.output], gamma: gamma, beta: beta,
                                                            epsilon: Float(architecture.normEpsilon),
                                                            slope: u.activation ? Float(architecture.leakyReLUSlope) : nil,
                                                            mean: m.baseAddress!, inverseStd: r.baseAddress!)
                    }
                }
                }
                units[i].mean = mean
                units[i].inverseStd = inv
            case .transposed(let i):
                let t = transposed[i]
                try loadWeights(t.conv, t.weight, t.bias)
                try t.conv.runForward(source: try converted(t.input, t.conv.sourceDesc), destination: values[t.output])
            case .concat(let i):
                let c = concats[i]
                try timed("concat") { try c.kernel.run(sources: [values[c.up], values[c.skip]], destination: values[c.output]) }
            case .pool(let i):
                let p = pools[i]
                try p.kernel.runForward(source: try converted(p.input, p.kernel.sourceDesc), destination: values[p.output])
            case .residual(let i):
                let r = residuals[i]
                TrainingKernels.residualForward(main: values[r.main], skip: try converted(r.skip, values[r.main].desc), output: values[r.output],
                                                slope: Float(architecture.leakyReLUSlope))
            case .head(let i):
                let h = heads[i]
                try loadWeights(h.conv, h.weight, h.bias)
                try h.conv.runForward(source: try converted(h.input, h.conv.sourceDesc), destination: values[h.output])
            }
        }
        return try byLevel.map { try values[$0.output].read() }
    }

    /// Active heads, full resolution first.
    var byLevel: [Head] { heads.sorted { $0.level < $1.level } }

    /// `values[v]` in layout `desc` (itself, or a converted copy).
    func converted(_ v: Int, _ desc: DNNLMemoryDescriptor) throws -> DNNLMemory {
        try values[v].converted(to: desc)
    }

    /// Adds `gradient` (any layout) into the gradient of value `v`.
    func addDiff(_ v: Int, _ gradient: DNNLMemory) throws {
        let g = try gradient.converted(to: values[v].desc)
        if !diffWritten[v] {
            if diffs[v] == nil { diffs[v] = try DNNLMemory(context: context, desc: values[v].desc) }
            try diffs[v]!.assign(from: g)
            diffWritten[v] = true
        } else {
            TrainingKernels.accumulate(diffs[v]!, adding: g)
        }
    }

    /// Where to compute a gradient of value `v` that has layout `desc`: `v`'s own gradient buffer when this is the
    /// first gradient `v` gets in this pass and the layouts agree (no copy afterwards, #25), else the scratch buffer
    /// of `role`. Pass the result to ``finishDiff(_:_:)`` once it is computed.
    func diffDestination(_ v: Int, scratch role: String, _ desc: DNNLMemoryDescriptor) throws -> (memory: DNNLMemory, direct: Bool) {
        if !diffWritten[v], DNNLLayout.same(desc, values[v].desc) {
            if diffs[v] == nil { diffs[v] = try DNNLMemory(context: context, desc: values[v].desc) }
            return (diffs[v]!, true)
        }
        return (try scratchMemory(role, desc), false)
    }

    /// Records a gradient computed where ``diffDestination(_:scratch:_:)`` said.
    func finishDiff(_ v: Int, _ destination: (memory: DNNLMemory, direct: Bool)) throws {
        if destination.direct { diffWritten[v] = true } else { try addDiff(v, destination.memory) }
    }

    /// Transient backward buffers, shared by every layer with the same role, shape and layout (each is
    /// consumed before the next layer of its role runs).
    var scratch: [String: DNNLMemory] = [:]
    func scratchMemory(_ role: String, _ desc: DNNLMemoryDescriptor) throws -> DNNLMemory {
        let dims = withUnsafeBytes(of: desc.dims) { Array($0.bindMemory(to: Int64.self).prefix(Int(desc.ndims))) }
        let key = "\(role):\(dims):\(layoutName(desc)):\(desc.data_type.rawValue)"
        if let m = scratch[key], m.sameLayout(asDesc: desc) { return m }
        let m = try DNNLMemory(context: context, desc: desc)
        scratch[key] = m
        return m
    }

    /// Backward pass from the gradients of the active heads' logits (plain, full resolution first; nil for a
    /// head with loss weight 0). Overwrites every parameter's gradient (zero where nothing flows).
    public func backward(_ logitGradients: [Tensor?]) throws {
        precondition(logitGradients.count == heads.count)
        for p in parameters {
            p.hasGradient = false
            for i in 0..<p.gradient.count { p.gradient[i] = 0 }
        }
        for v in 0..<diffWritten.count { diffWritten[v] = false }
        for (h, g) in zip(byLevel, logitGradients) {
            guard let g else { continue }
            let dOut = try scratchMemory("head", h.conv.weightsDiffDestinationDesc)
            try dOut.write(g)
            try backwardConvolution(h.conv, weight: h.weight, bias: h.bias, input: h.input, diffOutput: dOut)
        }
        for op in ops.reversed() {
            switch op {
            case .head: continue
            case .unit(let i):
                let u = units[i]
                guard diffWritten[u.output] else { continue }
                let dY = try scratchMemory("dy", values[u.convOutput].desc)
                var dGamma = [Float](repeating: 0, count: u.conv.outputShape[1]), dBeta = dGamma
                let gamma = u.gamma.map { parameters[$0].value } ?? [Float](repeating: 1, count: u.conv.outputShape[1])
                timed("norm backward") {
                u.mean.withUnsafeBufferPointer { m in
                    u.inverseStd.withUnsafeBufferPointer { r in
                        dGamma.withUnsafeMutableBufferPointer { dg in
                            dBeta.withUnsafeMutableBufferPointer { db in
                                TrainingKernels.instanceNormBackward(diffOutput: diffs[u.output]!, input: values[u.convOutput], output: values[u.output],
                                                                     diffInput: dY, gamma: gamma,
                                                                     slope: u.activation ? Float(architecture.leakyReLUSlope) : nil,
                                                                     mean: m.baseAddress!, inverseStd: r.baseAddress!,
                                                                     gammaGradient: dg.baseAddress!, betaGradient: db.baseAddress!)
                            }
                        }
                    }
                }
                }
                if let g = u.gamma { add(dGamma, to: g) }
                if let b = u.beta { add(dBeta, to: b) }
                try backwardConvolution(u.conv, weight: u.weight, bias: u.bias, input: u.input, diffOutput: dY)
            case .pool(let i):
                let p = pools[i]
                guard diffWritten[p.output] else { continue }
                let dX = try diffDestination(p.input, scratch: "pool-dx", p.kernel.diffSourceDesc)
                try p.kernel.runBackward(diffDestination: try diffs[p.output]!.converted(to: p.kernel.diffDestinationDesc), diffSource: dX.memory)
                try finishDiff(p.input, dX)
            case .residual(let i):
                let r = residuals[i]
                guard diffWritten[r.output] else { continue }
                let dSum = try scratchMemory("residual", values[r.output].desc)
                TrainingKernels.residualBackward(diffOutput: diffs[r.output]!, output: values[r.output], diffSum: dSum,
                                                 slope: Float(architecture.leakyReLUSlope))
                try addDiff(r.main, dSum)
                try addDiff(r.skip, dSum)
            case .transposed(let i):
                let t = transposed[i]
                guard diffWritten[t.output] else { continue }
                try backwardConvolution(t.conv, weight: t.weight, bias: t.bias, input: t.input, diffOutput: diffs[t.output]!)
            case .concat(let i):
                let c = concats[i]
                guard diffWritten[c.output] else { continue }
                try timed("concat backward") {
                    let upPart = try diffDestination(c.up, scratch: "cat-up", values[c.up].desc)
                    try TrainingKernels.copyChannels(from: diffs[c.output]!, first: 0, into: upPart.memory)
                    try finishDiff(c.up, upPart)
                    let skipPart = try diffDestination(c.skip, scratch: "cat-skip", values[c.skip].desc)
                    try TrainingKernels.copyChannels(from: diffs[c.output]!, first: values[c.up].dims[1], into: skipPart.memory)
                    try finishDiff(c.skip, skipPart)
                }
            }
        }
    }

    func add(_ g: [Float], to p: Int) {
        let parameter = parameters[p]
        for i in 0..<g.count { parameter.gradient[i] += g[i] }
        parameter.hasGradient = true
    }

    func backwardConvolution(_ conv: TrainingConvolution, weight: Int, bias: Int?, input: Int, diffOutput: DNNLMemory) throws {
        let source = try converted(input, conv.weightsSourceDesc)
        let dW = try diffOutput.converted(to: conv.weightsDiffDestinationDesc)
        try timed("conv backward weights") {
        try parameters[weight].gradient.withUnsafeMutableBufferPointer { wg in
            if let bias {
                try parameters[bias].gradient.withUnsafeMutableBufferPointer { bg in
                    try conv.runBackwardWeights(source: source, diffDestination: dW, weightGradient: wg.baseAddress!, biasGradient: bg.baseAddress!)
                }
            } else {
                try conv.runBackwardWeights(source: source, diffDestination: dW, weightGradient: wg.baseAddress!, biasGradient: nil)
            }
        }
        }
        parameters[weight].hasGradient = true
        if let bias { parameters[bias].hasGradient = true }
        if let diffSourceDesc = conv.diffSourceDesc {
            let dD = try diffOutput.converted(to: conv.dataDiffDestinationDesc!)
            let dX = try diffDestination(input, scratch: "dx", diffSourceDesc)
            try timed("conv backward data") { try conv.runBackwardData(diffDestination: dD, diffSource: dX.memory) }
            try timed("add gradient") { try finishDiff(input, dX) }
        }
    }

    /// Seconds per kind of work, accumulated when `profiling` is on.
    public var profiling = false
    public private(set) var profile: [String: Double] = [:]
    func timed<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
        guard profiling else { return try body() }
        let start = DispatchTime.now().uptimeNanoseconds
        defer { profile[name, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        return try body()
    }

    /// Current weights by state-dict name (plain PyTorch layouts).
    public func stateDict() -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, Tensor(shape: $0.shape, data: $0.value)) })
    }
}

func zeros(_ n: Int) -> [Int] { [Int](repeating: 0, count: n) }

public enum TrainingError: Error, CustomStringConvertible {
    case unsupported(String)
    case invalidPatch(String)
    case dataset(file: String, problem: String)
    case checkpoint(file: String, problem: String)
    /// Model selection and ensembling (find-best-configuration, `--instructions`).
    case modelSelection(file: String, problem: String)

    public var description: String {
        switch self {
        case .unsupported(let what): return "TRAINING_UNSUPPORTED: \(what)"
        case .invalidPatch(let what): return "TRAINING_INVALID_PATCH: \(what)"
        case .dataset(let file, let problem): return "TRAINING_DATASET: \(file): \(problem)"
        case .checkpoint(let file, let problem): return "TRAINING_CHECKPOINT: \(file): \(problem)"
        case .modelSelection(let file, let problem): return "MODEL_SELECTION: \(file): \(problem)"
        }
    }
}
