import Foundation
import PlansModel
import Training

/// `TrainingBenchmark augreplay <folder of Ops/bench/nnunet_augmentation_log.py> <preprocessed dataset folder>` (#25):
/// gives nnU-Net's random draws, sample by sample, to nnseg's loader and augmenter and compares the two samples.
/// Per sample: nnU-Net's crop corner must be one nnseg's sampler can choose (inside `cornerBounds`, or for a forced
/// foreground sample `max(lower, voxel − patch / 2)` for a voxel of one of the case's class locations); nnseg then
/// crops there, applies the same spatial parameters, noise field, blur σ, brightness and contrast factors, low
/// resolution zoom, gammas and mirrored axes (`Augmenter.apply`) and compares image and labels with nnU-Net's
/// sample. Prints the worst samples and a summary per transform; exits 1 when a sample differs beyond tolerance.
func augmentationReplay(_ a: [String]) throws {
    guard a.count >= 2 else {
        print("usage: TrainingBenchmark augreplay <folder of nnunet_augmentation_log.py> <preprocessed dataset folder> [image tolerance]")
        exit(64)
    }
    let folder = URL(fileURLWithPath: a[0]), root = URL(fileURLWithPath: a[1])
    let tolerance = a.count > 2 ? Float(a[2]) ?? 1e-3 : 1e-3
    let configuration = try Plans(contentsOf: root.appendingPathComponent("nnUNetPlans.json")).configuration("3d_fullres")
    let dataFolder = root.appendingPathComponent(configuration.dataIdentifier)
    let data = try PreprocessedDataset(folder: dataFolder, identifiers: try PreprocessedDataset(folder: dataFolder).identifiers, storage: .memory,
                                       cacheBytes: 4 << 30)
    let augmentation = AugmentationConfiguration(patch: configuration.patchSize)
    let sampler = PatchSampler(configuration: augmentation, batchSize: configuration.batchSize, training: true)
    let augmenter = Augmenter(configuration: augmentation, useMaskForNorm: configuration.useMaskForNorm)
    let patch = augmentation.patch, volume = patch.reduce(1, *)

    let lines = try String(contentsOf: folder.appendingPathComponent("samples.jsonl"), encoding: .utf8).split(separator: "\n")
    struct Result { let sample: Int; let maxDifference: Float; let meanDifference: Double; let labelMismatches: Int; let transforms: [String] }
    var results: [Result] = []
    var cornerProblems: [String] = []
    for line in lines {
        guard let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let index = record["sample"] as? Int, let caseID = record["case"] as? String, let corner = record["corner"] as? [Int] else {
            throw CocoaError(.fileReadCorruptFile)
        }
        let c = try data.load(caseID)
        let forced = record["force_fg"] as? Bool ?? false
        let (lower, upper) = sampler.cornerBounds(c)
        let reachable: Bool
        if forced {
            reachable = c.classLocations.contains { entry in entry.voxels.contains { sampler.corner(centredOn: $0, lower: lower) == corner } }
        } else {
            reachable = (0..<3).allSatisfy { corner[$0] >= lower[$0] && corner[$0] <= max(lower[$0], upper[$0]) }
        }
        if !reachable { cornerProblems.append("sample \(index) (\(forced ? "forced" : "random")): corner \(corner), nnseg's bounds \(lower)…\(upper)") }

        var draw = Augmenter.Draw()
        var transforms: [String] = []
        if let spatial = record["spatial"] as? [String: Any], let angles = spatial["angles"] as? [Double], let scales = spatial["scales"] as? [Double] {
            precondition(Set(scales).count == 1, "scaling synchronised across axes")
            draw.rotationAndScale = (angles, scales[0])
            transforms.append(angles.allSatisfy { $0 == 0 } ? "scale" : (scales[0] == 1 ? "rotate" : "rotate+scale"))
        }
        let stem = String(format: "%05d", index)
        if record["noise"] as? Bool == true {
            draw.noise = try readRaw(folder.appendingPathComponent("\(stem).noise"), count: c.channels * volume, as: Float.self)
            transforms.append("noise")
        }
        func channels(_ key: String) -> (channels: [Int], entry: [String: Any])? {
            guard let entry = record[key] as? [String: Any], let channels = entry["channels"] as? [Int] else { return nil }
            return (channels, entry)
        }
        if let (applied, entry) = channels("blur"), let sigmas = entry["sigmas"] as? [[Double]] {
            var perChannel = [[Double]?](repeating: nil, count: c.channels)
            for (k, ch) in applied.enumerated() { perChannel[ch] = sigmas[k] }
            draw.blur = perChannel
            if !applied.isEmpty { transforms.append("blur") }
        }
        func factors(_ key: String) -> [Float]? {
            guard let (applied, entry) = channels(key), let values = entry["values"] as? [Double] else { return nil }
            var f = [Float](repeating: 1, count: c.channels)
            for (k, ch) in applied.enumerated() { f[ch] = Float(values[k]) }
            transforms.append(key)
            return f
        }
        draw.brightness = factors("brightness")
        draw.contrast = factors("contrast")
        if let (applied, entry) = channels("low_resolution"), let scales = entry["scales"] as? [[Double]] {
            var zoom = [Double?](repeating: nil, count: c.channels)
            for (k, ch) in applied.enumerated() { zoom[ch] = scales[k][0] }
            draw.lowResolution = zoom
            if !applied.isEmpty { transforms.append("low resolution") }
        }
        for (key, inverted) in [("gamma_inverted", true), ("gamma", false)] {
            guard let (applied, entry) = channels(key), let gammas = entry["gamma"] as? [Double], let invert = entry["invert"] as? [Bool] else { continue }
            precondition(invert.allSatisfy { $0 == inverted }, "\(key): inversion as configured")
            // Channels not drawn keep gamma 1, which maps the image onto itself (up to rounding) — nnU-Net applies every channel here.
            var g = [Double](repeating: 1, count: c.channels)
            for (k, ch) in applied.enumerated() { g[ch] = gammas[k] }
            if inverted { draw.invertedGamma = g } else { draw.gamma = g }
            transforms.append(key)
        }
        draw.mirror = record["mirror"] as? [Int] ?? []

        let ours = augmenter.apply(draw, to: sampler.crop(c, corner: corner))
        let theirs = try readRaw(folder.appendingPathComponent("\(stem).data"), count: c.channels * volume, as: Float.self)
        let theirLabels = try readRaw(folder.appendingPathComponent("\(stem).target"), count: volume, as: Int16.self)
        var maxDifference: Float = 0, sum = 0.0
        for i in 0..<theirs.count {
            let d = abs(ours.data[i] - theirs[i])
            maxDifference = max(maxDifference, d.isNaN ? .infinity : d)
            sum += Double(d)
        }
        let mismatches = zip(ours.labels, theirLabels).filter { $0 != $1 }.count
        results.append(Result(sample: index, maxDifference: maxDifference, meanDifference: sum / Double(theirs.count),
                              labelMismatches: mismatches, transforms: transforms))
    }

    print("\(results.count) samples of nnU-Net's loader replayed with nnseg's sampler and augmenter (image tolerance \(tolerance))")
    print("crop corners nnseg's sampler cannot reach: \(cornerProblems.count)")
    for p in cornerProblems.prefix(10) { print("  \(p)") }
    var groups: [String: [Result]] = [:]
    for r in results {
        for t in (r.transforms.isEmpty ? ["crop only"] : r.transforms) { groups[t, default: []].append(r) }
    }
    print("per transform (samples where it was applied): samples, worst |image difference|, mean |image difference|, label voxels differing (worst sample)")
    for (name, rs) in groups.sorted(by: { $0.key < $1.key }) {
        let worst = rs.map(\.maxDifference).max() ?? 0
        let mean = rs.map(\.meanDifference).reduce(0, +) / Double(rs.count)
        let labels = rs.map(\.labelMismatches).reduce(0, +), worstLabels = rs.map(\.labelMismatches).max() ?? 0
        print(String(format: "  %-15@ %4d  %.2e  %.2e  %d (%d)", name as NSString, rs.count, worst, mean, labels, worstLabels))
    }
    let failing = results.filter { $0.maxDifference > tolerance }
    print("samples beyond the tolerance: \(failing.count); label voxels differing: \(results.map(\.labelMismatches).reduce(0, +)) of \(results.count * volume)")
    for r in failing.sorted(by: { $0.maxDifference > $1.maxDifference }).prefix(10) {
        print(String(format: "  sample %d: max %.3e, mean %.3e, labels %d — %@", r.sample, r.maxDifference, r.meanDifference, r.labelMismatches,
                     r.transforms.joined(separator: ", ")))
    }
    if !failing.isEmpty || !cornerProblems.isEmpty { exit(1) }
}
