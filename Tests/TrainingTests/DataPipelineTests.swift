import Foundation
import TensorKernels
import Testing
import TestSupport
@testable import Training

/// Sampling and augmentation against the reference's documented behaviour (spec 6.3, 6.4).
struct DataPipelineTests {
    /// PyTorch's `nearest-exact` picks its source index in float32 (`floor((i + 0.5)·(in/out))`), which differs from
    /// exact arithmetic where the product is an integer: 56 → 46 takes index 13 at i = 11 (exactly 14), a whole slice
    /// of the low-resolution augmentation (found by `TrainingBenchmark augreplay` on nnU-Net's draws). Expected
    /// indices from torch 2.15 `interpolate(mode='nearest-exact')`.
    @Test func nearestExactSourceIndicesAreTorchs() {
        let torch: [(Int, Int, [Int])] = [
            (56, 46, [0, 1, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 15, 16, 17, 18, 20, 21, 22, 23, 24, 26, 27, 28, 29, 31, 32, 33, 34, 35, 37, 38, 39,
                      40, 42, 43, 44, 45, 46, 48, 49, 50, 51, 52, 54, 55]),
            (40, 33, [0, 1, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 15, 16, 17, 18, 20, 21, 22, 23, 24, 26, 27, 28, 29, 30, 32, 33, 34, 35, 36, 38, 39]),
            (40, 29, [0, 2, 3, 4, 6, 7, 8, 10, 11, 13, 14, 15, 17, 18, 20, 21, 22, 24, 25, 26, 28, 29, 31, 32, 33, 35, 36, 37, 39]),
        ]
        for (input, output, expected) in torch {
            #expect((0..<output).map { nearestExactSource($0, input: input, output: output) } == expected, "\(input) → \(output)")
        }
    }

    @Test func enlargedPatchSizesMatchTheReference() {
        // Verified vectors of batchgenerators' get_patch_size (spec 6.4).
        #expect(AugmentationConfiguration(patch: [40, 56, 40]).initialPatch == [73, 80, 64])
        #expect(AugmentationConfiguration(patch: [56, 40]).initialPatch == [1, 65, 65])
        #expect(AugmentationConfiguration(patch: [56, 192, 192]).initialPatch == [56, 225, 225])
        #expect(AugmentationConfiguration(patch: [56, 192, 192]).dummy2D)
        #expect(AugmentationConfiguration(patch: [512, 512]).initialPatch == [1, 602, 602])
        #expect(AugmentationConfiguration(patch: [64, 192, 192]).initialPatch == [178, 308, 233])
        #expect(AugmentationConfiguration(patch: [128, 128, 128]).initialPatch == [205, 205, 205])
        #expect(AugmentationConfiguration(patch: [40, 56, 40]).inferenceMirrorAxes == [0, 1, 2])
        #expect(AugmentationConfiguration(patch: [56, 40]).inferenceMirrorAxes == [0, 1])
    }

    @Test func oversamplingForcesTheLastThirdOfTheBatch() {
        let config = AugmentationConfiguration(patch: [40, 56, 40])
        func forced(_ bs: Int) -> [Int] {
            let s = PatchSampler(configuration: config, batchSize: bs, training: true)
            return (0..<bs).filter(s.forcesForeground)
        }
        #expect(forced(2) == [1])
        #expect(forced(9) == [6, 7, 8])
        #expect(forced(12) == [8, 9, 10, 11])
    }

    static func syntheticCase() -> TrainingCase {
        // 30×40×30 with a foreground blob of label 2 near one corner.
        let shape = [30, 40, 30], volume = 36_000
        var labels = [Int16](repeating: 0, count: volume)
        var voxels: [[Int]] = []
        for z in 2..<6 { for y in 3..<7 { for x in 25..<29 {
            labels[(z * 40 + y) * 30 + x] = 2
            voxels.append([z, y, x])
        } } }
        let data = (0..<volume).map { Float($0 % 97) / 97 }
        return TrainingCase(identifier: "synthetic", channels: 1, shape: shape, data: data, segmentation: labels,
                            classLocations: [([1], []), ([2], voxels)])
    }

