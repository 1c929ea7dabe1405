import Dispatch
import JSON
import PlansModel
import Resampling

/// A multi-channel 3-D array in nnU-Net's array order `(c, d0, d1, d2)`, float32, last axis fastest.
public struct ChannelArray: Equatable, Sendable {
    public var shape: [Int]          // spatial, 3 entries
    public var channels: [[Float]]   // one buffer per channel

    public init(shape: [Int], channels: [[Float]]) {
        precondition(shape.count == 3 && channels.allSatisfy { $0.count == shape.reduce(1, *) }, "ChannelArray shape mismatch")
        self.shape = shape
        self.channels = channels
    }

    public var voxelCount: Int { shape.reduce(1, *) }
}

/// What preprocessing records to undo itself (spec §6.6). `spacing` is as read (untransposed); the shapes
/// and the bounding box are in transposed order, as nnU-Net keeps them.
public struct PreprocessingProperties: Equatable, Sendable {
    public var spacing: [Double]
    public var shapeBeforeCropping: [Int]
    /// Half-open `[start, end)` per (transposed) axis.
    public var boundingBox: [[Int]]
    public var shapeAfterCropping: [Int]
}

/// Errors that name the case and the problem.
public struct PreprocessingError: Error, CustomStringConvertible, Equatable {
    public let detail: String
    public init(detail: String) { self.detail = detail }
    public var description: String { "PREPROCESSING_FAILED: \(detail)" }
}

/// nnU-Net's `DefaultPreprocessor.run_case` for inference (spec §6): cast, transpose, crop to the
/// hole-filled non-zero box, normalise per channel, resample to the configuration's spacing.
public struct Preprocessor: Sendable {
    public var transposeForward: [Int]
    public var targetSpacing: [Double]
    public var normalizationSchemes: [String]
    public var useMaskForNorm: [Bool]
    public var intensityProperties: [String: Plans.IntensityProperties]
    public var resamplingData: Resample.Options
    public var resamplingSegmentation: Resample.Options

    public init(plans: Plans, configuration: ConfigurationPlan) {
        transposeForward = plans.transposeForward
        targetSpacing = configuration.spacing
        normalizationSchemes = configuration.normalizationSchemes
        useMaskForNorm = configuration.useMaskForNorm
        intensityProperties = plans.foregroundIntensityPropertiesPerChannel
        resamplingData = Self.options(configuration.resamplingDataKwargs, defaults: .data)
        resamplingSegmentation = Self.options(configuration.resamplingSegKwargs, defaults: .segmentation)
    }

    public static func options(_ kwargs: JSONValue, defaults: Resample.Options) -> Resample.Options {
        Resample.Options(isSegmentation: kwargs["is_seg"]?.bool ?? defaults.isSegmentation, order: kwargs["order"]?.int ?? defaults.order,
                         orderZ: kwargs["order_z"]?.int ?? defaults.orderZ, forceSeparateZ: kwargs["force_separate_z"]?.bool)
    }

    /// - Parameters:
    ///   - image: channels in the reader's array order `(z, y, x)`.
    ///   - spacing: reader spacing in the same order (SimpleITK's spacing reversed).
    ///   - previousStage: for a cascade's second stage, the first stage's label map on the same grid;
    ///     it is cropped, resampled as a segmentation and appended as one channel per foreground label.
    public func run(_ image: ChannelArray, spacing: [Double], previousStage: [Float]? = nil,
                    foregroundLabels: [Int] = []) throws -> (data: ChannelArray, properties: PreprocessingProperties) {
        if let previousStage, previousStage.count != image.voxelCount {
            throw PreprocessingError(detail: "previous-stage segmentation has \(previousStage.count) voxels, the image \(image.voxelCount)")
        }
        var (data, seg, properties) = try preprocess(image, spacing: spacing, segmentation: previousStage)
        if let seg {
            for label in foregroundLabels {
                data.channels.append(seg.map { $0 == Float(label) ? 1 : 0 })
            }
        }
        return (data, properties)
    }

