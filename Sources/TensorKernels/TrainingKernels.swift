import CDNNL
import Dispatch
import Foundation

/// Element-wise training kernels on oneDNN memories in the layouts the convolutions chose (plain,
/// channel-blocked or channels-last; every operand of one call shares the layout). Work is split over
/// (sample, channel block) groups; 16- and 8-channel groups run as `SIMD16<Float>` (``ChannelGroupSweep``).
public enum TrainingKernels {
    struct Layout {
        let groups: [InstanceNormKernel.ChannelGroup]
        let volume: Int
        let channels: Int
        let samples: Int
        var groupsPerSample: Int { groups.count / samples }
    }

    static func layout(_ m: DNNLMemory) -> Layout {
        guard let (groups, volume) = InstanceNormKernel.groups(of: m) else {
            preconditionFailure("training kernels need a plain, channel-blocked or channels-last layout, got \(layoutName(m.desc))")
        }
        return Layout(groups: groups, volume: volume, channels: m.dims[1], samples: m.dims[0])
    }

    static func checkSame(_ a: DNNLMemory, _ b: DNNLMemory, _ what: String) {
        precondition(a.sameLayout(as: b), "\(what): operands must share a layout (\(layoutName(a.desc)) vs \(layoutName(b.desc)))")
    }

    /// Runs `body(group, sampleIndex)` for every channel group, on all cores.
    static func forEachGroup(_ layout: Layout, _ body: @Sendable (InstanceNormKernel.ChannelGroup, Int) -> Void) {
        let perSample = layout.groupsPerSample
        DispatchQueue.concurrentPerform(iterations: layout.groups.count) { i in body(layout.groups[i], i / perSample) }
    }

    // MARK: Instance norm (+ LeakyReLU)

    /// `output = LeakyReLU?(γ·(input − μ)/σ + β)` per sample and channel (biased variance), keeping μ and
    /// 1/σ (`(N·C)` each, sample-major) for the backward pass. `input` is left unchanged.
    public static func instanceNormForward(input: DNNLMemory, output: DNNLMemory, gamma: [Float], beta: [Float], epsilon: Float,
                                           slope: Float?, mean: UnsafeMutablePointer<Float>, inverseStd: UnsafeMutablePointer<Float>) {
        checkSame(input, output, "instance norm")
        let l = layout(input)
        let C = l.channels, V = l.volume
        nonisolated(unsafe) let (x, y, mu, rs) = (input.pointer, output.pointer, mean, inverseStd)
        let negative = slope ?? 1
        forEachGroup(l) { g, n in
            let stats = n * C + g.firstChannel
            if let sweep = ChannelGroupSweep(width: g.width, step: g.step, volume: V) {
                let (m, variance) = sweep.moments(x + g.offset)
                var scale = ChannelGroupSweep.F(), shift = ChannelGroupSweep.F()
                for lane in 0..<g.lanes {
                    let r = Float(1 / (variance[lane] + Double(epsilon)).squareRoot())
                    mu[stats + lane] = m[lane]
                    rs[stats + lane] = r
                    scale[lane] = gamma[g.firstChannel + lane] * r
                    shift[lane] = beta[g.firstChannel + lane] - m[lane] * scale[lane]
                }
                // Padding lanes (channels ≥ C) get scale 0 and shift 0, so they stay zero.
                sweep.affine(x + g.offset, y + g.offset, scale: scale, shift: shift, negative: negative)
            } else {
                for lane in 0..<g.lanes {
                    normForwardScalar(x + g.offset + lane, y + g.offset + lane, volume: V, step: g.step, gamma: gamma[g.firstChannel + lane],
                                      beta: beta[g.firstChannel + lane], epsilon: epsilon, negative: negative, mean: mu + stats + lane,
                                      inverseStd: rs + stats + lane)
                }
            }
        }
    }

    /// One channel, voxels `step` floats apart (plain layouts and odd channel counts).
    static func normForwardScalar(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, volume: Int, step: Int, gamma: Float,
                                  beta: Float, epsilon: Float, negative: Float, mean: UnsafeMutablePointer<Float>,
                                  inverseStd: UnsafeMutablePointer<Float>) {
        var sum = 0.0
        for i in 0..<volume { sum += Double(x[i &* step]) }
        let m = Float(sum / Double(volume))
        var sq = 0.0
        for i in 0..<volume { let d = Double(x[i &* step] - m); sq += d * d }
        let r = Float(1 / (sq / Double(volume) + Double(epsilon)).squareRoot())
        mean.pointee = m
        inverseStd.pointee = r
        let scale = gamma * r, shift = beta - m * scale
        for i in 0..<volume {
            let z = x[i &* step] * scale + shift
            y[i &* step] = z < 0 ? z * negative : z
        }
    }

