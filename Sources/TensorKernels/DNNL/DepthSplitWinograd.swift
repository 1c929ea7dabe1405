import CDNNL
import Dispatch
import Foundation

/// A 3×3×3 convolution with stride 1 and padding 1 in training, computed as one 2-D Winograd convolution over the depth
/// slices (#25). oneDNN 2.6 runs its direct 3-D kernels at the CPU's FMA peak, so on AVX-512 without AMX they cannot get
/// faster; its 2-D Winograd kernel (`jit_wino_4x3`, F(4×4, 3×3), float32 on AVX-512) needs 4× fewer multiplications per
/// output. With the three depth taps stacked as output channels (`oc' = kd·oc + o`),
///
///     y[d] = Σ_kd W_kd ⋆ x[d + kd − 1]   (⋆: the 2-D 3×3 convolution of one depth slice)
///
/// becomes one 2-D convolution of every slice of the batch (`N·D` images) to `3·oc` channels, then a sum of each output
/// slice's three shifted neighbours. Backward, the output gradient is spread back into the same stacked form (each
/// depth tap's block shifted by `1 − kd`, zero where it falls outside), from which the 2-D backward-data and
/// backward-weights primitives give the input gradient and the stacked weight gradient. The bias rides on the centre
/// tap's block (the others' bias is zero), whose bias gradient is the 3-D one.
///
/// A batch whose stacked buffer would pass the scratch's bound is run in chunks of whole samples (the largest divisor
/// of the batch that fits; forward and backward-data per chunk, the weight and bias gradients summed over the chunks),
/// so a 128³ CT patch at batch 2 takes the path with a bounded buffer instead of keeping the direct kernels.
///
/// The network's tensors stay in oneDNN's `nCdhw16c`; the 2-D kernels want `nChw16c` over `N·D` slices, so the input
/// (and the input gradient) are regrouped by whole `H·W·16` planes. The arithmetic differs from the direct kernel's
/// by Winograd's rounding (relative ~1e-6 on a layer, far below bf16's), which is why this is for training only:
/// inference keeps the direct kernels that match nnU-Net's predictions.
final class DepthSplitWinograd: @unchecked Sendable {
    let context: DNNLContext
    let batch: Int, inChannels: Int, outChannels: Int, depth: Int
    /// Samples per pass of the 2-D primitives (a divisor of `batch`).
    let chunk: Int
    /// Floats in one slice of one channel block (`H·W·16`).
    let plane: Int
    let forward: DNNLPrimitive
    let backwardData: DNNLPrimitive?
    let backwardWeights: DNNLPrimitive
    /// The slices of one chunk's input (and of its gradient) as `chunk·D` images, `nChw16c`.
    let slicesDesc: dnnl_memory_desc_t
    /// One chunk's stacked output (forward) and output gradient (backward): `chunk·D` images of `3·oc` channels, `nChw16c`.
    let stackedDesc: dnnl_memory_desc_t
    let userWeights: DNNLMemory          // plain (3·oc, ic, 3, 3)
    let forwardWeights: DNNLMemory
    let dataWeights: DNNLMemory?
    let diffWeights: DNNLMemory
    let userDiffWeights: DNNLMemory      // plain (3·oc, ic, 3, 3)
    let bias: DNNLMemory                 // 3·oc, the centre block holds the layer's bias
    let diffBias: DNNLMemory
    let scratch: DepthSplitScratch

    /// Whether the path may be used at all; `NNSEG_DNNL_WINOGRAD=0` turns it off (benchmarks time both).
    static let enabled = ProcessInfo.processInfo.environment["NNSEG_DNNL_WINOGRAD"] != "0"

    /// nil where the shape does not qualify, oneDNN has no Winograd kernel here (no AVX-512, channels not in 16s), or
    /// not even one sample's stacked buffer fits the scratch's bound.
    static func make(context: DNNLContext, inputShape: [Int], outputChannels: Int, needsDataGradient: Bool,
                     scratch: DepthSplitScratch) -> DepthSplitWinograd? {
        guard inputShape.count == 5, inputShape[1] % 16 == 0, outputChannels % 16 == 0 else { return nil }
        let sampleBytes = inputShape[2] * 3 * outputChannels * inputShape[3] * inputShape[4] * 4
        guard let chunk = (1...inputShape[0]).reversed().first(where: {
            inputShape[0] % $0 == 0 && $0 * sampleBytes <= scratch.maximumStackedBytes
        }) else { return nil }
        return try? DepthSplitWinograd(context: context, inputShape: inputShape, outputChannels: outputChannels,
                                       needsDataGradient: needsDataGradient, scratch: scratch, chunk: chunk)
    }

