import Foundation
import PlansModel

/// What the planner needs from the fingerprint and dataset.json.
public struct PlannerInput: Sendable {
    /// Per case, numpy (z, y, x) order, untransposed.
    public var spacings: [[Double]]
    public var shapesAfterCrop: [[Int]]
    public var channelNames: [String]
    /// Number of keys in dataset.json "labels" (background and ignore included).
    public var labelCount: Int
    public var numTraining: Int
    public var medianRelativeSizeAfterCropping: Double

    public init(spacings: [[Double]], shapesAfterCrop: [[Int]], channelNames: [String], labelCount: Int, numTraining: Int,
                medianRelativeSizeAfterCropping: Double) {
        self.spacings = spacings
        self.shapesAfterCrop = shapesAfterCrop
        self.channelNames = channelNames
        self.labelCount = labelCount
        self.numTraining = numTraining
        self.medianRelativeSizeAfterCropping = medianRelativeSizeAfterCropping
    }
}

/// One planned configuration (values as plans.json holds them, transposed order).
public struct PlannedConfiguration: Sendable, Equatable {
    public var dataIdentifier: String
    public var batchSize: Int
    public var patchSize: [Int]
    public var medianImageSize: [Double]
    public var spacing: [Double]
    public var normalizationSchemes: [String]
    public var useMaskForNorm: [Bool]
    public var featuresPerStage: [Int]
    public var kernelSizes: [[Int]]
    public var strides: [[Int]]
    public var convsPerStage: [Int]
    public var convsPerDecoderStage: [Int]
    public var architecture: NetworkArchitecture.Kind
    public var estimate: Int
    public var batchDice: Bool
    public var nextStage: String?
}

/// The planner variants nnU-Net ships (spec §3.1): the default planner and the residual-encoder presets.
public struct PlannerPreset: Sendable, Equatable {
    public var plansName: String
    /// Class name recorded as `experiment_planner_used`.
    public var plannerClass: String
    public var architecture: NetworkArchitecture.Kind
    public var reference3D: Double
    public var reference2D: Double
    public var maxDatasetFraction: Double
    /// Data identifiers of 2d / 3d_fullres are shared with `nnUNetPlans` for the ResEnc planners.
    public var sharesDefaultDataIdentifiers: Bool

    public var networkClassName: String {
        architecture == .plainConvUNet ? "dynamic_network_architectures.architectures.unet.PlainConvUNet"
            : "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
    }
    var encoderUnits: [Int] {
        architecture == .plainConvUNet ? Array(repeating: 2, count: 14) : [1, 3, 4, 6] + Array(repeating: 6, count: 9)
    }
    var decoderConvs: Int { architecture == .plainConvUNet ? 2 : 1 }

    public static let `default` = PlannerPreset(plansName: "nnUNetPlans", plannerClass: "ExperimentPlanner", architecture: .plainConvUNet,
                                                reference3D: 560_000_000, reference2D: 85_000_000, maxDatasetFraction: 0.05,
                                                sharesDefaultDataIdentifiers: false)
    public static let resEnc = PlannerPreset(plansName: "nnUNetResEncUNetPlans", plannerClass: "ResEncUNetPlanner", architecture: .residualEncoderUNet,
                                             reference3D: 680_000_000, reference2D: 135_000_000, maxDatasetFraction: 0.05,
                                             sharesDefaultDataIdentifiers: true)
    public static let resEncM = PlannerPreset(plansName: "nnUNetResEncUNetMPlans", plannerClass: "nnUNetPlannerResEncM", architecture: .residualEncoderUNet,
                                              reference3D: 680_000_000, reference2D: 135_000_000, maxDatasetFraction: 1,
                                              sharesDefaultDataIdentifiers: true)
    public static let resEncL = PlannerPreset(plansName: "nnUNetResEncUNetLPlans", plannerClass: "nnUNetPlannerResEncL", architecture: .residualEncoderUNet,
                                              reference3D: 2_100_000_000, reference2D: 380_000_000, maxDatasetFraction: 1,
                                              sharesDefaultDataIdentifiers: true)
    public static let resEncXL = PlannerPreset(plansName: "nnUNetResEncUNetXLPlans", plannerClass: "nnUNetPlannerResEncXL", architecture: .residualEncoderUNet,
                                               reference3D: 3_600_000_000, reference2D: 560_000_000, maxDatasetFraction: 1,
                                               sharesDefaultDataIdentifiers: true)
    public static let all: [String: PlannerPreset] = ["default": .default, "resenc": .resEnc, "resenc-m": .resEncM, "resenc-l": .resEncL,
                                                      "resenc-xl": .resEncXL]
}

