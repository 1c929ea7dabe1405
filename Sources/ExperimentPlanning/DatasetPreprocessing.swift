import Dispatch
import Foundation
import JSON
import NIfTI
import PlansModel
import Preprocessing

/// One training case after nnU-Net's preprocessing (spec §4): data and segmentation on the
/// configuration's grid (transposed order), the crop properties, and the sampled foreground locations.
public struct PreprocessedCase: Sendable {
    public var identifier: String
    public var data: ChannelArray
    /// Values −1 (outside the non-zero mask), 0…K.
    public var segmentation: [Int16]
    public var properties: PreprocessingProperties
    /// Per foreground class (label value, or region as its label values): rows `[0, z, y, x]`.
    public var classLocations: [(key: [Int], coordinates: [[Int]])]
}

public struct DatasetPreprocessingError: Error, CustomStringConvertible {
    public let file: String
    public let detail: String
    public var description: String { "DATASET_INVALID: \(file): \(detail)" }
}

/// Preprocessing of a whole raw dataset for training, and nnseg's on-disk format for it.
///
/// On-disk format, one folder per data identifier (`<output>/<data_identifier>/`), per case:
/// `CASE.npy` (float32, `(c, z, y, x)`, C order), `CASE_seg.npy` (int16, `(1, z, y, x)`) and `CASE.json`
/// (spacing, crop box, shapes, class locations). `.npy` is readable by numpy and by nnU-Net's older
/// unpacked-data loader; the files are memory-mappable, which is what a patch sampler needs.
public enum DatasetPreprocessor {
    public static let locationSeed: UInt32 = 1234
    public static let minimumSamples = 10_000
    public static let minimumCoverage = 0.01

    /// The classes (or regions) nnU-Net collects locations for: foreground labels, or foreground regions;
    /// with an `ignore` label also the "all annotated" region `[-1] + every other label value` (spec §4.5).
    public static func foregroundClasses(_ description: DatasetDescription) -> [[Int]] {
        let usable = description.labels.filter { $0.name != "ignore" }
        var classes = description.isRegionBased ? usable.filter { $0.values != [0] }.map(\.values)
            : description.foregroundLabels.map { [$0] }
        if description.ignoreLabel != nil {
            classes.append([-1] + Set(usable.flatMap(\.values)).sorted())
        }
        return classes
    }

    /// Spec §4.5: one `RandomState(1234)` per case; per class `k = max(min(10000, n), ceil(0.01 n))`
    /// coordinates drawn without replacement from the class's voxels in C order.
    public static func foregroundLocations(segmentation: [Int16], shape: [Int], classes: [[Int]]) -> [(key: [Int], coordinates: [[Int]])] {
        var rng = LegacyRandomState(seed: locationSeed)
        var byLabel: [Int16: [Int]] = [:]
        let wanted = Set(classes.flatMap { $0 }.map { Int16($0) })
        for i in 0..<segmentation.count where wanted.contains(segmentation[i]) { byLabel[segmentation[i], default: []].append(i) }
        let plane = shape[1] * shape[2]
        return classes.map { labels in
            let voxels = labels.flatMap { byLabel[Int16($0)] ?? [] }
            if voxels.isEmpty { return (labels, []) }
            let n = voxels.count
            let k = max(min(minimumSamples, n), Int((Double(n) * minimumCoverage).rounded(.up)))
            let picked = rng.permutation(n).prefix(k)
            return (labels, picked.map { offset in
                let i = voxels[offset]
                return [0, i / plane, (i / shape[2]) % shape[1], i % shape[2]]
            })
        }
    }

    public static func preprocess(_ c: RawDataset.Case, preprocessor: Preprocessor, classes: [[Int]]) throws -> PreprocessedCase {
        let images = try c.images.map { try NIfTIImage(contentsOf: $0) }
        let label = try NIfTIImage(contentsOf: c.label)
        let volumes = images.map { $0.floatVolume() }
        let shape = volumes[0].shape.zyx
        for (url, v) in zip(c.images, volumes) where v.shape.zyx != shape {
            throw DatasetPreprocessingError(file: url.path, detail: "size \(v.shape.zyx) differs from channel 0 \(shape)")
        }
        let seg = label.floatVolume()
        guard seg.shape.zyx == shape else {
            throw DatasetPreprocessingError(file: c.label.path, detail: "size \(seg.shape.zyx) differs from the image \(shape)")
        }
        let result: (data: ChannelArray, segmentation: [Float]?, properties: PreprocessingProperties)
        do {
            let image = try CaseImage(channels: volumes, sources: c.images.map(\.path))
            result = try preprocessor.preprocess(image.channels, spacing: image.spacing, segmentation: seg.voxels)
        } catch {
            throw DatasetPreprocessingError(file: c.images[0].path, detail: "\(error)")
        }
        let segmentation = (result.segmentation ?? []).map { Int16($0) }
        return PreprocessedCase(identifier: c.identifier, data: result.data, segmentation: segmentation, properties: result.properties,
                                classLocations: foregroundLocations(segmentation: segmentation, shape: result.data.shape, classes: classes))
    }