    @Test func forcedCropsContainForegroundAndRandomCropsStayInTheirBox() {
        let c = Self.syntheticCase()
        let sampler = PatchSampler(configuration: AugmentationConfiguration(patch: [16, 16, 16]), batchSize: 3, training: false)
        var rng = RandomSource(seed: 3)
        for _ in 0..<20 {
            let corner = sampler.lowerCorner(c, forceForeground: true, &rng)
            let crop = sampler.crop(c, corner: corner)
            #expect(crop.labels.contains(2), "forced crop at \(corner) has no foreground")
            let random = sampler.lowerCorner(c, forceForeground: false, &rng)
            // Validation crops (no enlargement) of an image larger than the patch stay inside it.
            let inside = zip(random, zip(c.shape, [16, 16, 16])).allSatisfy { $0 >= 0 && $0 <= $1.0 - $1.1 }
            #expect(inside, "\(random)")
        }
        // Padding outside the image: data 0, labels −1.
        let crop = sampler.crop(c, corner: [-4, 0, 0])
        #expect(crop.labels[0] == -1 && crop.data[0] == 0)
        #expect(crop.labels[4 * 256] == c.segmentation[0] && crop.data[4 * 256] == c.data[0])
    }

    @Test func augmentationKeepsShapesLabelsAndMirrorsExactly() {
        let config = AugmentationConfiguration(patch: [16, 20, 16])
        let augmenter = Augmenter(configuration: config)
        let c = Self.syntheticCase()
        let sampler = PatchSampler(configuration: config, batchSize: 1, training: true)
        var rng = RandomSource(seed: 11)
        var sawRotatedOrScaled = false
        for _ in 0..<40 {
            let crop = sampler.crop(c, corner: sampler.lowerCorner(c, forceForeground: true, &rng))
            #expect(crop.shape == config.initialPatch)
            let out = augmenter.augment(crop, &rng)
            #expect(out.shape == [16, 20, 16] && out.data.count == 16 * 20 * 16)
            let labelsValid = out.labels.allSatisfy { $0 >= 0 && $0 <= 2 }, finite = out.data.allSatisfy(\.isFinite)
            #expect(labelsValid, "labels outside {0, 1, 2} after augmentation")
            #expect(finite)
            if !crop.labels.isEmpty, Set(out.labels).count > 1 { sawRotatedOrScaled = true }
        }
        #expect(sawRotatedOrScaled)
        // 2-D patches and the dummy 2-D augmentation (labels sampled slice by slice) keep shapes and labels too.
        for patch in [[20, 16], [4, 20, 16]] {
            let planar = AugmentationConfiguration(patch: patch)
            #expect(planar.twoD || planar.dummy2D)
            let planarSampler = PatchSampler(configuration: planar, batchSize: 1, training: true)
            for _ in 0..<20 {
                let crop = planarSampler.crop(c, corner: planarSampler.lowerCorner(c, forceForeground: true, &rng))
                let out = Augmenter(configuration: planar).augment(crop, &rng)
                #expect(out.shape == planar.patch && out.labels.allSatisfy { $0 >= 0 && $0 <= 2 } && out.data.allSatisfy(\.isFinite))
            }
        }
        // Mirroring twice is the identity; once it moves voxel 0 to the far corner on that axis.
        var s = Sample(shape: [2, 3, 4], channels: 1, data: (0..<24).map(Float.init), labels: (0..<24).map { Int16($0) })
        let original = s
        augmenter.mirror(&s, axis: 2)
        #expect(s.data[0] == 3 && s.labels[3] == 0)
        augmenter.mirror(&s, axis: 2)
        #expect(s.data == original.data && s.labels == original.labels)
        augmenter.mirror(&s, axis: 0)
        #expect(s.data[0] == 12)
        // Without rotation or scaling the spatial transform is the centre crop floor(in/2) − patch//2.
        var plain = Sample(shape: [5, 5, 5], channels: 1, data: (0..<125).map(Float.init), labels: [Int16](repeating: 1, count: 125))
        plain.labels[0] = 0
        let small = Augmenter(configuration: AugmentationConfiguration(patch: [3, 3, 3]))
        let cropped = small.crop(plain, start: [1, 1, 1])
        #expect(cropped.data[0] == Float(25 + 5 + 1))
    }

