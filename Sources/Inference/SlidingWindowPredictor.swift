import Dispatch
import Foundation
import Preprocessing
import TensorKernels
import UNet

/// Logits of every class over a grid, in float16 as nnU-Net keeps them (spec §8.5).
public struct HalfLogits: Sendable {
    public var shape: [Int]
    public var channels: [[Float16]]
}

/// How logits are accumulated across tiles (spec §8.5). The reference accumulates in float16, rounding
/// after every addition; that is the default so that results match nnU-Net. `.float32` accumulates in
/// float32 and rounds once at the end (numerically nicer; differs from the reference by up to one fp16
/// ulp at tile overlaps and corners).
public enum Accumulation: String, Sendable, CaseIterable {
    case float16Reference = "fp16"
    case float32 = "fp32"
}

/// Sliding-window prediction with mirroring TTA and fold averaging, as `nnUNetPredictor` does on CPU.
public final class SlidingWindowPredictor: @unchecked Sendable {
    public let networks: [CompiledUNet]
    public let patchSize: [Int]
    public let numClasses: Int
    /// Spatial axes to mirror (network array order), or empty for no TTA.
    public let mirrorAxes: [Int]
    public let stepSize: Double
    public let accumulation: Accumulation
    let gaussian: [Float16]

    public init(networks: [CompiledUNet], patchSize: [Int], numClasses: Int, mirrorAxes: [Int], stepSize: Double = 0.5,
                accumulation: Accumulation = .float16Reference) {
        self.networks = networks
        self.patchSize = patchSize
        self.numClasses = numClasses
        self.mirrorAxes = mirrorAxes
        self.stepSize = stepSize
        self.accumulation = accumulation
        gaussian = SlidingWindow.gaussian(patchSize: patchSize)
    }

    /// The mirroring combinations in the reference's order: single axes, then pairs, then the triple,
    /// each lexicographic.
    public var mirrorCombinations: [[Int]] {
        var combos: [[Int]] = []
        func choose(_ k: Int, _ start: Int, _ current: [Int]) {
            if current.count == k { combos.append(current); return }
            guard start < mirrorAxes.count else { return }
            for i in start..<mirrorAxes.count { choose(k, i + 1, current + [mirrorAxes[i]]) }
        }
        for k in 1...max(1, mirrorAxes.count) where !mirrorAxes.isEmpty { choose(k, 0, []) }
        return combos
    }

    /// Fold-averaged float16 logits for a preprocessed case `(c, d0, d1, d2)`.
    /// `progress` is called after every tile with (tiles done, tiles total).
    public func predictLogits(_ data: ChannelArray, progress: ((Int, Int) -> Void)? = nil) throws -> HalfLogits {
        var ignored = 0.0
        return try predictLogits(data, networkSeconds: &ignored, progress: progress)
    }

    /// As above, adding the seconds spent inside the network's forward passes to `networkSeconds` (the rest
    /// of the sliding window is tile extraction, accumulation, division and fold averaging).
    public func predictLogits(_ data: ChannelArray, networkSeconds: inout Double, progress: ((Int, Int) -> Void)? = nil) throws -> HalfLogits {
        var total: HalfLogits?
        for (f, network) in networks.enumerated() {
            let result = try predictOneFold(data, network: network, networkSeconds: &networkSeconds) { done, all in
                progress?(f * all + done, all * self.networks.count)
            }
            if var sum = total {
                total = nil
                for k in 0..<numClasses {
                    Self.parallelUpdate(&sum.channels[k]) { i, value in Float16(Float(value) + Float(result.channels[k][i])) }
                }
                total = sum
            } else {
                total = result
            }
        }
        guard var logits = total else { throw PreprocessingError(detail: "no network to predict with") }
        if networks.count > 1 {
            let n = Float(networks.count)
            for k in 0..<numClasses { Self.parallelUpdate(&logits.channels[k]) { _, value in Float16(Float(value) / n) } }
        }
        return logits
    }