    private init(context: DNNLContext, inputShape: [Int], outputChannels: Int, needsDataGradient: Bool,
                 scratch: DepthSplitScratch, chunk: Int) throws {
        self.context = context
        self.scratch = scratch
        self.chunk = chunk
        batch = inputShape[0]
        inChannels = inputShape[1]
        outChannels = outputChannels
        depth = inputShape[2]
        let height = inputShape[3], width = inputShape[4]
        plane = height * width * 16
        let images = chunk * depth, stacked = 3 * outputChannels
        slicesDesc = try makeDesc([images, inChannels, height, width], tag: dnnl_nChw16c)
        stackedDesc = try makeDesc([images, stacked, height, width], tag: dnnl_nChw16c)
        let weightDims = [stacked, inChannels, 3, 3]
        var src = slicesDesc, dst = stackedDesc
        var w = try makeDesc(weightDims, tag: dnnl_format_tag_any)
        var b = try makeDesc([stacked], tag: dnnl_a)
        let strides = dnnlDims([1, 1]), padding = dnnlDims([1, 1])
        let winograd = dnnl_convolution_winograd

        var forwardDesc = dnnl_convolution_desc_t()
        try dnnlCheck(dnnl_convolution_forward_desc_init(&forwardDesc, dnnl_forward_training, winograd, &src, &w, &b, &dst, strides,
                                                         padding, padding), "dnnl_convolution_forward_desc_init(winograd)")
        var pd: dnnl_primitive_desc_t?
        try dnnlCheck(dnnl_primitive_desc_create(&pd, &forwardDesc, nil, context.engine, nil), "dnnl_primitive_desc_create(winograd forward)")
        forward = try DNNLPrimitive(descriptor: pd!, name: "depth-split winograd forward")
        let hint = forward.descriptor

        if needsDataGradient {
            var diffSrc = slicesDesc, diffDst = stackedDesc, wd = try makeDesc(weightDims, tag: dnnl_format_tag_any)
            var desc = dnnl_convolution_desc_t()
            try dnnlCheck(dnnl_convolution_backward_data_desc_init(&desc, winograd, &diffSrc, &wd, &diffDst, strides, padding, padding),
                          "dnnl_convolution_backward_data_desc_init(winograd)")
            var p: dnnl_primitive_desc_t?
            try dnnlCheck(dnnl_primitive_desc_create(&p, &desc, nil, context.engine, hint), "dnnl_primitive_desc_create(winograd backward data)")
            backwardData = try DNNLPrimitive(descriptor: p!, name: "depth-split winograd backward data")
        } else {
            backwardData = nil
        }
        var s = slicesDesc, diffDst = stackedDesc, dw = try makeDesc(weightDims, tag: dnnl_format_tag_any), db = b
        var weightsDesc = dnnl_convolution_desc_t()
        try dnnlCheck(dnnl_convolution_backward_weights_desc_init(&weightsDesc, winograd, &s, &dw, &db, &diffDst, strides, padding, padding),
                      "dnnl_convolution_backward_weights_desc_init(winograd)")
        var p: dnnl_primitive_desc_t?
        try dnnlCheck(dnnl_primitive_desc_create(&p, &weightsDesc, nil, context.engine, hint), "dnnl_primitive_desc_create(winograd backward weights)")
        backwardWeights = try DNNLPrimitive(descriptor: p!, name: "depth-split winograd backward weights")
        for primitive in [forward, backwardData, backwardWeights].compactMap({ $0 }) {
            // Every primitive must be the Winograd kernel and read/write the planned layouts (no hidden reorders).
            guard primitive.implementation.contains("wino") else {
                throw DNNLError(call: "depth-split winograd", status: "oneDNN picked \(primitive.implementation)")
            }
        }
        let slices = slicesDesc, stackedLayout = stackedDesc
        let dataLayoutMatches = backwardData.map { DNNLLayout.same($0.queryDesc(dnnl_query_diff_src_md), slices) } ?? true
        guard DNNLLayout.same(forward.queryDesc(dnnl_query_src_md), slices),
              DNNLLayout.same(forward.queryDesc(dnnl_query_dst_md), stackedLayout),
              DNNLLayout.same(backwardWeights.queryDesc(dnnl_query_diff_dst_md), stackedLayout), dataLayoutMatches
        else { throw DNNLError(call: "depth-split winograd", status: "unexpected layouts") }

        let userDesc = try makeDesc(weightDims, tag: dnnl_oihw)
        userWeights = try DNNLMemory(context: context, desc: userDesc)
        userDiffWeights = try DNNLMemory(context: context, desc: userDesc)
        forwardWeights = try DNNLMemory(context: context, desc: forward.queryDesc(dnnl_query_weights_md))
        if let backwardData {
            let desc = backwardData.queryDesc(dnnl_query_weights_md)
            dataWeights = DNNLLayout.same(desc, forwardWeights.desc) ? forwardWeights : try DNNLMemory(context: context, desc: desc)
        } else {
            dataWeights = nil
        }
        diffWeights = try DNNLMemory(context: context, desc: backwardWeights.queryDesc(dnnl_query_diff_weights_md))
        bias = try DNNLMemory(context: context, desc: b)
        diffBias = try DNNLMemory(context: context, desc: b)
        memset(bias.pointer, 0, bias.byteSize)
        scratch.reserve(slicesBytes: DNNLLayout.byteSize(slicesDesc), stackedBytes: DNNLLayout.byteSize(stackedDesc))
    }

