import CDNNL
import Foundation

/// A convolution or transposed convolution for training: forward (training mode), backward-data and
/// backward-weights primitives, all created from `format_tag any` descriptors (the backward ones with
/// the forward primitive as hint), so oneDNN picks its fast blocked layouts everywhere. Each primitive
/// may want its own layout for the same logical tensor; `sourceDesc`, `diffDestinationDesc…` etc. say
/// which, and the caller reorders where they differ.
///
/// Weights are owned by the caller in PyTorch's plain layout (`(O, I, k…)`, transposed `(I, O, k…)`) and
/// copied in with ``loadWeights(_:bias:)``; gradients come back in the same plain layout.
public final class TrainingConvolution: @unchecked Sendable {
    public typealias Kind = ConvolutionKernel.Kind

    /// Arithmetic of the convolutions (``ConvolutionPrecision``); in training bf16 also rounds the output gradients
    /// for the backward multiplications (weight gradients and everything outside the convolutions stay float32).
    public typealias Precision = ConvolutionPrecision
    public let precision: Precision

    public let kind: Kind
    public let inputShape: [Int]
    public let outputShape: [Int]
    public let geometry: ConvolutionGeometry
    public let weightShape: [Int]
    public let hasBias: Bool
    let context: DNNLContext
    let forward: DNNLPrimitive
    let backwardData: DNNLPrimitive?
    let backwardWeights: DNNLPrimitive

    /// Layouts the forward primitive reads and writes.
    public let sourceDesc: dnnl_memory_desc_t
    public let destinationDesc: dnnl_memory_desc_t
    /// Layouts of backward-data (diff of the output in, diff of the input out).
    public let dataDiffDestinationDesc: dnnl_memory_desc_t?
    public let diffSourceDesc: dnnl_memory_desc_t?
    /// Layouts of backward-weights (the forward input and the diff of the output in).
    public let weightsSourceDesc: dnnl_memory_desc_t
    public let weightsDiffDestinationDesc: dnnl_memory_desc_t

    /// bf16 staging copies of the float32 operands (bf16 precision only), with the memory each was
    /// filled from, so backward-weights and backward-data share one conversion.
    var stagedSource: DNNLMemory?, stagedWeightsSource: DNNLMemory?
    var stagedDataDiff: DNNLMemory?, stagedWeightsDiff: DNNLMemory?
    var sourceFilledFrom: ObjectIdentifier?, diffFilledFrom: ObjectIdentifier?

    /// The backward-weights source with the depth padding as zero planes (see `padsDepthForBackwardWeights`), in a
    /// buffer this layer may share with others; nil where oneDNN pads by itself.
    let depthPadding: DepthPaddedSource?
    /// The 3×3×3 stride-1 layers' faster path on AVX-512 (float32): one 2-D Winograd convolution over the depth slices
    /// (see ``DepthSplitWinograd``); nil where it does not apply. The direct primitives above still give the layouts.
    let depthSplit: DepthSplitWinograd?
    /// Whether padded 3-D convolutions may take the depth-padded backward-weights path;
    /// `NNSEG_DNNL_DEPTH_PADDED_BACKWARD_WEIGHTS=0` turns it off (for benchmarks: `training_step.sh` times both).
    public static let padsDepthForBackwardWeights =
        ProcessInfo.processInfo.environment["NNSEG_DNNL_DEPTH_PADDED_BACKWARD_WEIGHTS"] != "0"

    let userWeights: DNNLMemory          // plain PyTorch layout
    let forwardWeights: DNNLMemory       // forward layout
    let dataWeights: DNNLMemory?         // backward-data layout (aliases forwardWeights when equal)
    let diffWeights: DNNLMemory          // backward-weights layout
    let userDiffWeights: DNNLMemory      // plain
    let bias: DNNLMemory?
    let diffBias: DNNLMemory?

