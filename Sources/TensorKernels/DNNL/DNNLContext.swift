import CDNNL

/// A failed oneDNN call, naming the call and status (the one choke point for oneDNN errors).
public struct DNNLError: Error, CustomStringConvertible {
    public let call: String
    public let status: String
    public var description: String { "DNNL_FAILED: oneDNN \(call) failed: \(status)" }
}

@inline(__always)
func dnnlCheck(_ status: dnnl_status_t, _ call: @autoclosure () -> String) throws {
    guard status == dnnl_success else {
        let name: String
        switch status {
        case dnnl_out_of_memory: name = "out of memory"
        case dnnl_invalid_arguments: name = "invalid arguments"
        case dnnl_unimplemented: name = "unimplemented"
        case dnnl_iterator_ends: name = "iterator ends"
        case dnnl_runtime_error: name = "runtime error"
        case dnnl_not_required: name = "not required"
        default: name = "status \(status.rawValue)"
        }
        throw DNNLError(call: call(), status: name)
    }
}

/// A oneDNN CPU engine and stream. Primitives and memories are created against one context.
public final class DNNLContext: @unchecked Sendable {
    let engine: dnnl_engine_t
    let stream: dnnl_stream_t

    public init() throws {
        var e: dnnl_engine_t?
        try dnnlCheck(dnnl_engine_create(&e, dnnl_cpu, 0), "dnnl_engine_create")
        var s: dnnl_stream_t?
        try dnnlCheck(dnnl_stream_create(&s, e, UInt32(dnnl_stream_default_flags.rawValue)), "dnnl_stream_create")
        engine = e!
        stream = s!
    }

    deinit {
        dnnl_stream_destroy(stream)
        dnnl_engine_destroy(engine)
    }

    /// Runs a primitive with (argument, memory) pairs and waits for it.
    func execute(_ primitive: DNNLPrimitive, _ arguments: [(Int32, DNNLMemory)]) throws {
        let args = arguments.map { dnnl_exec_arg_t(arg: $0.0, memory: $0.1.handle) }
        try args.withUnsafeBufferPointer { buffer in
            try dnnlCheck(dnnl_primitive_execute(primitive.handle, stream, Int32(buffer.count), buffer.baseAddress),
                          "dnnl_primitive_execute(\(primitive.name))")
        }
        try dnnlCheck(dnnl_stream_wait(stream), "dnnl_stream_wait")
    }

    /// The instruction set oneDNN dispatches to, e.g. "avx512_core".
    public static var effectiveISA: String {
        switch dnnl_get_effective_cpu_isa() {
        case dnnl_cpu_isa_sse41: return "sse41"
        case dnnl_cpu_isa_avx: return "avx"
        case dnnl_cpu_isa_avx2: return "avx2"
        case dnnl_cpu_isa_avx512_core: return "avx512_core"
        case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni"
        case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16"
        case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx"
        default: return "isa \(dnnl_get_effective_cpu_isa().rawValue)"
        }
    }
}

/// A primitive and its descriptor; destroyed with the object.
final class DNNLPrimitive {
    let handle: dnnl_primitive_t
    let descriptor: dnnl_primitive_desc_t
    let name: String

    /// Takes ownership of `descriptor`.
    init(descriptor: dnnl_primitive_desc_t, name: String) throws {
        var p: dnnl_primitive_t?
        do {
            try dnnlCheck(dnnl_primitive_create(&p, descriptor), "dnnl_primitive_create(\(name))")
        } catch {
            dnnl_primitive_desc_destroy(descriptor)
            throw error
        }
        handle = p!
        self.descriptor = descriptor
        self.name = name
    }

    deinit {
        dnnl_primitive_destroy(handle)
        dnnl_primitive_desc_destroy(descriptor)
    }

    func queryDesc(_ what: dnnl_query_t, index: Int32 = 0) -> dnnl_memory_desc_t {
        dnnl_primitive_desc_query_md(descriptor, what, index).pointee
    }

    /// The implementation oneDNN chose, e.g. "jit:avx512_core" ("ref" means the slow reference path).
    var implementation: String {
        var info: UnsafePointer<CChar>?
        _ = dnnl_primitive_desc_query(descriptor, dnnl_query_impl_info_str, 0, &info)
        return info.map { String(cString: $0) } ?? "?"
    }
}

/// A oneDNN memory object (its own allocation) with its descriptor.
/// oneDNN's memory descriptor, named here so that layers above use oneDNN only through this module.
public typealias DNNLMemoryDescriptor = dnnl_memory_desc_t

public final class DNNLMemory: @unchecked Sendable {
    let handle: dnnl_memory_t
    public let desc: dnnl_memory_desc_t
    let context: DNNLContext
    /// The memory whose buffer this one views (kept alive), or nil when the buffer is its own.
    let owner: AnyObject?