    var implementations: [String] {
        let passes = batch == chunk ? "" : " (\(batch / chunk) chunks of \(chunk))"
        return [forward.implementation, backwardData?.implementation, backwardWeights.implementation].compactMap { $0 }
            .map { "depth-split " + $0 + passes }
    }

    /// The chunks' first samples, and the offset of a sample in a network tensor of `channels` (`nCdhw16c`), in floats.
    private var chunkStarts: StrideTo<Int> { stride(from: 0, to: batch, by: chunk) }
    private func sampleOffset(_ n: Int, channels: Int) -> Int { n &* (channels / 16) &* depth &* plane }

    /// Index of 3-D weight `(o, i, kd, ·, ·)` and of its stacked 2-D place `(kd·oc + o, i, ·, ·)`, in floats.
    @inline(__always) func weightOffsets(_ o: Int, _ i: Int, _ kd: Int) -> (volume: Int, stacked: Int) {
        (((o &* inChannels &+ i) &* 3 &+ kd) &* 9, ((kd &* outChannels &+ o) &* inChannels &+ i) &* 9)
    }

    /// Loads PyTorch-layout 3-D weights `(oc, ic, 3, 3, 3)` and the bias.
    func loadWeights(_ weights: UnsafePointer<Float>, bias layerBias: UnsafePointer<Float>?) throws {
        let stacked = userWeights.pointer
        for o in 0..<outChannels {
            for i in 0..<inChannels {
                for kd in 0..<3 {
                    let (v, s) = weightOffsets(o, i, kd)
                    (stacked + s).update(from: weights + v, count: 9)
                }
            }
        }
        try reorder(from: userWeights, to: forwardWeights)
        if let dataWeights, dataWeights !== forwardWeights { try reorder(from: userWeights, to: dataWeights) }
        if let layerBias { (bias.pointer + outChannels).update(from: layerBias, count: outChannels) }
    }

    /// `source` and `destination` in `nCdhw16c`.
    func runForward(source: DNNLMemory, destination: DNNLMemory) throws {
        let (slices, stacked) = try scratch.views(slicesDesc, stackedDesc)
        scratch.stackedHolder = nil
        for n in chunkStarts {
            regroup(volume: source.pointer + sampleOffset(n, channels: inChannels), slices: slices.pointer, channels: inChannels, toSlices: true)
            try context.execute(forward, [(nnseg_dnnl_arg_src, slices), (nnseg_dnnl_arg_weights, forwardWeights),
                                          (nnseg_dnnl_arg_dst, stacked), (nnseg_dnnl_arg_bias, bias)])
            sumShifted(stacked: stacked.pointer, into: destination.pointer + sampleOffset(n, channels: outChannels))
        }
    }