    /// - Parameters:
    ///   - inputShape: `(N, C, spatial…)`.
    ///   - needsDataGradient: false for the first layer (nothing upstream needs the input's gradient).
    ///   - depthPaddingScratch: where a depth-padded backward-weights source lives; the layers of one network share
    ///     one (they run one at a time). nil: a scratch of this layer's own.
    ///   - depthSplitScratch: the same for the depth-split Winograd layers' buffers; nil: the layer keeps the direct
    ///     kernels.
    public init(context: DNNLContext, kind: Kind, inputShape: [Int], outputChannels: Int, geometry: ConvolutionGeometry,
                bias hasBias: Bool, needsDataGradient: Bool = true, sourceDesc fixedSource: dnnl_memory_desc_t? = nil,
                precision: Precision = .float32, depthPaddingScratch: DepthPaddingScratch? = nil,
                depthSplitScratch: DepthSplitScratch? = nil) throws {
        self.kind = kind
        self.precision = precision
        let low = precision == .bfloat16 ? dnnl_bf16 : dnnl_f32
        self.context = context
        self.inputShape = inputShape
        self.geometry = geometry
        self.hasBias = hasBias
        let spatialRank = inputShape.count - 2
        let inChannels = inputShape[1]
        let spatialIn = Array(inputShape.dropFirst(2))
        let spatialOut = kind == .convolution ? geometry.outputShape(spatialIn) : geometry.transposedOutputShape(spatialIn)
        outputShape = [inputShape[0], outputChannels] + spatialOut
        let logicalWeights = [outputChannels, inChannels] + geometry.kernel
        weightShape = kind == .convolution ? logicalWeights : [inChannels, outputChannels] + geometry.kernel

        let any = dnnl_format_tag_any
        var src = try fixedSource ?? makeDesc(inputShape, tag: any, type: low)
        var w = try makeDesc(logicalWeights, tag: any, type: low)
        var dst = try makeDesc(outputShape, tag: any)
        var biasDesc = hasBias ? try makeDesc([outputChannels], tag: dnnl_a) : dnnl_memory_desc_t()
        let strides = dnnlDims(geometry.stride), pad = dnnlDims(geometry.padding)
        let name = kind == .convolution ? "convolution" : "deconvolution"
        // The depth-split Winograd path (float32 3×3×3 stride-1 layers where oneDNN has the 2-D Winograd kernel, i.e.
        // AVX-512) reads and writes `nCdhw16c` everywhere; the direct primitives below are still built (their layouts
        // where the path does not apply).
        if let depthSplitScratch, DepthSplitWinograd.enabled, kind == .convolution, precision == .float32, fixedSource == nil,
           geometry.kernel == [3, 3, 3], geometry.stride == [1, 1, 1], geometry.padding == [1, 1, 1] {
            depthSplit = DepthSplitWinograd.make(context: context, inputShape: inputShape, outputChannels: outputChannels,
                                                 needsDataGradient: needsDataGradient, scratch: depthSplitScratch)
        } else {
            depthSplit = nil
        }
        var blocked: (input: dnnl_memory_desc_t, output: dnnl_memory_desc_t)?
        if depthSplit != nil {
            blocked = (try DNNLLayout.channelBlocked(inputShape, block: 16),
                       try DNNLLayout.channelBlocked([inputShape[0], outputChannels] + spatialOut, block: 16))
        }

        func create(_ body: (inout dnnl_primitive_desc_t?) throws -> Void, _ what: String) throws -> DNNLPrimitive {
            var pd: dnnl_primitive_desc_t?
            try body(&pd)
            return try DNNLPrimitive(descriptor: pd!, name: what)
        }

        // Forward (training).
        forward = try convolutionForwardPrimitive(kind, propagation: dnnl_forward_training, source: &src, weights: &w, bias: &biasDesc,
                                                  destination: &dst, geometry: geometry, context: context, name: "\(name) forward")
        sourceDesc = blocked?.input ?? asFloat32(forward.queryDesc(dnnl_query_src_md))
        destinationDesc = blocked?.output ?? forward.queryDesc(dnnl_query_dst_md)
        let hint = forward.descriptor

        // Backward data, from `any` descriptors with the forward as hint.
        if needsDataGradient {
            var diffSrc = try makeDesc(inputShape, tag: any), wd = try makeDesc(logicalWeights, tag: any, type: low)
            var diffDst = try makeDesc(outputShape, tag: any, type: low)
            let p = try create({ pd in
                switch kind {
                case .convolution:
                    var d = dnnl_convolution_desc_t()
                    try dnnlCheck(dnnl_convolution_backward_data_desc_init(&d, dnnl_convolution_direct, &diffSrc, &wd, &diffDst, strides,
                                                                           pad, pad), "dnnl_convolution_backward_data_desc_init")
                    try dnnlCheck(dnnl_primitive_desc_create(&pd, &d, nil, context.engine, hint), "dnnl_primitive_desc_create(\(name) backward data)")
                case .transposed:
                    var d = dnnl_deconvolution_desc_t()
                    try dnnlCheck(dnnl_deconvolution_backward_data_desc_init(&d, dnnl_deconvolution_direct, &diffSrc, &wd, &diffDst,
                                                                             strides, pad, pad), "dnnl_deconvolution_backward_data_desc_init")
                    try dnnlCheck(dnnl_primitive_desc_create(&pd, &d, nil, context.engine, hint), "dnnl_primitive_desc_create(\(name) backward data)")
                }
            }, "\(name) backward data")
            backwardData = p
            diffSourceDesc = blocked?.input ?? p.queryDesc(dnnl_query_diff_src_md)
            dataDiffDestinationDesc = blocked?.output ?? asFloat32(p.queryDesc(dnnl_query_diff_dst_md))
        } else {
            backwardData = nil
            diffSourceDesc = nil
            dataDiffDestinationDesc = nil
        }

        // Backward weights.
        let destinationShape = outputShape
        func backwardWeightsPrimitive(sourceShape: [Int], padding: [Int64]) throws -> DNNLPrimitive {
            var s = try makeDesc(sourceShape, tag: any, type: low), dw = try makeDesc(logicalWeights, tag: any)
            var db = hasBias ? try makeDesc([outputChannels], tag: dnnl_a) : dnnl_memory_desc_t()
            var diffDst = try makeDesc(destinationShape, tag: any, type: low)
            return try create({ pd in
                switch kind {
                case .convolution:
                    var d = dnnl_convolution_desc_t()
                    try dnnlCheck(dnnl_convolution_backward_weights_desc_init(&d, dnnl_convolution_direct, &s, &dw, &db, &diffDst, strides,
                                                                              padding, padding), "dnnl_convolution_backward_weights_desc_init")
                    try dnnlCheck(dnnl_primitive_desc_create(&pd, &d, nil, context.engine, hint), "dnnl_primitive_desc_create(\(name) backward weights)")
                case .transposed:
                    var d = dnnl_deconvolution_desc_t()
                    try dnnlCheck(dnnl_deconvolution_backward_weights_desc_init(&d, dnnl_deconvolution_direct, &s, &dw, &db, &diffDst,
                                                                                strides, padding, padding), "dnnl_deconvolution_backward_weights_desc_init")
                    try dnnlCheck(dnnl_primitive_desc_create(&pd, &d, nil, context.engine, hint), "dnnl_primitive_desc_create(\(name) backward weights)")
                }
            }, "\(name) backward weights")
        }
        var weightsPrimitive = try backwardWeightsPrimitive(sourceShape: inputShape, padding: pad)
        var depthPadding: DepthPaddedSource?
        // oneDNN 2.6's AVX2 backward-weights kernel takes no padding in depth: for a padded 3-D convolution it falls
        // back to im2col + gemm (plain layouts, a reorder of both operands each time), 1.6–1.9× slower on the 3×3×3
        // layers of a 3d_fullres U-Net (#25: 5.5 s of a 12 s iteration on an AVX2 CPU). The same gradient with the
        // depth padding written into the source as zero planes and none in the descriptor runs the jit kernel. Not
        // for the first layer (one input channel: the jit kernel's first-layer path is 2.6× slower than gemm there)
        // nor where oneDNN already has a fast kernel (AVX-512 handles the padding itself).
        if depthSplit == nil, Self.padsDepthForBackwardWeights, kind == .convolution, precision == .float32, spatialRank == 3, geometry.padding[0] > 0,
           inChannels % 8 == 0, weightsPrimitive.implementation.contains("gemm") {
            var paddedShape = inputShape
            paddedShape[2] += 2 * geometry.padding[0]
            if let alternative = try? backwardWeightsPrimitive(sourceShape: paddedShape, padding: dnnlDims([0] + geometry.padding.dropFirst())),
               alternative.implementation.hasPrefix("jit") {
                weightsPrimitive = alternative
                depthPadding = try DepthPaddedSource(paddedDesc: alternative.queryDesc(dnnl_query_src_md), interiorShape: inputShape,
                                                     depthPadding: geometry.padding[0],
                                                     scratch: depthPaddingScratch ?? DepthPaddingScratch(context: context))
            }
        }
        backwardWeights = weightsPrimitive
        self.depthPadding = depthPadding
        // With a depth-padded source the caller hands over the forward's input as it is; it is copied into the
        // padded buffer's interior here.
        weightsSourceDesc = blocked?.input ?? (depthPadding == nil ? asFloat32(backwardWeights.queryDesc(dnnl_query_src_md)) : sourceDesc)
        weightsDiffDestinationDesc = blocked?.output ?? asFloat32(backwardWeights.queryDesc(dnnl_query_diff_dst_md))
        if precision == .bfloat16 {
            stagedSource = try DNNLMemory(context: context, desc: forward.queryDesc(dnnl_query_src_md))
            let ws = backwardWeights.queryDesc(dnnl_query_src_md)
            stagedWeightsSource = stagedSource!.sameLayout(asDesc: ws) ? stagedSource : try DNNLMemory(context: context, desc: ws)
            let wd = backwardWeights.queryDesc(dnnl_query_diff_dst_md)
            stagedWeightsDiff = try DNNLMemory(context: context, desc: wd)
            if let backwardData {
                let dd = backwardData.queryDesc(dnnl_query_diff_dst_md)
                stagedDataDiff = stagedWeightsDiff!.sameLayout(asDesc: dd) ? stagedWeightsDiff : try DNNLMemory(context: context, desc: dd)
            }
        }

        let userDesc = try makeDesc(logicalWeights, tag: kind.pytorchWeightTag(spatialRank: spatialRank))
        userWeights = try DNNLMemory(context: context, desc: userDesc)
        userDiffWeights = try DNNLMemory(context: context, desc: userDesc)
        forwardWeights = try DNNLMemory(context: context, desc: forward.queryDesc(dnnl_query_weights_md))
        if let backwardData {
            let desc = backwardData.queryDesc(dnnl_query_weights_md)
            var a = desc, b = forwardWeights.desc
            dataWeights = dnnl_memory_desc_equal(&a, &b) != 0 ? forwardWeights : try DNNLMemory(context: context, desc: desc)
        } else {
            dataWeights = nil
        }
        diffWeights = try DNNLMemory(context: context, desc: backwardWeights.queryDesc(dnnl_query_diff_weights_md))
        bias = hasBias ? try DNNLMemory(context: context, desc: biasDesc) : nil
        diffBias = hasBias ? try DNNLMemory(context: context, desc: biasDesc) : nil
    }

