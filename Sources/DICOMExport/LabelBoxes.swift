import Parallel
import VolumeGeometry

/// Per slice, the in-plane bounding box of every label present — one pass over the map (slices in
/// parallel), so writers touch only the pixels that matter.
enum LabelBoxes {
    struct Box: Sendable {
        var minX, minY, maxX, maxY: Int
    }

    static func perSlice(_ labels: LabelVolume) -> [[UInt16: Box]] {
        let (d, h, w) = (labels.shape.z, labels.shape.y, labels.shape.x)
        let result = (try? Parallel.map(d) { k -> [UInt16: Box] in
            labels.voxels.withUnsafeBufferPointer { v in
                var boxes: [UInt16: Box] = [:]
                for y in 0..<h {
                    let row = (k * h + y) * w
                    for x in 0..<w {
                        let label = v[row + x]
                        if label == 0 { continue }
                        if var b = boxes[label] {
                            b.minX = min(b.minX, x); b.maxX = max(b.maxX, x)
                            b.minY = min(b.minY, y); b.maxY = max(b.maxY, y)
                            boxes[label] = b
                        } else {
                            boxes[label] = Box(minX: x, minY: y, maxX: x, maxY: y)
                        }
                    }
                }
                return boxes
            }
        }) ?? []
        return result
    }

    struct Box3: Sendable {
        var minX, minY, minZ, maxX, maxY, maxZ: Int

        /// The box plus one voxel on every side (what a structure is cleaned and contoured in): its origin, may be −1.
        var paddedOrigin: SIMD3<Int> { SIMD3(minX - 1, minY - 1, minZ - 1) }
        /// The padded box's size (x, y, z).
        var paddedSize: SIMD3<Int> { SIMD3(maxX - minX + 3, maxY - minY + 3, maxZ - minZ + 3) }
    }

    /// The 3-D bounding box of every label present (slices in parallel, then merged).
    static func perVolume(_ labels: LabelVolume) -> [UInt16: Box3] {
        let slices = perSlice(labels)
        var result: [UInt16: Box3] = [:]
        for (k, boxes) in slices.enumerated() {
            for (label, b) in boxes {
                if var r = result[label] {
                    r.minX = min(r.minX, b.minX); r.maxX = max(r.maxX, b.maxX)
                    r.minY = min(r.minY, b.minY); r.maxY = max(r.maxY, b.maxY)
                    r.maxZ = k
                    result[label] = r
                } else {
                    result[label] = Box3(minX: b.minX, minY: b.minY, minZ: k, maxX: b.maxX, maxY: b.maxY, maxZ: k)
                }
            }
        }
        return result
    }
}
