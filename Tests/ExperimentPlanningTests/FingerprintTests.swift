import Foundation
import Testing
import TestSupport
@testable import ExperimentPlanning

struct FingerprintTests {
    /// numpy: np.random.RandomState(1234).randint(0, 1000, 5) → [815, 723, 294, 53, 204];
    /// first raw 32-bit output of RandomState(1234) is 822569775.
    @Test func legacyRandomStateMatchesNumpy() {
        var rng = LegacyRandomState(seed: 1234)
        #expect(rng.nextUInt32() == 822_569_775)
        var again = LegacyRandomState(seed: 1234)
        #expect(again.randomIndices(upperBound: 1000, count: 5) == [815, 723, 294, 53, 204])
    }

    @Test func hippocampusDatasetIsIntact() throws {
        let dataset = try RawDataset(folder: SharedData.dataFile("Dataset004_Hippocampus"))
        #expect(dataset.cases.count == 260)
        #expect(dataset.verify().isEmpty)
    }

    /// The fingerprint equals the reference's dataset_fingerprint.json: shapes and spacings exactly, the
    /// intensity statistics exactly — the written file is byte-identical (same samples: MT19937 + numpy's bounded integers; same
    /// float32 pairwise sums and linear percentiles).
    @Test func fingerprintMatchesTheReference() throws {
        let dataset = try RawDataset(folder: SharedData.dataFile("Dataset004_Hippocampus"))
        let ours = try DatasetFingerprint.extract(dataset)
        let reference = try #require(try SharedData.json(SharedData.reference.appendingPathComponent("Dataset004_Hippocampus/dataset_fingerprint.json")) as? [String: Any])
        #expect(ours.shapesAfterCrop == reference["shapes_after_crop"] as! [[Int]])
        #expect(ours.spacings == (reference["spacings"] as! [[NSNumber]]).map { $0.map(\.doubleValue) })
        #expect(ours.medianRelativeSizeAfterCropping == (reference["median_relative_size_after_cropping"] as! NSNumber).doubleValue)
        let expected = try #require((reference["foreground_intensity_properties_per_channel"] as? [String: [String: NSNumber]])?["0"])
        for (key, value) in expected {
            let mine = try #require(ours.intensityProperties[0][key])
            print("fingerprint \(key): ours \(mine), reference \(value.doubleValue)")
            // Foundation's JSONSerialization misparses some floats by an ulp (the median here), hence a
            // tolerance; the byte comparison below is exact.
            #expect(abs(mine - value.doubleValue) <= 1e-12 * max(1, abs(value.doubleValue)), "\(key)")
        }
        // The file we write is the reference file, byte for byte.
        let referenceText = try String(contentsOf: SharedData.reference.appendingPathComponent("Dataset004_Hippocampus/dataset_fingerprint.json"), encoding: .utf8)
        let text = String(decoding: ours.json(), as: UTF8.self)
        if text != referenceText { try? text.write(toFile: NSTemporaryDirectory() + "nnseg-fingerprint.json", atomically: true, encoding: .utf8) }
        #expect(text == referenceText)
    }
}
