import VolumeGeometry

/// Per slice, the in-plane bounding box of every label present — one pass over the map, so writers
/// touch only the pixels that matter.
enum LabelBoxes {
    struct Box: Sendable {
        var minX, minY, maxX, maxY: Int
    }

    static func perSlice(_ labels: LabelVolume) -> [[UInt16: Box]] {
        let (d, h, w) = (labels.shape.z, labels.shape.y, labels.shape.x)
        var result = [[UInt16: Box]](repeating: [:], count: d)
        labels.voxels.withUnsafeBufferPointer { v in
            for k in 0..<d {
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
                result[k] = boxes
            }
        }
        return result
    }
}
