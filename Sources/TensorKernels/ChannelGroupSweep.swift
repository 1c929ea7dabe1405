/// The per-channel passes of instance norm (statistics, affine + LeakyReLU, and the backward's sums and input
/// gradient) over one channel group of a channel-blocked activation, in `SIMD16<Float>`: sixteen channels of a voxel
/// per load (`…16c` blocks, channels-last groups of 16), or the eight channels of two neighbouring voxels (`…8c`
/// blocks, voxels 8 floats apart), with the odd last voxel of a pair sweep done lane by lane.
///
/// Written for the concrete vector type on purpose: in a function generic over `SIMD` (even specialised, even
/// inlined into a concrete caller) Swift resolves `+`, `*` and the lane conversions to the protocol's lane-by-lane
/// implementations, and `pointwiseMax`/`pointwiseMin` on `SIMD16` compile to a loop over lanes; both kept the
/// 16-channel kernels at 1–2 GB/s (0.35–0.38 s against 0.011 s for a 103 MB activation, `TrainingBenchmark norm`).
/// The masked select `replacing(with:where:)` on `SIMD16<Float>` compiles to a compare and a blend.
struct ChannelGroupSweep {
    typealias F = SIMD16<Float>
    typealias D = SIMD16<Double>

    /// Vector loads, `stride` bytes apart.
    let loads: Int
    let stride: Int
    /// Two voxels of an 8-channel block per load.
    let paired: Bool
    /// Float offset of the voxel a pair sweep leaves over (odd volume).
    let tail: Int?
    let volume: Int

    init?(width: Int, step: Int, volume: Int) {
        self.volume = volume
        if width == 16 {
            (loads, stride, paired, tail) = (volume, step &* 4, false, nil)
        } else if width == 8, step == 8 {
            (loads, stride, paired, tail) = (volume / 2, 64, true, volume % 2 == 1 ? (volume - 1) * 8 : nil)
        } else {
            return nil
        }
    }

    /// Channel values (lanes 0..<width) as laid out in one load.
    @inline(__always) func spread(_ v: F) -> F { paired ? F(lowHalf: v.lowHalf, highHalf: v.lowHalf) : v }
    /// Per-load sums folded back to one sum per channel.
    @inline(__always) func fold(_ d: D) -> D { paired ? D(lowHalf: d.lowHalf + d.highHalf, highHalf: .zero) : d }

    /// Per channel: the mean (float, from a double sum) and the biased variance around it (squares in float within
    /// chunks of 256 loads, accumulated in double).
    func moments(_ x: UnsafeRawPointer) -> (mean: F, variance: D) {
        var total = D()
        var i = 0
        while i < loads {
            let end = min(i &+ 256, loads)
            var partial = F()
            while i < end { partial += x.loadUnaligned(fromByteOffset: i &* stride, as: F.self); i &+= 1 }
            total += D(partial)
        }
        total = fold(total)
        if let t = tail { for l in 0..<8 { total[l] += Double(x.load(fromByteOffset: (t &+ l) &* 4, as: Float.self)) } }
        let mean = F(total / Double(volume))
        let m = spread(mean)
        var squares = D()
        i = 0
        while i < loads {
            let end = min(i &+ 256, loads)
            var partial = F()
            while i < end { let d = x.loadUnaligned(fromByteOffset: i &* stride, as: F.self) - m; partial += d * d; i &+= 1 }
            squares += D(partial)
        }
        squares = fold(squares)
        if let t = tail {
            for l in 0..<8 { let d = x.load(fromByteOffset: (t &+ l) &* 4, as: Float.self) - mean[l]; squares[l] += Double(d * d) }
        }
        return (mean, squares / Double(volume))
    }

