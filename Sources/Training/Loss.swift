import Dispatch
import Foundation
import TensorKernels

/// nnU-Net's Dice + cross-entropy loss for softmax (label-based) networks (spec 6.5): `CE + SoftDice`,
/// CE averaged over the annotated voxels, soft Dice with the background channel dropped, smooth 1e-5,
/// per sample or over the batch (`batchDice`), reported as `−mean(dc)`. With an ignore label, its voxels
/// are masked out of both terms (CE skipped when nothing is annotated).
public struct DiceCrossEntropyLoss: Sendable {
    public let numClasses: Int
    public let batchDice: Bool
    public let ignoreLabel: Int?
    public var smooth: Double = 1e-5
    /// Voxels per block of a sample (the unit of parallel work, fixed so that sums do not depend on the threads).
    var blockVoxels = 32_768

    public init(numClasses: Int, batchDice: Bool, ignoreLabel: Int? = nil) {
        self.numClasses = numClasses
        self.batchDice = batchDice
        self.ignoreLabel = ignoreLabel
    }

    /// Loss value and its gradient with respect to `logits` (`(N, K, spatial…)`, plain) for integer
    /// labels `target` (`N × spatial`, sample-major).
    public func callAsFunction(logits: Tensor, target: [Int16]) -> (loss: Double, gradient: Tensor) {
        let N = logits.shape[0], K = logits.shape[1], V = logits.spatialShape.reduce(1, *)
        precondition(K == numClasses && target.count == N * V, "logits \(logits.shape) vs \(target.count) labels")
        // The softmax goes straight into the gradient's buffer (0 at ignored voxels), which the second pass turns into
        // the gradient in place: no second logits-sized buffer (218 MB for a 128³ CT patch with 26 classes).
        var gradient = Tensor(shape: logits.shape, data: [Float](unsafeUninitializedCapacity: logits.count) { _, count in count = logits.count })
        // Per sample: Σ −log p_y, annotated voxels, and per class I, P, G — summed per block of voxels in parallel
        // (one sample of a CT patch is millions of voxels), then over the blocks in order: the same sums on any
        // number of threads.
        let blocks = Self.blocks(voxels: V, size: blockVoxels)
        var partial = [Double](repeating: 0, count: N * blocks.count * (2 + 3 * K))
        let ignore = ignoreLabel.map { Int16($0) }
        logits.data.withUnsafeBufferPointer { zp in
            gradient.data.withUnsafeMutableBufferPointer { pp in
                target.withUnsafeBufferPointer { tp in
                    partial.withUnsafeMutableBufferPointer { sp in
                        nonisolated(unsafe) let (z, p, t, sums) = (zp.baseAddress!, pp.baseAddress!, tp.baseAddress!, sp.baseAddress!)
                        DispatchQueue.concurrentPerform(iterations: N * blocks.count) { task in
                            let n = task / blocks.count, range = blocks[task % blocks.count]
                            let zn = z + n &* K &* V, pn = p + n &* K &* V, tn = t + n &* V
                            // ce, annotated, then I, P, G per class.
                            let out = sums + task &* (2 &+ 3 &* K)
                            var ceN = 0.0, annN = 0.0
                            // Tiles of voxels, class by class (contiguous runs instead of K strided streams per voxel).
                            // Each voxel's arithmetic and each sum's order over the voxels are those of a voxel-by-voxel
                            // loop; adding the 0 of an ignored voxel's probability leaves a sum unchanged.
                            withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 &* Self.tileVoxels) { scratch in
                                let m = scratch.baseAddress!, s = m + Self.tileVoxels
                                var start = range.lowerBound
                                while start < range.upperBound {
                                    let tile = min(Self.tileVoxels, range.upperBound &- start)
                                    let z0 = zn + start, labels = tn + start
                                    for i in 0..<tile { m[i] = z0[i]; s[i] = 0 }
                                    for k in 1..<K {
                                        let zk = z0 + k &* V
                                        for i in 0..<tile { m[i] = max(m[i], zk[i]) }
                                    }
                                    for k in 0..<K {
                                        let zk = z0 + k &* V, pk = pn + (start &+ k &* V)
                                        for i in 0..<tile { let e = exp(zk[i] - m[i]); pk[i] = e; s[i] += e }
                                    }
                                    for k in 0..<K {
                                        let pk = pn + (start &+ k &* V)
                                        if let ignore {
                                            for i in 0..<tile { pk[i] = labels[i] == ignore ? 0 : pk[i] / s[i] }
                                        } else {
                                            for i in 0..<tile { pk[i] = pk[i] / s[i] }
                                        }
                                    }
                                    for i in 0..<tile {
                                        let label = labels[i]
                                        if let ignore, label == ignore { continue }
                                        annN += 1
                                        let y = Int(label)
                                        ceN -= Double(z0[y &* V &+ i] - m[i]) - Double(log(s[i]))
                                        if y > 0 { out[2 &+ y] += Double(pn[start &+ y &* V &+ i]); out[2 &+ 2 &* K &+ y] += 1 }
                                    }
                                    for k in 1..<K {
                                        let pk = pn + (start &+ k &* V)
                                        var predicted = out[2 &+ K &+ k]
                                        for i in 0..<tile { predicted += Double(pk[i]) }
                                        out[2 &+ K &+ k] = predicted
                                    }
                                    start &+= tile
                                }
                            }
                            out[0] = ceN
                            out[1] = annN
                        }
                    }
                }
            }
        }
        let sums = BlockSums(partial, samples: N, blocks: blocks.count, classes: K)
        let totalAnnotated = sums.second.reduce(0, +)
        let ce = totalAnnotated > 0 ? sums.first.reduce(0, +) / totalAnnotated : 0
        // Dice terms of the foreground classes: per (sample, class) or per class over the batch; dL/dp = a·y + b.
        let (diceTotal, count, a, b) = sums.softDice(scoring: 1..<K, batchDice: batchDice, smooth: smooth)
        let dice = -diceTotal / count
        let ceScale = totalAnnotated > 0 ? Float(1 / totalAnnotated) : 0
        gradient.data.withUnsafeMutableBufferPointer { gp in
            target.withUnsafeBufferPointer { tp in
                // The buffer holds the softmax: each voxel's probabilities are read before its gradient replaces them.
                nonisolated(unsafe) let (gr, t) = (gp.baseAddress!, tp.baseAddress!)
                let (ca, cb) = (a.map { Float($0) }, b.map { Float($0) })
                DispatchQueue.concurrentPerform(iterations: N * blocks.count) { task in
                    let n = task / blocks.count, range = blocks[task % blocks.count]
                    let gn = gr + n &* K &* V, tn = t + n &* V
                    // dL/dp_k = a_k·[k = y] + b_k (a and b are 0 for the background, which Dice does not score); then CE's
                    // (p − onehot)/M and the Dice term through the softmax Jacobian, p_k·(dL/dp_k − Σ_j p_j·dL/dp_j). Tile by
                    // tile, class by class.
                    withUnsafeTemporaryAllocation(of: Float.self, capacity: Self.tileVoxels) { scratch in
                        let dot = scratch.baseAddress!
                        var start = range.lowerBound
                        while start < range.upperBound {
                            let tile = min(Self.tileVoxels, range.upperBound &- start)
                            let labels = tn + start
                            for i in 0..<tile { dot[i] = 0 }
                            for k in 0..<K {
                                let pk = UnsafePointer(gn + (start &+ k &* V))
                                let (a, b) = (ca[n &* K &+ k], cb[n &* K &+ k])
                                for i in 0..<tile { dot[i] += pk[i] * (Int(labels[i]) == k ? a + b : b) }
                            }
                            for k in 0..<K {
                                let gk = gn + (start &+ k &* V)
                                let (a, b) = (ca[n &* K &+ k], cb[n &* K &+ k])
                                for i in 0..<tile {
                                    let label = labels[i]
                                    if let ignore, label == ignore { continue }
                                    let pk = gk[i], hit = Int(label) == k
                                    let dp = hit ? a + b : b
                                    gk[i] = ceScale * (pk - (hit ? 1 : 0)) + pk * (dp - dot[i])
                                }
                            }
                            start &+= tile
                        }
                    }
                }
            }
        }
        return (ce + dice, gradient)
    }

    /// Voxels per tile of a block, the run each class is swept over (K tiles of logits and probabilities stay in L2).
    static let tileVoxels = 1024

    /// The voxel blocks a sample's loss is computed in: fixed by the volume alone, so the sums do not depend on the
    /// number of threads.
    static func blocks(voxels: Int, size: Int) -> [Range<Int>] {
        stride(from: 0, to: voxels, by: size).map { $0..<min($0 + size, voxels) }
    }
}