/// nnU-Net's default `ExperimentPlanner` (spec §3): target spacing and transpose, topology, patch size
/// under the feature-map budget with the shrink loop, batch size with the 5 % cap, 2d / 3d_fullres /
/// 3d_lowres and the cascade decision, normalisation per channel.
public enum ExperimentPlanner {
    public static let anisotropyThreshold = 3.0
    static let referenceBatch3D = 2.0, referenceBatch2D = 12.0
    static let minimumEdge = 4
    static let lowresSpacingFactor = 1.03

    public struct Plan: Sendable {
        public var transposeForward: [Int]
        public var transposeBackward: [Int]
        public var originalMedianSpacingAfterTranspose: [Double]
        public var originalMedianShapeAfterTranspose: [Int]
        /// "2d", "3d_lowres" (if any), "3d_fullres".
        public var configurations: [String: PlannedConfiguration]
        public var hasCascade: Bool { configurations["3d_lowres"] != nil }
    }

    public static func plan(_ input: PlannerInput, preset: PlannerPreset = .default) -> Plan {
        let plansName = preset.plansName
        let sharedName = preset.sharesDefaultDataIdentifiers ? PlannerPreset.default.plansName : plansName
        let target = fullresSpacing(input)
        let w = target.indices.max { (target[$0], -$0) < (target[$1], -$1) }!  // argmax, first on ties
        let forward = [w] + (0..<3).filter { $0 != w }
        let backward = (0..<3).map { forward.firstIndex(of: $0)! }
        // Median shape at the target spacing.
        let newShapes = zip(input.shapesAfterCrop, input.spacings).map { shape, spacing in
            (0..<3).map { Double(Int((spacing[$0] / target[$0] * Double(shape[$0])).rounded(.toNearestOrEven))) }
        }
        let medianShape = (0..<3).map { axis in median(newShapes.map { $0[axis] }) }
        let spacingT = forward.map { target[$0] }
        let medianT = forward.map { medianShape[$0] }
        let nVoxels = medianT.reduce(1, *) * Double(input.numTraining)
        var configurations: [String: PlannedConfiguration] = [:]
        var fullres: PlannedConfiguration?
        if medianT[0] != 1 {
            fullres = configuration(spacing: spacingT, medianShape: medianT, identifier: "\(sharedName)_3d_fullres", nVoxels: nVoxels, input: input, preset: preset)
        }
        // 3d_lowres.
        if var f = fullres {
            var lowres: PlannedConfiguration?
            var sp = spacingT
            var mL = medianT
            if Double(f.patchSize.reduce(1, *)) / medianT.reduce(1, *) < 0.25 {
                repeat {
                    let mx = sp.max()!
                    if sp.contains(where: { mx / $0 > 2 }) {
                        sp = sp.map { mx / $0 > 2 ? $0 * lowresSpacingFactor : $0 }
                    } else {
                        sp = sp.map { $0 * lowresSpacingFactor }
                    }
                    mL = (0..<3).map { spacingT[$0] / sp[$0] * medianT[$0] }
                    lowres = configuration(spacing: sp, medianShape: mL.map { $0.rounded(.toNearestOrEven) }, identifier: "\(plansName)_3d_lowres",
                                           nVoxels: mL.reduce(1, *) * Double(input.numTraining), input: input, preset: preset)
                } while Double(lowres!.patchSize.reduce(1, *)) / mL.reduce(1, *) < 0.25
                if medianT.reduce(1, *) / mL.reduce(1, *) < 2 { lowres = nil }
            }
            if var l = lowres {
                l.batchDice = false
                l.nextStage = "3d_cascade_fullres"
                configurations["3d_lowres"] = l
                f.batchDice = true
            } else {
                f.batchDice = false
            }
            configurations["3d_fullres"] = f
        }
        var twoD = configuration(spacing: Array(spacingT.dropFirst()), medianShape: Array(medianT.dropFirst()), identifier: "\(sharedName)_2d",
                                 nVoxels: nVoxels, input: input, preset: preset)
        twoD.batchDice = true
        configurations["2d"] = twoD
        let originalSpacing = (0..<3).map { axis in median(input.spacings.map { $0[axis] }) }
        let originalShape = (0..<3).map { axis in median(input.shapesAfterCrop.map { Double($0[axis]) }) }
        return Plan(transposeForward: forward, transposeBackward: backward, originalMedianSpacingAfterTranspose: forward.map { originalSpacing[$0] },
                    originalMedianShapeAfterTranspose: forward.map { Int(originalShape[$0].rounded(.toNearestOrEven)) }, configurations: configurations)
    }