    /// Writes `CASE.npy`, `CASE_seg.npy` and `CASE.json` into `folder` (each atomically).
    public static func write(_ p: PreprocessedCase, to folder: URL) throws {
        let shape = [p.data.channels.count] + p.data.shape
        var floats = [Float]()
        floats.reserveCapacity(shape.reduce(1, *))
        for channel in p.data.channels { floats.append(contentsOf: channel) }
        try NumpyFile.data(floats, shape: shape).write(to: folder.appendingPathComponent("\(p.identifier).npy"), options: .atomic)
        try NumpyFile.data(p.segmentation, shape: [1] + p.data.shape).write(to: folder.appendingPathComponent("\(p.identifier)_seg.npy"),
                                                                             options: .atomic)
        let locations: [(String, JSONValue)] = p.classLocations.map { key, rows in
            (key.count == 1 ? String(key[0]) : "(" + key.map(String.init).joined(separator: ", ") + ")", JSONValue.array(rows.map(JSONValue.ints)))
        }
        let members: [(String, JSONValue)] = [
            ("spacing", JSONValue.doubles(p.properties.spacing)),
            ("shape_before_cropping", JSONValue.ints(p.properties.shapeBeforeCropping)),
            ("bbox_used_for_cropping", JSONValue.array(p.properties.boundingBox.map(JSONValue.ints))),
            ("shape_after_cropping_and_before_resampling", JSONValue.ints(p.properties.shapeAfterCropping)),
            ("class_locations", JSONValue.object(JSONObject(locations))),
        ]
        let properties = JSONValue.object(JSONObject(members))
        try Data(properties.pythonCompactText().utf8).write(to: folder.appendingPathComponent("\(p.identifier).json"), options: .atomic)
    }

    /// Preprocesses every case of `dataset` for one configuration into `<output>/<data_identifier>/`, with
    /// `workers` cases in flight; label files are copied to `<output>/gt_segmentations/`. Returns the
    /// identifiers written. The first failing case stops the run with its file named; finished cases stay.
    public static func run(dataset: RawDataset, plans: Plans, configuration name: String, output: URL, workers: Int,
                           progress: ((Int, Int) -> Void)? = nil) throws -> [String] {
        let configuration = try plans.configuration(name)
        let preprocessor = Preprocessor(plans: plans, configuration: configuration)
        let folder = output.appendingPathComponent(configuration.dataIdentifier)
        let groundTruth = output.appendingPathComponent("gt_segmentations")
        let fm = FileManager.default
        try fm.createDirectory(at: folder, withIntermediateDirectories: true)
        try fm.createDirectory(at: groundTruth, withIntermediateDirectories: true)
        let classes = foregroundClasses(dataset.description)
        let cases = dataset.cases
        let lock = NSLock()
        var next = 0, done = 0
        var failure: Error?
        DispatchQueue.concurrentPerform(iterations: max(1, min(workers, cases.count))) { _ in
            while true {
                lock.lock()
                let index = next
                next += 1
                let stop = failure != nil
                lock.unlock()
                if stop || index >= cases.count { return }
                do {
                    let result = try preprocess(cases[index], preprocessor: preprocessor, classes: classes)
                    try write(result, to: folder)
                    let gt = groundTruth.appendingPathComponent(cases[index].label.lastPathComponent)
                    if !fm.fileExists(atPath: gt.path) { try fm.copyItem(at: cases[index].label, to: gt) }
                    lock.lock()
                    done += 1
                    let d = done
                    lock.unlock()
                    progress?(d, cases.count)
                } catch {
                    lock.lock()
                    if failure == nil { failure = error }
                    lock.unlock()
                }
            }
        }
        if let failure { throw failure }
        return cases.map(\.identifier)
    }
}

/// Minimal `.npy` (format 1.0) writer for the preprocessed arrays.
public enum NumpyFile {
    public protocol Element { static var descriptor: String { get } }

    public static func data<T: Element>(_ values: [T], shape: [Int]) -> Data {
        precondition(shape.reduce(1, *) == values.count)
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(T.descriptor)', 'fortran_order': False, 'shape': \(shapeText), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var out = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let length = UInt16(header.utf8.count)
        out.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8)])
        out.append(contentsOf: Array(header.utf8))
        values.withUnsafeBytes { out.append(contentsOf: $0) }
        return out
    }
}

extension Float: NumpyFile.Element { public static var descriptor: String { "<f4" } }
extension Int16: NumpyFile.Element { public static var descriptor: String { "<i2" } }