    /// Implementation names (forward, backward data, backward weights); "ref" means the slow path.
    public var implementations: [String] {
        depthSplit?.implementations
            ?? [forward.implementation, backwardData?.implementation, backwardWeights.implementation].compactMap { $0 }
    }

    public var weightCount: Int { weightShape.reduce(1, *) }

    /// Copies the weights (PyTorch layout) and bias in and converts them to the primitives' layouts.
    public func loadWeights(_ weights: UnsafePointer<Float>, bias: UnsafePointer<Float>?) throws {
        if let depthSplit { return try depthSplit.loadWeights(weights, bias: bias) }
        userWeights.pointer.update(from: weights, count: weightCount)
        try reorder(from: userWeights, to: forwardWeights)
        if let dataWeights, dataWeights !== forwardWeights { try reorder(from: userWeights, to: dataWeights) }
        if let b = self.bias, let bias { b.pointer.update(from: bias, count: outputShape[1]) }
    }

    public func makeSource() throws -> DNNLMemory { try DNNLMemory(context: context, desc: sourceDesc) }
    public func makeDestination() throws -> DNNLMemory { try DNNLMemory(context: context, desc: destinationDesc) }

    public func runForward(source: DNNLMemory, destination: DNNLMemory) throws {
        if let depthSplit { return try depthSplit.runForward(source: source, destination: destination) }
        var input = source
        if let staged = stagedSource {
            try reorder(from: source, to: staged)
            sourceFilledFrom = ObjectIdentifier(source)
            diffFilledFrom = nil
            input = staged
        }
        var args: [(Int32, DNNLMemory)] = [(nnseg_dnnl_arg_src, input), (nnseg_dnnl_arg_weights, forwardWeights),
                                           (nnseg_dnnl_arg_dst, destination)]
        if let bias { args.append((nnseg_dnnl_arg_bias, bias)) }
        try context.execute(forward, args)
    }

