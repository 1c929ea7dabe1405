import Dispatch
import Foundation
import Parallel
import PlansModel
import Preprocessing
import Resampling

/// A case's result on the original grid, in the reader's array order `(z, y, x)`.
public struct CasePrediction: Sendable {
    public var shape: [Int]
    /// Label values (channel index for label-based models, region labels for region-based ones).
    public var segmentation: [UInt16]
    /// Per-class probabilities `(K, z, y, x)` when requested: softmax (label-based) or sigmoid
    /// (region-based); outside the crop box channel 0 is 1 for label-based models.
    public var probabilities: [[Float]]?
    /// The model's confidence per voxel when requested: the logit of the winning class minus the logit of the
    /// strongest other class (= log(p_best / p_second) after softmax), `(z, y, x)` like ``segmentation``, ≥ 0.
    /// A class's signed margin (this where it won, minus this where it lost) crosses zero exactly where the
    /// class ties its rival: smooth contours are drawn on that crossing (``RTStructOptions/ContourMode/smooth``).
    /// Label-based models only; outside the crop box it is ``CasePrediction/confidentOutside``.
    public var confidence: [Float16]?

    /// The confidence of voxels outside the crop box (background for certain).
    public static let confidentOutside: Float16 = 64

    public init(shape: [Int], segmentation: [UInt16], probabilities: [[Float]]? = nil, confidence: [Float16]? = nil) {
        self.shape = shape
        self.segmentation = segmentation
        self.probabilities = probabilities
        self.confidence = confidence
    }

    /// ``confidence`` from class probabilities `(K, voxels)`: log(p_best / p_second) (ensembles, which average
    /// probabilities; equal to the logit margin for one softmax model).
    public static func confidence(fromProbabilities p: [[Float]]) -> [Float16]? {
        guard p.count > 1 else { return nil }
        let voxels = p[0].count
        var out = [Float16](repeating: 0, count: voxels)
        for v in 0..<voxels {
            var first: Float = 0, second: Float = 0
            for k in 0..<p.count {
                let x = p[k][v]
                if x > first { second = first; first = x } else if x > second { second = x }
            }
            let ratio = logf(max(first, 1e-30)) - logf(max(second, 1e-30))
            out[v] = Float16(min(ratio, Float(confidentOutside)))
        }
        return out
    }
}

/// From fold-averaged float16 logits on the preprocessed grid back to the original image (spec §10).
public struct PredictionExporter: Sendable {
    public var transposeForward: [Int]
    public var transposeBackward: [Int]
    public var configurationSpacing: [Double]
    public var probabilityResampling: Resample.Options
    public var regionClassOrder: [Int]?

    public init(plans: Plans, configuration: ConfigurationPlan, dataset: DatasetDescription) {
        transposeForward = plans.transposeForward
        transposeBackward = plans.transposeBackward
        configurationSpacing = configuration.spacing
        probabilityResampling = Preprocessor.options(configuration.resamplingProbabilitiesKwargs, defaults: .probabilities)
        regionClassOrder = dataset.isRegionBased ? (dataset.regionClassOrder ?? []) : nil
    }