    /// Adds the weight and bias gradients (`+=`, PyTorch layout) from the forward input and the output gradient.
    func runBackwardWeights(source: DNNLMemory, diffDestination: DNNLMemory, weightGradient: UnsafeMutablePointer<Float>,
                            biasGradient: UnsafeMutablePointer<Float>?) throws {
        let (slices, stacked) = try scratch.views(slicesDesc, stackedDesc)
        for n in chunkStarts {
            fillStacked(stacked.pointer, from: diffDestination, chunkStart: n)
            regroup(volume: source.pointer + sampleOffset(n, channels: inChannels), slices: slices.pointer, channels: inChannels, toSlices: true)
            try context.execute(backwardWeights, [(nnseg_dnnl_arg_src, slices), (nnseg_dnnl_arg_diff_dst, stacked),
                                                  (nnseg_dnnl_arg_diff_weights, diffWeights), (nnseg_dnnl_arg_diff_bias, diffBias)])
            try reorder(from: diffWeights, to: userDiffWeights)
            let g = userDiffWeights.pointer
            for o in 0..<outChannels {
                for i in 0..<inChannels {
                    for kd in 0..<3 {
                        let (v, s) = weightOffsets(o, i, kd)
                        for k in 0..<9 { weightGradient[v &+ k] += g[s &+ k] }
                    }
                }
            }
            if let biasGradient {
                let b = diffBias.pointer + outChannels
                for o in 0..<outChannels { biasGradient[o] += b[o] }
            }
        }
    }

    /// Writes the input gradient into `diffSource` (`nCdhw16c`).
    func runBackwardData(diffDestination: DNNLMemory, diffSource: DNNLMemory) throws {
        guard let backwardData, let dataWeights else { preconditionFailure("built without a data gradient") }
        let (slices, stacked) = try scratch.views(slicesDesc, stackedDesc)
        // Last chunk first: after the backward-weights pass the buffer still holds the last chunk's spread.
        for n in chunkStarts.reversed() {
            fillStacked(stacked.pointer, from: diffDestination, chunkStart: n)
            try context.execute(backwardData, [(nnseg_dnnl_arg_diff_dst, stacked), (nnseg_dnnl_arg_weights, dataWeights),
                                               (nnseg_dnnl_arg_diff_src, slices)])
            regroup(volume: diffSource.pointer + sampleOffset(n, channels: inChannels), slices: slices.pointer, channels: inChannels,
                    toSlices: false)
        }
    }

    /// The stacked output gradient of the chunk from sample `chunkStart`, unless the shared buffer already holds this
    /// layer's spread of that chunk of `diff` (backward weights and backward data of one layer read the same one).
    private func fillStacked(_ stacked: UnsafeMutablePointer<Float>, from diff: DNNLMemory, chunkStart: Int) {
        let holder = DepthSplitScratch.Holder(layer: ObjectIdentifier(self), diff: ObjectIdentifier(diff), chunkStart: chunkStart)
        if scratch.stackedHolder == holder { return }
        spreadShifted(diff: diff.pointer + sampleOffset(chunkStart, channels: outChannels), into: stacked)
        scratch.stackedHolder = holder
    }

    /// Copies between `nCdhw16c` (`(n, cb, d)` planes, from the chunk's first sample) and the slices' `nChw16c` over the
    /// chunk's `chunk·D` images (`(n, d, cb)` planes).
    private func regroup(volume: UnsafeMutablePointer<Float>, slices: UnsafeMutablePointer<Float>, channels: Int, toSlices: Bool) {
        let blocks = channels / 16, depth = depth, plane = plane
        nonisolated(unsafe) let (v, s) = (volume, slices)
        DispatchQueue.concurrentPerform(iterations: chunk * blocks * depth) { t in
            let n = t / (blocks * depth), cb = (t / depth) % blocks, d = t % depth
            let volumePlane = v + t &* plane, slicePlane = s + ((n &* depth &+ d) &* blocks &+ cb) &* plane
            if toSlices { slicePlane.update(from: volumePlane, count: plane) } else { volumePlane.update(from: slicePlane, count: plane) }
        }
    }

