import ExperimentPlanning
import Foundation
import Testing
import TestSupport
@testable import Training

/// Datasets larger than memory (#21): memory-mapped cases give the same batches as cases read whole, hold no
/// decoded voxels of their own, and the cache stays within its bound (least recently used out).
struct PreprocessedDatasetStorageTests {
    /// Four synthetic preprocessed cases in nnseg's `.npy` layout.
    static func dataset() throws -> URL {
        let folder = try SharedData.temporaryDirectory("preprocessed-storage")
        var rng = RandomSource(seed: 20261204)
        for k in 0..<4 {
            let shape = [10 + k, 12, 9]
            let n = shape.reduce(1, *)
            let data = (0..<n).map { _ in Float(rng.uniform(-2, 2)) }
            let seg = (0..<n).map { i in Int16(i % 17 == 0 ? 2 : (i % 5 == 0 ? 1 : 0)) }
            try NumpyFile.data(data, shape: [1] + shape).write(to: folder.appendingPathComponent("case_\(k).npy"))
            try NumpyFile.data(seg, shape: [1] + shape).write(to: folder.appendingPathComponent("case_\(k)_seg.npy"))
            let locations = [1, 2].map { label in
                ("\(label)", (0..<n).filter { Int(seg[$0]) == label }.prefix(40).map { i in [0, i / (12 * 9), (i / 9) % 12, i % 9] })
            }
            let json: [String: Any] = ["class_locations": Dictionary(uniqueKeysWithValues: locations)]
            try JSONSerialization.data(withJSONObject: json).write(to: folder.appendingPathComponent("case_\(k).json"))
        }
        return folder
    }

    @Test func mappedCasesGiveTheSameBatchesWithinTheCacheBound() throws {
        let folder = try Self.dataset()
        defer { try? FileManager.default.removeItem(at: folder) }
        let ids = (0..<4).map { "case_\($0)" }
        let memory = try PreprocessedDataset(folder: folder, identifiers: ids, storage: .memory)
        let mapped = try PreprocessedDataset(folder: folder, identifiers: ids, storage: .mapped, cacheBytes: 1)
        let augmentation = AugmentationConfiguration(patch: [8, 8, 8])
        let sampler = PatchSampler(configuration: augmentation, batchSize: 3, training: true)
        let augmenter = Augmenter(configuration: augmentation)
        for seed in [UInt64(1), 2, 3] {
            var a = RandomSource(seed: seed), b = RandomSource(seed: seed)
            let x = try sampler.batch(memory, identifiers: ids, augmenter: augmenter, &a)
            let y = try sampler.batch(mapped, identifiers: ids, augmenter: augmenter, &b)
            #expect(x.input.data == y.input.data && x.labels == y.labels && x.identifiers == y.identifiers, "seed \(seed)")
        }
        let c = try mapped.load("case_2")
        #expect(c.data.isMapped && c.segmentation.isMapped && c.residentBytes == 0)
        // A 1-byte cache keeps only the case just read: every load of another case reads it again.
        let before = mapped.reads
        for id in ids + ids { _ = try mapped.load(id) }
        #expect(mapped.reads == before + 8)
        // The memory cache keeps everything it was allowed: nothing is read twice.
        for id in ids { _ = try memory.load(id) }
        let reads = memory.reads
        for id in ids + ids { _ = try memory.load(id) }
        #expect(memory.reads == reads && reads == 4)
        // auto: memory when the arrays fit the budget, mapped when they do not.
        let bytes = PreprocessedDataset.arrayBytes(folder: folder, identifiers: ids)
        #expect(PreprocessedDataset.automaticStorage(folder: folder, identifiers: ids, budget: bytes) == .memory)
        #expect(PreprocessedDataset.automaticStorage(folder: folder, identifiers: ids, budget: bytes - 1) == .mapped)
    }
}
