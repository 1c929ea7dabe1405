import CDNNL

/// Average pooling (kernel = stride, no padding) through oneDNN, as ResEnc's strided skip path uses.
public final class AveragePoolingKernel: @unchecked Sendable {
    let primitive: DNNLPrimitive
    let context: DNNLContext
    public let destinationDesc: dnnl_memory_desc_t

    public init(context: DNNLContext, source: dnnl_memory_desc_t, inputShape: [Int], window: [Int]) throws {
        self.context = context
        let outputShape = Array(inputShape.prefix(2)) + zip(inputShape.dropFirst(2), window).map { $0 / $1 }
        var src = source
        var dst = try makeDesc(outputShape, tag: dnnl_format_tag_any)
        var desc = dnnl_pooling_desc_t()
        let zeros = dnnlDims(window.map { _ in 0 })
        try dnnlCheck(dnnl_pooling_forward_desc_init(&desc, dnnl_forward_inference, dnnl_pooling_avg_include_padding, &src, &dst,
                                                     dnnlDims(window), dnnlDims(window), zeros, zeros),
                      "dnnl_pooling_forward_desc_init")
        var pd: dnnl_primitive_desc_t?
        try dnnlCheck(dnnl_primitive_desc_create(&pd, &desc, nil, context.engine, nil), "dnnl_primitive_desc_create(pooling)")
        primitive = try DNNLPrimitive(descriptor: pd!, name: "pooling")
        destinationDesc = primitive.queryDesc(dnnl_query_dst_md)
    }

    public func makeDestination() throws -> DNNLMemory { try DNNLMemory(context: context, desc: destinationDesc) }

    public func run(source: DNNLMemory, destination: DNNLMemory) throws {
        try context.execute(primitive, [(nnseg_dnnl_arg_src, source), (nnseg_dnnl_arg_dst, destination)])
    }
}

/// Elementwise `a = LeakyReLU(a + b)` in place (ResEnc's residual join). Both memories must share one
/// layout; block-padding lanes are zero in both and stay zero.
public enum ResidualAddKernel {
    public static func apply(_ a: DNNLMemory, adding b: DNNLMemory, leakyReLUSlope: Float) throws {
        var da = a.desc, db = b.desc
        precondition(dnnl_memory_desc_equal(&da, &db) != 0, "residual operands must share a layout")
        let count = a.byteSize / 4
        let pa = a.pointer, pb = b.pointer
        for i in 0..<count {
            let v = pa[i] + pb[i]
            pa[i] = v < 0 ? v * leakyReLUSlope : v
        }
    }
}

extension DNNLMemory {
    /// The same logical tensor in another layout (a copy; `self` when the layout already matches).
    public func converted(to desc: dnnl_memory_desc_t) throws -> DNNLMemory {
        var mine = self.desc, theirs = desc
        if dnnl_memory_desc_equal(&mine, &theirs) != 0 { return self }
        let out = try DNNLMemory(context: context, desc: desc)
        try reorder(from: self, to: out)
        return out
    }

    /// Copies `source` (same logical shape, any layout) into this memory.
    public func assign(from source: DNNLMemory) throws {
        var mine = desc, theirs = source.desc
        if dnnl_memory_desc_equal(&mine, &theirs) != 0 {
            pointer.update(from: source.pointer, count: byteSize / 4)
        } else {
            try reorder(from: source, to: self)
        }
    }

    public func sameLayout(asDesc other: dnnl_memory_desc_t) -> Bool { DNNLLayout.same(desc, other) }

    public func sameLayout(as other: DNNLMemory) -> Bool { DNNLLayout.same(desc, other.desc) }
}

/// Average pooling (kernel = stride, no padding) for training: forward and backward primitives from
/// `any` layouts (backward with the forward as hint). ResEnc's strided identity path.
public final class TrainingPooling: @unchecked Sendable {
    let forward: DNNLPrimitive
    let backward: DNNLPrimitive
    let context: DNNLContext
    public let inputShape: [Int]
    public let outputShape: [Int]
    public let sourceDesc: dnnl_memory_desc_t
    public let destinationDesc: dnnl_memory_desc_t
    public let diffDestinationDesc: dnnl_memory_desc_t
    public let diffSourceDesc: dnnl_memory_desc_t

    public init(context: DNNLContext, source: dnnl_memory_desc_t, inputShape: [Int], window: [Int]) throws {
        self.context = context
        self.inputShape = inputShape
        outputShape = Array(inputShape.prefix(2)) + zip(inputShape.dropFirst(2), window).map { $0 / $1 }
        var src = source
        var dst = try makeDesc(outputShape, tag: dnnl_format_tag_any)
        let zeros = dnnlDims(window.map { _ in 0 }), w = dnnlDims(window)
        var desc = dnnl_pooling_desc_t()
        try dnnlCheck(dnnl_pooling_forward_desc_init(&desc, dnnl_forward_training, dnnl_pooling_avg_include_padding, &src, &dst, w, w, zeros, zeros),
                      "dnnl_pooling_forward_desc_init(training)")
        var pd: dnnl_primitive_desc_t?
        try dnnlCheck(dnnl_primitive_desc_create(&pd, &desc, nil, context.engine, nil), "dnnl_primitive_desc_create(pooling forward)")
        forward = try DNNLPrimitive(descriptor: pd!, name: "pooling forward")
        sourceDesc = forward.queryDesc(dnnl_query_src_md)
        destinationDesc = forward.queryDesc(dnnl_query_dst_md)
        var diffSrc = try makeDesc(inputShape, tag: dnnl_format_tag_any), diffDst = try makeDesc(outputShape, tag: dnnl_format_tag_any)
        var bdesc = dnnl_pooling_desc_t()
        try dnnlCheck(dnnl_pooling_backward_desc_init(&bdesc, dnnl_pooling_avg_include_padding, &diffSrc, &diffDst, w, w, zeros, zeros),
                      "dnnl_pooling_backward_desc_init")
        var bpd: dnnl_primitive_desc_t?
        try dnnlCheck(dnnl_primitive_desc_create(&bpd, &bdesc, nil, context.engine, forward.descriptor), "dnnl_primitive_desc_create(pooling backward)")
        backward = try DNNLPrimitive(descriptor: bpd!, name: "pooling backward")
        diffDestinationDesc = backward.queryDesc(dnnl_query_diff_dst_md)
        diffSourceDesc = backward.queryDesc(dnnl_query_diff_src_md)
    }

    public var implementations: [String] { [forward.implementation, backward.implementation] }

    public func runForward(source: DNNLMemory, destination: DNNLMemory) throws {
        try context.execute(forward, [(nnseg_dnnl_arg_src, source), (nnseg_dnnl_arg_dst, destination)])
    }

    public func runBackward(diffDestination: DNNLMemory, diffSource: DNNLMemory) throws {
        try context.execute(backward, [(nnseg_dnnl_arg_diff_dst, diffDestination), (nnseg_dnnl_arg_diff_src, diffSource)])
    }
}
