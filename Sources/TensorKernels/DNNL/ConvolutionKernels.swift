import CDNNL

/// Arithmetic of the convolutions. `bfloat16`: inputs and weights are rounded to bf16 for the multiplications
/// (accumulation, outputs and everything outside the convolutions stay float32) — mixed precision as nnU-Net's autocast
/// does on GPUs, at up to twice the float32 throughput with AMX or on AMD CPUs with AVX-512 BF16 (``fasterBFloat16``).
public enum ConvolutionPrecision: String, Sendable, CaseIterable {
    case float32 = "fp32"
    case bfloat16 = "bf16"

    /// Whether oneDNN can run it on this CPU: bf16 convolutions need AVX-512 (native BF16/AMX, or emulated
    /// on avx512_core); on an AVX2-only CPU they are unimplemented.
    public var isAvailable: Bool { self == .float32 || DNNLContext.effectiveISA.contains("avx512") || DNNLContext.effectiveISA.contains("amx") }

    /// Whether bf16 convolutions run faster than float32 on this CPU — what `--precision auto` asks.
    ///
    /// Not the same as "the CPU multiplies bf16 natively": AVX-512 BF16's `vdpbf16ps` does twice the multiply-adds
    /// of an fp32 FMA per instruction, but Intel cores without AMX (Cooper Lake; Sapphire/Emerald Rapids where AMX
    /// is not exposed, as on the Intel Xeon of #25) issue it on one port against two for FMA, so the per-cycle rate
    /// is the same and the bf16 conversions come on top. Measured with `Ops/bench/training_step.sh`, Hippocampus
    /// network step: AMD EPYC Zen 4 bf16 3.40 s vs fp32 5.69 s (1.7× faster); Intel Xeon (family 6 model 207,
    /// AVX-512 BF16, no AMX) bf16 5.78 s vs fp32 3.39 s (1.7× slower). So: AMX (oneDNN ISA `avx512_core_amx`,
    /// tile multiplies), or `avx512_core_bf16` on an AMD CPU (Zen 4/5 run `vdpbf16ps` at the full vector rate).
    public static var fasterBFloat16: Bool {
        fasterBFloat16(isa: DNNLContext.effectiveISA, vendor: CPUIdentity.vendor)
    }

    /// The rule of ``fasterBFloat16`` for a given oneDNN ISA and CPU vendor string (`vendor_id`).
    public static func fasterBFloat16(isa: String, vendor: String?) -> Bool {
        if isa.contains("amx") { return true }
        return isa == "avx512_core_bf16" && vendor == "AuthenticAMD"
    }

    /// The error text when it is not available here.
    public var unavailableReason: String {
        "\(rawValue) convolutions need AVX-512 (oneDNN 2.6 has none for \(DNNLContext.effectiveISA)); this CPU runs fp32 only"
    }
}

/// Convolution or transposed convolution through oneDNN, forward inference, with the layouts oneDNN
/// prefers (`format_tag any`): weights are reordered once at construction; activations stay in the
/// chosen blocked layout between layers.
///
/// Layout of the weights passed in (PyTorch's): convolution `(O, I, k…)`; transposed `(I, O, k…)`.
public final class ConvolutionKernel: @unchecked Sendable {
    public enum Kind: Sendable { case convolution, transposed }

    public let kind: Kind
    public let inputShape: [Int]
    public let outputShape: [Int]
    public let geometry: ConvolutionGeometry
    let primitive: DNNLPrimitive
    let context: DNNLContext
    let weights: DNNLMemory
    let bias: DNNLMemory?
    /// Layout the kernel wants its input in (bf16 for `.bfloat16`: the caller converts into it), and the one it
    /// writes (always float32).
    public let sourceDesc: dnnl_memory_desc_t
    public let destinationDesc: dnnl_memory_desc_t
    public let precision: ConvolutionPrecision

