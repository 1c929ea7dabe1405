import Foundation
import TensorKernels

/// A training or validation batch: `(N, C, patch…)` input and `N × patch` labels (2-D configurations:
/// the singleton axis is dropped from the input shape).
public struct Batch: Sendable {
    public let input: Tensor
    public let labels: [Int16]
    public let identifiers: [String]
}

/// nnU-Net's data loader (spec 6.3): cases drawn uniformly with replacement, the last 33 % of each batch
/// forced to contain foreground, crops of the enlarged patch (training) or the final patch (validation)
/// padded with 0 (image) and −1 (labels), then augmentation (training) and −1 → 0.
public struct PatchSampler: Sendable {
    public let configuration: AugmentationConfiguration
    public let batchSize: Int
    public let oversampleForeground: Double
    public let training: Bool
    public let ignoreLabel: Int?
    /// A cascade's foreground labels: the case's previous stage becomes one-hot input channels for these.
    public let cascadeLabels: [Int]

    public init(configuration: AugmentationConfiguration, batchSize: Int, training: Bool, oversampleForeground: Double = 0.33,
                ignoreLabel: Int? = nil, cascadeLabels: [Int] = []) {
        self.configuration = configuration
        self.cascadeLabels = cascadeLabels
        self.batchSize = batchSize
        self.training = training
        self.oversampleForeground = oversampleForeground
        self.ignoreLabel = ignoreLabel
    }

    /// Crop size read from the case: the enlarged patch for training, the final patch for validation.
    var cropSize: [Int] { training ? configuration.initialPatch : configuration.patch }

    /// Sample `j` of a batch must contain foreground iff `j ≥ round(bs·(1 − p))`.
    public func forcesForeground(_ j: Int) -> Bool {
        j >= Int((Double(batchSize) * (1 - oversampleForeground)).rounded())
    }

    /// The range of the crop's lower corner per axis (inclusive; nnU-Net's get_bbox `lbs` and `ubs`): the crop may
    /// start before the case and end past it by up to half the padding the enlarged patch needs.
    public func cornerBounds(_ c: TrainingCase) -> (lower: [Int], upper: [Int]) {
        let patch = cropSize
        var needToPad = zip(cropSize, configuration.patch).map { $0 - $1 }
        for d in 0..<3 where needToPad[d] + c.shape[d] < patch[d] { needToPad[d] = patch[d] - c.shape[d] }
        // Python floor division of a negative number.
        let lb = needToPad.map { -(($0 + 1) / 2) }
        var ub = [Int](repeating: 0, count: 3)
        for d in 0..<3 {
            let half = needToPad[d] / 2, odd = needToPad[d] % 2
            ub[d] = c.shape[d] + half + odd - patch[d]
        }
        return (lb, ub)
    }

    /// A forced-foreground crop's lower corner: the crop centred on `voxel`, not starting below `lower` (get_bbox).
    public func corner(centredOn voxel: [Int], lower: [Int]) -> [Int] {
        (0..<3).map { max(lower[$0], voxel[$0] - cropSize[$0] / 2) }
    }

    /// The crop's lower corner (may be negative or run past the end: padding).
    public func lowerCorner(_ c: TrainingCase, forceForeground: Bool, _ rng: inout RandomSource) -> [Int] {
        let (lb, ub) = cornerBounds(c)
        var eligible = c.classLocations.filter { !$0.voxels.isEmpty }
        if let ignoreLabel, eligible.count > 1 { eligible.removeAll { $0.key == [ignoreLabel] } }
        if forceForeground, !eligible.isEmpty {
            let chosen = eligible[rng.integer(0, eligible.count - 1)]
            return corner(centredOn: chosen.voxels[rng.integer(0, chosen.voxels.count - 1)], lower: lb)
        }
        return (0..<3).map { rng.integer(lb[$0], max(lb[$0], ub[$0])) }
    }