    public init(context: DNNLContext, desc: dnnl_memory_desc_t) throws {
        var d = desc
        var m: dnnl_memory_t?
        try dnnlCheck(dnnl_memory_create(&m, &d, context.engine, nnseg_dnnl_memory_allocate()), "dnnl_memory_create")
        handle = m!
        self.desc = desc
        self.context = context
        owner = nil
    }

    /// A memory over a buffer owned by `owner`.
    init(context: DNNLContext, desc: dnnl_memory_desc_t, handle buffer: UnsafeMutableRawPointer, owner: AnyObject) throws {
        var d = desc
        var m: dnnl_memory_t?
        try dnnlCheck(dnnl_memory_create(&m, &d, context.engine, buffer), "dnnl_memory_create(view)")
        handle = m!
        self.desc = desc
        self.context = context
        self.owner = owner
    }

    deinit { dnnl_memory_destroy(handle) }

    var pointer: UnsafeMutablePointer<Float> {
        var raw: UnsafeMutableRawPointer?
        dnnl_memory_get_data_handle(handle, &raw)
        return raw!.assumingMemoryBound(to: Float.self)
    }

    /// Bytes, including any block padding.
    public var byteSize: Int { DNNLLayout.byteSize(desc) }

    /// Logical dimensions.
    public var dims: [Int] { DNNLLayout.dims(desc) }

    /// A memory in the plain (row-major) layout for `shape`.
    public static func plain(_ context: DNNLContext, shape: [Int]) throws -> DNNLMemory {
        try DNNLMemory(context: context, desc: DNNLLayout.plain(shape))
    }

    /// Raw float storage of at least `bytes` bytes (a scratch buffer that views in other layouts are laid over).
    static func scratch(_ context: DNNLContext, bytes: Int) throws -> DNNLMemory {
        try plain(context, shape: [(bytes + 3) / 4])
    }

    /// Copies a plain tensor in, converting to this memory's layout.
    public func write(_ tensor: Tensor) throws {
        precondition(tensor.shape == dims, "tensor shape \(tensor.shape) vs memory \(dims)")
        if isPlain {
            tensor.data.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: tensor.count) }
            return
        }
        // Reorder straight from the tensor's storage (no staging copy).
        let plainDesc = try DNNLLayout.plain(tensor.shape)
        try tensor.data.withUnsafeBufferPointer { buffer in
            // oneDNN only reads a reorder's source.
            let view = try DNNLMemory(context: context, desc: plainDesc, handle: UnsafeMutableRawPointer(mutating: buffer.baseAddress!), owner: self)
            try reorder(from: view, to: self)
        }
    }

    /// Reads the contents as a plain tensor.
    public func read() throws -> Tensor {
        let shape = dims
        if isPlain {
            return Tensor(shape: shape, data: Array(UnsafeBufferPointer(start: pointer, count: shape.reduce(1, *))))
        }
        // Reorder straight into the result's storage (no staging copy).
        var out = Tensor(zeros: shape)
        let plainDesc = try DNNLLayout.plain(shape)
        try out.data.withUnsafeMutableBufferPointer { buffer in
            let view = try DNNLMemory(context: context, desc: plainDesc, handle: UnsafeMutableRawPointer(buffer.baseAddress!), owner: self)
            try reorder(from: self, to: view)
        }
        return out
    }

    /// True when the layout is the dense row-major one.
    public var isPlain: Bool { DNNLLayout.isPlain(desc) }
}

/// Reorders (converts layout) between two memories of the same logical shape.
func reorder(from source: DNNLMemory, to destination: DNNLMemory) throws {
    var s = source.desc, d = destination.desc
    var pd: dnnl_primitive_desc_t?
    try dnnlCheck(dnnl_reorder_primitive_desc_create(&pd, &s, source.context.engine, &d, destination.context.engine, nil),
                  "dnnl_reorder_primitive_desc_create")
    let primitive = try DNNLPrimitive(descriptor: pd!, name: "reorder")
    try source.context.execute(primitive, [(nnseg_dnnl_arg_from, source), (nnseg_dnnl_arg_to, destination)])
}

func plainTag(rank: Int) -> dnnl_format_tag_t {
    switch rank {
    case 1: return dnnl_a
    case 2: return dnnl_ab
    case 3: return dnnl_abc
    case 4: return dnnl_abcd
    case 5: return dnnl_abcde
    default: return dnnl_abcdef
    }
}

func makeDesc(_ dims: [Int], tag: dnnl_format_tag_t, type: dnnl_data_type_t = dnnl_f32) throws -> dnnl_memory_desc_t {
    var md = dnnl_memory_desc_t()
    let d = dims.map { Int64($0) }
    try dnnlCheck(dnnl_memory_desc_init_by_tag(&md, Int32(dims.count), d, type, tag), "dnnl_memory_desc_init_by_tag(\(dims))")
    return md
}