    /// Fullres target spacing (§3.3): per-axis median, with the 10th-percentile rule for anisotropic data.
    public static func fullresSpacing(_ input: PlannerInput) -> [Double] {
        var target = (0..<3).map { axis in median(input.spacings.map { $0[axis] }) }
        let size = (0..<3).map { axis in median(input.shapesAfterCrop.map { Double($0[axis]) }) }
        let w = target.indices.max { (target[$0], -$0) < (target[$1], -$1) }!
        let others = (0..<3).filter { $0 != w }
        let anisoSpacing = target[w] > anisotropyThreshold * others.map { target[$0] }.max()!
        let anisoVoxels = size[w] * anisotropyThreshold < others.map { size[$0] }.min()!
        if anisoSpacing && anisoVoxels {
            var t = percentile(input.spacings.map { $0[w] }, 10)
            let maxOther = others.map { target[$0] }.max()!
            if t < maxOther { t = max(maxOther, t) + 1e-5 }
            target[w] = t
        }
        return target
    }

    /// `get_plans_for_configuration` (§3.5).
    static func configuration(spacing: [Double], medianShape: [Double], identifier: String, nVoxels: Double,
                              input: PlannerInput, preset: PlannerPreset) -> PlannedConfiguration {
        let dims = spacing.count
        let inverse = spacing.map { 1 / $0 }
        let scale = pow((dims == 3 ? pow(256.0, 3) : pow(2048.0, 2)) / inverse.reduce(1, *), 1 / Double(dims))
        var patch = (0..<dims).map { min(Double(Int((inverse[$0] * scale).rounded(.toNearestOrEven))), medianShape[$0]) }
        var topology = Topology(spacing: spacing, patch: patch)
        var intPatch = topology.paddedPatch
        let maxFeatures = dims == 3 ? 320 : 512
        let reference = dims == 3 ? preset.reference3D : preset.reference2D
        let referenceBatch = dims == 3 ? referenceBatch3D : referenceBatch2D
        func estimate(_ t: Topology, _ p: [Int]) -> Int {
            let f = features(t.stages, maxFeatures)
            if preset.architecture == .plainConvUNet {
                return plainFeatureMapSize(patch: p, strides: t.strides, features: f, convs: 2, classes: input.labelCount)
            }
            return residualFeatureMapSize(patch: p, strides: t.strides, features: f, blocks: Array(preset.encoderUnits.prefix(t.stages)),
                                          decoderConvs: 1, inputChannels: input.channelNames.count, classes: input.labelCount)
        }
        func tooLarge(_ e: Int) -> Bool {
            preset.architecture == .plainConvUNet ? Double(e) / referenceBatch * 2 > reference : Double(e) > reference
        }
        var e = estimate(topology, intPatch)
        while tooLarge(e) {
            // The axis that is largest relative to the median shape (ties: the highest index).
            let ratios = (0..<dims).map { Double(intPatch[$0]) / medianShape[$0] }
            let k = (0..<dims).max { (ratios[$0], $0) < (ratios[$1], $1) }!
            var trial = intPatch.map(Double.init)
            trial[k] -= Double(topology.divisibleBy[k])
            let t2 = Topology(spacing: spacing, patch: trial)
            patch = intPatch.map(Double.init)
            patch[k] -= Double(t2.divisibleBy[k])
            topology = Topology(spacing: spacing, patch: patch)
            intPatch = topology.paddedPatch
            e = estimate(topology, intPatch)
        }
        var batch = Int((reference / Double(e) * referenceBatch).rounded(.toNearestOrEven))
        let cap = Int((nVoxels * preset.maxDatasetFraction / Double(intPatch.reduce(1, *))).rounded(.toNearestOrEven))
        batch = max(min(batch, cap), 2)
        let schemes = input.channelNames.map(normalizationScheme)
        return PlannedConfiguration(
            dataIdentifier: identifier, batchSize: batch, patchSize: intPatch, medianImageSize: medianShape, spacing: spacing,
            normalizationSchemes: schemes,
            useMaskForNorm: schemes.map { $0 == "ZScoreNormalization" && input.medianRelativeSizeAfterCropping < 0.75 },
            featuresPerStage: features(topology.stages, maxFeatures), kernelSizes: topology.kernels, strides: topology.strides,
            convsPerStage: Array(preset.encoderUnits.prefix(topology.stages)),
            convsPerDecoderStage: Array(repeating: preset.decoderConvs, count: topology.stages - 1), architecture: preset.architecture,
            estimate: e, batchDice: false, nextStage: nil)
    }

    static func features(_ stages: Int, _ maxFeatures: Int) -> [Int] { (0..<stages).map { min(maxFeatures, 32 << $0) } }

    /// §4.3: by channel name, case-insensitive; anything unknown is z-scored.
    public static func normalizationScheme(_ channelName: String) -> String {
        switch channelName.lowercased() {
        case "ct": return "CTNormalization"
        case "nonorm": return "NoNormalization"
        case "zscore": return "ZScoreNormalization"
        case "rescale_to_0_1": return "RescaleTo01Normalization"
        case "rgb_to_0_1": return "RGBTo01Normalization"
        default: return "ZScoreNormalization"
        }
    }