    func predictOneFold(_ data: ChannelArray, network: CompiledUNet, networkSeconds: inout Double,
                        progress: (Int, Int) -> Void) throws -> HalfLogits {
        let is2D = patchSize.count == 2
        let spatialPatch = is2D ? [1] + patchSize : patchSize
        // 1. Pad to at least the patch (2-D: in-plane axes only).
        let pads = SlidingWindow.padding(imageSize: data.shape, patchSize: spatialPatch)
        let padded = pads.contains { $0.below + $0.above > 0 } ? Self.pad(data, pads) : data
        let shape = padded.shape
        // 2. Tiles.
        let steps = SlidingWindow.steps(imageSize: is2D ? Array(shape.dropFirst()) : shape, patchSize: patchSize, stepSize: stepSize)
        var tiles: [[Int]] = []
        if is2D {
            for d in 0..<shape[0] { for a in steps[0] { for b in steps[1] { tiles.append([d, a, b]) } } }
        } else {
            for a in steps[0] { for b in steps[1] { for c in steps[2] { tiles.append([a, b, c]) } } }
        }
        let voxels = shape.reduce(1, *)
        let channels = padded.channels.count
        let (p0, p1, p2) = (spatialPatch[0], spatialPatch[1], spatialPatch[2])
        let tileVoxels = p0 * p1 * p2
        let gaussianFloat = gaussian.map { Float($0) }
        let classes = numClasses
        // One plane per class and one for the weights, each its own allocation, so that each class is released
        // as soon as it is divided out (the accumulator and the result never both hold every class).
        let halfAccumulator = accumulation == .float16Reference ? Accumulator<Float16>(classes: classes, voxels: voxels) : nil
        let floatAccumulator = accumulation == .float16Reference ? nil : Accumulator<Float>(classes: classes, voxels: voxels)
        for (t, start) in tiles.enumerated() {
            // Extract the tile.
            var input = Tensor(zeros: [1, channels] + patchSize)
            input.data.withUnsafeMutableBufferPointer { target in
                for c in 0..<channels {
                    padded.channels[c].withUnsafeBufferPointer { source in
                        for a in 0..<p0 { for b in 0..<p1 {
                            let from = ((start[0] &+ a) &* shape[1] &+ start[1] &+ b) &* shape[2] &+ start[2]
                            let to = c &* tileVoxels &+ (a &* p1 &+ b) &* p2
                            (target.baseAddress! + to).update(from: source.baseAddress! + from, count: p2)
                        } }
                    }
                }
            }
            let prediction = try mirroredPrediction(input, network: network, networkSeconds: &networkSeconds)
            // Accumulate: prediction × gaussian (fp32 × exact fp16 values), then += into the buffers. Planes of
            // the tile touch disjoint voxels, so they are accumulated in parallel; each voxel still receives the
            // tiles in order (the fp16 rounding sequence of the reference is unchanged).
            let geometry = TileGeometry(start: start, shape: shape, patch: (p0, p1, p2), classes: classes)
            prediction.data.withUnsafeBufferPointer { pred in
                gaussianFloat.withUnsafeBufferPointer { gauss in
                    if let halfAccumulator {
                        Self.accumulate(pred.baseAddress!, gauss.baseAddress!, into: halfAccumulator, geometry)
                    } else if let floatAccumulator {
                        Self.accumulate(pred.baseAddress!, gauss.baseAddress!, into: floatAccumulator, geometry)
                    }
                }
            }
            progress(t + 1, tiles.count)
        }
        // 3. Divide and cut the padding away, class by class (planes in parallel), straight into the per-class
        //    arrays; each accumulator plane is released once its class is out.
        let outVoxels = data.voxelCount
        let (d0, d1, d2) = (data.shape[0], data.shape[1], data.shape[2])
        let (o0, o1, o2) = (pads[0].below, pads[1].below, pads[2].below)
        var out = HalfLogits(shape: data.shape, channels: [])
        out.channels.reserveCapacity(classes)
        for k in 0..<classes {
            var allFinite = [Bool](repeating: true, count: d0)
            let channel = allFinite.withUnsafeMutableBufferPointer { finiteBuffer in
                [Float16](unsafeUninitializedCapacity: outVoxels) { target, count in
                    nonisolated(unsafe) let (target, ok) = (target.baseAddress!, finiteBuffer.baseAddress!)
                    nonisolated(unsafe) let (hl, hw) = (halfAccumulator?.planes[k], halfAccumulator?.weights)
                    nonisolated(unsafe) let (fl, fw) = (floatAccumulator?.planes[k], floatAccumulator?.weights)
                    DispatchQueue.concurrentPerform(iterations: d0) { a in
                        var i = a &* d1 &* d2
                        for b in 0..<d1 { for c in 0..<d2 {
                            let v = ((a &+ o0) &* shape[1] &+ b &+ o1) &* shape[2] &+ c &+ o2
                            let value = hl != nil ? Float16(Float(hl![v]) / Float(hw![v])) : Float16(fl![v] / fw![v])
                            if !value.isFinite { ok[a] = false }
                            (target + i).initialize(to: value)
                            i &+= 1
                        } }
                    }
                    count = outVoxels
                }
            }
            halfAccumulator?.release(k)
            floatAccumulator?.release(k)
            guard !allFinite.contains(false) else { throw PreprocessingError(detail: "encountered inf in the predicted logits (fp16 overflow)") }
            out.channels.append(channel)
        }
        return out
    }

