/// Small islands removed and small holes filled in one structure's 3-D mask before it is contoured (issue #24):
/// a model's one-voxel specks and pinholes become hundreds of thousands of RTSTRUCT contours that a planning
/// system cannot import and a planner cannot review. The SEG keeps the exact label map; only the contours are
/// cleaned, and the counts go into the audit log.
///
/// Components are 6-connected (faces), for the structure and for the background alike. An island is a
/// component of the structure smaller than `minimumIslandVoxels` — the largest component always stays, so a
/// structure is never removed whole. A hole is a background component that does not reach the mask's border
/// and is smaller than `maximumHoleVoxels`.
///
/// ```swift
/// var mask = [Bool](…)   // depth × rows × columns, z-major
/// let (islands, holes) = MaskCleanup.clean(&mask, depth: d, rows: h, columns: w, minimumIslandVoxels: 20, maximumHoleVoxels: 10)
/// ```
public enum MaskCleanup {
    public struct Counts: Sendable, Equatable {
        public var islandsRemoved = 0
        public var voxelsRemoved = 0
        public var holesFilled = 0
        public var voxelsFilled = 0
        public init() {}
    }

    /// Cleans `mask` in place. `mask.count` must be `depth * rows * columns`.
    @discardableResult
    public static func clean(_ mask: inout [Bool], depth: Int, rows: Int, columns: Int, minimumIslandVoxels: Int,
                             maximumHoleVoxels: Int) -> Counts {
        precondition(mask.count == depth * rows * columns, "mask size")
        var counts = Counts()
        if minimumIslandVoxels > 1 {
            let components = Self.components(of: mask, value: true, depth: depth, rows: rows, columns: columns)
            if let largest = components.sizes.indices.max(by: { components.sizes[$0] < components.sizes[$1] }) {
                for (id, size) in components.sizes.enumerated() where id != largest && size < minimumIslandVoxels {
                    counts.islandsRemoved += 1
                    counts.voxelsRemoved += size
                }
                if counts.islandsRemoved > 0 {
                    for i in mask.indices where mask[i] {
                        let id = Int(components.labels[i])
                        if id != largest && components.sizes[id] < minimumIslandVoxels { mask[i] = false }
                    }
                }
            }
        }
        if maximumHoleVoxels > 0 {
            // Holes lie inside the structure's own bounding box: search only that box plus one voxel (after the
            // islands are gone it is usually far smaller than the box the caller passed — a noisy label's specks
            // spread over the whole volume).
            var lo = SIMD3(Int.max, Int.max, Int.max), hi = SIMD3(-1, -1, -1)
            for i in mask.indices where mask[i] {
                let p = SIMD3(i % columns, (i / columns) % rows, i / (rows * columns))
                lo = pointwiseMin(lo, p)
                hi = pointwiseMax(hi, p)
            }
            guard hi.x >= 0 else { return counts }
            lo = pointwiseMax(lo &- 1, SIMD3(0, 0, 0))
            hi = pointwiseMin(hi &+ 1, SIMD3(columns - 1, rows - 1, depth - 1))
            let (bw, bh, bd) = (hi.x - lo.x + 1, hi.y - lo.y + 1, hi.z - lo.z + 1)
            var sub = [Bool](repeating: false, count: bw * bh * bd)
            for z in 0..<bd { for y in 0..<bh {
                let source = ((lo.z + z) * rows + lo.y + y) * columns + lo.x, target = (z * bh + y) * bw
                for x in 0..<bw { sub[target + x] = mask[source + x] }
            } }
            let components = Self.components(of: sub, value: false, depth: bd, rows: bh, columns: bw)
            var fill = [Bool](repeating: false, count: components.sizes.count)
            for (id, size) in components.sizes.enumerated() where size <= maximumHoleVoxels && !components.touchesBorder[id] {
                fill[id] = true
                counts.holesFilled += 1
                counts.voxelsFilled += size
            }
            if counts.holesFilled > 0 {
                for z in 0..<bd { for y in 0..<bh {
                    let source = ((lo.z + z) * rows + lo.y + y) * columns + lo.x, target = (z * bh + y) * bw
                    for x in 0..<bw where !sub[target + x] && fill[Int(components.labels[target + x])] { mask[source + x] = true }
                } }
            }
        }
        return counts
    }

    /// 6-connected components of the voxels equal to `value`: a component id per voxel (others unused), each
    /// component's size and whether it reaches the border of the box.
    static func components(of mask: [Bool], value: Bool, depth: Int, rows: Int, columns: Int)
        -> (labels: [Int32], sizes: [Int], touchesBorder: [Bool]) {
        precondition(mask.count == depth * rows * columns, "mask size")
        let plane = rows * columns
        var labels = [Int32](repeating: -1, count: mask.count)
        var sizes: [Int] = [], border: [Bool] = []
        var stack: [Int] = []
        // Flood fill over raw buffers: a local function capturing the arrays made every access a dynamically
        // checked one (swift_beginAccess), most of the cleanup's time on a fractal 5-million-voxel box.
        mask.withUnsafeBufferPointer { m in
            labels.withUnsafeMutableBufferPointer { l in
                for seed in 0..<m.count where m[seed] == value && l[seed] < 0 {
                    let id = Int32(sizes.count)
                    var size = 0, touches = false
                    l[seed] = id
                    stack.append(seed)
                    while let i = stack.popLast() {
                        size &+= 1
                        let z = i / plane, r = i &- z &* plane, y = r / columns, x = r &- y &* columns
                        if z == 0 || y == 0 || x == 0 || z == depth &- 1 || y == rows &- 1 || x == columns &- 1 { touches = true }
                        if x > 0, m[i &- 1] == value, l[i &- 1] < 0 { l[i &- 1] = id; stack.append(i &- 1) }
                        if x < columns &- 1, m[i &+ 1] == value, l[i &+ 1] < 0 { l[i &+ 1] = id; stack.append(i &+ 1) }
                        if y > 0, m[i &- columns] == value, l[i &- columns] < 0 { l[i &- columns] = id; stack.append(i &- columns) }
                        if y < rows &- 1, m[i &+ columns] == value, l[i &+ columns] < 0 { l[i &+ columns] = id; stack.append(i &+ columns) }
                        if z > 0, m[i &- plane] == value, l[i &- plane] < 0 { l[i &- plane] = id; stack.append(i &- plane) }
                        if z < depth &- 1, m[i &+ plane] == value, l[i &+ plane] < 0 { l[i &+ plane] = id; stack.append(i &+ plane) }
                    }
                    sizes.append(size)
                    border.append(touches)
                }
            }
        }
        return (labels, sizes, border)
    }
}
