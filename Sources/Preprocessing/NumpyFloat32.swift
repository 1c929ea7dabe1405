/// Float32 reductions exactly as numpy computes them, so that normalisation statistics (and therefore
/// every preprocessed voxel) match the reference bit for bit (spec §6.4).
public enum NumpyFloat32 {
    /// numpy's pairwise summation of a contiguous float32 run (`pairwise_sum` in `loops_utils.h`):
    /// fewer than 8 values sequentially; up to 128 with 8 interleaved partial sums combined as
    /// ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)) plus the tail; longer runs split at n/2 rounded down to a
    /// multiple of 8.
    public static func pairwiseSum(_ a: UnsafeBufferPointer<Float>) -> Float {
        pairwise(a.baseAddress!, a.count)
    }

    public static func pairwiseSum(_ a: [Float]) -> Float {
        a.isEmpty ? 0 : a.withUnsafeBufferPointer { pairwise($0.baseAddress!, $0.count) }
    }

    static func pairwise(_ a: UnsafePointer<Float>, _ n: Int) -> Float {
        if n < 8 {
            var res: Float = 0
            for i in 0..<n { res += a[i] }
            return res
        } else if n <= 128 {
            var r0 = a[0], r1 = a[1], r2 = a[2], r3 = a[3], r4 = a[4], r5 = a[5], r6 = a[6], r7 = a[7]
            var i = 8
            let end = n - n % 8
            while i < end {
                r0 += a[i]; r1 += a[i + 1]; r2 += a[i + 2]; r3 += a[i + 3]
                r4 += a[i + 4]; r5 += a[i + 5]; r6 += a[i + 6]; r7 += a[i + 7]
                i += 8
            }
            var res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
            while i < n {
                res += a[i]
                i += 1
            }
            return res
        } else {
            var n2 = n / 2
            n2 -= n2 % 8
            return pairwise(a, n2) + pairwise(a + n2, n - n2)
        }
    }

    /// `np.mean` of float32 values: float32 pairwise sum divided by the count in float32.
    public static func mean(_ a: [Float]) -> Float {
        pairwiseSum(a) / Float(a.count)
    }

    /// `np.std` (ddof 0) of float32 values: deviations and squares in float32, pairwise sum, divide, sqrt.
    public static func standardDeviation(_ a: [Float], mean: Float) -> Float {
        let squares = a.map { v -> Float in
            let d = v - mean
            return d * d
        }
        return (pairwiseSum(squares) / Float(a.count)).squareRoot()
    }
}