    /// Gradient of the input, written into `diffSource` (layout `diffSourceDesc`).
    public func runBackwardData(diffDestination: DNNLMemory, diffSource: DNNLMemory) throws {
        if let depthSplit { return try depthSplit.runBackwardData(diffDestination: diffDestination, diffSource: diffSource) }
        guard let backwardData, let dataWeights else { preconditionFailure("built without a data gradient") }
        var diff = diffDestination
        if let staged = stagedDataDiff {
            if !(staged === stagedWeightsDiff && diffFilledFrom == ObjectIdentifier(diffDestination)) {
                try reorder(from: diffDestination, to: staged)
                if staged === stagedWeightsDiff { diffFilledFrom = ObjectIdentifier(diffDestination) }
            }
            diff = staged
        }
        try context.execute(backwardData, [(nnseg_dnnl_arg_diff_dst, diff), (nnseg_dnnl_arg_weights, dataWeights),
                                           (nnseg_dnnl_arg_diff_src, diffSource)])
    }

    /// Gradients of weights and bias, added (`+=`) to `weightGradient` / `biasGradient` in PyTorch layout.
    public func runBackwardWeights(source: DNNLMemory, diffDestination: DNNLMemory,
                                   weightGradient: UnsafeMutablePointer<Float>, biasGradient: UnsafeMutablePointer<Float>?) throws {
        if let depthSplit {
            return try depthSplit.runBackwardWeights(source: source, diffDestination: diffDestination, weightGradient: weightGradient,
                                                     biasGradient: biasGradient)
        }
        var input = source, diff = diffDestination
        if let depthPadding { input = try depthPadding.fill(from: source, user: ObjectIdentifier(self)) }
        if let staged = stagedWeightsSource {
            if !(staged === stagedSource && sourceFilledFrom == ObjectIdentifier(source)) { try reorder(from: source, to: staged) }
            input = staged
        }
        if let staged = stagedWeightsDiff {
            if diffFilledFrom != ObjectIdentifier(diffDestination) {
                try reorder(from: diffDestination, to: staged)
                diffFilledFrom = ObjectIdentifier(diffDestination)
            }
            diff = staged
        }
        var args: [(Int32, DNNLMemory)] = [(nnseg_dnnl_arg_src, input), (nnseg_dnnl_arg_diff_dst, diff),
                                           (nnseg_dnnl_arg_diff_weights, diffWeights)]
        if let diffBias { args.append((nnseg_dnnl_arg_diff_bias, diffBias)) }
        try context.execute(backwardWeights, args)
        try reorder(from: diffWeights, to: userDiffWeights)
        let g = userDiffWeights.pointer
        for i in 0..<weightCount { weightGradient[i] += g[i] }
        if let diffBias, let biasGradient {
            let b = diffBias.pointer
            for i in 0..<outputShape[1] { biasGradient[i] += b[i] }
        }
    }
}