    /// Consumes `logits`: each class's float16 plane is released once it is resampled, so a case never
    /// holds the logits twice (pass `consume logits` from a local).
    /// - Parameter wantConfidence: also ``CasePrediction/confidence`` (one more float16 plane on the original grid).
    public func export(_ logits: consuming HalfLogits, properties: PreprocessingProperties, probabilities wantProbabilities: Bool,
                       confidence wantConfidence: Bool = false) -> CasePrediction {
        // 1. Logits back to the cropped original grid (order 1 by default), kept in float16.
        let spacingTransposed = transposeForward.map { properties.spacing[$0] }
        let current = configurationSpacing.count == properties.shapeAfterCropping.count
            ? configurationSpacing : [spacingTransposed[0]] + configurationSpacing
        let logitsShape = logits.shape
        var channels = (consume logits).channels
        let cropShape = properties.shapeAfterCropping
        let cropVoxels = cropShape.reduce(1, *)
        let classes = channels.count
        /// Class k on the cropped original grid, taken out of `channels` (released there). Resampled one class
        /// at a time (each resize parallel inside): only one class is ever held in float64, on either grid.
        func takePlane(_ k: Int) -> [Float16] {
            let source = channels[k]
            channels[k] = []
            guard logitsShape != cropShape else { return source }
            let grid = Grid3D(shape: logitsShape, values: Self.converted(source) { Double(Float($0)) })
            let resized = Resample.channels([grid], newShape: cropShape, currentSpacing: current,
                                            targetSpacing: spacingTransposed, options: probabilityResampling)
            return Self.converted(resized[0].values) { Float16($0) }
        }
        // 2. Segmentation (and probabilities).
        var segmentation = [UInt16](repeating: 0, count: cropVoxels)
        var probabilities: [[Float]]?
        var confidence: [Float16]?
        if let regions = regionClassOrder {
            // Sigmoid per region, one region at a time (the probability planes are kept only when asked for).
            var kept: [[Float]] = []
            for i in 0..<classes {
                let p = takePlane(i).map { 1 / (1 + exp(-Float($0))) }
                if i < regions.count {
                    let label = UInt16(regions[i])
                    for v in 0..<cropVoxels where p[v] > 0.5 { segmentation[v] = label }
                }
                if wantProbabilities { kept.append(p) }
            }
            if wantProbabilities { probabilities = kept }
        } else if wantProbabilities {
            let planes = (0..<classes).map(takePlane)
            var p = [[Float]](repeating: [Float](repeating: 0, count: cropVoxels), count: classes)
            for v in 0..<cropVoxels {
                var m = -Float.infinity
                for k in 0..<classes { m = max(m, Float(planes[k][v])) }
                var sum: Float = 0
                for k in 0..<classes {
                    let e = expf(Float(planes[k][v]) - m)
                    p[k][v] = e
                    sum += e
                }
                var best = 0
                for k in 0..<classes {
                    p[k][v] /= sum
                    if p[k][v] > p[best][v] { best = k }
                }
                segmentation[v] = UInt16(best)
            }
            if wantConfidence { confidence = CasePrediction.confidence(fromProbabilities: p) }
            probabilities = p
        } else {
            // Streaming argmax: the running maximum and its class, one class at a time in order (a later class
            // wins only when strictly greater: the first maximum, as argmax), voxels in parallel chunks. Only
            // one class plane and the running maximum are held on the original grid.
            // With the confidence wanted, the runner-up's logit is kept as well (one more float16 plane).
            var best = takePlane(0)
            var second = [Float16](repeating: wantConfidence ? -.infinity : 0, count: wantConfidence ? cropVoxels : 0)
            let chunk = 1 << 16
            for k in 1..<max(classes, 1) {
                let plane = takePlane(k)
                let label = UInt16(k)
                segmentation.withUnsafeMutableBufferPointer { segBuffer in best.withUnsafeMutableBufferPointer { bestBuffer in
                    plane.withUnsafeBufferPointer { planeBuffer in second.withUnsafeMutableBufferPointer { secondBuffer in
                        nonisolated(unsafe) let (seg, top, values) = (segBuffer.baseAddress!, bestBuffer.baseAddress!, planeBuffer.baseAddress!)
                        // (An empty array's buffer may still have a base address: ask the flag, not the pointer.)
                        nonisolated(unsafe) let runnerUp = wantConfidence ? secondBuffer.baseAddress : nil
                        DispatchQueue.concurrentPerform(iterations: (cropVoxels + chunk - 1) / chunk) { c in
                            let range = (c &* chunk)..<min(cropVoxels, (c &+ 1) &* chunk)
                            if let runnerUp {
                                for v in range {
                                    let x = values[v]
                                    if x > top[v] {
                                        runnerUp[v] = top[v]
                                        top[v] = x
                                        seg[v] = label
                                    } else if x > runnerUp[v] {
                                        runnerUp[v] = x
                                    }
                                }
                            } else {
                                for v in range where values[v] > top[v] {
                                    top[v] = values[v]
                                    seg[v] = label
                                }
                            }
                        }
                    } }
                } }
            }
            if wantConfidence && classes > 1 {
                let limit = Float(CasePrediction.confidentOutside)
                confidence = (0..<cropVoxels).map { v in Float16(min(Float(best[v]) - Float(second[v]), limit)) }
            }
        }
        // 3. Paste into the uncropped (transposed) grid and transpose back.
        let full = properties.shapeBeforeCropping
        let pastedSegmentation = Self.paste(segmentation, shape: cropShape, into: full, box: properties.boundingBox, background: 0)
        let outShape = transposeBackward.map { full[$0] }
        let finalSegmentation = Self.transpose(pastedSegmentation, shape: full, axes: transposeBackward)
        var finalProbabilities: [[Float]]?
        if let probabilities {
            finalProbabilities = probabilities.enumerated().map { k, channel in
                let outside: Float = (k == 0 && regionClassOrder == nil) ? 1 : 0
                return Self.transpose(Self.paste(channel, shape: cropShape, into: full, box: properties.boundingBox, background: outside),
                                      shape: full, axes: transposeBackward)
            }
        }
        let finalConfidence = confidence.map {
            Self.transpose(Self.paste($0, shape: cropShape, into: full, box: properties.boundingBox, background: CasePrediction.confidentOutside),
                           shape: full, axes: transposeBackward)
        }
        return CasePrediction(shape: outShape, segmentation: finalSegmentation, probabilities: finalProbabilities, confidence: finalConfidence)
    }

    /// An element-wise conversion over the cores: float16 ↔ float64 has no instruction on the baseline target, and
    /// done serially for every class plane it kept export from scaling with threads (#16: 5.0 s at one thread,
    /// 4.4 s at two on the CT case).
    static func converted<A, B>(_ values: [A], _ convert: @escaping @Sendable (A) -> B) -> [B] {
        guard !values.isEmpty else { return [] }
        return [B](unsafeUninitializedCapacity: values.count) { buffer, count in
            values.withUnsafeBufferPointer { source in
                nonisolated(unsafe) let (from, to) = (source.baseAddress!, buffer.baseAddress!)
                Parallel.chunks(values.count, chunk: 1 << 16) { range in
                    for i in range { (to + i).initialize(to: convert(from[i])) }
                }
            }
            count = values.count
        }
    }

    static func paste<T>(_ crop: [T], shape: [Int], into full: [Int], box: [[Int]], background: T) -> [T] {
        if shape == full { return crop }
        var out = [T](repeating: background, count: full.reduce(1, *))
        var i = 0
        for z in box[0][0]..<box[0][1] { for y in box[1][0]..<box[1][1] {
            let row = (z * full[1] + y) * full[2]
            for x in box[2][0]..<box[2][1] {
                out[row + x] = crop[i]
                i += 1
            }
        } }
        return out
    }

    static func transpose<T>(_ a: [T], shape: [Int], axes: [Int]) -> [T] {
        if axes == [0, 1, 2] { return a }
        let newShape = axes.map { shape[$0] }
        let strides = [shape[1] * shape[2], shape[2], 1]
        var out = [T]()
        out.reserveCapacity(a.count)
        for p in 0..<newShape[0] { for q in 0..<newShape[1] { for r in 0..<newShape[2] {
            out.append(a[p * strides[axes[0]] + q * strides[axes[1]] + r * strides[axes[2]]])
        } } }
        return out
    }
}
