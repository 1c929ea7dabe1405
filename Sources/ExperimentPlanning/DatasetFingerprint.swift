import Dispatch
import Foundation
import JSON
import NIfTI
import PlansModel
import Preprocessing

/// A problem found in a raw dataset; names the file.
public struct DatasetProblem: Sendable, Equatable, CustomStringConvertible {
    public let file: String
    public let detail: String
    public var description: String { "\(file): \(detail)" }
}

/// An nnU-Net v2 raw dataset (`dataset.json`, `imagesTr/<case>_XXXX<ending>`, `labelsTr/<case><ending>`).
public struct RawDataset: Sendable {
    public struct Case: Sendable {
        public var identifier: String
        public var images: [URL]
        public var label: URL
    }

    public let folder: URL
    public let description: DatasetDescription
    public let cases: [Case]

    public init(folder: URL) throws {
        self.folder = folder
        let description = try DatasetDescription(contentsOf: folder.appendingPathComponent("dataset.json"))
        self.description = description
        let ending = description.fileEnding
        let channelCount = description.channelNames.count
        let images = folder.appendingPathComponent("imagesTr")
        let names = try FileManager.default.contentsOfDirectory(atPath: images.path).filter { $0.hasSuffix(ending) }
        let identifiers = Set(names.map { String($0.dropLast(ending.count + 5)) }).sorted()
        cases = identifiers.map { id in
            Case(identifier: id,
                 images: (0..<channelCount).map { images.appendingPathComponent(String(format: "%@_%04d%@", id, $0, ending)) },
                 label: folder.appendingPathComponent("labelsTr").appendingPathComponent(id + ending))
        }
    }

    /// nnU-Net's `--verify_dataset_integrity`, naming every problem: missing channels or labels, label
    /// values not declared in dataset.json, image/label geometry mismatch, case count.
    public func verify() -> [DatasetProblem] {
        var problems: [DatasetProblem] = []
        if let n = description.numTraining, n != cases.count {
            problems.append(DatasetProblem(file: folder.appendingPathComponent("dataset.json").path,
                                           detail: "numTraining is \(n) but imagesTr holds \(cases.count) case(s)"))
        }
        let allowed = Set(description.labels.flatMap(\.values).map(Double.init))
        for c in cases {
            guard FileManager.default.fileExists(atPath: c.label.path) else {
                problems.append(DatasetProblem(file: c.label.path, detail: "label file missing for case \(c.identifier)"))
                continue
            }
            var geometry: (NIfTIImage)?
            for image in c.images {
                guard FileManager.default.fileExists(atPath: image.path) else {
                    problems.append(DatasetProblem(file: image.path, detail: "channel file missing"))
                    continue
                }
                do {
                    let img = try NIfTIImage(contentsOf: image)
                    if geometry == nil { geometry = img }
                } catch { problems.append(DatasetProblem(file: image.path, detail: "\(error)")) }
            }
            do {
                let label = try NIfTIImage(contentsOf: c.label)
                let values = Set(label.floatVolume().voxels.map(Double.init))
                let unknown = values.subtracting(allowed).sorted()
                if !unknown.isEmpty {
                    problems.append(DatasetProblem(file: c.label.path, detail: "label values \(unknown) are not in dataset.json"))
                }
                if let g = geometry {
                    if g.shape != label.shape {
                        problems.append(DatasetProblem(file: c.label.path, detail: "size \(label.shape) differs from the image \(g.shape)"))
                    } else if g.geometry.maxAbsDifference(label.geometry) > 1e-3 {
                        problems.append(DatasetProblem(file: c.label.path, detail: "geometry differs from the image (spacing/origin/direction)"))
                    }
                }
            } catch { problems.append(DatasetProblem(file: c.label.path, detail: "\(error)")) }
        }
        return problems
    }
}

/// `dataset_fingerprint.json` (spec §2): per-case shapes after cropping and spacings, and foreground
/// intensity statistics from numpy-identical random samples (RandomState(1234) per case).
public struct DatasetFingerprint: Sendable {
    public var shapesAfterCrop: [[Int]]
    public var spacings: [[Double]]
    public var medianRelativeSizeAfterCropping: Double
    /// Per channel: max, mean, median, min, percentile_00_5, percentile_99_5, std.
    public var intensityProperties: [[String: Double]]

    public static let samplingSeed: UInt32 = 1234

    public init(shapesAfterCrop: [[Int]], spacings: [[Double]], medianRelativeSizeAfterCropping: Double, intensityProperties: [[String: Double]]) {
        self.shapesAfterCrop = shapesAfterCrop
        self.spacings = spacings
        self.medianRelativeSizeAfterCropping = medianRelativeSizeAfterCropping
        self.intensityProperties = intensityProperties
    }

