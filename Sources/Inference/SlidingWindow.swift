import Foundation

/// Pure helpers of nnU-Net's sliding-window prediction (spec §8.1–8.3), kept apart from the driver.
public enum SlidingWindow {
    /// Tile start positions per axis (`compute_steps_for_sliding_window`): n = ceil((I − P) / (P·s)) + 1
    /// tiles, evenly spread with numpy's round-half-to-even, first at 0 and last at I − P.
    public static func steps(imageSize: [Int], patchSize: [Int], stepSize: Double) -> [[Int]] {
        precondition(zip(imageSize, patchSize).allSatisfy { $0 >= $1 }, "image \(imageSize) smaller than patch \(patchSize)")
        precondition(stepSize > 0 && stepSize <= 1, "step size must be in (0, 1]")
        return zip(imageSize, patchSize).map { size, patch in
            let target = Double(patch) * stepSize
            let count = Int((Double(size - patch) / target).rounded(.up)) + 1
            guard count > 1 else { return [0] }
            let actual = Double(size - patch) / Double(count - 1)
            return (0..<count).map { Int((actual * Double($0)).rounded(.toNearestOrEven)) }
        }
    }

    /// Padding below and above each axis so that every axis is at least the patch size (constant 0,
    /// the odd voxel at the high end).
    public static func padding(imageSize: [Int], patchSize: [Int]) -> [(below: Int, above: Int)] {
        zip(imageSize, patchSize).map { size, patch in
            let diff = max(patch - size, 0)
            return (diff / 2, diff / 2 + diff % 2)
        }
    }

    /// The Gaussian importance map (`compute_gaussian`, σ = P/8, centre P//2, scaled to 10 at the centre),
    /// in float16 with underflowed zeros replaced by the smallest non-zero value of the map.
    public static func gaussian(patchSize: [Int]) -> [Float16] {
        let axes: [[Double]] = patchSize.map { p in
            let sigma = Double(p) / 8, centre = Double(p / 2)
            return (0..<p).map { i in exp(-(Double(i) - centre) * (Double(i) - centre) / (2 * sigma * sigma)) }
        }
        var values = [Float16](repeating: 0, count: patchSize.reduce(1, *))
        if patchSize.count == 3 {
            var i = 0
            for a in axes[0] { for b in axes[1] { for c in axes[2] {
                values[i] = Float16(Float(10 * a * b * c))  // torch casts double → float → half
                i += 1
            } } }
        } else {
            var i = 0
            for a in axes[0] { for b in axes[1] {
                values[i] = Float16(Float(10 * a * b))
                i += 1
            } }
        }
        let smallest = values.filter { $0 > 0 }.min() ?? Float16.leastNonzeroMagnitude
        for i in values.indices where values[i] == 0 { values[i] = smallest }
        return values
    }
}