/// Scratch memory for depth-padded backward-weights sources (#25), shared by the convolutions of one network: one
/// buffer as large as the largest source, and one of zeros as large as the largest padding. Each layer views the
/// buffer in its own layout; the layer that fills it last re-zeroes its padding planes first, since another layer's
/// interior may lie there (two small reorders, against one buffer per layer: on a 3d_fullres CT network at batch 2
/// the per-layer buffers of the 128³ stage alone are 2.2 GB).
/// Not for concurrent use: the layers sharing one run one after another.
public final class DepthPaddingScratch: @unchecked Sendable {
    let context: DNNLContext
    private var sourceBytes = 0, zeroBytes = 0
    private var source: DNNLMemory?, zeros: DNNLMemory?
    /// Bumped whenever the buffers are (re)allocated, so that layers rebuild their views.
    private(set) var generation = 0
    /// The layer whose source the buffer holds now (its padding planes are zero).
    var lastUser: ObjectIdentifier?

    public init(context: DNNLContext) { self.context = context }

    /// Bytes held now (0 before the first backward pass).
    public var allocatedBytes: Int { (source?.byteSize ?? 0) + (zeros?.byteSize ?? 0) }

    func reserve(sourceBytes: Int, zeroBytes: Int) {
        self.sourceBytes = max(self.sourceBytes, sourceBytes)
        self.zeroBytes = max(self.zeroBytes, zeroBytes)
    }

    /// The two buffers at their reserved sizes, allocated on first use (after every layer reserved).
    func buffers() throws -> (source: DNNLMemory, zeros: DNNLMemory) {
        if let source, let zeros, source.byteSize >= sourceBytes, zeros.byteSize >= zeroBytes { return (source, zeros) }
        let s = try DNNLMemory.scratch(context, bytes: sourceBytes), z = try DNNLMemory.scratch(context, bytes: zeroBytes)
        memset(z.pointer, 0, z.byteSize)
        source = s
        zeros = z
        generation += 1
        lastUser = nil
        return (s, z)
    }
}