/// The per-sample sums of a blocked loss (``DiceCrossEntropyLoss``, ``RegionDiceBCELoss``): from partial sums laid out
/// `[sample][block][first, second, I₀…I_K−1, P₀…P_K−1, G₀…G_K−1]`, added block by block in order.
struct BlockSums {
    let samples: Int, classes: Int
    /// The two scalar terms per sample (the cross-entropy sum and the annotated voxels, for instance).
    var first: [Double], second: [Double]
    /// Σ p·y, Σ p and Σ y per sample and class, `[n·K + k]`.
    var inter: [Double], pred: [Double], truth: [Double]

    init(_ partial: [Double], samples N: Int, blocks: Int, classes K: Int) {
        (samples, classes) = (N, K)
        first = [Double](repeating: 0, count: N)
        second = first
        inter = [Double](repeating: 0, count: N * K)
        (pred, truth) = (inter, inter)
        for n in 0..<N {
            for b in 0..<blocks {
                let base = (n * blocks + b) * (2 + 3 * K)
                first[n] += partial[base]
                second[n] += partial[base + 1]
                for k in 0..<K {
                    inter[n * K + k] += partial[base + 2 + k]
                    pred[n * K + k] += partial[base + 2 + K + k]
                    truth[n * K + k] += partial[base + 2 + 2 * K + k]
                }
            }
        }
    }

