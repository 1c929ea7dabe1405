import Foundation

/// The cascade's second stage sees the first stage's segmentation as extra input channels (spec 6.4 steps
/// 13–15, 6.9): one binary channel per foreground label (MoveSegAsOneHotToData), then in training — so that
/// the network learns to correct the first stage rather than copy it — with probability 0.4 a random
/// morphological operator per channel (ApplyRandomBinaryOperator) and with probability 0.2 one random small
/// connected component removed per channel (RemoveRandomConnectedComponentFromOneHotEncoding).
public enum CascadeAugmentation {
    /// Appends one channel per label of `labels` (`previous == label`) to the sample's data.
    public static func appendOneHot(_ s: inout Sample, labels: [Int]) {
        guard let previous = s.previous else { return }
        for label in labels {
            s.data += previous.map { Int($0) == label ? 1 : 0 }
        }
        s.channels += labels.count
        s.previous = nil
    }

    /// The training-only perturbations of the last `count` channels (the one-hot previous stage).
    public static func perturb(_ s: inout Sample, count: Int, planar: Bool, _ rng: inout RandomSource) {
        guard count > 0 else { return }
        let channels = Array((s.channels - count)..<s.channels)
        if rng.chance(0.4) { randomBinaryOperators(&s, channels: channels, planar: planar, &rng) }
        if rng.chance(0.2) { removeRandomComponents(&s, channels: channels, planar: planar, &rng) }
    }

    /// The channels in random order, each with probability 0.5: dilation, erosion, closing or opening with
    /// a ball (disk in 2-D) of radius U(1, 8); voxels a channel gains are taken from the other channels.
    static func randomBinaryOperators(_ s: inout Sample, channels: [Int], planar: Bool, _ rng: inout RandomSource) {
        let order = shuffled(channels, &rng)
        let chosen = order.filter { _ in rng.chance(0.5) }
        let plan = chosen.map { ($0, rng.integer(0, 3), rng.uniform(1, 8)) }
        let v = s.volume
        for (channel, op, radius) in plan {
            let element = StructuringElement(radius: radius, planar: planar)
            let before = (0..<v).map { s.data[channel * v + $0] != 0 }
            let after: [Bool]
            switch op {
            case 0: after = element.dilate(before, shape: s.shape)
            case 1: after = element.erode(before, shape: s.shape)
            case 2: after = element.erode(element.dilate(before, shape: s.shape), shape: s.shape)
            default: after = element.dilate(element.erode(before, shape: s.shape), shape: s.shape)
            }
            for i in 0..<v {
                if after[i] && !before[i] { for other in channels where other != channel { s.data[other * v + i] = 0 } }
                s.data[channel * v + i] = after[i] ? 1 : 0
            }
        }
    }

    /// The channels in random order, each with probability 0.5: one connected component (full connectivity)
    /// smaller than 15 % of the patch, drawn uniformly, set to 0.
    static func removeRandomComponents(_ s: inout Sample, channels: [Int], planar: Bool, _ rng: inout RandomSource) {
        let order = shuffled(channels, &rng)
        let chosen = order.filter { _ in rng.chance(0.5) }
        let v = s.volume
        for channel in chosen {
            let mask = (0..<v).map { s.data[channel * v + $0] != 0 }
            guard mask.contains(true) else { continue }
            let (labels, sizes) = components(mask, shape: s.shape, planar: planar)
            let valid = sizes.enumerated().filter { Double($0.element) < Double(v) * 0.15 }.map { $0.offset + 1 }
            guard !valid.isEmpty else { continue }
            let component = valid[rng.integer(0, valid.count - 1)]
            for i in 0..<v where labels[i] == component { s.data[channel * v + i] = 0 }
        }
    }

    static func shuffled(_ values: [Int], _ rng: inout RandomSource) -> [Int] {
        var out = values
        if out.count > 1 { for i in stride(from: out.count - 1, to: 0, by: -1) { out.swapAt(i, rng.integer(0, i)) } }
        return out
    }