    /// `y[n, cb, d] = Σ_kd stacked[n·D + d + kd − 1, kd·ocb + cb]` over the taps inside the volume, for the chunk's
    /// samples (`destination` from its first).
    private func sumShifted(stacked: UnsafeMutablePointer<Float>, into destination: UnsafeMutablePointer<Float>) {
        let blocks = outChannels / 16, depth = depth, plane = plane
        nonisolated(unsafe) let (s, y) = (stacked, destination)
        DispatchQueue.concurrentPerform(iterations: chunk * blocks * depth) { t in
            let n = t / (blocks * depth), cb = (t / depth) % blocks, d = t % depth
            let out = y + t &* plane
            func tap(_ kd: Int) -> UnsafeMutablePointer<Float> { s + (((n &* depth &+ d &+ kd &- 1) &* 3 &+ kd) &* blocks &+ cb) &* plane }
            let centre = tap(1)
            switch (d > 0, d < depth - 1) {
            case (true, true):
                let before = tap(0), after = tap(2)
                var i = 0
                while i < plane { out[i] = before[i] + centre[i] + after[i]; i &+= 1 }
            case (true, false):
                let before = tap(0)
                var i = 0
                while i < plane { out[i] = before[i] + centre[i]; i &+= 1 }
            case (false, true):
                let after = tap(2)
                var i = 0
                while i < plane { out[i] = centre[i] + after[i]; i &+= 1 }
            case (false, false):
                out.update(from: centre, count: plane)
            }
        }
    }

    /// `stacked[n·D + s, kd·ocb + cb] = diff[n, cb, s − kd + 1]` (zero outside the volume): the gradient of each
    /// depth tap's block of the stacked output, for the chunk's samples (`diff` from its first).
    private func spreadShifted(diff: UnsafeMutablePointer<Float>, into stacked: UnsafeMutablePointer<Float>) {
        let blocks = outChannels / 16, depth = depth, plane = plane
        nonisolated(unsafe) let (g, s) = (diff, stacked)
        DispatchQueue.concurrentPerform(iterations: chunk * depth * 3 * blocks) { t in
            let n = t / (depth * 3 * blocks), slice = (t / (3 * blocks)) % depth, kd = (t / blocks) % 3, cb = t % blocks
            let target = s + t &* plane
            let d = slice - kd + 1
            if d >= 0, d < depth {
                target.update(from: g + ((n &* blocks &+ cb) &* depth &+ d) &* plane, count: plane)
            } else {
                target.update(repeating: 0, count: plane)
            }
        }
    }
}

/// The two buffers of the depth-split Winograd layers of one network (input slices, stacked output), as large as
/// the largest layer needs, allocated on first use. Not for concurrent use: the layers sharing one run one after another.
public final class DepthSplitScratch: @unchecked Sendable {
    let context: DNNLContext
    /// Largest stacked buffer (3× a chunk's output) the layers sharing this scratch may use; a layer runs its batch
    /// in chunks of samples to stay within it, and one whose single sample needs more keeps the direct kernels.
    public let maximumStackedBytes: Int
    private var slicesBytes = 0, stackedBytes = 0
    private var slices: DNNLMemory?, stacked: DNNLMemory?
    struct Holder: Equatable {
        let layer: ObjectIdentifier, diff: ObjectIdentifier, chunkStart: Int
    }
    /// Which layer's spread of which output gradient (and chunk of it) the stacked buffer holds (nil after a forward pass).
    var stackedHolder: Holder?

    /// `maximumStackedBytes`: 1 GiB by default (a 128³ patch with 32 channels is one sample per pass).
    public init(context: DNNLContext, maximumStackedBytes: Int = 1 << 30) {
        self.context = context
        self.maximumStackedBytes = maximumStackedBytes
    }

    /// Bytes held now (0 before the first pass through a depth-split layer).
    public var allocatedBytes: Int { (slices?.byteSize ?? 0) + (stacked?.byteSize ?? 0) }

    func reserve(slicesBytes: Int, stackedBytes: Int) {
        self.slicesBytes = max(self.slicesBytes, slicesBytes)
        self.stackedBytes = max(self.stackedBytes, stackedBytes)
    }

    /// Views of the two buffers in a layer's layouts.
    func views(_ slicesDesc: dnnl_memory_desc_t, _ stackedDesc: dnnl_memory_desc_t) throws -> (slices: DNNLMemory, stacked: DNNLMemory) {
        func buffer(_ current: DNNLMemory?, _ bytes: Int) throws -> DNNLMemory {
            if let current, current.byteSize >= bytes { return current }
            return try DNNLMemory.scratch(context, bytes: bytes)
        }
        let s = try buffer(slices, slicesBytes), t = try buffer(stacked, stackedBytes)
        if t !== stacked { stackedHolder = nil }
        slices = s
        stacked = t
        return (try DNNLMemory(context: context, desc: slicesDesc, sharing: s), try DNNLMemory(context: context, desc: stackedDesc, sharing: t))
    }
}