    /// nnU-Net's soft Dice over the `scoring` classes, per sample or over the batch (`batchDice`): the sum of the Dice
    /// coefficients, their number, and per sample and class the coefficients of its gradient, dL/dp = a·y + b with
    /// L = −mean Dice (0 for classes not scored).
    func softDice(scoring: Range<Int>, batchDice: Bool, smooth: Double) -> (total: Double, count: Double, a: [Double], b: [Double]) {
        let (N, K) = (samples, classes)
        let groups = batchDice ? 1 : N
        let count = Double(groups * scoring.count)
        var total = 0.0
        var a = [Double](repeating: 0, count: N * K), b = a
        for g in 0..<groups {
            for k in scoring {
                var i = 0.0, p = 0.0, t = 0.0
                for n in (batchDice ? 0..<N : g..<(g + 1)) { i += inter[n * K + k]; p += pred[n * K + k]; t += truth[n * K + k] }
                let denominator = max(t + p + smooth, 1e-8)
                total += (2 * i + smooth) / denominator
                let clipped = t + p + smooth < 1e-8
                for n in (batchDice ? 0..<N : g..<(g + 1)) {
                    a[n * K + k] = -(1 / count) * 2 / denominator
                    b[n * K + k] = clipped ? 0 : (1 / count) * (2 * i + smooth) / (denominator * denominator)
                }
            }
        }
        return (total, count, a, b)
    }
}

/// nnU-Net's deep-supervision weights (spec 6.6): `1/2^i`, the lowest resolution set to 0, normalised.
public func deepSupervisionWeights(outputs: Int) -> [Double] {
    var w = (0..<outputs).map { 1 / pow(2, Double($0)) }
    if outputs > 1 { w[outputs - 1] = 0 }
    let s = w.reduce(0, +)
    return w.map { $0 / s }
}

/// Deep-supervision scales per output (spec 6.6): `1 / cumprod(strides)` for stages 0…n−2.
public func deepSupervisionScales(strides: [[Int]]) -> [[Double]] {
    var scale = [Double](repeating: 1, count: strides[0].count)
    var out: [[Double]] = []
    for s in 0..<(strides.count - 1) {
        scale = zip(scale, strides[s]).map { $0 / Double($1) }
        out.append(scale)
    }
    return out
}

