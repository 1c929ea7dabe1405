/// Overlap measures for round-trip checks (compiled optimised: the tests compare whole CT volumes).
public enum Overlap {
    /// Dice between `mask > 0` and `labels == label`, voxel for voxel.
    public static func dice(mask: [Float], labels: [UInt8], label: UInt8) -> (dice: Double, labelVoxels: Int) {
        precondition(mask.count == labels.count)
        var both = 0, a = 0, b = 0
        mask.withUnsafeBufferPointer { m in
            labels.withUnsafeBufferPointer { l in
                for i in 0..<m.count {
                    let x = m[i] > 0, y = l[i] == label
                    if x { a &+= 1 }
                    if y { b &+= 1 }
                    if x && y { both &+= 1 }
                }
            }
        }
        return (a + b == 0 ? 1 : 2 * Double(both) / Double(a + b), b)
    }

    /// Reverses the row axis of a (z, y, x) volume (dcm2niix's flip).
    public static func flipRows<T>(_ v: [T], z: Int, y: Int, x: Int) -> [T] {
        var out = v
        v.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for k in 0..<z { for j in 0..<y {
                    let from = (k * y + (y - 1 - j)) * x, to = (k * y + j) * x
                    for i in 0..<x { dst[to + i] = src[from + i] }
                } }
            }
        }
        return out
    }
}