    /// §3.7, PlainConvUNet without deep supervision.
    public static func plainFeatureMapSize(patch: [Int], strides: [[Int]], features: [Int], convs: Int, classes: Int) -> Int {
        let volume = stageVolumes(patch: patch, strides: strides)
        let encoder = (0..<features.count).reduce(0) { $0 + convs * features[$1] * volume[$1] }
        return encoder + decoderFeatureMapSize(volume: volume, features: features, convs: convs, classes: classes)
    }

    /// §3.7, ResidualEncoderUNet without deep supervision.
    public static func residualFeatureMapSize(patch: [Int], strides: [[Int]], features: [Int], blocks: [Int], decoderConvs: Int,
                                              inputChannels: Int, classes: Int) -> Int {
        let volume = stageVolumes(patch: patch, strides: strides)
        var total = features[0] * patch.reduce(1, *)  // stem
        var channels = features[0]
        for s in 0..<features.count {
            total += 2 * features[s] * volume[s]
            if channels != features[s] || strides[s].contains(where: { $0 != 1 }) { total += features[s] * volume[s] }
            total += (blocks[s] - 1) * 2 * features[s] * volume[s]
            channels = features[s]
        }
        return total + decoderFeatureMapSize(volume: volume, features: features, convs: decoderConvs, classes: classes)
    }

    /// Voxels per stage: `S_0 = patch // strides[0]`, `S_s = S_{s-1} // strides[s]`.
    static func stageVolumes(patch: [Int], strides: [[Int]]) -> [Int] {
        var current = patch
        return strides.map { s in
            current = zip(current, s).map { $0 / $1 }
            return current.reduce(1, *)
        }
    }

    /// The decoder of both networks: per stage its convs plus the transposed conv, and the segmentation
    /// head at full resolution only (no deep supervision).
    static func decoderFeatureMapSize(volume: [Int], features: [Int], convs: Int, classes: Int) -> Int {
        let n = features.count
        var total = 0
        for j in 0..<(n - 1) {
            let s = n - 2 - j
            total += convs * features[s] * volume[s] + features[s] * volume[s]
            if j == n - 2 { total += classes * volume[s] }
        }
        return total
    }

    // MARK: numpy helpers

    static func median(_ values: [Double]) -> Double { percentile(values, 50) }

    /// numpy's linear percentile (float64).
    static func percentile(_ values: [Double], _ q: Double) -> Double {
        let s = values.sorted()
        let virtual = Double(s.count - 1) * q / 100
        let below = Int(virtual.rounded(.down)), above = min(below + 1, s.count - 1)
        let t = virtual - Double(below)
        let d = s[above] - s[below]
        return t >= 0.5 ? s[above] - d * (1 - t) : s[below] + d * t
    }
}

/// `get_pool_and_conv_props` (§3.6).
struct Topology {
    var kernels: [[Int]] = []
    var strides: [[Int]] = []
    var divisibleBy: [Int]
    var paddedPatch: [Int]
    var stages: Int { strides.count }

    init(spacing: [Double], patch: [Double], minimumEdge: Int = 4) {
        let dims = spacing.count
        var curSpacing = spacing
        var curSize = patch
        var kernel = [Int](repeating: 1, count: dims)
        var pools = [[Int](repeating: 1, count: dims)]
        var convs: [[Int]] = []
        var nPool = [Int](repeating: 0, count: dims)
        while true {
            var valid = (0..<dims).filter { curSize[$0] >= Double(2 * minimumEdge) }
            if valid.isEmpty { break }
            let minValid = valid.map { curSpacing[$0] }.min()!
            valid = valid.filter { curSpacing[$0] / minValid < 2 }
            if valid.count == 1 && curSize[valid[0]] < Double(3 * minimumEdge) { break }
            if valid.isEmpty { break }
            let minAll = curSpacing.min()!
            for axis in 0..<dims where kernel[axis] == 1 && curSpacing[axis] / minAll < 2 { kernel[axis] = 3 }
            convs.append(kernel)
            var stride = [Int](repeating: 1, count: dims)
            for axis in valid {
                stride[axis] = 2
                nPool[axis] += 1
                curSpacing[axis] *= 2
                curSize[axis] = (curSize[axis] / 2).rounded(.up)
            }
            pools.append(stride)
        }
        convs.append([Int](repeating: 3, count: dims))
        kernels = convs
        strides = pools
        let divisors = nPool.map { 1 << $0 }
        divisibleBy = divisors
        paddedPatch = (0..<dims).map { Int((patch[$0] / Double(divisors[$0])).rounded(.up)) * divisors[$0] }
    }
}