/// PyTorch's `nearest-exact` source index for output index `i` when `input` samples are resized to `output`, in its
/// arithmetic: `floor((i + 0.5)·scale)` with `scale = in/out` in float32 and the product rounded to float32 before the
/// floor. Exact arithmetic differs where the product is an integer (e.g. 40 → 33 at i = 16: 660/33 = 20, torch 19 or 20
/// depending on the rounding of 40/33) — a whole slice of difference.
func nearestExactSource(_ i: Int, input: Int, output: Int) -> Int {
    let scale = Float(input) / Float(output)
    return min(input - 1, Int(Float((Double(i) + 0.5) * Double(scale)).rounded(.down)))
}

/// Nearest-exact downsampling of labels `(N, spatial…)` to `shape` (PyTorch `nearest-exact`, ``nearestExactSource(_:input:output:)``).
public func downsampleLabels(_ labels: [Int16], samples: Int, from input: [Int], to output: [Int]) -> [Int16] {
    if input == output { return labels }
    let inVolume = input.reduce(1, *), outVolume = output.reduce(1, *)
    let maps = zip(input, output).map { i, o in (0..<o).map { nearestExactSource($0, input: i, output: o) } }
    var result = [Int16](repeating: 0, count: samples * outVolume)
    let rank = input.count
    var inStrides = [Int](repeating: 1, count: rank)
    for d in stride(from: rank - 2, through: 0, by: -1) { inStrides[d] = inStrides[d + 1] * input[d + 1] }
    for n in 0..<samples {
        var index = [Int](repeating: 0, count: rank)
        for o in 0..<outVolume {
            var src = n * inVolume
            for d in 0..<rank { src += maps[d][index[d]] * inStrides[d] }
            result[n * outVolume + o] = labels[src]
            var d = rank - 1
            while d >= 0 { index[d] += 1; if index[d] < output[d] { break }; index[d] = 0; d -= 1 }
        }
    }
    return result
}

/// What a training step needs from its loss: the value and gradient for one output, and the online
/// pseudo-Dice counts of the full-resolution output.
public protocol SegmentationLoss: Sendable {
    var ignoreLabel: Int? { get }
    /// Loss value and gradient with respect to `logits` (`(N, K, spatial…)`) for integer labels `target`
    /// (`N × spatial`, the output's resolution).
    func callAsFunction(logits: Tensor, target: [Int16]) -> (loss: Double, gradient: Tensor)
    /// TP, FP, FN per scored class (foreground labels, or regions), ignore-label voxels left out.
    func pseudoDiceCounts(logits: Tensor, labels: [Int16]) -> (tp: [Double], fp: [Double], fn: [Double])
}

extension DiceCrossEntropyLoss: SegmentationLoss {
    /// Prediction = argmax over the channels; background not scored.
    public func pseudoDiceCounts(logits: Tensor, labels: [Int16]) -> (tp: [Double], fp: [Double], fn: [Double]) {
        let K = logits.shape[1], V = logits.spatialShape.reduce(1, *), N = logits.shape[0]
        var tp = [Double](repeating: 0, count: K - 1), fp = tp, fn = tp
        let ignore = ignoreLabel.map { Int16($0) }
        for n in 0..<N {
            for v in 0..<V {
                let label = labels[n * V + v]
                if let ignore, label == ignore { continue }
                var best = 0
                var bestValue = logits.data[n * K * V + v]
                for k in 1..<K where logits.data[(n * K + k) * V + v] > bestValue {
                    best = k
                    bestValue = logits.data[(n * K + k) * V + v]
                }
                let truth = Int(label)
                if best == truth {
                    if best > 0 { tp[best - 1] += 1 }
                } else {
                    if best > 0 { fp[best - 1] += 1 }
                    if truth > 0 { fn[truth - 1] += 1 }
                }
            }
        }
        return (tp, fp, fn)
    }
}

