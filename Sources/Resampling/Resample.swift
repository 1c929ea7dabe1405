/// nnU-Net's `resample_data_or_seg_to_shape` (spec §6.5, §7, §10.1): per channel, a 3-D spline resize,
/// or — for anisotropic spacing — per-slice in-plane resizes followed by nearest-neighbour along the
/// slice axis. Segmentations are resized one label indicator at a time.
public enum Resample {
    /// `ANISO_THRESHOLD`: spacing is anisotropic when max / min > 3.
    public static let anisotropyThreshold = 3.0

    public struct Options: Equatable, Sendable {
        public var isSegmentation: Bool
        public var order: Int
        public var orderZ: Int
        /// nil: decide from the spacings (spec §6.5.2).
        public var forceSeparateZ: Bool?

        public init(isSegmentation: Bool = false, order: Int = 3, orderZ: Int = 0, forceSeparateZ: Bool? = nil) {
            self.isSegmentation = isSegmentation
            self.order = order
            self.orderZ = orderZ
            self.forceSeparateZ = forceSeparateZ
        }

        public static let data = Options(isSegmentation: false, order: 3, orderZ: 0)
        public static let segmentation = Options(isSegmentation: true, order: 1, orderZ: 0)
        public static let probabilities = Options(isSegmentation: false, order: 1, orderZ: 0)
    }

    static func isAnisotropic(_ spacing: [Double]) -> Bool {
        (spacing.max() ?? 1) / (spacing.min() ?? 1) > anisotropyThreshold
    }

    /// Axes whose spacing equals the largest one.
    static func lowResolutionAxes(_ spacing: [Double]) -> [Int] {
        let m = spacing.max() ?? 1
        return spacing.indices.filter { m / spacing[$0] == 1 }
    }

    /// The separate-z decision: the slice axis, or nil to resample in 3-D.
    public static func separateAxis(current: [Double], target: [Double], force: Bool?) -> Int? {
        var axes: [Int]?
        if let force {
            axes = force ? lowResolutionAxes(current) : nil
        } else if isAnisotropic(current) {
            axes = lowResolutionAxes(current)
        } else if isAnisotropic(target) {
            axes = lowResolutionAxes(target)
        }
        guard let axes, axes.count == 1 else { return nil }
        return axes[0]
    }

    /// `new_shape[i] = round(original_spacing[i] / target[i] * shape[i])`, half to even, in float64.
    public static func newShape(shape: [Int], spacing: [Double], target: [Double]) -> [Int] {
        (0..<shape.count).map { Int((spacing[$0] / target[$0] * Double(shape[$0])).rounded(.toNearestOrEven)) }
    }

    /// Resamples every channel to `newShape`.
    public static func channels(_ channels: [Grid3D], newShape: [Int], currentSpacing: [Double], targetSpacing: [Double],
                                      options: Options) -> [Grid3D] {
        guard let first = channels.first, first.shape != newShape else { return channels }
        let axis = separateAxis(current: currentSpacing, target: targetSpacing, force: options.forceSeparateZ)
        return channels.map { channel in
            guard let axis else { return resize(channel, to: newShape, order: options.order, isSegmentation: options.isSegmentation) }
            // In-plane per slice, then along the slice axis.
            var inPlaneShape = newShape
            inPlaneShape[axis] = channel.shape[axis]
            var stacked = Grid3D(shape: inPlaneShape)
            for s in 0..<channel.shape[axis] {
                let slice = extractSlice(channel, axis: axis, index: s)
                var sliceTarget = inPlaneShape
                sliceTarget[axis] = 1
                let resized = resize(slice, to: sliceTarget, order: options.order, isSegmentation: options.isSegmentation)
                insertSlice(resized, into: &stacked, axis: axis, index: s)
            }
            guard channel.shape[axis] != newShape[axis] else { return stacked }
            if !options.isSegmentation || options.orderZ == 0 {
                precondition(options.orderZ == 0, "order_z \(options.orderZ) is not supported (nnU-Net plans use 0)")
                return SplineZoom.nearestAlongAxis(stacked, axis: axis, length: newShape[axis])
            }
            preconditionFailure("segmentation with order_z > 0 is not supported")
        }
    }

    /// skimage `resize` for data; batchgenerators 0.25.5 `resize_segmentation` for label maps.
    ///
    /// Label maps: every label's indicator is resized with `order`, and each voxel takes the label with
    /// the largest interpolated score; exact ties go to the nearest-neighbour label when it is one of the
    /// tied labels (`seg_tiebreak="nearest"`), else to the smallest tied label. (This is what the
    /// reference environment runs; the older "≥ 0.5, later label wins" rule in spec §7 predates
    /// batchgenerators 0.25.5.)
    static func resize(_ g: Grid3D, to shape: [Int], order: Int, isSegmentation: Bool) -> Grid3D {
        guard isSegmentation else { return SplineZoom.resize(g, to: shape, order: order) }
        if order == 0 { return SplineZoom.resize(g, to: shape, order: 0) }
        let labels = Set(g.values).sorted()
        let count = shape.reduce(1, *)
        guard labels.count > 1 else { return Grid3D(shape: shape, repeating: labels.first ?? 0) }
        let nearest = SplineZoom.resize(g, to: shape, order: 0)
        let position = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($0.element, $0.offset) })
        let nearestIndex = nearest.values.map { position[$0] ?? -1 }
        var winner = [Int](repeating: 0, count: count)
        var nearestOnTop = [Bool](repeating: false, count: count)
        var best = [Double]()
        for (i, label) in labels.enumerated() {
            let score = SplineZoom.resize(Grid3D(shape: g.shape, values: g.values.map { $0 == label ? 1 : 0 }), to: shape, order: order).values
            if i == 0 {
                best = score
                for v in 0..<count { nearestOnTop[v] = nearestIndex[v] == 0 && score[v] > 0 }
                continue
            }
            for v in 0..<count {
                let isNearest = nearestIndex[v] == i
                if score[v] == best[v] && score[v] > 0 && isNearest { nearestOnTop[v] = true }
                if score[v] > best[v] {
                    nearestOnTop[v] = isNearest
                    winner[v] = i
                    best[v] = score[v]
                }
            }
        }
        var out = Grid3D(shape: shape)
        for v in 0..<count {
            if nearestOnTop[v] { winner[v] = nearestIndex[v] }
            out.values[v] = labels[winner[v]]
        }
        return out
    }

    static func extractSlice(_ g: Grid3D, axis: Int, index: Int) -> Grid3D {
        let other = (0..<3).filter { $0 != axis }
        var out = Grid3D(shape: [1, g.shape[other[0]], g.shape[other[1]]])
        for a in 0..<g.shape[other[0]] {
            for b in 0..<g.shape[other[1]] {
                var idx = [0, 0, 0]
                idx[axis] = index
                idx[other[0]] = a
                idx[other[1]] = b
                out.values[a * g.shape[other[1]] + b] = g.values[g.index(idx[0], idx[1], idx[2])]
            }
        }
        return out
    }

    static func insertSlice(_ s: Grid3D, into g: inout Grid3D, axis: Int, index: Int) {
        let other = (0..<3).filter { $0 != axis }
        for a in 0..<g.shape[other[0]] {
            for b in 0..<g.shape[other[1]] {
                var idx = [0, 0, 0]
                idx[axis] = index
                idx[other[0]] = a
                idx[other[1]] = b
                g.values[g.index(idx[0], idx[1], idx[2])] = s.values[a * s.shape[2] + b]
            }
        }
    }
}
