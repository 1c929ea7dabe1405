import Foundation
import JSON

/// A problem with a plans or dataset file: names the file and the key at fault.
public struct PlansError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let key: String
    public let detail: String

    public init(file: String, key: String, detail: String) {
        self.file = file
        self.key = key
        self.detail = detail
    }

    public var description: String { "PLANS_INVALID: \(file): \(key): \(detail)" }
}

/// `plans.json` (nnU-Net v2). Configurations are kept as JSON until asked for, so that `inherits_from`
/// can be resolved first (child keys override parent, recursively, cycles refused).
public struct Plans: Sendable {
    public var datasetName: String
    public var plansName: String
    public var transposeForward: [Int]
    public var transposeBackward: [Int]
    public var imageReaderWriter: String?
    public var originalMedianSpacingAfterTranspose: [Double]
    public var originalMedianShapeAfterTranspose: [Int]
    public var foregroundIntensityPropertiesPerChannel: [String: IntensityProperties]
    /// The raw document, for writing back unchanged and for fields nnseg does not model.
    public var raw: JSONValue
    public let source: String

    public struct IntensityProperties: Equatable, Sendable {
        public var max, mean, median, min, percentile00_5, percentile99_5, std: Double
    }

    public init(contentsOf url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw PlansError(file: url.path, key: "", detail: "cannot read (\(error.localizedDescription))")
        }
        try self.init(data: data, source: url.path)
    }

    public init(data: Data, source: String) throws {
        self.source = source
        let raw: JSONValue
        do { raw = try JSONDecoder().decode(JSONValue.self, from: data) } catch {
            throw PlansError(file: source, key: "", detail: "not valid JSON (\(error))")
        }
        self.raw = raw
        func require<T>(_ key: String, _ transform: (JSONValue) -> T?) throws -> T {
            guard let v = raw[key], let t = transform(v) else {
                throw PlansError(file: source, key: key, detail: "missing or of the wrong type")
            }
            return t
        }
        datasetName = try require("dataset_name") { $0.string }
        plansName = try require("plans_name") { $0.string }
        transposeForward = try require("transpose_forward") { $0.intArray }
        transposeBackward = try require("transpose_backward") { $0.intArray }
        // The axis permutations must be permutations of (0, 1, 2), each the other's inverse: they index arrays.
        for (key, permutation) in [("transpose_forward", transposeForward), ("transpose_backward", transposeBackward)]
            where permutation.sorted() != [0, 1, 2] {
            throw PlansError(file: source, key: key, detail: "\(permutation) is not a permutation of [0, 1, 2]")
        }
        let forward = transposeForward, backward = transposeBackward
        guard forward.indices.allSatisfy({ backward[forward[$0]] == $0 }) else {
            throw PlansError(file: source, key: "transpose_backward",
                             detail: "\(backward) does not undo transpose_forward \(forward)")
        }
        imageReaderWriter = raw["image_reader_writer"]?.string
        func numbers(_ key: String) throws -> [Double] {
            guard let value = raw[key] else { return [] }
            guard let list = value.array, let numbers = Optional(list.compactMap(\.double)), numbers.count == list.count,
                  numbers.allSatisfy({ $0.isFinite && $0 >= 0 })
            else { throw PlansError(file: source, key: key, detail: "must be a list of non-negative numbers") }
            return numbers
        }
        originalMedianSpacingAfterTranspose = try numbers("original_median_spacing_after_transp")
        let medianShape = try numbers("original_median_shape_after_transp")
        // A shape is whole voxel counts: a value beyond any real volume (or Int) is refused, not converted.
        guard medianShape.allSatisfy({ $0 <= 1e9 }) else {
            throw PlansError(file: source, key: "original_median_shape_after_transp", detail: "voxel counts must be at most 10⁹")
        }
        originalMedianShapeAfterTranspose = medianShape.map { Int($0.rounded()) }
        var intensities: [String: IntensityProperties] = [:]
        if let value = raw["foreground_intensity_properties_per_channel"], value.object == nil {
            throw PlansError(file: source, key: "foreground_intensity_properties_per_channel", detail: "must be a mapping of channel → statistics")
        }
        for (channel, value) in raw["foreground_intensity_properties_per_channel"]?.object ?? [:] {
            guard Int(channel) != nil, value.object != nil else {
                throw PlansError(file: source, key: "foreground_intensity_properties_per_channel.\(channel)",
                                 detail: "must be a channel number with a mapping of statistics")
            }
            func d(_ k: String) -> Double { value[k]?.double ?? .nan }
            intensities[channel] = IntensityProperties(max: d("max"), mean: d("mean"), median: d("median"), min: d("min"),
                                                       percentile00_5: d("percentile_00_5"), percentile99_5: d("percentile_99_5"),
                                                       std: d("std"))
        }
        foregroundIntensityPropertiesPerChannel = intensities
        _ = try require("configurations") { $0.object }
    }

    public var configurationNames: [String] { (raw["configurations"]?.object ?? [:]).keys.sorted() }

    /// A configuration with `inherits_from` resolved.
    public func configuration(_ name: String) throws -> ConfigurationPlan {
        let all = raw["configurations"]?.object ?? [:]
        var chain: [String] = []
        var merged: [String: JSONValue] = [:]
        var current: String? = name
        while let c = current {
            guard !chain.contains(c) else {
                throw PlansError(file: source, key: "configurations.\(name).inherits_from",
                                 detail: "inheritance cycle \((chain + [c]).joined(separator: " → "))")
            }
            guard let body = all[c]?.object else {
                throw PlansError(file: source, key: "configurations.\(c)",
                                 detail: "no such configuration; available: \(all.keys.sorted().joined(separator: ", "))")
            }
            chain.append(c)
            for (k, v) in body where merged[k] == nil { merged[k] = v }  // the child's keys win
            current = body["inherits_from"]?.string
        }
        return try ConfigurationPlan(name: name, json: .object(JSONObject(sortedFrom: merged)), source: source)
    }
}