    /// `y = LeakyReLU(x · scale + shift)` per channel (`negative` 1: no activation); `y` may be `x`.
    func affine(_ x: UnsafeRawPointer, _ y: UnsafeMutableRawPointer, scale: F, shift: F, negative: Float) {
        let a = spread(scale), b = spread(shift), neg = F(repeating: negative), zero = F()
        for i in 0..<loads {
            let o = i &* stride
            let z = x.loadUnaligned(fromByteOffset: o, as: F.self) * a + b
            y.storeBytes(of: z.replacing(with: z * neg, where: z .< zero), toByteOffset: o, as: F.self)
        }
        if let t = tail {
            for l in 0..<8 {
                let z = x.load(fromByteOffset: (t &+ l) &* 4, as: Float.self) * scale[l] + shift[l]
                y.storeBytes(of: z < 0 ? z * negative : z, toByteOffset: (t &+ l) &* 4, as: Float.self)
            }
        }
    }

    /// Backward sums per channel: S1 = Σ dz, S2 = Σ dz·x̂, with dz = dy · LeakyReLU′ (from the sign of the forward
    /// output `y`) and x̂ = (x − mean)·r.
    func backwardSums(dy: UnsafeRawPointer, x: UnsafeRawPointer, y: UnsafeRawPointer, mean: F, inverseStd: F,
                      negative: Float) -> (s1: D, s2: D) {
        let m = spread(mean), r = spread(inverseStd), neg = F(repeating: negative), zero = F()
        var a = D(), b = D()
        var i = 0
        while i < loads {
            let end = min(i &+ 256, loads)
            var sa = F(), sb = F()
            while i < end {
                let o = i &* stride
                let g = dy.loadUnaligned(fromByteOffset: o, as: F.self)
                let d = g.replacing(with: g * neg, where: y.loadUnaligned(fromByteOffset: o, as: F.self) .< zero)
                sa += d
                sb += d * (x.loadUnaligned(fromByteOffset: o, as: F.self) - m) * r
                i &+= 1
            }
            a += D(sa)
            b += D(sb)
        }
        a = fold(a)
        b = fold(b)
        if let t = tail {
            for l in 0..<8 {
                let o = (t &+ l) &* 4
                let g = dy.load(fromByteOffset: o, as: Float.self)
                let d = y.load(fromByteOffset: o, as: Float.self) < 0 ? g * negative : g
                a[l] += Double(d)
                b[l] += Double(d * (x.load(fromByteOffset: o, as: Float.self) - mean[l]) * inverseStd[l])
            }
        }
        return (a, b)
    }

    /// dx = γ·r·(dz − S1/V − x̂·S2/V) with `gr` = γ·r, `k1` = S1/V, `k2` = S2/V per channel; `dx` may be `dy`.
    func backwardInput(dy: UnsafeRawPointer, x: UnsafeRawPointer, y: UnsafeRawPointer, dx: UnsafeMutableRawPointer, mean: F,
                       inverseStd: F, gr: F, k1: F, k2: F, negative: Float) {
        let m = spread(mean), r = spread(inverseStd), g2 = spread(gr), c1 = spread(k1), c2 = spread(k2)
        let neg = F(repeating: negative), zero = F()
        for i in 0..<loads {
            let o = i &* stride
            let g = dy.loadUnaligned(fromByteOffset: o, as: F.self)
            let d = g.replacing(with: g * neg, where: y.loadUnaligned(fromByteOffset: o, as: F.self) .< zero)
            let xh = (x.loadUnaligned(fromByteOffset: o, as: F.self) - m) * r
            dx.storeBytes(of: g2 * (d - c1 - xh * c2), toByteOffset: o, as: F.self)
        }
        if let t = tail {
            for l in 0..<8 {
                let o = (t &+ l) &* 4
                let g = dy.load(fromByteOffset: o, as: Float.self)
                let d = y.load(fromByteOffset: o, as: Float.self) < 0 ? g * negative : g
                let xh = (x.load(fromByteOffset: o, as: Float.self) - mean[l]) * inverseStd[l]
                dx.storeBytes(of: gr[l] * (d - k1[l] - xh * k2[l]), toByteOffset: o, as: Float.self)
            }
        }
    }
}
