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
        if logitsShape != properties.shapeAfterCropping {
            // One class at a time (each resize is parallel inside): only one class is ever held in float64, on
            // either grid — not every class at once (26 classes of a 244×202×224 CT were 2.3 GB of doubles).
            for k in channels.indices {
                let grid = Grid3D(shape: logitsShape, values: channels[k].map { Double(Float($0)) })
                channels[k] = []
                let resized = Resample.channels([grid], newShape: properties.shapeAfterCropping, currentSpacing: current,
                                                targetSpacing: spacingTransposed, options: probabilityResampling)
                channels[k] = resized[0].values.map { Float16($0) }
            }
        }
        let cropShape = properties.shapeAfterCropping
        let cropVoxels = cropShape.reduce(1, *)
        let classes = channels.count
        // 2. Segmentation (and probabilities).
        var segmentation = [UInt16](repeating: 0, count: cropVoxels)
        var probabilities: [[Float]]?
        if let regions = regionClassOrder {
            // Sigmoid per region, one region at a time (the probability planes are kept only when asked for).
            var kept: [[Float]] = []
            for (i, label) in regions.enumerated() where i < classes {
                let p = channels[i].map { 1 / (1 + exp(-Float($0))) }
                for v in 0..<cropVoxels where p[v] > 0.5 { segmentation[v] = UInt16(label) }
                if wantProbabilities { kept.append(p) }
            }
            if wantProbabilities {
                for i in kept.count..<classes { kept.append(channels[i].map { 1 / (1 + exp(-Float($0))) }) }
                probabilities = kept
            }
        } else if wantProbabilities {
            var p = [[Float]](repeating: [Float](repeating: 0, count: cropVoxels), count: classes)
            for v in 0..<cropVoxels {
                var m = -Float.infinity
                for k in 0..<classes { m = max(m, Float(channels[k][v])) }
                var sum: Float = 0
                for k in 0..<classes {
                    let e = expf(Float(channels[k][v]) - m)
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
            // Argmax in parallel chunks (each voxel on its own).
            let chunk = 1 << 16
            segmentation.withUnsafeMutableBufferPointer { segBuffer in
                nonisolated(unsafe) let seg = segBuffer.baseAddress!
                let planes = channels
                DispatchQueue.concurrentPerform(iterations: (cropVoxels + chunk - 1) / chunk) { c in
                    for v in (c * chunk)..<min(cropVoxels, (c + 1) * chunk) {
                        var best = 0
                        for k in 1..<classes where planes[k][v] > planes[best][v] { best = k }
                        seg[v] = UInt16(best)
                    }
                }
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
