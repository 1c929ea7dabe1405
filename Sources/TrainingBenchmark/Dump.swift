import ExperimentPlanning
import Foundation
import PlansModel
import Training

/// `TrainingBenchmark dump <preprocessed dataset folder> <fold> <seed> <batches> <out> [init.pth]` (#25): writes the
/// training batches `nnseg train --seed <seed> -f <fold>` draws in its first epoch, in the replay format of
/// `Ops/bench/nnunet_replay.py` (batches/NNNNN.data float32, .target int16 full resolution, plans.json, losses.json
/// without losses), so that `TrainingBenchmark replay <out>` trains on nnseg's draw of the batches — from nnU-Net's
/// initial weights when an init.pth (e.g. a replay folder's) is given, or from nnseg's with NNSEG_INIT_SEED. With
/// NNSEG_INIT_SEED=<seed> the replay reproduces `nnseg train`'s epoch: the same loader seed, sampler and augmenter.
func dumpBatches(_ a: [String]) throws {
    guard a.count >= 5, let fold = Int(a[1]), let seed = UInt64(a[2]), let count = Int(a[3]) else {
        print("usage: TrainingBenchmark dump <preprocessed dataset folder> <fold> <seed> <batches> <out> [init.pth]")
        exit(64)
    }
    let root = URL(fileURLWithPath: a[0]), out = URL(fileURLWithPath: a[4])
    let plansURL = root.appendingPathComponent("nnUNetPlans.json")
    let loader = try FirstEpochLoader(root: root, fold: fold, seed: seed)
    let (split, data, sampler, augmenter) = (loader.split, loader.data, loader.sampler, loader.augmenter)
    var rng = loader.rng
    let fm = FileManager.default
    try fm.createDirectory(at: out.appendingPathComponent("batches"), withIntermediateDirectories: true)
    try? fm.removeItem(at: out.appendingPathComponent("plans.json"))
    try fm.copyItem(at: plansURL, to: out.appendingPathComponent("plans.json"))
    if a.count > 5 {
        try? fm.removeItem(at: out.appendingPathComponent("init.pth"))
        try fm.copyItem(at: URL(fileURLWithPath: a[5]), to: out.appendingPathComponent("init.pth"))
    }
    for i in 0..<count {
        let batch = try sampler.batch(data, identifiers: split.train, augmenter: augmenter, &rng)
        let stem = String(format: "%05d", i)
        try batch.input.data.withUnsafeBytes { try Data($0).write(to: out.appendingPathComponent("batches/\(stem).data")) }
        try batch.labels.withUnsafeBytes { try Data($0).write(to: out.appendingPathComponent("batches/\(stem).target")) }
        if (i + 1) % 25 == 0 || i + 1 == count { print("batch \(i + 1)/\(count)") }
    }
    let record: [String: Any] = ["seed": seed, "batches": count, "learning_rate": 0.01, "loss": [Double](), "source": "nnseg loader, fold \(fold)"]
    try JSONSerialization.data(withJSONObject: record).write(to: out.appendingPathComponent("losses.json"))
    print("\(count) batches of nnseg's loader (seed \(seed), fold \(fold), \(split.train.count) training cases) in \(out.path)")
}