    /// Reads a `dataset_fingerprint.json` (ours or nnU-Net's).
    public init(contentsOf url: URL) throws {
        struct File: Decodable {
            var foreground_intensity_properties_per_channel: [String: [String: Double]]
            var median_relative_size_after_cropping: Double
            var shapes_after_crop: [[Int]]
            var spacings: [[Double]]
        }
        let file: File
        do { file = try JSONDecoder().decode(File.self, from: Data(contentsOf: url)) } catch {
            throw PlansError(file: url.path, key: "", detail: "not a dataset fingerprint (\(error))")
        }
        guard file.shapes_after_crop.count == file.spacings.count, !file.spacings.isEmpty else {
            throw PlansError(file: url.path, key: "spacings", detail: "shapes_after_crop and spacings must list the same, non-zero number of cases")
        }
        let channels = file.foreground_intensity_properties_per_channel
        guard channels.keys.compactMap(Int.init).sorted() == Array(0..<channels.count) else {
            throw PlansError(file: url.path, key: "foreground_intensity_properties_per_channel", detail: "keys must be channel indices 0…n-1")
        }
        shapesAfterCrop = file.shapes_after_crop
        spacings = file.spacings
        medianRelativeSizeAfterCropping = file.median_relative_size_after_cropping
        intensityProperties = (0..<channels.count).map { channels[String($0)]! }
    }

    public static func extract(_ dataset: RawDataset, progress: ((Int, Int) -> Void)? = nil) throws -> DatasetFingerprint {
        let samplesPerCase = Int(1e8) / dataset.cases.count  // int(10e7 // numCases)
        let channels = dataset.description.channelNames.count
        struct CaseResult { var shape: [Int]; var spacing: [Double]; var relative: Double; var samples: [[Float]] }
        var results = [CaseResult?](repeating: nil, count: dataset.cases.count)
        var failure: Error?
        let lock = NSLock()
        var done = 0
        var shared = results
        DispatchQueue.concurrentPerform(iterations: dataset.cases.count) { index in
            do {
                let c = dataset.cases[index]
                let images = try c.images.map { try NIfTIImage(contentsOf: $0).floatVolume() }
                let label = try NIfTIImage(contentsOf: c.label).floatVolume()
                let image = try CaseImage(channels: images, sources: c.images.map(\.path))
                let shape = image.channels.shape, data = image.channels
                let (box, _) = Preprocessor.nonZeroBoundingBox(data)
                let cropped = Preprocessor.crop(data, box: box)
                let seg = Preprocessor.crop(ChannelArray(shape: shape, channels: [label.voxels]), box: box).channels[0]
                var rng = LegacyRandomState(seed: samplingSeed)
                var samples: [[Float]] = []
                for channel in cropped.channels {
                    var foreground: [Float] = []
                    for i in 0..<seg.count where seg[i] > 0 { foreground.append(channel[i]) }
                    if foreground.isEmpty { samples.append([]); continue }
                    samples.append(rng.randomIndices(upperBound: foreground.count, count: samplesPerCase).map { foreground[$0] })
                }
                let result = CaseResult(shape: cropped.shape, spacing: image.spacing,
                                        relative: Double(cropped.voxelCount) / Double(data.voxelCount), samples: samples)
                lock.lock()
                shared[index] = result
                done += 1
                let d = done
                lock.unlock()
                progress?(d, dataset.cases.count)
            } catch {
                lock.lock()
                failure = failure ?? error
                lock.unlock()
            }
        }
        if let failure { throw failure }
        results = shared
        let all = results.map { $0! }
        var properties: [[String: Double]] = []
        for c in 0..<channels {
            var values: [Float] = []
            values.reserveCapacity(samplesPerCase * all.count)
            for r in all { values += r.samples[c] }
            properties.append(statistics(values))
        }
        let relatives = all.map(\.relative).sorted()
        let mid = relatives.count / 2
        let median = relatives.count % 2 == 1 ? relatives[mid] : (relatives[mid - 1] + relatives[mid]) / 2
        return DatasetFingerprint(shapesAfterCrop: all.map(\.shape), spacings: all.map(\.spacing),
                                  medianRelativeSizeAfterCropping: median, intensityProperties: properties)
    }

    /// numpy's float32 mean / std / median / min / max and linear percentiles of the samples.
    static func statistics(_ values: [Float]) -> [String: Double] {
        guard !values.isEmpty else { return [:] }
        let mean = NumpyFloat32.mean(values)
        let std = NumpyFloat32.standardDeviation(values, mean: mean)
        let sorted = values.sorted()
        let n = sorted.count
        // numpy averages the two middle float32 values in float64 (the reference JSON shows it).
        let median: Double = n % 2 == 1 ? Double(sorted[n / 2]) : (Double(sorted[n / 2 - 1]) + Double(sorted[n / 2])) / 2
        func percentile(_ q: Double) -> Double {
            let virtual = Double(n - 1) * q / 100
            let below = Int(virtual.rounded(.down)), above = min(below + 1, n - 1)
            let t = virtual - Double(below)
            let a = sorted[below], b = sorted[above]
            let difference = Double(b - a)  // numpy subtracts in the array's float32
            return t >= 0.5 ? Double(b) - difference * (1 - t) : Double(a) + difference * t
        }
        return ["max": Double(sorted[n - 1]), "mean": Double(mean), "median": median, "min": Double(sorted[0]),
                "percentile_00_5": percentile(0.5), "percentile_99_5": percentile(99.5), "std": Double(std)]
    }

    /// The JSON nnU-Net writes (sorted keys, indent 4, Python float repr).
    public func json() -> Data {
        let object = JSONValue.object([
            ("foreground_intensity_properties_per_channel", JSONValue.intensityStatistics(intensityProperties)),
            ("median_relative_size_after_cropping", .double(medianRelativeSizeAfterCropping)),
            ("shapes_after_crop", .array(shapesAfterCrop.map(JSONValue.ints))),
            ("spacings", .array(spacings.map(JSONValue.doubles))),
        ])
        return Data(object.pythonText().utf8)
    }
}