    static func normBackwardScalar(_ dy: UnsafeMutablePointer<Float>, _ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                                   _ dx: UnsafeMutablePointer<Float>, volume: Int, step: Int, gamma: Float, negative: Float, mean: Float,
                                   inverseStd r: Float, s1: UnsafeMutablePointer<Double>, s2: UnsafeMutablePointer<Double>) {
        var a = 0.0, b = 0.0
        for i in 0..<volume {
            let k = i &* step
            let d = y[k] < 0 ? dy[k] * negative : dy[k]
            a += Double(d)
            b += Double(d * (x[k] - mean) * r)
        }
        s1.pointee = a
        s2.pointee = b
        let k1 = Float(a / Double(volume)), k2 = Float(b / Double(volume)), gr = gamma * r
        for i in 0..<volume {
            let k = i &* step
            let d = y[k] < 0 ? dy[k] * negative : dy[k]
            dx[k] = gr * (d - k1 - (x[k] - mean) * r * k2)
        }
    }

    /// Backward of ``instanceNormForward``: from the output gradient `diffOutput`, the forward `input` and
    /// `output` (its sign gives LeakyReLU's slope) and the saved statistics, writes the input gradient into
    /// `diffInput` (may be the same memory as `diffOutput`) and adds ∂γ, ∂β into `gammaGradient`,
    /// `betaGradient`.
    public static func instanceNormBackward(diffOutput: DNNLMemory, input: DNNLMemory, output: DNNLMemory, diffInput: DNNLMemory,
                                            gamma: [Float], slope: Float?, mean: UnsafePointer<Float>, inverseStd: UnsafePointer<Float>,
                                            gammaGradient: UnsafeMutablePointer<Float>, betaGradient: UnsafeMutablePointer<Float>) {
        checkSame(diffOutput, input, "instance norm backward")
        checkSame(output, input, "instance norm backward")
        checkSame(diffInput, input, "instance norm backward")
        let l = layout(input)
        let C = l.channels, V = l.volume, N = l.samples
        nonisolated(unsafe) let (dy, x, y, dx, mu, rs) = (diffOutput.pointer, input.pointer, output.pointer, diffInput.pointer, mean, inverseStd)
        let negative = slope ?? 1
        // Per (n, c): S1 = Σ dz, S2 = Σ dz·x̂ with dz = dy·LeakyReLU′.
        let sums = UnsafeMutablePointer<Double>.allocate(capacity: 2 * N * C)
        defer { sums.deallocate() }
        sums.initialize(repeating: 0, count: 2 * N * C)
        nonisolated(unsafe) let s = sums
        forEachGroup(l) { g, n in
            let k = n * C + g.firstChannel
            if let sweep = ChannelGroupSweep(width: g.width, step: g.step, volume: V) {
                var m = ChannelGroupSweep.F(), r = m, gr = m
                for lane in 0..<g.lanes {
                    m[lane] = mu[k + lane]
                    r[lane] = rs[k + lane]
                    gr[lane] = gamma[g.firstChannel + lane] * rs[k + lane]
                }
                let (a, b) = sweep.backwardSums(dy: dy + g.offset, x: x + g.offset, y: y + g.offset, mean: m, inverseStd: r, negative: negative)
                var k1 = ChannelGroupSweep.F(), k2 = k1
                for lane in 0..<g.lanes {
                    s[k + lane] = a[lane]
                    s[N * C + k + lane] = b[lane]
                    k1[lane] = Float(a[lane] / Double(V))
                    k2[lane] = Float(b[lane] / Double(V))
                }
                // Padding lanes get gr = 0 and stay zero.
                sweep.backwardInput(dy: dy + g.offset, x: x + g.offset, y: y + g.offset, dx: dx + g.offset, mean: m, inverseStd: r, gr: gr,
                                    k1: k1, k2: k2, negative: negative)
            } else {
                for lane in 0..<g.lanes {
                    normBackwardScalar(dy + g.offset + lane, x + g.offset + lane, y + g.offset + lane, dx + g.offset + lane, volume: V,
                                       step: g.step, gamma: gamma[g.firstChannel + lane], negative: negative, mean: mu[k + lane],
                                       inverseStd: rs[k + lane], s1: s + k + lane, s2: s + N * C + k + lane)
                }
            }
        }
        for n in 0..<N {
            for c in 0..<C {
                betaGradient[c] += Float(sums[n * C + c])
                gammaGradient[c] += Float(sums[N * C + n * C + c])
            }
        }
    }

