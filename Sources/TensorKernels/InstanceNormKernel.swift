import CDNNL
import Dispatch

/// Instance normalisation fused with LeakyReLU, in place, on the layout the convolution wrote
/// (plain or channel-blocked `nC…8c`/`nC…16c`), so no reorder is needed between conv and norm.
///
/// Per sample and channel: `y = (x − mean) / sqrt(var + eps) · γ + β` with the biased variance over all
/// spatial voxels (PyTorch InstanceNorm, eval, no running stats), then `y < 0 ? slope · y : y`.
public enum InstanceNormKernel {
    /// How channels are laid out in a memory: `block` lanes interleaved (1 for plain).
    struct ChannelLayout {
        let block: Int
        let sampleStride: Int
        let blockStride: Int
        let volume: Int
    }

    static func layout(of memory: DNNLMemory) -> ChannelLayout? {
        let desc = memory.desc
        guard desc.format_kind == dnnl_blocked else { return nil }
        let dims = memory.dims
        let rank = dims.count
        let volume = dims.dropFirst(2).reduce(1, *)
        let blocking = desc.format_desc.blocking
        let strides = withUnsafeBytes(of: blocking.strides) { Array($0.bindMemory(to: Int64.self).prefix(rank)).map { Int($0) } }
        let innerBlocks = withUnsafeBytes(of: blocking.inner_blks) { Array($0.bindMemory(to: Int64.self).prefix(Int(blocking.inner_nblks))) }
        let innerIndices = withUnsafeBytes(of: blocking.inner_idxs) { Array($0.bindMemory(to: Int64.self).prefix(Int(blocking.inner_nblks))) }
        let block: Int
        switch innerBlocks.count {
        case 0: block = 1
        case 1 where innerIndices[0] == 1: block = Int(innerBlocks[0])
        default: return nil
        }
        // Spatial axes must be dense in row-major order, `block` elements apart.
        var expected = block
        for axis in stride(from: rank - 1, through: 2, by: -1) {
            guard strides[axis] == expected else { return nil }
            expected *= dims[axis]
        }
        return ChannelLayout(block: block, sampleStride: strides[0], blockStride: strides[1], volume: volume)
    }

    public static func apply(_ memory: DNNLMemory, gamma: [Float], beta: [Float], epsilon: Float = 1e-5,
                             leakyReLUSlope: Float? = 0.01) throws {
        let dims = memory.dims
        let channels = dims[1]
        precondition(gamma.count == channels && beta.count == channels)
        guard let layout = layout(of: memory) else {
            // Unusual layout: normalise a plain copy and write it back.
            let plain = try memory.read()
            try memory.write(ReferenceOps.instanceNorm(plain, gamma: gamma, beta: beta, epsilon: epsilon, leakyReLUSlope: leakyReLUSlope))
            return
        }
        nonisolated(unsafe) let base = memory.pointer
        let blocks = (channels + layout.block - 1) / layout.block
        let work = dims[0] * blocks
        DispatchQueue.concurrentPerform(iterations: work) { item in
            let n = item / blocks, cb = item % blocks
            let pointer = base + n * layout.sampleStride + cb * layout.blockStride
            let firstChannel = cb * layout.block
            let lanes = min(layout.block, channels - firstChannel)
            switch layout.block {
            case 16: normalizeBlock16(pointer, volume: layout.volume, lanes: lanes, firstChannel: firstChannel,
                                      gamma: gamma, beta: beta, epsilon: epsilon, slope: leakyReLUSlope)
            case 8: normalizeBlock8(pointer, volume: layout.volume, lanes: lanes, firstChannel: firstChannel,
                                    gamma: gamma, beta: beta, epsilon: epsilon, slope: leakyReLUSlope)
            default:
                for lane in 0..<lanes {
                    normalizeStrided(pointer + lane, volume: layout.volume, step: layout.block, gamma: gamma[firstChannel + lane],
                                     beta: beta[firstChannel + lane], epsilon: epsilon, slope: leakyReLUSlope)
                }
            }
        }
    }

