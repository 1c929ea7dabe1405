import Foundation

/// A dense 3-D (or 2-D, with a leading size of 1) array of doubles in row-major order.
public struct Grid3D: Equatable, Sendable {
    public var shape: [Int]  // always 3 entries
    public var values: [Double]

    public init(shape: [Int], values: [Double]) {
        precondition(shape.count == 3 && shape.reduce(1, *) == values.count, "Grid3D shape \(shape) vs \(values.count) values")
        self.shape = shape
        self.values = values
    }

    public init(shape: [Int], repeating value: Double = 0) {
        self.init(shape: shape, values: Array(repeating: value, count: shape.reduce(1, *)))
    }

    @inline(__always) func index(_ a: Int, _ b: Int, _ c: Int) -> Int { (a &* shape[1] &+ b) &* shape[2] &+ c }
}

/// scikit-image `resize(image, shape, order, mode="edge", anti_aliasing=False, clip=True)` as it runs
/// on scikit-image 0.26 / SciPy 1.17: `scipy.ndimage.zoom(grid_mode=True, mode="nearest")` with the cubic
/// B-spline prefilter on a 12-voxel edge-padded copy, then clipping to the input's range. Orders 0, 1
/// and 3 reproduce the reference bit for bit (spec §6.5.6): same float64 operations in the same order.
public enum SplineZoom {
    /// The pole of the cubic B-spline prefilter, √3 − 2.
    static let pole = 3.0.squareRoot() - 2
    /// Edge padding added before prefiltering (scipy's `_prepad_for_spline_filter`).
    static let splinePadding = 12

    public static func resize(_ input: Grid3D, to shape: [Int], order: Int) -> Grid3D {
        precondition(order == 0 || order == 1 || order == 3, "spline order \(order) is not supported (0, 1, 3 are)")
        if shape == input.shape { return input }  // all zoom factors 1: scipy returns the input
        let coefficients: Grid3D
        let pad: Int
        if order >= 2 {
            pad = splinePadding
            var padded = edgePad(input, by: pad, outputShape: shape)
            prefilter(&padded)
            coefficients = padded
        } else {
            pad = 0
            coefficients = input
        }
        var output = Grid3D(shape: shape)
        // Per-axis source positions and weights. An axis of length 1 on both sides (a 2-D slice held as
        // 1×h×w) is not an axis for scipy: one tap of weight 1.
        let axes = (0..<3).map { axis in
            input.shape[axis] == 1 && shape[axis] == 1
                ? AxisWeights(indices: [0], weights: [1], taps: 1)
                : axisWeights(inputLength: input.shape[axis], outputLength: shape[axis], pad: pad,
                              coefficientLength: coefficients.shape[axis], order: order)
        }
        let (n0, n1, n2) = (shape[0], shape[1], shape[2])
        let s1 = coefficients.shape[1], s2 = coefficients.shape[2]
        coefficients.values.withUnsafeBufferPointer { cBuffer in
            output.values.withUnsafeMutableBufferPointer { outBuffer in
                nonisolated(unsafe) let c = cBuffer.baseAddress!
                nonisolated(unsafe) let out = outBuffer.baseAddress!
                let (a0, a1, a2) = (axes[0], axes[1], axes[2])
                let (t0, t1, t2) = (a0.taps, a1.taps, a2.taps)
                DispatchQueue.concurrentPerform(iterations: n0) { i in
                    for j in 0..<n1 {
                        for k in 0..<n2 {
                            var t = 0.0
                            for p in 0..<t0 {
                                let w0 = a0.weights[i &* t0 &+ p]
                                let r0 = a0.indices[i &* t0 &+ p] &* s1
                                for q in 0..<t1 {
                                    let w1 = a1.weights[j &* t1 &+ q]
                                    let r1 = (r0 &+ a1.indices[j &* t1 &+ q]) &* s2
                                    for r in 0..<t2 {
                                        var coefficient = c[r1 &+ a2.indices[k &* t2 &+ r]]
                                        if t0 > 1 { coefficient *= w0 }
                                        if t1 > 1 { coefficient *= w1 }
                                        if t2 > 1 { coefficient *= a2.weights[k &* t2 &+ r] }
                                        t += coefficient
                                    }
                                }
                            }
                            out[(i &* n1 &+ j) &* n2 &+ k] = t
                        }
                    }
                }
            }
        }
        clip(&output, toRangeOf: input)
        return output
    }

    struct AxisWeights: Sendable {
        /// `taps` source indices (clamped) and weights per output index.
        let indices: [Int]
        let weights: [Double]
        let taps: Int
    }