/// One layer's depth-padded backward-weights source in a shared scratch: the padded layout, the view of its
/// interior that the forward input is copied into, and views of the padding planes in front and behind.
final class DepthPaddedSource: @unchecked Sendable {
    let scratch: DepthPaddingScratch
    let paddedDesc: dnnl_memory_desc_t
    let interiorDesc: dnnl_memory_desc_t, frontDesc: dnnl_memory_desc_t, backDesc: dnnl_memory_desc_t
    /// The zero planes' plain layout (N, C, padding, H, W).
    let zeroDesc: dnnl_memory_desc_t
    private var views: (generation: Int, padded: DNNLMemory, interior: DNNLMemory, front: DNNLMemory, back: DNNLMemory,
                        zeros: DNNLMemory)?

    init(paddedDesc: dnnl_memory_desc_t, interiorShape: [Int], depthPadding: Int, scratch: DepthPaddingScratch) throws {
        self.scratch = scratch
        self.paddedDesc = paddedDesc
        func view(_ shape: [Int], depthOffset: Int) throws -> dnnl_memory_desc_t {
            var parent = paddedDesc, result = dnnl_memory_desc_t()
            var offsets = [Int64](repeating: 0, count: 12)
            offsets[2] = Int64(depthOffset)
            try dnnlCheck(dnnl_memory_desc_init_submemory(&result, &parent, dnnlDims(shape), offsets), "dnnl_memory_desc_init_submemory")
            return result
        }
        var plane = interiorShape
        plane[2] = depthPadding
        interiorDesc = try view(interiorShape, depthOffset: depthPadding)
        frontDesc = try view(plane, depthOffset: 0)
        backDesc = try view(plane, depthOffset: depthPadding + interiorShape[2])
        zeroDesc = try DNNLLayout.plain(plane)
        scratch.reserve(sourceBytes: DNNLLayout.byteSize(paddedDesc), zeroBytes: DNNLLayout.byteSize(zeroDesc))
    }

    /// Copies the forward input into the interior (zeroing the padding planes if another layer used the buffer
    /// since) and returns the padded source.
    func fill(from source: DNNLMemory, user: ObjectIdentifier) throws -> DNNLMemory {
        let (buffer, zeroBuffer) = try scratch.buffers()
        if views?.generation != scratch.generation {
            // Submemory descriptors carry their offset: every view starts at its buffer's base.
            func over(_ desc: dnnl_memory_desc_t, _ owner: DNNLMemory) throws -> DNNLMemory {
                try DNNLMemory(context: scratch.context, desc: desc, handle: UnsafeMutableRawPointer(owner.pointer), owner: owner)
            }
            views = (scratch.generation, try over(paddedDesc, buffer), try over(interiorDesc, buffer), try over(frontDesc, buffer),
                     try over(backDesc, buffer), try over(zeroDesc, zeroBuffer))
        }
        let v = views!
        if scratch.lastUser != user {
            try reorder(from: v.zeros, to: v.front)
            try reorder(from: v.zeros, to: v.back)
            scratch.lastUser = user
        }
        try reorder(from: source, to: v.interior)
        return v.padded
    }
}

/// The same layout holding float32 values (for bf16 descriptors: the caller's float32 tensors).
func asFloat32(_ desc: dnnl_memory_desc_t) -> dnnl_memory_desc_t {
    var d = desc
    d.data_type = dnnl_f32
    return d
}

/// A short layout name for logs and tests: strides order and inner blocks, e.g. `blocked[b16]` or `plain`.
public func layoutName(_ desc: dnnl_memory_desc_t) -> String {
    guard desc.format_kind == dnnl_blocked else { return "format \(desc.format_kind.rawValue)" }
    let rank = Int(desc.ndims)
    let b = desc.format_desc.blocking
    let strides = withUnsafeBytes(of: b.strides) { Array($0.bindMemory(to: Int64.self).prefix(rank)) }
    let blocks = withUnsafeBytes(of: b.inner_blks) { Array($0.bindMemory(to: Int64.self).prefix(Int(b.inner_nblks))) }
    let idx = withUnsafeBytes(of: b.inner_idxs) { Array($0.bindMemory(to: Int64.self).prefix(Int(b.inner_nblks))) }
    let letters = Array("abcdefgh")
    let order = (0..<rank).sorted { strides[$0] > strides[$1] || (strides[$0] == strides[$1] && $0 < $1) }.map { String(letters[$0]) }.joined()
    let inner = zip(idx, blocks).map { "\($1)\(letters[Int($0)])" }.joined()
    return order + inner
}