    /// nnU-Net's spatial augmentation on a real case (Hippocampus, in the enlarged crop its loader reads) for fixed
    /// angles and scales — a plain centre crop, rotation alone, scaling alone, both, and both at the edges of their
    /// ranges — against batchgeneratorsv2's output (`Ops/golden/make_spatial_golden.py`): the image to float
    /// rounding, the labels voxel for voxel (fp16 score ties settled by the nearest neighbour, as batchgeneratorsv2 does).
    @Test func spatialTransformMatchesNnUNetForFixedParameters() throws {
        let golden = try NumpyArray.npz(SharedData.fixtures.appendingPathComponent("golden/augmentation/spatial.npz"))
        let image = try #require(golden["image"]), label = try #require(golden["label"])
        let input = Sample(shape: image.shape, channels: 1, data: image.floats, labels: label.floats.map { Int16($0) })
        let augmenter = Augmenter(configuration: AugmentationConfiguration(patch: [40, 56, 40]))
        for k in 0..<5 {
            let angles = try #require(golden["angles\(k)"]).floats.map(Double.init)
            let scale = Double(try #require(golden["scale\(k)"]).floats[0])
            let out = k == 0 ? augmenter.centreCrop(input) : augmenter.spatial(input, angles: angles, scale: scale)
            let expectedImage = try #require(golden["image\(k)"]), expectedLabel = try #require(golden["label\(k)"])
            #expect(out.shape == expectedImage.shape)
            let imageError = zip(out.data, expectedImage.floats).map { abs($0 - $1) }.max() ?? .infinity
            let differing = zip(out.labels, expectedLabel.floats).filter { Float($0) != $1 }.count
            let perLabel = (-1...2).map { u in (u, out.labels.filter { $0 == u }.count, expectedLabel.floats.filter { $0 == Float(u) }.count) }
            print("spatial golden case \(k): image max |difference| \(imageError), \(differing) of \(out.labels.count) labels differ")
            #expect(imageError < 1e-4, "case \(k) (angles \(angles), scale \(scale)): image differs by up to \(imageError)")
            #expect(differing == 0, "case \(k) (angles \(angles), scale \(scale)): \(differing) of \(out.labels.count) labels differ; voxels per label (nnseg, nnU-Net) \(perLabel)")
        }
    }

    /// nnU-Net's intensity augmentations for fixed parameters on the centre patch of a real case, against
    /// batchgeneratorsv2's output (`Ops/golden/make_intensity_golden.py`): Gaussian blur with kernels of every
    /// size the σ range gives, brightness, contrast (range preserved), low resolution, gamma with and without inversion.
    @Test func intensityTransformsMatchNnUNetForFixedParameters() throws {
        let golden = try NumpyArray.npz(SharedData.fixtures.appendingPathComponent("golden/augmentation/intensity.npz"))
        let input = try #require(golden["input"])
        let augmenter = Augmenter(configuration: AugmentationConfiguration(patch: [40, 56, 40]))
        let blur: (inout Sample, [Float]) -> Void = { s, p in
            for axis in 0..<3 { augmenter.blur(&s, channel: 0, axis: axis, sigma: Double(p[axis])) }
        }
        let cases: [(String, (inout Sample, [Float]) -> Void)] = [
            ("blur_small", blur), ("blur_mid", blur), ("blur_large", blur),
            ("brightness", { s, p in augmenter.brightness(&s, channel: 0, factor: p[0]) }),
            ("contrast_up", { s, p in augmenter.contrast(&s, channel: 0, factor: p[0]) }),
            ("contrast_down", { s, p in augmenter.contrast(&s, channel: 0, factor: p[0]) }),
            ("lowres_0.5", { s, p in augmenter.lowResolution(&s, channel: 0, zoom: Double(p[0]), skipAxis0: false) }),
            ("lowres_0.73", { s, p in augmenter.lowResolution(&s, channel: 0, zoom: Double(p[0]), skipAxis0: false) }),
            ("gamma", { s, p in augmenter.gamma(&s, channel: 0, gamma: Double(p[0]), invert: false) }),
            ("gamma_inverted", { s, p in augmenter.gamma(&s, channel: 0, gamma: Double(p[0]), invert: true) }),
        ]
        for (name, apply) in cases {
            let expected = try #require(golden[name]), parameters = try #require(golden[name + "_parameters"]).floats
            var sample = Sample(shape: input.shape, channels: 1, data: input.floats, labels: [Int16](repeating: 0, count: input.floats.count))
            apply(&sample, parameters)
            let error = zip(sample.data, expected.floats).map { abs($0 - $1) }.max() ?? .infinity
            print("intensity golden \(name) \(parameters): max |difference| \(error)")
            #expect(error < 1e-4, "\(name) \(parameters): differs from nnU-Net's by up to \(error)")
        }
    }

    @Test func maskedChannelsAreZeroedOutsideTheMask() {
        // One voxel outside the non-zero mask (label −1): a use_mask_for_norm channel becomes 0 there.
        let config = AugmentationConfiguration(patch: [4, 4, 4])
        var labels = [Int16](repeating: 1, count: 64)
        labels[3] = -1
        var out = Sample(shape: [4, 4, 4], channels: 2, data: [Float](repeating: 5, count: 128), labels: labels)
        Augmenter(configuration: config, useMaskForNorm: [true, false]).maskAndRemoveLabel(&out)
        #expect(out.data[3] == 0 && out.data[2] == 5, "the masked channel is zeroed only outside the mask")
        #expect(out.data[64 + 3] == 5, "an unmasked channel is left alone")
        #expect(out.labels[3] == 0 && !out.labels.contains(-1))
        var plain = Sample(shape: [4, 4, 4], channels: 1, data: [Float](repeating: 5, count: 64), labels: labels)
        Augmenter(configuration: config).maskAndRemoveLabel(&plain)
        #expect(plain.data[3] == 5 && plain.labels[3] == 0)
    }

    @Test func blurAndGammaPreserveStatistics() {
        let augmenter = Augmenter(configuration: AugmentationConfiguration(patch: [8, 8, 8]))
        var rng = RandomSource(seed: 5)
        var s = Sample(shape: [8, 8, 8], channels: 1, data: (0..<512).map { _ in Float(rng.uniform(0, 4)) }, labels: [Int16](repeating: 0, count: 512))
        func meanStd(_ v: [Float]) -> (Double, Double) {
            let m = v.reduce(0.0) { $0 + Double($1) } / Double(v.count)
            return (m, (v.reduce(0.0) { $0 + (Double($1) - m) * (Double($1) - m) } / Double(v.count - 1)).squareRoot())
        }
        let before = meanStd(s.data)
        augmenter.gamma(&s, channel: 0, gamma: 1.37, invert: false)
        let after = meanStd(s.data)
        #expect(abs(before.0 - after.0) < 1e-4 && abs(before.1 - after.1) < 1e-4, "gamma retains mean and std")
        let constant = [Float](repeating: 2, count: 512)
        var flat = Sample(shape: [8, 8, 8], channels: 1, data: constant, labels: s.labels)
        augmenter.blur(&flat, channel: 0, axis: 1, sigma: 0.8)
        let unchanged = flat.data.allSatisfy { abs($0 - 2) < 1e-5 }
        #expect(unchanged, "a normalised blur keeps a constant image")
    }

    @Test func metricsFollowNnUNetsDefinitions() {
        // Labels 1 and 2; 6 voxels; label 2 absent from both in the second case → NaN, excluded from the mean.
        let p: [Double] = [0, 1, 1, 2, 0, 0], r: [Double] = [0, 1, 0, 2, 2, 0]
        let c = SegmentationMetrics.counts(prediction: p, reference: r, labels: [1, 2], ignoreLabel: nil)
        #expect(c[0].tp == 1 && c[0].fp == 1 && c[0].fn == 0 && c[0].tn == 4)
        #expect(c[1].tp == 1 && c[1].fp == 0 && c[1].fn == 1 && c[1].tn == 4)
        let empty = SegmentationMetrics.counts(prediction: [0, 1], reference: [0, 1], labels: [1, 2], ignoreLabel: nil)
        #expect(empty[1].dice.isNaN)
        let (data, mean) = SegmentationMetrics.summary(cases: [("a", "a", c), ("b", "b", empty)], labels: [1, 2])
        // Label 1: (2/3 + 1)/2; label 2: nanmean(2/3) = 2/3.
        #expect(abs(mean - ((2.0 / 3 + 1) / 2 + 2.0 / 3) / 2) < 1e-12)
        let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        #expect((json?["metric_per_case"] as? [Any])?.count == 2)
        // Ignore label voxels are left out of every count.
        let ignored = SegmentationMetrics.counts(prediction: [1, 1], reference: [3, 1], labels: [1, 2], ignoreLabel: 3)
        #expect(ignored[0].tp == 1 && ignored[0].fp == 0)
        // Regions: a voxel counts for every region its label is in; summary keys as nnU-Net's "(1, 2)" and "2".
        let regions = SegmentationMetrics.counts(prediction: p, reference: r, classes: [[1, 2], [2]], ignoreLabel: nil)
        #expect(regions[0].tp == 2 && regions[0].fp == 1 && regions[0].fn == 1 && regions[0].tn == 2)
        #expect(regions[1].tp == 1 && regions[1].fp == 0 && regions[1].fn == 1 && regions[1].tn == 4)
        let (regionData, _) = SegmentationMetrics.summary(cases: [("a", "a", regions)], classes: [[1, 2], [2]])
        let regionJSON = try? JSONSerialization.jsonObject(with: regionData) as? [String: Any]
        #expect((regionJSON?["mean"] as? [String: Any])?.keys.sorted() == ["(1, 2)", "2"])
        // The pseudo-Dice of region outputs: logit > 0 per region, against label ∈ region.
        let logits = Tensor(shape: [1, 2, 6], data: [-1, 2, 3, 1, -2, -1] + [-1, -1, 1, 2, -3, -1])
        let loss = RegionDiceBCELoss(regions: [[1, 2], [2]], batchDice: false)
        let (tp, fp, fn) = loss.pseudoDiceCounts(logits: logits, labels: r.map { Int16($0) })
        #expect(tp == [2, 1] && fp == [1, 1] && fn == [1, 1])
    }
}

struct TrainingCurveTests {
    @Test func progressPlotIsAPNGWithEverySeries() throws {
        var log = TrainingLog()
        log.trainLosses = [0.9, 0.2, -0.3, -0.5, -0.6]
        log.validationLosses = [0.5, -0.2, -0.6, -0.7, -0.75]
        log.meanForegroundDice = [0.3, 0.6, 0.8, 0.84, 0.86]
        log.emaForegroundDice = [0.3, 0.33, 0.377, 0.423, 0.467]
        let png = TrainingCurve.png(log)
        #expect(png.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
        #expect(png.count > 1000)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("nnseg-progress-test.png")
        try png.write(to: url)
    }
}