    static func axisWeights(inputLength: Int, outputLength: Int, pad: Int, coefficientLength: Int, order: Int) -> AxisWeights {
        let taps = order + 1
        var indices = [Int](repeating: 0, count: outputLength * taps)
        var weights = [Double](repeating: 0, count: outputLength * taps)
        let zoom = Double(inputLength) / Double(outputLength)
        for k in 0..<outputLength {
            let cc = (Double(k) + 0.5) * zoom - 0.5 + Double(pad)
            let start: Int
            var w = [Double](repeating: 0, count: taps)
            switch order {
            case 0:
                start = Int((cc + 0.5).rounded(.down))
                w[0] = 1
            case 1:
                let f = cc.rounded(.down)
                start = Int(f)
                let t = cc - f
                w[0] = 1 - t
                w[1] = 1 - w[0]
            default:
                let f = cc.rounded(.down)
                start = Int(f) - 1
                let t = cc - f
                let u = 1 - t
                w[1] = (t * t * (t - 2) * 3 + 4) / 6
                w[2] = (u * u * (u - 2) * 3 + 4) / 6
                w[0] = u * u * u / 6
                w[3] = 1 - w[0] - w[1] - w[2]
            }
            for p in 0..<taps {
                indices[k * taps + p] = min(max(start + p, 0), coefficientLength - 1)
                weights[k * taps + p] = w[p]
            }
        }
        return AxisWeights(indices: indices, weights: weights, taps: taps)
    }

    static func edgePad(_ g: Grid3D, by pad: Int, outputShape: [Int]) -> Grid3D {
        // An axis of length 1 that stays 1 (a 2-D slice held as 1×h×w) is not padded: scipy sees a 2-D array.
        let padAxis = (0..<3).map { g.shape[$0] == 1 && outputShape[$0] == 1 ? 0 : pad }
        let shape = (0..<3).map { g.shape[$0] + 2 * padAxis[$0] }
        var out = Grid3D(shape: shape)
        for a in 0..<shape[0] {
            let sa = min(max(a - padAxis[0], 0), g.shape[0] - 1)
            for b in 0..<shape[1] {
                let sb = min(max(b - padAxis[1], 0), g.shape[1] - 1)
                for c in 0..<shape[2] {
                    let sc = min(max(c - padAxis[2], 0), g.shape[2] - 1)
                    out.values[out.index(a, b, c)] = g.values[g.index(sa, sb, sc)]
                }
            }
        }
        return out
    }

    /// Cubic B-spline prefilter along axes 0, 1, 2 in turn (reflect boundary, gain 6).
    static func prefilter(_ g: inout Grid3D) {
        let shape = g.shape
        for axis in 0..<3 where shape[axis] > 1 {
            let n = shape[axis]
            let stride = axis == 0 ? shape[1] * shape[2] : axis == 1 ? shape[2] : 1
            let lines = g.values.count / n
            g.values.withUnsafeMutableBufferPointer { vBuffer in
                nonisolated(unsafe) let v = vBuffer.baseAddress!
                DispatchQueue.concurrentPerform(iterations: max(1, min(lines, 64))) { chunk in
                    let chunks = max(1, min(lines, 64))
                    var line = [Double](repeating: 0, count: n)
                    var l = chunk * lines / chunks
                    let end = (chunk + 1) * lines / chunks
                    while l < end {
                        // Start of line `l`: lines enumerate all positions of the other two axes.
                        let base: Int
                        switch axis {
                        case 0: base = l
                        case 1: base = (l / shape[2]) * shape[1] * shape[2] + l % shape[2]
                        default: base = l * n
                        }
                        for i in 0..<n { line[i] = v[base + i * stride] }
                        filterLine(&line)
                        for i in 0..<n { v[base + i * stride] = line[i] }
                        l += 1
                    }
                }
            }
        }
    }

    static func filterLine(_ c: inout [Double]) {
        let n = c.count
        let z = pole
        let gain = (1 - z) * (1 - 1 / z)
        for i in 0..<n { c[i] *= gain }
        // Causal initialisation, "reflect" boundary.
        var zi = z
        let zn = pow(z, Double(n))
        let c0 = c[0]
        c[0] = c[0] + zn * c[n - 1]
        for i in 1..<n {
            c[0] += zi * (c[i] + zn * c[n - 1 - i])
            zi *= z
        }
        c[0] *= z / (1 - zn * zn)
        c[0] += c0
        for i in 1..<n { c[i] += z * c[i - 1] }
        // Anticausal initialisation, "reflect" boundary.
        c[n - 1] *= z / (z - 1)
        for i in stride(from: n - 2, through: 0, by: -1) { c[i] = z * (c[i + 1] - c[i]) }
    }

    static func clip(_ g: inout Grid3D, toRangeOf input: Grid3D) {
        guard let lo = input.values.min(), let hi = input.values.max() else { return }
        for i in 0..<g.values.count { g.values[i] = min(max(g.values[i], lo), hi) }
    }

    /// `scipy.ndimage.map_coordinates(order=0, mode="nearest")` along one axis only, with coordinate
    /// `(k + 0.5)·(old/new) − 0.5` — the slice-axis step of the separate-z path.
    public static func nearestAlongAxis(_ input: Grid3D, axis: Int, length: Int) -> Grid3D {
        var shape = input.shape
        let old = shape[axis]
        shape[axis] = length
        var out = Grid3D(shape: shape)
        let scale = Double(old) / Double(length)
        let source = (0..<length).map { k in min(max(Int(((Double(k) + 0.5) * scale - 0.5 + 0.5).rounded(.down)), 0), old - 1) }
        for a in 0..<shape[0] { for b in 0..<shape[1] { for c in 0..<shape[2] {
            var idx = [a, b, c]
            idx[axis] = source[idx[axis]]
            out.values[out.index(a, b, c)] = input.values[input.index(idx[0], idx[1], idx[2])]
        } } }
        return out
    }
}