/// A `dnnl_dims_t` argument (12 int64 values) from an array, zero-filled.
func dnnlDims(_ values: [Int]) -> [Int64] {
    values.map { Int64($0) } + [Int64](repeating: 0, count: 12 - values.count)
}

/// Layout questions about memory descriptors, for planning buffers before any is allocated.
public enum DNNLLayout {
    /// Bytes a memory with this descriptor takes, including any block padding.
    public static func byteSize(_ desc: dnnl_memory_desc_t) -> Int {
        var d = desc
        return dnnl_memory_desc_get_size(&d)
    }

    /// The same layout holding float32 values (of a bf16 descriptor: what the float32 kernels around it use).
    public static func float32(_ desc: dnnl_memory_desc_t) -> dnnl_memory_desc_t { asFloat32(desc) }

    public static func same(_ a: dnnl_memory_desc_t, _ b: dnnl_memory_desc_t) -> Bool {
        var x = a, y = b
        return dnnl_memory_desc_equal(&x, &y) != 0
    }

    /// True when the layout is the dense row-major one.
    /// Logical dimensions.
    public static func dims(_ desc: dnnl_memory_desc_t) -> [Int] {
        withUnsafeBytes(of: desc.dims) { Array($0.bindMemory(to: Int64.self).prefix(Int(desc.ndims))).map { Int($0) } }
    }

    public static func isPlain(_ desc: dnnl_memory_desc_t) -> Bool {
        guard let plain = try? Self.plain(dims(desc)) else { return false }
        return same(desc, plain)
    }

    public static func plain(_ shape: [Int]) throws -> dnnl_memory_desc_t { try makeDesc(shape, tag: plainTag(rank: shape.count)) }

    /// Channels in blocks of 16 or 8 (`nCdhw16c` / `nChw16c`, `nCdhw8c` / `nChw8c`), the layouts oneDNN's AVX-512 and
    /// AVX2 convolutions pick.
    public static func channelBlocked(_ shape: [Int], block: Int) throws -> dnnl_memory_desc_t {
        precondition(block == 8 || block == 16, "channel blocks of 8 or 16")
        let tag = shape.count == 5 ? (block == 16 ? dnnl_nCdhw16c : dnnl_nCdhw8c) : (block == 16 ? dnnl_nChw16c : dnnl_nChw8c)
        return try makeDesc(shape, tag: tag)
    }
}

/// One allocation holding many memories at planned offsets: memories whose lifetimes never overlap share
/// bytes (a liveness-planned workspace). The memories keep the arena alive.
public final class DNNLArena: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    public let byteCount: Int
    /// Offsets are multiples of this (a cache line; oneDNN wants 64-byte aligned buffers).
    public static let alignment = 64

    public init(byteCount: Int) {
        self.byteCount = byteCount
        base = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, Self.alignment), alignment: 4096)
    }

    deinit { base.deallocate() }

    /// A memory with `desc` over `byteSize(desc)` bytes at `offset`.
    public func memory(_ context: DNNLContext, desc: dnnl_memory_desc_t, offset: Int) throws -> DNNLMemory {
        precondition(offset % Self.alignment == 0 && offset + DNNLLayout.byteSize(desc) <= byteCount, "arena slot out of range")
        return try DNNLMemory(context: context, desc: desc, handle: base + offset, owner: self)
    }

    /// Offsets for buffers of `sizes` bytes, each live over the closed step interval `lifetimes[i]`, such
    /// that no two buffers live at a common step overlap; and the arena size they need. Greedy, largest
    /// first, each at the lowest offset that fits between the already placed buffers it coexists with.
    public static func plan(sizes: [Int], lifetimes: [ClosedRange<Int>]) -> (offsets: [Int], byteCount: Int) {
        precondition(sizes.count == lifetimes.count)
        let aligned = sizes.map { ($0 + alignment - 1) / alignment * alignment }
        let order = aligned.indices.sorted { aligned[$0] != aligned[$1] ? aligned[$0] > aligned[$1] : $0 < $1 }
        var offsets = [Int](repeating: 0, count: sizes.count)
        var placed: [Int] = []
        var total = 0
        for i in order {
            let busy = placed.filter { lifetimes[$0].overlaps(lifetimes[i]) }.map { (offsets[$0], offsets[$0] + aligned[$0]) }.sorted { $0.0 < $1.0 }
            var candidate = 0
            for (start, end) in busy {
                if candidate + aligned[i] <= start { break }
                candidate = max(candidate, end)
            }
            offsets[i] = candidate
            total = max(total, candidate + aligned[i])
            placed.append(i)
        }
        return (offsets, total)
    }
}