    /// One channel whose voxels are `step` floats apart.
    static func normalizeStrided(_ p: UnsafeMutablePointer<Float>, volume: Int, step: Int, gamma: Float, beta: Float,
                                 epsilon: Float, slope: Float?) {
        var sum = 0.0
        for i in 0..<volume { sum += Double(p[i &* step]) }
        let mean = sum / Double(volume)
        var squares = 0.0
        for i in 0..<volume { let d = Double(p[i &* step]) - mean; squares += d * d }
        let scale = Float(Double(gamma) / (squares / Double(volume) + Double(epsilon)).squareRoot())
        let shift = beta - Float(mean) * scale
        let s = slope ?? 1
        for i in 0..<volume {
            let v = p[i &* step] * scale + shift
            p[i &* step] = v < 0 ? v * s : v
        }
    }

    static func normalizeBlock16(_ p: UnsafeMutablePointer<Float>, volume: Int, lanes: Int, firstChannel: Int,
                                 gamma: [Float], beta: [Float], epsilon: Float, slope: Float?) {
        normalizeBlock(p, volume: volume, lanes: lanes, firstChannel: firstChannel, gamma: gamma, beta: beta,
                       epsilon: epsilon, slope: slope, as: SIMD16<Float>.self, wide: SIMD16<Double>.self)
    }

    static func normalizeBlock8(_ p: UnsafeMutablePointer<Float>, volume: Int, lanes: Int, firstChannel: Int,
                                gamma: [Float], beta: [Float], epsilon: Float, slope: Float?) {
        normalizeBlock(p, volume: volume, lanes: lanes, firstChannel: firstChannel, gamma: gamma, beta: beta,
                       epsilon: epsilon, slope: slope, as: SIMD8<Float>.self, wide: SIMD8<Double>.self)
    }

    /// Lanes of one channel block, vectorised across channels. Sums run in float over chunks of 256
    /// voxels and are accumulated in double, so the statistics stay exact to float rounding.
    @inline(__always)
    static func normalizeBlock<V: SIMD, W: SIMD>(_ p: UnsafeMutablePointer<Float>, volume: Int, lanes: Int, firstChannel: Int,
                                                 gamma: [Float], beta: [Float], epsilon: Float, slope: Float?,
                                                 as _: V.Type, wide _: W.Type) where V.Scalar == Float, W.Scalar == Double {
        let width = V.scalarCount
        let raw = UnsafeMutableRawPointer(p)
        @inline(__always) func load(_ i: Int) -> V { raw.loadUnaligned(fromByteOffset: i &* width &* 4, as: V.self) }
        @inline(__always) func widen(_ v: V) -> W { var w = W(); for l in 0..<width { w[l] = Double(v[l]) }; return w }

        var total = W()
        var i = 0
        while i < volume {
            let end = min(i + 256, volume)
            var partial = V()
            while i < end { partial += load(i); i &+= 1 }
            total += widen(partial)
        }
        var mean = V()
        for l in 0..<width { mean[l] = Float(total[l] / Double(volume)) }
        var squares = W()
        i = 0
        while i < volume {
            let end = min(i + 256, volume)
            var partial = V()
            while i < end { let d = load(i) - mean; partial += d * d; i &+= 1 }
            squares += widen(partial)
        }
        var scale = V(), shift = V()
        for l in 0..<lanes {
            let variance = squares[l] / Double(volume)
            let s = Float(Double(gamma[firstChannel + l]) / (variance + Double(epsilon)).squareRoot())
            scale[l] = s
            shift[l] = beta[firstChannel + l] - mean[l] * s
        }
        // Padding lanes (channels ≥ C) get scale 0 and shift 0, so they stay zero.
        let negative = V(repeating: slope ?? 1)
        for j in 0..<volume {
            let v = load(j) * scale + shift
            let y = v.replacing(with: v * negative, where: v .< V())
            raw.storeBytes(of: y, toByteOffset: j &* width &* 4, as: V.self)
        }
    }
}