    /// Zeroed accumulator planes, one allocation per class plus the weights; a plane can be released early.
    final class Accumulator<T: BinaryFloatingPoint>: @unchecked Sendable {
        private(set) var planes: [UnsafeMutablePointer<T>?]
        let weights: UnsafeMutablePointer<T>

        init(classes: Int, voxels: Int) {
            func zeroed() -> UnsafeMutablePointer<T> {
                let p = UnsafeMutablePointer<T>.allocate(capacity: max(voxels, 1))
                p.initialize(repeating: 0, count: voxels)
                return p
            }
            planes = (0..<classes).map { _ in zeroed() }
            weights = zeroed()
        }

        func release(_ k: Int) {
            planes[k]?.deallocate()
            planes[k] = nil
        }

        deinit {
            for p in planes { p?.deallocate() }
            weights.deallocate()
        }
    }

    /// Where a tile lies in the padded volume, and how many classes it carries.
    struct TileGeometry {
        var start: [Int]
        var shape: [Int]
        var patch: (Int, Int, Int)
        var classes: Int
    }

    /// `logits += prediction × gaussian`, `weights += gaussian` over one tile, rounding to `T` after every
    /// addition (float16: the reference's sequence; float32: plain sums). Planes of the tile touch disjoint
    /// voxels, so they run in parallel; each voxel still receives the tiles in order.
    static func accumulate<T: BinaryFloatingPoint>(_ prediction: UnsafePointer<Float>, _ gaussian: UnsafePointer<Float>,
                                                    into accumulator: Accumulator<T>, _ g: TileGeometry) {
        let planes = accumulator.planes.map { $0! }
        nonisolated(unsafe) let (pred, gauss, weights) = (prediction, gaussian, accumulator.weights)
        let (p0, p1, p2) = g.patch
        let tileVoxels = p0 * p1 * p2
        planes.withUnsafeBufferPointer { planeTable in
            nonisolated(unsafe) let logits = planeTable.baseAddress!
            DispatchQueue.concurrentPerform(iterations: p0) { a in
                for b in 0..<p1 {
                    let base = ((g.start[0] &+ a) &* g.shape[1] &+ g.start[1] &+ b) &* g.shape[2] &+ g.start[2]
                    let tileBase = (a &* p1 &+ b) &* p2
                    for x in 0..<p2 {
                        let w = gauss[tileBase &+ x], v = base &+ x
                        weights[v] = T(Float(weights[v]) + w)
                        for k in 0..<g.classes {
                            let plane = logits[k]
                            plane[v] = T(Float(plane[v]) + pred[k &* tileVoxels &+ tileBase &+ x] * w)
                        }
                    }
                }
            }
        }
    }

