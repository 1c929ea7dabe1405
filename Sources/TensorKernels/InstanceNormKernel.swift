import CDNNL
import Dispatch
import Foundation

/// Instance normalisation fused with LeakyReLU, in place, on the layout the convolution wrote
/// (plain or channel-blocked `nC…8c`/`nC…16c`), so no reorder is needed between conv and norm.
///
/// Per sample and channel: `y = (x − mean) / sqrt(var + eps) · γ + β` with the biased variance over all
/// spatial voxels (PyTorch InstanceNorm, eval, no running stats), then `y < 0 ? slope · y : y`.
public enum InstanceNormKernel {
    /// A run of channels whose voxels are `step` floats apart, starting `offset` floats into the buffer.
    /// `width` is the number of floats loaded and stored per voxel (≥ lanes; the extra ones are block
    /// padding that stays zero).
    struct ChannelGroup {
        let offset: Int
        let firstChannel: Int
        let lanes: Int
        let width: Int
        let step: Int
    }

    /// Channel groups for plain, channel-blocked (`nC…8c`/`16c`) and channels-last (`n…c`) layouts;
    /// nil for anything else.
    static func groups(of memory: DNNLMemory) -> (groups: [ChannelGroup], volume: Int)? {
        let desc = memory.desc
        guard desc.format_kind == dnnl_blocked else { return nil }
        let dims = memory.dims
        let rank = dims.count
        let channels = dims[1]
        let volume = dims.dropFirst(2).reduce(1, *)
        let blocking = desc.format_desc.blocking
        let strides = withUnsafeBytes(of: blocking.strides) { Array($0.bindMemory(to: Int64.self).prefix(rank)).map { Int($0) } }
        let innerBlocks = withUnsafeBytes(of: blocking.inner_blks) { Array($0.bindMemory(to: Int64.self).prefix(Int(blocking.inner_nblks))) }
        let innerIndices = withUnsafeBytes(of: blocking.inner_idxs) { Array($0.bindMemory(to: Int64.self).prefix(Int(blocking.inner_nblks))) }
        /// Spatial axes dense in row-major order with the innermost `step` floats apart.
        func spatialDense(step: Int) -> Bool {
            var expected = step
            for axis in stride(from: rank - 1, through: 2, by: -1) {
                guard strides[axis] == expected else { return false }
                expected *= dims[axis]
            }
            return true
        }
        var groups: [ChannelGroup] = []
        for n in 0..<dims[0] {
            let sample = n * strides[0]
            if innerBlocks.count == 1, innerIndices[0] == 1, spatialDense(step: Int(innerBlocks[0])) {
                let block = Int(innerBlocks[0])
                for first in stride(from: 0, to: channels, by: block) {
                    groups.append(ChannelGroup(offset: sample + (first / block) * strides[1], firstChannel: first,
                                               lanes: min(block, channels - first), width: block, step: block))
                }
            } else if innerBlocks.isEmpty, strides[1] == 1, rank > 2, spatialDense(step: strides[rank - 1]) {
                // Channels last: 16 (or 8) channels side by side per voxel, voxels `step` apart.
                let step = strides[rank - 1]
                var first = 0
                while first < channels {
                    let left = channels - first
                    let width = left >= 16 ? 16 : left >= 8 ? 8 : 1
                    groups.append(ChannelGroup(offset: sample + first, firstChannel: first, lanes: width, width: width, step: step))
                    first += width
                }
            } else if innerBlocks.isEmpty, spatialDense(step: 1) {
                for c in 0..<channels {
                    groups.append(ChannelGroup(offset: sample + c * strides[1], firstChannel: c, lanes: 1, width: 1, step: 1))
                }
            } else {
                return nil
            }
        }
        return (groups, volume)
    }

    public static func apply(_ memory: DNNLMemory, gamma: [Float], beta: [Float], epsilon: Float = 1e-5,
                             leakyReLUSlope: Float? = 0.01) throws {
        let channels = memory.dims[1]
        precondition(gamma.count == channels && beta.count == channels)
        guard let (groups, volume) = groups(of: memory) else {
            // Unusual layout: normalise a plain copy and write it back.
            let plain = try memory.read()
            try memory.write(ReferenceOps.instanceNorm(plain, gamma: gamma, beta: beta, epsilon: epsilon, leakyReLUSlope: leakyReLUSlope))
            return
        }
        nonisolated(unsafe) let base = memory.pointer
        if let last = channelsLast(of: memory) {
            for n in 0..<memory.dims[0] {
                normalizeChannelsLast(base + n * last.sampleStride, volume: volume, step: last.step, channels: channels,
                                      gamma: gamma, beta: beta, epsilon: epsilon, slope: leakyReLUSlope)
            }
            return
        }
        DispatchQueue.concurrentPerform(iterations: groups.count) { index in
            let g = groups[index]
            let pointer = base + g.offset
            if let sweep = ChannelGroupSweep(width: g.width, step: g.step, volume: volume) {
                let (mean, variance) = sweep.moments(pointer)
                var scale = ChannelGroupSweep.F(), shift = ChannelGroupSweep.F()
                for l in 0..<g.lanes {
                    let s = Float(Double(gamma[g.firstChannel + l]) / (variance[l] + Double(epsilon)).squareRoot())
                    scale[l] = s
                    shift[l] = beta[g.firstChannel + l] - mean[l] * s
                }
                // Padding lanes (channels ≥ C) get scale 0 and shift 0, so they stay zero.
                sweep.affine(pointer, pointer, scale: scale, shift: shift, negative: leakyReLUSlope ?? 1)
            } else {
                for lane in 0..<g.lanes {
                    normalizeStrided(pointer + lane, volume: volume, step: g.step, gamma: gamma[g.firstChannel + lane],
                                     beta: beta[g.firstChannel + lane], epsilon: epsilon, slope: leakyReLUSlope)
                }
            }
        }
    }