/// nnU-Net's loss for region-based datasets (spec 6.5, `DC_and_BCE_loss`): one sigmoid output per region
/// (a voxel belongs to a region when its label is one of the region's values), `BCEWithLogits + SoftDice`
/// with every channel scored (`do_bg = true`), smooth 1e-5, per sample or over the batch. BCE is the mean
/// over all elements; with an ignore label, its voxels are masked out of both terms and BCE is the masked
/// sum divided by the number of annotated voxels (not elements — nnU-Net's own normalisation).
public struct RegionDiceBCELoss: SegmentationLoss {
    public let regions: [[Int]]
    public let batchDice: Bool
    public let ignoreLabel: Int?
    public var smooth: Double = 1e-5
    /// Voxels per block of a sample (as ``DiceCrossEntropyLoss/blockVoxels``).
    var blockVoxels = 32_768

    public init(regions: [[Int]], batchDice: Bool, ignoreLabel: Int? = nil) {
        self.regions = regions
        self.batchDice = batchDice
        self.ignoreLabel = ignoreLabel
    }

    /// Which labels lie in which region: row `label + 1` of K flags for the labels −1…maximum, read by ``inRegion``.
    func membership() -> (flags: [Bool], maximum: Int) {
        let maximum = max(regions.flatMap { $0 }.max() ?? 0, ignoreLabel ?? 0)
        var flags = [Bool](repeating: false, count: (maximum + 2) * regions.count)
        for (k, region) in regions.enumerated() { for value in region where value >= 0 { flags[(value + 1) * regions.count + k] = true } }
        return (flags, maximum)
    }

    /// Whether `label` lies in region `k`, from ``membership()``'s flags (`rows`, K per label); a label outside
    /// −1…maximum is in no region.
    @inline(__always)
    static func inRegion(_ label: Int16, _ k: Int, rows: UnsafePointer<Bool>, regions K: Int, maximum: Int) -> Bool {
        label >= -1 && Int(label) <= maximum && rows[(Int(label) &+ 1) &* K &+ k]
    }