/// `TrainingBenchmark drawlog <preprocessed dataset folder> <fold> <seed> <batches> <out.jsonl>` (#25): the random draws
/// of `nnseg train --seed <seed> -f <fold>`'s first-epoch batches, one JSON line per sample in the format of
/// `Ops/bench/nnunet_augmentation_log.py` (case, forced foreground, crop corner, spatial angles and scale, parameters of
/// each intensity transform applied, mirrored axes; the noise as its standard deviation), for
/// `Ops/bench/draw_law_compare.py` to compare the laws of the two loaders' draws.
func logDraws(_ a: [String]) throws {
    guard a.count >= 5, let fold = Int(a[1]), let seed = UInt64(a[2]), let count = Int(a[3]) else {
        print("usage: TrainingBenchmark drawlog <preprocessed dataset folder> <fold> <seed> <batches> <out.jsonl>")
        exit(64)
    }
    let loader = try FirstEpochLoader(root: URL(fileURLWithPath: a[0]), fold: fold, seed: seed)
    let (split, data, sampler, augmenter) = (loader.split, loader.data, loader.sampler, loader.augmenter)
    var rng = loader.rng
    var lines: [String] = []
    for b in 0..<count {
        // The batches train draws (augmented too, though only the draws are kept): the same order of draws by construction.
        var j = 0
        var failure: Error?
        _ = try sampler.batch(data, identifiers: split.train, augmenter: augmenter, &rng) { s in
            defer { j += 1 }
            guard let d = s.augmentation else { return }
            var record: [String: Any] = ["case": s.identifier, "force_fg": s.forcedForeground, "corner": s.corner, "shape": s.shape,
                                         "sample": b * sampler.batchSize + j, "batch": b, "mirror": d.mirror]
            if let (angles, scale) = d.rotationAndScale { record["spatial"] = ["angles": angles, "scales": [scale, scale, scale]] }
            if let noise = d.noise {
                record["noise"] = true
                record["noise_sd"] = (noise.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(noise.count)).squareRoot()
            }
            func indexed<T>(_ values: [T?]) -> (channels: [Int], values: [T]) {
                let applied = values.enumerated().compactMap { k, v in v.map { (k, $0) } }
                return (applied.map(\.0), applied.map(\.1))
            }
            if let blur = d.blur { let (ch, sigmas) = indexed(blur); record["blur"] = ["channels": ch, "sigmas": sigmas] }
            if let f = d.brightness { record["brightness"] = ["channels": Array(f.indices), "values": f.map(Double.init)] }
            if let f = d.contrast { record["contrast"] = ["channels": Array(f.indices), "values": f.map(Double.init)] }
            if let z = d.lowResolution { let (ch, zooms) = indexed(z); record["low_resolution"] = ["channels": ch, "scales": zooms.map { [$0, $0, $0] }] }
            if let g = d.invertedGamma { record["gamma_inverted"] = ["channels": Array(g.indices), "gamma": g] }
            if let g = d.gamma { record["gamma"] = ["channels": Array(g.indices), "gamma": g] }
            do {
                lines.append(String(decoding: try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]), as: UTF8.self))
            } catch { failure = error }
        }
        if let failure { throw failure }
    }
    try (lines.joined(separator: "\n") + "\n").write(toFile: a[4], atomically: true, encoding: .utf8)
    print("\(lines.count) samples' draws of nnseg's loader (seed \(seed), fold \(fold)) in \(a[4])")
}

/// What `nnseg train --seed <seed> -f <fold>` loads its first epoch's batches with (3d_fullres of a preprocessed
/// dataset folder): the fold's split, its cases in memory, the training sampler and augmenter, the loader's stream.
struct FirstEpochLoader {
    let split: CrossValidation.Split
    let data: PreprocessedDataset
    let sampler: PatchSampler
    let augmenter: Augmenter
    let rng: RandomSource

    init(root: URL, fold: Int, seed: UInt64) throws {
        let configuration = try Plans(contentsOf: root.appendingPathComponent("nnUNetPlans.json")).configuration("3d_fullres")
        let dataFolder = root.appendingPathComponent(configuration.dataIdentifier)
        let all = try PreprocessedDataset(folder: dataFolder).identifiers
        let splits = try CrossValidation.read(root.appendingPathComponent("splits_final.json"), cases: Set(all))
        guard splits.indices.contains(fold) else { print("fold \(fold): the splits have \(splits.count) folds"); exit(65) }
        split = splits[fold]
        data = try PreprocessedDataset(folder: dataFolder, identifiers: Array(Set(split.train + split.val)).sorted(), storage: .memory,
                                       cacheBytes: 4 << 30)
        let augmentation = AugmentationConfiguration(patch: configuration.patchSize)
        sampler = PatchSampler(configuration: augmentation, batchSize: configuration.batchSize, training: true)
        augmenter = Augmenter(configuration: augmentation, useMaskForNorm: configuration.useMaskForNorm)
        rng = RandomSource(seed: Trainer.loaderSeeds(seed: seed, epoch: 0).training)
    }
}