    /// (sample stride, voxel step) when channels are innermost and dense (`n…c`, oneDNN's `acdeb`).
    static func channelsLast(of memory: DNNLMemory) -> (sampleStride: Int, step: Int)? {
        let desc = memory.desc
        let dims = memory.dims
        let rank = dims.count
        guard desc.format_kind == dnnl_blocked, desc.format_desc.blocking.inner_nblks == 0, rank > 2 else { return nil }
        let strides = withUnsafeBytes(of: desc.format_desc.blocking.strides) { Array($0.bindMemory(to: Int64.self).prefix(rank)).map { Int($0) } }
        guard strides[1] == 1 else { return nil }
        var expected = strides[rank - 1]
        guard expected >= dims[1] else { return nil }
        for axis in stride(from: rank - 1, through: 2, by: -1) {
            guard strides[axis] == expected else { return nil }
            expected *= dims[axis]
        }
        return (strides[0], strides[rank - 1])
    }

    /// Channels-last: every voxel holds its `channels` values side by side, `step` floats apart, so
    /// the inner loops run over contiguous channels and vectorise. Two sweeps (statistics, then apply),
    /// split over the cores by voxel ranges. Statistics are taken around each channel's first value
    /// (shifted sums), in float within chunks of 128 voxels and in double across chunks.
    static func normalizeChannelsLast(_ p: UnsafeMutablePointer<Float>, volume: Int, step: Int, channels: Int,
                                      gamma: [Float], beta: [Float], epsilon: Float, slope: Float?) {
        let workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, volume / 4096))
        let chunk = (volume + workers - 1) / workers
        let pivot = UnsafeMutablePointer<Float>.allocate(capacity: channels)
        defer { pivot.deallocate() }
        pivot.update(from: p, count: channels)
        // Per-worker double sums: [sum(d) for c] then [sum(d²) for c].
        let partials = UnsafeMutablePointer<Double>.allocate(capacity: workers * 2 * channels)
        defer { partials.deallocate() }
        partials.initialize(repeating: 0, count: workers * 2 * channels)
        nonisolated(unsafe) let (base, pivots, sums) = (p, UnsafePointer(pivot), partials)
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let s = sums + w * 2 * channels, q = s + channels
            let fs = UnsafeMutablePointer<Float>.allocate(capacity: 2 * channels)
            defer { fs.deallocate() }
            let fq = fs + channels
            var v = w * chunk
            let end = min(volume, v + chunk)
            while v < end {
                fs.initialize(repeating: 0, count: 2 * channels)
                let stop = min(end, v + 128)
                while v < stop {
                    let x = base + v &* step
                    for c in 0..<channels {
                        let d = x[c] - pivots[c]
                        fs[c] += d
                        fq[c] += d * d
                    }
                    v &+= 1
                }
                for c in 0..<channels {
                    s[c] += Double(fs[c])
                    q[c] += Double(fq[c])
                }
            }
        }
        let scale = UnsafeMutablePointer<Float>.allocate(capacity: 2 * channels)
        defer { scale.deallocate() }
        let shift = scale + channels
        for c in 0..<channels {
            var s = 0.0, q = 0.0
            for w in 0..<workers {
                s += partials[w * 2 * channels + c]
                q += partials[w * 2 * channels + channels + c]
            }
            let meanOffset = s / Double(volume)
            let variance = max(q / Double(volume) - meanOffset * meanOffset, 0)
            let mean = Double(pivot[c]) + meanOffset
            let k = Double(gamma[c]) / (variance + Double(epsilon)).squareRoot()
            scale[c] = Float(k)
            shift[c] = Float(Double(beta[c]) - mean * k)
        }
        let negative = slope ?? 1
        nonisolated(unsafe) let (scales, shifts) = (UnsafePointer(scale), UnsafePointer(shift))
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            var v = w * chunk
            let end = min(volume, v + chunk)
            while v < end {
                let x = base + v &* step
                for c in 0..<channels {
                    let y = x[c] * scales[c] + shifts[c]
                    x[c] = y < 0 ? y * negative : y
                }
                v &+= 1
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
}