    /// - Parameters:
    ///   - inputShape: `(N, C, spatial…)`.
    ///   - sourceDesc: a fixed input layout, or nil to let oneDNN choose (with `.bfloat16`: the same layout in bf16).
    public init(context: DNNLContext, kind: Kind, inputShape: [Int], weights: Tensor, bias: [Float]?,
                geometry: ConvolutionGeometry, sourceDesc: dnnl_memory_desc_t? = nil, precision: ConvolutionPrecision = .float32) throws {
        self.kind = kind
        self.precision = precision
        self.context = context
        self.inputShape = inputShape
        self.geometry = geometry
        let spatialRank = inputShape.count - 2
        let outChannels = kind == .convolution ? weights.shape[0] : weights.shape[1]
        let inChannels = kind == .convolution ? weights.shape[1] : weights.shape[0]
        precondition(inChannels == inputShape[1], "weights expect \(inChannels) input channels, input has \(inputShape[1])")
        let spatialOut = kind == .convolution ? geometry.outputShape(Array(inputShape.dropFirst(2)))
            : geometry.transposedOutputShape(Array(inputShape.dropFirst(2)))
        outputShape = [inputShape[0], outChannels] + spatialOut

        let any = dnnl_format_tag_any
        let low = precision == .bfloat16 ? dnnl_bf16 : dnnl_f32
        var src = try sourceDesc.map { fixed -> dnnl_memory_desc_t in
            var d = fixed
            d.data_type = low
            return d
        } ?? makeDesc(inputShape, tag: any, type: low)
        let logicalWeights = [outChannels, inChannels] + geometry.kernel
        var wAny = try makeDesc(logicalWeights, tag: any, type: low)
        var dst = try makeDesc(outputShape, tag: any)
        // A zero descriptor disables the bias term.
        var biasDesc = bias == nil ? dnnl_memory_desc_t() : try makeDesc([outChannels], tag: dnnl_a)
        primitive = try convolutionForwardPrimitive(kind, propagation: dnnl_forward_inference, source: &src, weights: &wAny, bias: &biasDesc,
                                                    destination: &dst, geometry: geometry, context: context,
                                                    name: kind == .convolution ? "convolution" : "deconvolution")
        self.sourceDesc = primitive.queryDesc(dnnl_query_src_md)
        destinationDesc = primitive.queryDesc(dnnl_query_dst_md)

        let userWeights = try DNNLMemory(context: context, desc: makeDesc(logicalWeights, tag: kind.pytorchWeightTag(spatialRank: spatialRank)))
        weights.data.withUnsafeBufferPointer { userWeights.pointer.update(from: $0.baseAddress!, count: weights.count) }
        self.weights = try DNNLMemory(context: context, desc: primitive.queryDesc(dnnl_query_weights_md))
        try reorder(from: userWeights, to: self.weights)
        if let bias {
            let b = try DNNLMemory(context: context, desc: biasDesc)
            bias.withUnsafeBufferPointer { b.pointer.update(from: $0.baseAddress!, count: bias.count) }
            self.bias = b
        } else {
            self.bias = nil
        }
    }

    /// oneDNN's implementation name ("ref" would mean the slow reference path).
    public var implementation: String { primitive.implementation }

    public func makeDestination() throws -> DNNLMemory { try DNNLMemory(context: context, desc: destinationDesc) }

    public func run(source: DNNLMemory, destination: DNNLMemory) throws {
        var args: [(Int32, DNNLMemory)] = [(nnseg_dnnl_arg_src, source), (nnseg_dnnl_arg_weights, weights),
                                           (nnseg_dnnl_arg_dst, destination)]
        if let bias { args.append((nnseg_dnnl_arg_bias, bias)) }
        try context.execute(primitive, args)
    }

    /// Convenience for tests: plain tensor in, plain tensor out.
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        var source = try DNNLMemory(context: context, desc: asFloat32(sourceDesc))
        try source.write(x)
        if precision == .bfloat16 {
            let staged = try DNNLMemory(context: context, desc: sourceDesc)
            try reorder(from: source, to: staged)
            source = staged
        }
        let destination = try makeDestination()
        try run(source: source, destination: destination)
        return try destination.read()
    }
}