    /// `a[i] = f(i, a[i])` in parallel chunks (elementwise: the result is the same as in order).
    static func parallelUpdate<T>(_ a: inout [T], _ f: (Int, T) -> T) {
        let chunk = 1 << 16, count = a.count
        withoutActuallyEscaping(f) { f in
            a.withUnsafeMutableBufferPointer { buffer in
                nonisolated(unsafe) let (p, f) = (buffer.baseAddress!, f)
                DispatchQueue.concurrentPerform(iterations: (count + chunk - 1) / chunk) { c in
                    for i in (c &* chunk)..<min(count, (c &+ 1) &* chunk) { p[i] = f(i, p[i]) }
                }
            }
        }
    }

    /// `net(x)`, plus `flip(net(flip(x, axes)), axes)` for every mirroring combination, divided by the
    /// number of passes — in float32, in the reference's order.
    func mirroredPrediction(_ x: Tensor, network: CompiledUNet, networkSeconds: inout Double) throws -> Tensor {
        func forward(_ input: Tensor) throws -> Tensor {
            let start = DispatchTime.now().uptimeNanoseconds
            defer { networkSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
            return try network.forward(input)
        }
        var prediction = try forward(x)
        let combinations = mirrorCombinations
        guard !combinations.isEmpty else { return prediction }
        for axes in combinations {
            let flipped = try forward(Self.flip(x, axes: axes))
            let back = Self.flip(flipped, axes: axes)
            Self.parallelUpdate(&prediction.data) { i, value in value + back.data[i] }
        }
        let n = Float(combinations.count + 1)
        Self.parallelUpdate(&prediction.data) { _, value in value / n }
        return prediction
    }

    /// Reverses the given spatial axes (0-based, after N and C) of a plain tensor.
    static func flip(_ t: Tensor, axes: [Int]) -> Tensor {
        let spatial = t.spatialShape
        let dims = spatial.count == 3 ? spatial : [1] + spatial
        let flipAxes = spatial.count == 3 ? axes : axes.map { $0 + 1 }
        let (d, h, w) = (dims[0], dims[1], dims[2])
        let (fd, fh, fw) = (flipAxes.contains(0), flipAxes.contains(1), flipAxes.contains(2))
        var out = t
        let volume = d * h * w
        // Planes (channel, z) in parallel.
        out.data.withUnsafeMutableBufferPointer { outBuffer in t.data.withUnsafeBufferPointer { inBuffer in
            nonisolated(unsafe) let (o, i) = (outBuffer.baseAddress!, inBuffer.baseAddress!)
            DispatchQueue.concurrentPerform(iterations: t.shape[0] * t.shape[1] * d) { plane in
                let (c, z) = plane.quotientAndRemainder(dividingBy: d)
                let base = c &* volume
                let sz = fd ? d - 1 - z : z
                for y in 0..<h {
                    let sy = fh ? h - 1 - y : y
                    let row = base &+ (z &* h &+ y) &* w, sourceRow = base &+ (sz &* h &+ sy) &* w
                    if fw {
                        for x in 0..<w { o[row &+ x] = i[sourceRow &+ w &- 1 &- x] }
                    } else {
                        (o + row).update(from: i + sourceRow, count: w)
                    }
                }
            }
        } }
        return out
    }

    static func pad(_ a: ChannelArray, _ pads: [(below: Int, above: Int)]) -> ChannelArray {
        let shape = (0..<3).map { a.shape[$0] + pads[$0].below + pads[$0].above }
        return ChannelArray(shape: shape, channels: a.channels.map { channel in
            var out = [Float](repeating: 0, count: shape.reduce(1, *))
            for z in 0..<a.shape[0] { for y in 0..<a.shape[1] {
                let from = (z * a.shape[1] + y) * a.shape[2]
                let to = ((z + pads[0].below) * shape[1] + y + pads[1].below) * shape[2] + pads[2].below
                for x in 0..<a.shape[2] { out[to + x] = channel[from + x] }
            } }
            return out
        })
    }
}