    public func callAsFunction(logits: Tensor, target: [Int16]) -> (loss: Double, gradient: Tensor) {
        let N = logits.shape[0], K = logits.shape[1], V = logits.spatialShape.reduce(1, *)
        precondition(K == regions.count && target.count == N * V, "logits \(logits.shape) vs \(regions.count) regions, \(target.count) labels")
        let (flags, maximum) = membership()
        let ignore = ignoreLabel.map { Int16($0) }
        // The sigmoid goes straight into the gradient's buffer (0 at ignored voxels), turned into the gradient in place.
        var gradient = Tensor(shape: logits.shape, data: [Float](unsafeUninitializedCapacity: logits.count) { _, count in count = logits.count })
        // Per block of a sample: BCE sum, annotated voxels, then I, P, G per region; summed over the blocks in order,
        // so the sums do not depend on the number of threads (``DiceCrossEntropyLoss/blocks(voxels:size:)``).
        let blocks = DiceCrossEntropyLoss.blocks(voxels: V, size: blockVoxels)
        let width = 2 + 3 * K
        var partial = [Double](repeating: 0, count: N * blocks.count * width)
        logits.data.withUnsafeBufferPointer { zp in
            gradient.data.withUnsafeMutableBufferPointer { pp in
                target.withUnsafeBufferPointer { tp in
                    flags.withUnsafeBufferPointer { fp in
                        partial.withUnsafeMutableBufferPointer { sp in
                            nonisolated(unsafe) let (z, p, t, f, sums) = (zp.baseAddress!, pp.baseAddress!, tp.baseAddress!, fp.baseAddress!, sp.baseAddress!)
                            DispatchQueue.concurrentPerform(iterations: N * blocks.count) { task in
                                let n = task / blocks.count, range = blocks[task % blocks.count]
                                let zn = z + n &* K &* V, pn = p + n &* K &* V, tn = t + n &* V
                                let out = sums + task &* width
                                var bce = 0.0, annotated = 0.0
                                for v in range { if ignore == nil || tn[v] != ignore! { annotated += 1 } }
                                // Class by class: contiguous runs of the block instead of K strided streams per voxel.
                                for k in 0..<K {
                                    let zk = zn + k &* V, pk = pn + k &* V
                                    var bceK = 0.0, predicted = 0.0, intersection = 0.0, truth = 0.0
                                    for v in range {
                                        let label = tn[v]
                                        if let ignore, label == ignore { pk[v] = 0; continue }
                                        let inRegion = Self.inRegion(label, k, rows: f, regions: K, maximum: maximum)
                                        let zv = zk[v]
                                        let probability = 1 / (1 + exp(-zv))
                                        pk[v] = probability
                                        // log(1 + e^z) − y·z, computed stably.
                                        bceK += Double(max(zv, 0)) - (inRegion ? Double(zv) : 0) + Double(log1p(exp(-abs(zv))))
                                        predicted += Double(probability)
                                        if inRegion { intersection += Double(probability); truth += 1 }
                                    }
                                    bce += bceK
                                    (out[2 &+ k], out[2 &+ K &+ k], out[2 &+ 2 &* K &+ k]) = (intersection, predicted, truth)
                                }
                                out[0] = bce
                                out[1] = annotated
                            }
                        }
                    }
                }
            }
        }
        let sums = BlockSums(partial, samples: N, blocks: blocks.count, classes: K)
        let bce = sums.first.reduce(0, +), annotated = sums.second.reduce(0, +)
        // nnU-Net: mean over N·K·V elements without an ignore label; Σ over the annotated elements ÷ annotated voxels with one.
        let bceDivisor = ignoreLabel == nil ? Double(N * K * V) : max(annotated, 1e-8)
        // Every region scored; dL/dp = a·y + b on annotated voxels.
        let (diceTotal, count, a, b) = sums.softDice(scoring: 0..<K, batchDice: batchDice, smooth: smooth)
        gradient.data.withUnsafeMutableBufferPointer { gp in
            target.withUnsafeBufferPointer { tp in
                flags.withUnsafeBufferPointer { fp in
                    // The buffer holds the sigmoid: each element's probability is read before its gradient replaces it.
                    nonisolated(unsafe) let (g, t, f) = (gp.baseAddress!, tp.baseAddress!, fp.baseAddress!)
                    let (a, b) = (a, b)
                    DispatchQueue.concurrentPerform(iterations: N * blocks.count) { task in
                        let n = task / blocks.count, range = blocks[task % blocks.count]
                        let gn = g + n &* K &* V, tn = t + n &* V
                        for k in 0..<K {
                            let gk = gn + k &* V
                            let (ak, bk) = (a[n &* K &+ k], b[n &* K &+ k])
                            for v in range {
                                let label = tn[v]
                                if let ignore, label == ignore { continue }
                                let y: Double = Self.inRegion(label, k, rows: f, regions: K, maximum: maximum) ? 1 : 0
                                let p = Double(gk[v])
                                gk[v] = Float((p - y) / bceDivisor + (ak * y + bk) * p * (1 - p))
                            }
                        }
                    }
                }
            }
        }
        return (bce / bceDivisor - diceTotal / count, gradient)
    }

    /// Prediction = sigmoid > 0.5 (logit > 0) per region; every region scored.
    public func pseudoDiceCounts(logits: Tensor, labels: [Int16]) -> (tp: [Double], fp: [Double], fn: [Double]) {
        let N = logits.shape[0], K = logits.shape[1], V = logits.spatialShape.reduce(1, *)
        let (flags, maximum) = membership()
        var tp = [Double](repeating: 0, count: K), fp = tp, fn = tp
        let ignore = ignoreLabel.map { Int16($0) }
        flags.withUnsafeBufferPointer { rows in
            for n in 0..<N {
                for v in 0..<V {
                    let label = labels[n * V + v]
                    if let ignore, label == ignore { continue }
                    for k in 0..<K {
                        let predicted = logits.data[(n * K + k) * V + v] > 0
                        let truth = Self.inRegion(label, k, rows: rows.baseAddress!, regions: K, maximum: maximum)
                        if predicted && truth { tp[k] += 1 } else if predicted { fp[k] += 1 } else if truth { fn[k] += 1 }
                    }
                }
            }
        }
        return (tp, fp, fn)
    }
}
