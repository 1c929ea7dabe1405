import Dispatch
import Foundation
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
    public func export(_ logits: consuming HalfLogits, properties: PreprocessingProperties, probabilities wantProbabilities: Bool) -> CasePrediction {
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
            let grid = Grid3D(shape: logitsShape, values: source.map { Double(Float($0)) })
            let resized = Resample.channels([grid], newShape: cropShape, currentSpacing: current,
                                            targetSpacing: spacingTransposed, options: probabilityResampling)
            return resized[0].values.map { Float16($0) }
        }
        // 2. Segmentation (and probabilities).
        var segmentation = [UInt16](repeating: 0, count: cropVoxels)
        var probabilities: [[Float]]?
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
            probabilities = p
        } else {
            // Streaming argmax: the running maximum and its class, one class at a time in order (a later class
            // wins only when strictly greater: the first maximum, as argmax), voxels in parallel chunks. Only
            // one class plane and the running maximum are held on the original grid.
            var best = takePlane(0)
            let chunk = 1 << 16
            for k in 1..<max(classes, 1) {
                let plane = takePlane(k)
                let label = UInt16(k)
                segmentation.withUnsafeMutableBufferPointer { segBuffer in best.withUnsafeMutableBufferPointer { bestBuffer in
                    plane.withUnsafeBufferPointer { planeBuffer in
                        nonisolated(unsafe) let (seg, top, values) = (segBuffer.baseAddress!, bestBuffer.baseAddress!, planeBuffer.baseAddress!)
                        DispatchQueue.concurrentPerform(iterations: (cropVoxels + chunk - 1) / chunk) { c in
                            for v in (c &* chunk)..<min(cropVoxels, (c &+ 1) &* chunk) where values[v] > top[v] {
                                top[v] = values[v]
                                seg[v] = label
                            }
                        }
                    }
                } }
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
        return CasePrediction(shape: outShape, segmentation: finalSegmentation, probabilities: finalProbabilities)
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