    /// Spec §4.1 steps 1–6 with an optional segmentation on the image grid (training labels, or a
    /// cascade's previous stage): it is transposed and cropped like the image, set to −1 where it is 0
    /// outside the filled non-zero mask, gives the z-score mask (seg ≥ 0) and is resampled as a
    /// segmentation.
    public func preprocess(_ image: ChannelArray, spacing: [Double], segmentation: [Float]?) throws
        -> (data: ChannelArray, segmentation: [Float]?, properties: PreprocessingProperties) {
        guard image.channels.count == normalizationSchemes.count else {
            throw PreprocessingError(detail: "the model expects \(normalizationSchemes.count) channel(s), the case has \(image.channels.count)")
        }
        // 1. Transpose.
        let transposed = Self.transpose(image, axes: transposeForward)
        let originalSpacing = transposeForward.map { spacing[$0] }
        let shapeBefore = transposed.shape
        // 2. Crop to the hole-filled non-zero mask.
        let (box, mask) = Self.nonZeroBoundingBox(transposed)
        var cropped = Self.crop(transposed, box: box)
        let croppedMask = Self.crop(ChannelArray(shape: transposed.shape, channels: [mask.map { $0 ? 1 : 0 }]), box: box).channels[0]
        let shapeAfter = cropped.shape
        var croppedSeg: [Float]?
        var normalizationMask = croppedMask
        if let segmentation {
            guard segmentation.count == image.voxelCount else {
                throw PreprocessingError(detail: "the segmentation has \(segmentation.count) voxels, the image \(image.voxelCount)")
            }
            let transposedSeg = Self.transpose(ChannelArray(shape: image.shape, channels: [segmentation]), axes: transposeForward)
            var seg = Self.crop(transposedSeg, box: box).channels[0]
            for i in 0..<seg.count where seg[i] == 0 && croppedMask[i] == 0 { seg[i] = -1 }
            normalizationMask = seg.map { $0 >= 0 ? 1 : 0 }
            croppedSeg = seg
        }
        // 3. Target spacing and shape (2-D configurations keep the slice axis spacing).
        let target = targetSpacing.count < originalSpacing.count ? [originalSpacing[0]] + targetSpacing : targetSpacing
        let newShape = Resample.newShape(shape: shapeAfter, spacing: originalSpacing, target: target)
        // 4. Normalise.
        for c in 0..<cropped.channels.count {
            cropped.channels[c] = try normalize(cropped.channels[c], channel: c, mask: normalizationMask)
        }
        // 5. Resample.
        var data = cropped
        if newShape != shapeAfter {
            let grids = cropped.channels.map { Grid3D(shape: shapeAfter, values: $0.map(Double.init)) }
            let resized = Resample.channels(grids, newShape: newShape, currentSpacing: originalSpacing, targetSpacing: target,
                                            options: resamplingData)
            data = ChannelArray(shape: newShape, channels: resized.map { $0.values.map { Float($0) } })
        }
        if let seg = croppedSeg, newShape != shapeAfter {
            croppedSeg = Resample.channels([Grid3D(shape: shapeAfter, values: seg.map(Double.init))], newShape: newShape,
                                           currentSpacing: originalSpacing, targetSpacing: target, options: resamplingSegmentation)[0]
                .values.map { Float($0) }
        }
        return (data, croppedSeg, PreprocessingProperties(spacing: spacing, shapeBeforeCropping: shapeBefore, boundingBox: box,
                                                          shapeAfterCropping: shapeAfter))
    }

    // MARK: Normalisation (spec §6.4)

    func normalize(_ x: [Float], channel: Int, mask: [Float]) throws -> [Float] {
        let scheme = normalizationSchemes[channel]
        let eps: Float = 1e-8
        switch scheme {
        case "ZScoreNormalization":
            if useMaskForNorm.indices.contains(channel) && useMaskForNorm[channel] {
                let inside = (0..<x.count).filter { mask[$0] != 0 }
                let values = inside.map { x[$0] }
                let mean = NumpyFloat32.mean(values)
                let std = NumpyFloat32.standardDeviation(values, mean: mean)
                var y = x
                for i in inside { y[i] = (x[i] - mean) / max(std, eps) }
                return y
            }
            let mean = NumpyFloat32.mean(x)
            let std = NumpyFloat32.standardDeviation(x, mean: mean)
            let divisor = max(std, eps)
            return Self.parallelMap(x) { ($0 - mean) / divisor }
        case "CTNormalization":
            guard let p = intensityProperties[String(channel)] else {
                throw PreprocessingError(detail: "plans lack foreground_intensity_properties_per_channel[\(channel)] needed by CTNormalization")
            }
            let lower = Float(p.percentile00_5), upper = Float(p.percentile99_5), mean = Float(p.mean), std = max(Float(p.std), eps)
            return Self.parallelMap(x) { (min(max($0, lower), upper) - mean) / std }
        case "RescaleTo01Normalization":
            guard let lo = x.min() else { return x }
            let shifted = Self.parallelMap(x) { $0 - lo }
            let hi = max(shifted.max() ?? 0, eps)
            return Self.parallelMap(shifted) { $0 / hi }
        case "RGBTo01Normalization":
            return Self.parallelMap(x) { $0 / 255 }
        case "NoNormalization":
            return x
        default:
            throw PreprocessingError(detail: "normalization scheme \(scheme) of channel \(channel) is not supported")
        }
    }