    /// Connected components of `mask` (26-connectivity; 8 within each slice when `planar`), labelled 1…n,
    /// with their sizes.
    static func components(_ mask: [Bool], shape: [Int], planar: Bool) -> (labels: [Int], sizes: [Int]) {
        let (d, h, w) = (shape[0], shape[1], shape[2])
        var labels = [Int](repeating: 0, count: mask.count)
        var sizes: [Int] = []
        var stack: [Int] = []
        for start in 0..<mask.count where mask[start] && labels[start] == 0 {
            let id = sizes.count + 1
            labels[start] = id
            stack.append(start)
            var size = 0
            while let i = stack.popLast() {
                size += 1
                let z = i / (h * w), y = (i / w) % h, x = i % w
                for dz in (planar ? 0...0 : -1...1) {
                    let zz = z + dz
                    guard zz >= 0 && zz < d else { continue }
                    for dy in -1...1 {
                        let yy = y + dy
                        guard yy >= 0 && yy < h else { continue }
                        for dx in -1...1 {
                            let xx = x + dx
                            guard xx >= 0 && xx < w else { continue }
                            let j = (zz * h + yy) * w + xx
                            if mask[j] && labels[j] == 0 { labels[j] = id; stack.append(j) }
                        }
                    }
                }
            }
            sizes.append(size)
        }
        return (labels, sizes)
    }
}

/// skimage's `ball(radius)` (3-D) or `disk(radius)` (2-D, applied per slice) for a real radius, anchored as a
/// 'same'-padded convolution anchors it (offset −(n − 1) / 2 rounded down), stored as one x-interval per
/// (z, y) row, so that dilation costs one prefix-sum lookup per row and voxel.
struct StructuringElement {
    /// (dz, dy, x from, x to) relative to the output voxel.
    let rows: [(Int, Int, Int, Int)]

    init(radius r: Double, planar: Bool) {
        var rows: [(Int, Int, Int, Int)] = []
        if planar {
            // disk: the grid arange(−r, r + 1) on both axes, X² + Y² ≤ r².
            let values = stride(from: -r, to: r + 1, by: 1).map { $0 }
            let anchor = (values.count - 1) / 2
            for (yi, y) in values.enumerated() {
                let xs = values.indices.filter { values[$0] * values[$0] + y * y <= r * r }
                if let a = xs.first, let b = xs.last { rows.append((0, yi - anchor, a - anchor, b - anchor)) }
            }
        } else {
            // ball: n = floor(2r + 1) points from −r to r on each axis, X² + Y² + Z² ≤ r².
            let n = Int(2 * r + 1)
            let step = n > 1 ? (r - -r) / Double(n - 1) : 0
            let values = (0..<n).map { Double($0) * step + -r }
            let anchor = (n - 1) / 2
            for (zi, z) in values.enumerated() {
                for (yi, y) in values.enumerated() {
                    let xs = values.indices.filter { values[$0] * values[$0] + y * y + z * z <= r * r }
                    if let a = xs.first, let b = xs.last { rows.append((zi - anchor, yi - anchor, a - anchor, b - anchor)) }
                }
            }
        }
        self.rows = rows
    }

    /// out[v] = any element offset o with mask[v + o] (outside the volume: false).
    func dilate(_ mask: [Bool], shape: [Int]) -> [Bool] {
        let (d, h, w) = (shape[0], shape[1], shape[2])
        // prefix[(z·h + y)·(w + 1) + x] = set voxels in row (z, y) before x.
        var prefix = [Int32](repeating: 0, count: d * h * (w + 1))
        for row in 0..<(d * h) {
            var running: Int32 = 0
            for x in 0..<w {
                prefix[row * (w + 1) + x] = running
                if mask[row * w + x] { running += 1 }
            }
            prefix[row * (w + 1) + w] = running
        }
        var out = [Bool](repeating: false, count: mask.count)
        for z in 0..<d {
            for y in 0..<h {
                for x in 0..<w {
                    for (dz, dy, a, b) in rows {
                        let zz = z + dz, yy = y + dy
                        guard zz >= 0 && zz < d && yy >= 0 && yy < h else { continue }
                        let lo = max(0, x + a), hi = min(w - 1, x + b)
                        guard lo <= hi else { continue }
                        let base = (zz * h + yy) * (w + 1)
                        if prefix[base + hi + 1] > prefix[base + lo] { out[(z * h + y) * w + x] = true; break }
                    }
                }
            }
        }
        return out
    }

    /// nnU-Net's erosion: the complement of the dilated complement (outside the volume counts as set).
    func erode(_ mask: [Bool], shape: [Int]) -> [Bool] {
        dilate(mask.map { !$0 }, shape: shape).map { !$0 }
    }
}