    /// Crops `c` at `corner` to `cropSize` (0 / −1 outside).
    public func crop(_ c: TrainingCase, corner: [Int]) -> Sample {
        let size = cropSize, volume = size.reduce(1, *), inVolume = c.shape.reduce(1, *)
        var s = Sample(shape: size, channels: c.channels, data: [Float](repeating: 0, count: c.channels * volume),
                       labels: [Int16](repeating: -1, count: volume),
                       previous: c.previousStage.map { _ in [Int16](repeating: -1, count: volume) })
        let (H, W) = (c.shape[1], c.shape[2])
        // Valid range per axis.
        let lo = (0..<3).map { max(0, corner[$0]) }, hi = (0..<3).map { min(c.shape[$0], corner[$0] + size[$0]) }
        guard (0..<3).allSatisfy({ lo[$0] < hi[$0] }) else { return s }
        c.data.withUnsafeBufferPointer { data in
            c.segmentation.withUnsafeBufferPointer { segmentation in
                for z in lo[0]..<hi[0] {
                    for y in lo[1]..<hi[1] {
                        let outRow = ((z - corner[0]) * size[1] + (y - corner[1])) * size[2] - corner[2]
                        let inRow = (z * H + y) * W
                        for x in lo[2]..<hi[2] {
                            s.labels[outRow + x] = segmentation[inRow + x]
                            if let previous = c.previousStage { s.previous![outRow + x] = previous[inRow + x] }
                        }
                        for ch in 0..<c.channels {
                            for x in lo[2]..<hi[2] { s.data[ch * volume + outRow + x] = data[ch * inVolume + inRow + x] }
                        }
                    }
                }
            }
        }
        return s
    }

    /// One sample's random choices: its case, whether it had to contain foreground, its crop corner and (training)
    /// its augmentation.
    public struct SampleDraw {
        public let identifier: String
        public let forcedForeground: Bool
        public let corner: [Int]
        public let shape: [Int]
        public let augmentation: Augmenter.Draw?
    }

    /// One batch from `dataset` over `identifiers`; `observe` sees each sample's draws (`TrainingBenchmark drawlog`).
    public func batch(_ dataset: PreprocessedDataset, identifiers: [String], augmenter: Augmenter?, _ rng: inout RandomSource,
                      observe: ((SampleDraw) -> Void)? = nil) throws -> Batch {
        let patch = configuration.patch, volume = patch.reduce(1, *)
        var data: [Float] = [], labels: [Int16] = [], ids: [String] = []
        var channels = 0
        for j in 0..<batchSize {
            let id = identifiers[rng.integer(0, identifiers.count - 1)]
            let c = try dataset.load(id)
            channels = c.channels
            let forced = forcesForeground(j)
            let corner = lowerCorner(c, forceForeground: forced, &rng)
            var sample = crop(c, corner: corner)
            let drawn = augmenter?.draw(channels: sample.channels, &rng)
            observe?(SampleDraw(identifier: id, forcedForeground: forced, corner: corner, shape: c.shape, augmentation: drawn))
            if let augmenter, let drawn {
                sample = augmenter.augment(sample, drawn: drawn, &rng)
            } else {
                // Validation: RemoveLabel, then the previous stage one-hot, unperturbed.
                for i in 0..<sample.labels.count where sample.labels[i] < 0 { sample.labels[i] = 0 }
                if let previous = sample.previous { sample.previous = previous.map { max($0, 0) } }
                CascadeAugmentation.appendOneHot(&sample, labels: cascadeLabels)
            }
            channels = sample.channels
            precondition(sample.shape == patch && sample.data.count == channels * volume && sample.previous == nil)
            data += sample.data
            labels += sample.labels
            ids.append(id)
        }
        let spatial = configuration.twoD ? Array(patch.dropFirst()) : patch
        return Batch(input: Tensor(shape: [batchSize, channels] + spatial, data: data), labels: labels, identifiers: ids)
    }
}

/// Produces batches on a background thread into a bounded queue, so augmentation overlaps the
/// network's compute (nnU-Net's background workers). Call ``stop()`` when done.
public final class BackgroundLoader: @unchecked Sendable {
    private let condition = NSCondition()
    private var queue: [Result<Batch, Error>] = []
    private let capacity: Int
    private var stopped = false
    private let thread: Thread?

    public init(capacity: Int = 3, make: @escaping @Sendable (inout RandomSource) throws -> Batch, seed: UInt64) {
        self.capacity = capacity
        let box = WeakBox()
        thread = Thread {
            var rng = RandomSource(seed: seed)
            while let loader = box.loader {
                let result = Result { try make(&rng) }
                loader.condition.lock()
                while loader.queue.count >= loader.capacity && !loader.stopped { loader.condition.wait() }
                if loader.stopped { loader.condition.unlock(); return }
                loader.queue.append(result)
                loader.condition.broadcast()
                loader.condition.unlock()
            }
        }
        box.loader = self
        thread?.stackSize = 8 << 20
        thread?.name = "nnseg.data-loader"
        thread?.start()
    }

    final class WeakBox: @unchecked Sendable { weak var loader: BackgroundLoader? }

    /// The next batch (waits for the producer).
    public func next() throws -> Batch {
        condition.lock()
        defer { condition.unlock() }
        while queue.isEmpty { condition.wait() }
        let r = queue.removeFirst()
        condition.broadcast()
        return try r.get()
    }

    public func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    deinit { stop() }
}
