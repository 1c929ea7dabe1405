import Foundation

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
        imageReaderWriter = raw["image_reader_writer"]?.string
        originalMedianSpacingAfterTranspose = raw["original_median_spacing_after_transp"]?.array?.compactMap(\.double) ?? []
        originalMedianShapeAfterTranspose = raw["original_median_shape_after_transp"]?.array?.compactMap { $0.double.map { Int($0) } } ?? []
        var intensities: [String: IntensityProperties] = [:]
        for (channel, value) in raw["foreground_intensity_properties_per_channel"]?.object ?? [:] {
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
        return try ConfigurationPlan(name: name, json: .object(merged), source: source)
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
        guard let schemes = json["normalization_schemes"]?.array?.compactMap(\.string) else { throw fail("normalization_schemes") }
        normalizationSchemes = schemes
        useMaskForNorm = json["use_mask_for_norm"]?.array?.compactMap(\.bool) ?? schemes.map { _ in false }
        resamplingDataKwargs = json["resampling_fn_data_kwargs"] ?? .null
        resamplingSegKwargs = json["resampling_fn_seg_kwargs"] ?? .null
        resamplingProbabilitiesKwargs = json["resampling_fn_probabilities_kwargs"] ?? .null
        batchDice = json["batch_dice"]?.bool ?? false
        previousStage = json["previous_stage"]?.string
        nextStage = json["next_stage"]?.array?.compactMap(\.string) ?? json["next_stage"]?.string.map { [$0] } ?? []
        architecture = try NetworkArchitecture(configuration: json, dimension: patch.count) { key, detail in fail(key, detail) }
    }
}
