import Foundation
import Testing
import TestSupport
import PlansModel
import Preprocessing
@testable import ExperimentPlanning

/// Training preprocessing against the reference nnU-Net's DefaultPreprocessor.run_case on five
/// Hippocampus cases (Fixtures/golden/preprocessing, made by Ops/golden/make_training_preprocessing_golden.py):
/// 3d_fullres as planned, and an anisotropic 3d_resampled variant that resamples data and labels.
struct DatasetPreprocessingTests {
    static let cases = ["hippocampus_001", "hippocampus_003", "hippocampus_004", "hippocampus_006", "hippocampus_007"]

    static func plans() throws -> Plans {
        var text = try String(contentsOf: SharedData.reference.appendingPathComponent("Dataset004_Hippocampus/nnUNetPlans.json"), encoding: .utf8)
        text = text.replacingOccurrences(of: "\"configurations\": {", with: """
            "configurations": {"3d_resampled": {"inherits_from": "3d_fullres", "spacing": [1.3, 0.9, 1.7], "data_identifier": "nnUNetPlans_3d_resampled"},
            """)
        return try Plans(data: Data(text.utf8), source: "reference plans + 3d_resampled")
    }

    @Test(arguments: ["3d_fullres", "3d_resampled"])
    func casesEqualTheReference(configuration: String) throws {
        let dataset = try RawDataset(folder: SharedData.dataFile("Dataset004_Hippocampus"))
        let plans = try Self.plans()
        let preprocessor = Preprocessor(plans: plans, configuration: try plans.configuration(configuration))
        let classes = DatasetPreprocessor.foregroundClasses(dataset.description)
        #expect(classes == [[1], [2]])
        for id in Self.cases {
            let golden = try NumpyArray.npz(SharedData.fixtures.appendingPathComponent("golden/preprocessing/\(id)_\(configuration).npz"))
            let c = try #require(dataset.cases.first { $0.identifier == id })
            let ours = try DatasetPreprocessor.preprocess(c, preprocessor: preprocessor, classes: classes)
            let data = try #require(golden["data"]), seg = try #require(golden["seg"])
            #expect([1] + ours.data.shape == data.shape, "\(id) shape")
            guard [1] + ours.data.shape == data.shape else { continue }
            let maxDiff = zip(ours.data.channels[0], data.floats).map { abs($0 - $1) }.max() ?? 0
            #expect(maxDiff <= 1e-4, "\(id) data max |Δ| \(maxDiff)")
            let segDifferences = zip(ours.segmentation, seg.floats).filter { Float($0) != $1 }.count
            #expect(segDifferences == 0, "\(id) seg voxels differing: \(segDifferences)")
            #expect(ours.properties.boundingBox.flatMap { $0 } == golden["bbox"]!.floats.map { Int($0) })
            #expect(ours.properties.shapeBeforeCropping == golden["shape_before"]!.floats.map { Int($0) })
            #expect(ours.properties.shapeAfterCropping == golden["shape_after"]!.floats.map { Int($0) })
            for (key, rows) in ours.classLocations {
                let reference = try #require(golden["locations_\(key[0])"])
                #expect(rows.flatMap { $0 } == reference.floats.map { Int($0) }, "\(id) class \(key) locations")
            }
        }
    }

    /// With an ignore label, the "all annotated" region is sampled after the classes, from the same
    /// random stream (golden: the reference run with `"ignore": 3` added to dataset.json).
    @Test func ignoreLabelAddsTheAllAnnotatedRegion() throws {
        let dataset = try RawDataset(folder: SharedData.dataFile("Dataset004_Hippocampus"))
        var json = try #require(try SharedData.json(dataset.folder.appendingPathComponent("dataset.json")) as? [String: Any])
        var labels = try #require(json["labels"] as? [String: Any])
        labels["ignore"] = 3
        json["labels"] = labels
        let description = try DatasetDescription(data: JSONSerialization.data(withJSONObject: json), source: "dataset.json + ignore")
        let classes = DatasetPreprocessor.foregroundClasses(description)
        #expect(classes == [[1], [2], [-1, 0, 1, 2]])
        let plans = try Self.plans()
        let c = try #require(dataset.cases.first { $0.identifier == "hippocampus_001" })
        let ours = try DatasetPreprocessor.preprocess(c, preprocessor: Preprocessor(plans: plans, configuration: try plans.configuration("3d_fullres")),
                                                      classes: classes)
        let golden = try NumpyArray.npz(SharedData.fixtures.appendingPathComponent("golden/preprocessing/hippocampus_001_3d_fullres_ignore.npz"))
        #expect(ours.classLocations.count == 3)
        for (key, rows) in ours.classLocations {
            let reference = try #require(golden["locations_" + key.map(String.init).joined(separator: "_")])
            #expect(rows.count == reference.shape[0], "\(key) count")
            #expect(rows.flatMap { $0 } == reference.floats.map { Int($0) }, "\(key) locations")
        }
    }

    /// The on-disk format: `.npy` arrays numpy reads, properties JSON; a whole dataset with progress.
    @Test func writesTheDatasetFolder() throws {
        let raw = try SharedData.hippocampusSubset(Self.cases)
        let fm = FileManager.default
        let out = raw.deletingLastPathComponent().appendingPathComponent("out")
        let counter = Counter()
        let written = try DatasetPreprocessor.run(dataset: RawDataset(folder: raw), plans: Self.plans(), configuration: "3d_fullres", output: out,
                                                  workers: 2) { done, _ in counter.bump(done) }
        #expect(written.count == 5 && counter.maximum == 5)
        let folder = out.appendingPathComponent("nnUNetPlans_3d_fullres")
        let data = try NumpyArray(contentsOf: folder.appendingPathComponent("hippocampus_001.npy"))
        let seg = try NumpyArray(contentsOf: folder.appendingPathComponent("hippocampus_001_seg.npy"))
        let golden = try NumpyArray.npz(SharedData.fixtures.appendingPathComponent("golden/preprocessing/hippocampus_001_3d_fullres.npz"))
        #expect(data.shape == golden["data"]!.shape && seg.descr == "<i2" && seg.floats == golden["seg"]!.floats)
        #expect(zip(data.floats, golden["data"]!.floats).allSatisfy { abs($0 - $1) <= 1e-4 })
        let properties = try #require(try SharedData.json(folder.appendingPathComponent("hippocampus_001.json")) as? [String: Any])
        let locations = try #require(properties["class_locations"] as? [String: [[Int]]])
        #expect(locations["1"]?.count == 1324 && locations["2"]?.count == 1624)
        #expect(fm.fileExists(atPath: out.appendingPathComponent("gt_segmentations/hippocampus_007.nii.gz").path))
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var maximum = 0
    func bump(_ value: Int) { lock.lock(); maximum = max(maximum, value); lock.unlock() }
}