    /// `target += source` over the whole buffer (same layout; block padding stays zero).
    public static func accumulate(_ target: DNNLMemory, adding source: DNNLMemory) {
        checkSame(target, source, "accumulate")
        nonisolated(unsafe) let (t, s) = (target.pointer, source.pointer)
        forEachRange(floats: target.byteSize / 4) { start, end in
            var i = start
            while i < end { t[i] += s[i]; i &+= 1 }
        }
    }

    /// Splits `floats` elements (a whole buffer, block padding included) into up to 64 ranges of at least
    /// 64 Ki elements and runs `body(start, end)` for each on all cores.
    static func forEachRange(floats count: Int, _ body: @Sendable (Int, Int) -> Void) {
        let chunks = max(1, min(64, count / 65536)), size = (count + chunks - 1) / chunks
        DispatchQueue.concurrentPerform(iterations: chunks) { k in body(k * size, min(count, k * size + size)) }
    }

    /// Copies channels `[first, first + count)` of `source` into `destination` (which has `count`
    /// channels and the same batch and spatial size), through a oneDNN reorder of a sub-memory view.
    public static func copyChannels(from source: DNNLMemory, first: Int, into destination: DNNLMemory) throws {
        var sourceDesc = source.desc
        var sub = dnnl_memory_desc_t()
        var dims = destination.dims.map { Int64($0) }
        var offsets = [Int64](repeating: 0, count: dims.count)
        offsets[1] = Int64(first)
        dims += [Int64](repeating: 0, count: 12 - dims.count)
        offsets += [Int64](repeating: 0, count: 12 - offsets.count)
        try dnnlCheck(dnnl_memory_desc_init_submemory(&sub, &sourceDesc, dims, offsets), "dnnl_memory_desc_init_submemory")
        let view = try DNNLMemory(context: source.context, desc: sub, sharing: source)
        try reorder(from: view, to: destination)
    }
}

extension DNNLMemory {
    /// A second memory object over another memory's buffer (for sub-memory views).
    convenience init(context: DNNLContext, desc: dnnl_memory_desc_t, sharing other: DNNLMemory) throws {
        try self.init(context: context, desc: desc, handle: UnsafeMutableRawPointer(other.pointer), owner: other)
    }
}

extension TrainingKernels {
    /// ResEnc's join: `output = LeakyReLU(main + skip)` (all three share a layout).
    public static func residualForward(main: DNNLMemory, skip: DNNLMemory, output: DNNLMemory, slope: Float) {
        checkSame(main, skip, "residual")
        checkSame(main, output, "residual")
        nonisolated(unsafe) let (a, b, y) = (main.pointer, skip.pointer, output.pointer)
        forEachRange(floats: main.byteSize / 4) { start, end in
            var i = start
            while i < end {
                let v = a[i] + b[i]
                y[i] = v < 0 ? v * slope : v
                i &+= 1
            }
        }
    }

    /// Backward of ``residualForward``: the gradient of the sum, `diffOutput · LeakyReLU′`, written into
    /// `diffSum` (it flows unchanged to both branches).
    public static func residualBackward(diffOutput: DNNLMemory, output: DNNLMemory, diffSum: DNNLMemory, slope: Float) {
        checkSame(diffOutput, output, "residual backward")
        checkSame(diffOutput, diffSum, "residual backward")
        nonisolated(unsafe) let (g, y, d) = (diffOutput.pointer, output.pointer, diffSum.pointer)
        forEachRange(floats: output.byteSize / 4) { start, end in
            var i = start
            while i < end {
                d[i] = y[i] < 0 ? g[i] * slope : g[i]
                i &+= 1
            }
        }
    }
}