extension ConvolutionKernel.Kind {
    /// PyTorch's weight layout as a oneDNN tag: convolution `(O, I, k…)` is "oi(d)hw"; transposed
    /// `(I, O, k…)` is "io(d)hw".
    func pytorchWeightTag(spatialRank: Int) -> dnnl_format_tag_t {
        switch (self, spatialRank) {
        case (.convolution, 3): return dnnl_oidhw
        case (.convolution, _): return dnnl_oihw
        case (.transposed, 3): return dnnl_iodhw
        case (.transposed, _): return dnnl_iohw
        }
    }
}

/// A forward convolution or deconvolution primitive (inference or training propagation) over the given
/// descriptors (`any` where oneDNN should choose); `bias` zeroed disables the bias term.
func convolutionForwardPrimitive(_ kind: ConvolutionKernel.Kind, propagation: dnnl_prop_kind_t, source: inout dnnl_memory_desc_t,
                                 weights: inout dnnl_memory_desc_t, bias: inout dnnl_memory_desc_t, destination: inout dnnl_memory_desc_t,
                                 geometry: ConvolutionGeometry, context: DNNLContext, name: String) throws -> DNNLPrimitive {
    let strides = dnnlDims(geometry.stride), padding = dnnlDims(geometry.padding)
    var pd: dnnl_primitive_desc_t?
    switch kind {
    case .convolution:
        var desc = dnnl_convolution_desc_t()
        try dnnlCheck(dnnl_convolution_forward_desc_init(&desc, propagation, dnnl_convolution_direct, &source, &weights, &bias, &destination,
                                                         strides, padding, padding), "dnnl_convolution_forward_desc_init")
        try dnnlCheck(dnnl_primitive_desc_create(&pd, &desc, nil, context.engine, nil), "dnnl_primitive_desc_create(\(name))")
    case .transposed:
        var desc = dnnl_deconvolution_desc_t()
        try dnnlCheck(dnnl_deconvolution_forward_desc_init(&desc, propagation, dnnl_deconvolution_direct, &source, &weights, &bias,
                                                           &destination, strides, padding, padding), "dnnl_deconvolution_forward_desc_init")
        try dnnlCheck(dnnl_primitive_desc_create(&pd, &desc, nil, context.engine, nil), "dnnl_primitive_desc_create(\(name))")
    }
    return try DNNLPrimitive(descriptor: pd!, name: name)
}

/// Channel concatenation through oneDNN, writing straight into the layout the next layer wants.
public final class ConcatKernel: @unchecked Sendable {
    let primitive: DNNLPrimitive
    let context: DNNLContext
    public let destinationDesc: dnnl_memory_desc_t

    public init(context: DNNLContext, sources: [dnnl_memory_desc_t], destination: dnnl_memory_desc_t?) throws {
        self.context = context
        var pd: dnnl_primitive_desc_t?
        var dims = withUnsafeBytes(of: sources[0].dims) { Array($0.bindMemory(to: Int64.self).prefix(Int(sources[0].ndims))).map { Int($0) } }
        dims[1] = sources.map { Int($0.dims.1) }.reduce(0, +)
        var dst = try destination ?? makeDesc(dims, tag: dnnl_format_tag_any)
        try sources.withUnsafeBufferPointer { srcs in
            try dnnlCheck(dnnl_concat_primitive_desc_create(&pd, &dst, Int32(srcs.count), 1,
                                                            srcs.baseAddress, nil, context.engine),
                          "dnnl_concat_primitive_desc_create")
        }
        primitive = try DNNLPrimitive(descriptor: pd!, name: "concat")
        destinationDesc = primitive.queryDesc(dnnl_query_dst_md)
    }

    public func makeDestination() throws -> DNNLMemory { try DNNLMemory(context: context, desc: destinationDesc) }

    public var implementation: String { primitive.implementation }

    public func run(sources: [DNNLMemory], destination: DNNLMemory) throws {
        var args: [(Int32, DNNLMemory)] = sources.enumerated().map { (nnseg_dnnl_arg_multiple_src(Int32($0.offset)), $0.element) }
        args.append((nnseg_dnnl_arg_dst, destination))
        try context.execute(primitive, args)
    }
}
