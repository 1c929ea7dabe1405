import Foundation
import JSON

/// `dataset.json` (nnU-Net v2; legacy `modality` accepted for `channel_names`).
public struct DatasetDescription: Sendable {
    /// Channel index → name, in index order.
    public var channelNames: [String]
    /// Label name → value(s). A list of values makes the dataset region-based.
    public var labels: [(name: String, values: [Int])]
    public var regionClassOrder: [Int]?
    public var numTraining: Int?
    public var fileEnding: String
    public var raw: JSONValue
    public let source: String

    public init(contentsOf url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw PlansError(file: url.path, key: "", detail: "cannot read (\(error.localizedDescription))")
        }
        try self.init(data: data, source: url.path)
    }

    public init(data: Data, source: String) throws {
        self.source = source
        do { raw = try JSONDecoder().decode(JSONValue.self, from: data) } catch {
            throw PlansError(file: source, key: "", detail: "not valid JSON (\(error))")
        }
        guard let channels = (raw["channel_names"] ?? raw["modality"])?.object, !channels.isEmpty else {
            throw PlansError(file: source, key: "channel_names", detail: "missing or empty")
        }
        let indexed = try channels.map { key, value -> (Int, String) in
            guard let i = Int(key), let name = value.string else {
                throw PlansError(file: source, key: "channel_names.\(key)", detail: "keys must be channel indices and values names")
            }
            return (i, name)
        }.sorted { $0.0 < $1.0 }
        guard indexed.map(\.0) == Array(0..<indexed.count) else {
            throw PlansError(file: source, key: "channel_names", detail: "channel indices must be 0…\(indexed.count - 1)")
        }
        channelNames = indexed.map(\.1)
        guard let labelObject = raw["labels"]?.object, !labelObject.isEmpty else {
            throw PlansError(file: source, key: "labels", detail: "missing or empty")
        }
        labels = try labelObject.map { name, value -> (String, [Int]) in
            if let v = value.int { return (name, [v]) }
            if let vs = value.intArray, !vs.isEmpty { return (name, vs) }
            throw PlansError(file: source, key: "labels.\(name)", detail: "must be an integer or a non-empty list of integers")
        }.sorted { ($0.1.first ?? 0, $0.0) < ($1.1.first ?? 0, $1.0) }
        if let bad = labels.first(where: { $0.values.contains { !(0...65535).contains($0) } }) {
            throw PlansError(file: source, key: "labels.\(bad.name)", detail: "label values must be 0…65535 (stored as uint16)")
        }
        if !labels.contains(where: { $0.values.count > 1 }) {
            var seen: [Int: String] = [:]
            for label in labels {
                if let other = seen[label.values[0]] {
                    throw PlansError(file: source, key: "labels.\(label.name)", detail: "value \(label.values[0]) is also \(other)")
                }
                seen[label.values[0]] = label.name
            }
        }
        let document = raw
        func optional<T>(_ key: String, _ what: String, _ transform: (JSONValue) -> T?) throws -> T? {
            guard let value = document[key], !value.isNull else { return nil }
            guard let typed = transform(value) else { throw PlansError(file: source, key: key, detail: "must be \(what)") }
            return typed
        }
        regionClassOrder = try optional("regions_class_order", "a list of integers") { $0.intArray }
        numTraining = try optional("numTraining", "an integer ≥ 0") { $0.int.flatMap { $0 >= 0 ? $0 : nil } }
        fileEnding = try optional("file_ending", "text such as \".nii.gz\"") { $0.string } ?? ".nii.gz"
    }

    /// Any label given as a list of more than one value makes the dataset region-based.
    public var isRegionBased: Bool { labels.contains { $0.values.count > 1 } }

    /// Output channels of the network: labels incl. background (label-based), or regions excluding
    /// background and `ignore` (region-based).
    public var segmentationHeads: Int {
        let withoutIgnore = labels.filter { $0.name != "ignore" }
        if isRegionBased {
            return withoutIgnore.filter { !($0.values == [0]) }.count
        }
        return withoutIgnore.count
    }

    /// The value of the `ignore` label (voxels left out of the loss and the metrics), if the dataset has one.
    public var ignoreLabel: Int? { labels.first { $0.name == "ignore" }?.values.first }

    /// Foreground regions (region-based datasets): every entry but background and `ignore`, in declaration order,
    /// each the label values it unites (nnU-Net's `foreground_regions`).
    public var foregroundRegions: [[Int]] {
        labels.filter { $0.name != "ignore" && $0.values != [0] }.map(\.values)
    }

    /// What evaluation and the online pseudo-Dice score: each foreground label on its own, or each region.
    public var evaluationClasses: [[Int]] {
        isRegionBased ? foregroundRegions : foregroundLabels.map { [$0] }
    }

    /// Foreground label values (label-based datasets), ascending.
    public var foregroundLabels: [Int] {
        labels.filter { $0.name != "ignore" }.flatMap(\.values).filter { $0 != 0 }.sorted()
    }
}