/// One resolved configuration (`3d_fullres`, `2d`, …).
public struct ConfigurationPlan: Sendable {
    public var name: String
    public var dataIdentifier: String
    public var preprocessorName: String
    public var batchSize: Int
    public var patchSize: [Int]
    public var medianImageSizeInVoxels: [Double]
    public var spacing: [Double]
    public var normalizationSchemes: [String]
    public var useMaskForNorm: [Bool]
    public var resamplingDataKwargs: JSONValue
    public var resamplingSegKwargs: JSONValue
    public var resamplingProbabilitiesKwargs: JSONValue
    public var batchDice: Bool
    public var previousStage: String?
    public var nextStage: [String]
    public var architecture: NetworkArchitecture
    public var json: JSONValue

    init(name: String, json: JSONValue, source: String) throws {
        self.name = name
        self.json = json
        func fail(_ key: String, _ detail: String = "missing or of the wrong type") -> PlansError {
            PlansError(file: source, key: "configurations.\(name).\(key)", detail: detail)
        }
        guard let patch = json["patch_size"]?.intArray else { throw fail("patch_size") }
        guard let spacing = json["spacing"]?.array?.compactMap(\.double), spacing.count == patch.count else { throw fail("spacing") }
        patchSize = patch
        self.spacing = spacing
        dataIdentifier = json["data_identifier"]?.string ?? ""
        preprocessorName = json["preprocessor_name"]?.string ?? "DefaultPreprocessor"
        batchSize = json["batch_size"]?.int ?? 2
        medianImageSizeInVoxels = json["median_image_size_in_voxels"]?.array?.compactMap(\.double) ?? []
        guard patch.allSatisfy({ $0 > 0 }) else { throw fail("patch_size", "\(patch): every size must be positive") }
        guard spacing.allSatisfy({ $0.isFinite && $0 > 0 }) else { throw fail("spacing", "\(spacing): every spacing must be a positive number") }
        guard let schemeList = json["normalization_schemes"]?.array, let schemes = Optional(schemeList.compactMap(\.string)),
              schemes.count == schemeList.count, !schemes.isEmpty
        else { throw fail("normalization_schemes", "must be a list of scheme names, one per channel") }
        if let unknown = schemes.firstIndex(where: { !Self.normalizationSchemes.contains($0) }) {
            throw fail("normalization_schemes[\(unknown)]", "'\(schemes[unknown])' is not a known scheme (\(Self.normalizationSchemes.sorted().joined(separator: ", ")))")
        }
        normalizationSchemes = schemes
        if let maskList = json["use_mask_for_norm"] {
            guard let list = maskList.array, let flags = Optional(list.compactMap(\.bool)), flags.count == list.count, flags.count == schemes.count else {
                throw fail("use_mask_for_norm", "must be a list of \(schemes.count) true/false value(s), one per channel")
            }
            useMaskForNorm = flags
        } else {
            useMaskForNorm = schemes.map { _ in false }
        }
        // Interpolation orders index the resampling kernels: 0…5 (scikit-image / SciPy).
        for key in ["resampling_fn_data_kwargs", "resampling_fn_seg_kwargs", "resampling_fn_probabilities_kwargs"] {
            guard let kwargs = json[key], !kwargs.isNull else { continue }
            guard kwargs.object != nil else { throw fail(key, "must be a mapping") }
            for orderKey in ["order", "order_z"] {
                guard let value = kwargs[orderKey] else { continue }
                guard let order = value.int, (0...5).contains(order) else {
                    throw fail("\(key).\(orderKey)", "must be an interpolation order 0…5")
                }
            }
        }
        resamplingDataKwargs = json["resampling_fn_data_kwargs"] ?? .null
        resamplingSegKwargs = json["resampling_fn_seg_kwargs"] ?? .null
        resamplingProbabilitiesKwargs = json["resampling_fn_probabilities_kwargs"] ?? .null
        batchDice = json["batch_dice"]?.bool ?? false
        previousStage = json["previous_stage"]?.string
        nextStage = json["next_stage"]?.array?.compactMap(\.string) ?? json["next_stage"]?.string.map { [$0] } ?? []
        architecture = try NetworkArchitecture(configuration: json, dimension: patch.count) { key, detail in fail(key, detail) }
        guard architecture.dimension == patch.count else {
            throw fail("patch_size", "\(patch.count) axes, the network is \(architecture.dimension)-D")
        }
    }

    /// The normalisation schemes nnU-Net v2 defines (spec §6.4).
    public static let normalizationSchemes: Set<String> = [
        "ZScoreNormalization", "CTNormalization", "NoNormalization", "RescaleTo01Normalization", "RGBTo01Normalization",
    ]
}