    /// `x.map(f)` in parallel chunks (elementwise, so the result is the same).
    static func parallelMap(_ x: [Float], _ f: @Sendable (Float) -> Float) -> [Float] {
        let chunk = 1 << 16
        return [Float](unsafeUninitializedCapacity: x.count) { out, count in
            x.withUnsafeBufferPointer { source in
                nonisolated(unsafe) let (from, to) = (source.baseAddress, out.baseAddress)
                DispatchQueue.concurrentPerform(iterations: (x.count + chunk - 1) / chunk) { c in
                    for i in (c &* chunk)..<min(x.count, (c &+ 1) &* chunk) { (to! + i).initialize(to: f(from![i])) }
                }
            }
            count = x.count
        }
    }

    // MARK: Geometry helpers

    static func transpose(_ a: ChannelArray, axes: [Int]) -> ChannelArray {
        if axes == [0, 1, 2] { return a }
        let s = a.shape
        let newShape = axes.map { s[$0] }
        let strides = [s[1] * s[2], s[2], 1]
        return ChannelArray(shape: newShape, channels: a.channels.map { channel in
            var out = [Float](repeating: 0, count: channel.count)
            var i = 0
            for p in 0..<newShape[0] { for q in 0..<newShape[1] { for r in 0..<newShape[2] {
                out[i] = channel[p * strides[axes[0]] + q * strides[axes[1]] + r * strides[axes[2]]]
                i += 1
            } } }
            return out
        })
    }

    /// The bounding box of the non-zero mask (OR over channels) after 3-D hole filling (face
    /// connectivity); the whole image when the mask is empty. Returns the box and the filled mask.
    public static func nonZeroBoundingBox(_ a: ChannelArray) -> (box: [[Int]], mask: [Bool]) {
        let n = a.voxelCount
        var mask = [Bool](repeating: false, count: n)
        for channel in a.channels { for i in 0..<n where channel[i] != 0 { mask[i] = true } }
        mask = fillHoles(mask, shape: a.shape)
        var lo = a.shape, hi = [-1, -1, -1]
        var i = 0
        for z in 0..<a.shape[0] { for y in 0..<a.shape[1] { for x in 0..<a.shape[2] {
            if mask[i] {
                lo = [min(lo[0], z), min(lo[1], y), min(lo[2], x)]
                hi = [max(hi[0], z), max(hi[1], y), max(hi[2], x)]
            }
            i += 1
        } } }
        if hi[0] < 0 { return ((0..<3).map { [0, a.shape[$0]] }, mask) }
        return ((0..<3).map { [lo[$0], hi[$0] + 1] }, mask)
    }

    /// scipy `binary_fill_holes` with the default (face) structure: background not connected to the
    /// array border becomes foreground.
    static func fillHoles(_ mask: [Bool], shape: [Int]) -> [Bool] {
        let (d, h, w) = (shape[0], shape[1], shape[2])
        var outside = [Bool](repeating: false, count: mask.count)
        var stack: [Int] = []
        func seed(_ i: Int) { if !mask[i] && !outside[i] { outside[i] = true; stack.append(i) } }
        for z in 0..<d { for y in 0..<h { for x in 0..<w where z == 0 || z == d - 1 || y == 0 || y == h - 1 || x == 0 || x == w - 1 {
            seed((z * h + y) * w + x)
        } } }
        while let i = stack.popLast() {
            let x = i % w, y = (i / w) % h, z = i / (w * h)
            if x > 0 { seed(i - 1) }
            if x < w - 1 { seed(i + 1) }
            if y > 0 { seed(i - w) }
            if y < h - 1 { seed(i + w) }
            if z > 0 { seed(i - w * h) }
            if z < d - 1 { seed(i + w * h) }
        }
        return outside.map { !$0 }
    }

    public static func crop(_ a: ChannelArray, box: [[Int]]) -> ChannelArray {
        let shape = box.map { $0[1] - $0[0] }
        if shape == a.shape { return a }
        return ChannelArray(shape: shape, channels: a.channels.map { channel in
            var out: [Float] = []
            out.reserveCapacity(shape.reduce(1, *))
            for z in box[0][0]..<box[0][1] { for y in box[1][0]..<box[1][1] {
                let start = (z * a.shape[1] + y) * a.shape[2]
                out += channel[(start + box[2][0])..<(start + box[2][1])]
            } }
            return out
        })
    }
}
