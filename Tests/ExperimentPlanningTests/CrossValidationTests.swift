import Foundation
import Testing
import TestSupport
@testable import ExperimentPlanning

struct CrossValidationTests {
    /// Hippocampus: our splits_final.json is the reference file, byte for byte.
    @Test func hippocampusSplitsEqualTheReferenceFile() throws {
        let dataset = try RawDataset(folder: SharedData.dataFile("Dataset004_Hippocampus"))
        let splits = try CrossValidation.fiveFold(dataset.cases.map(\.identifier))
        let reference = SharedData.reference.appendingPathComponent("Dataset004_Hippocampus/splits_final.json")
        #expect(CrossValidation.json(splits) == (try Data(contentsOf: reference)))
        #expect(try CrossValidation.read(reference, cases: Set(dataset.cases.map(\.identifier))) == splits)
    }

    /// Spec §6.2 golden vector: 12 cases.
    @Test func twelveCaseVector() throws {
        let ids = (0..<12).map { String(format: "case_%02d", $0) }
        var rng = LegacyRandomState(seed: 12345)
        #expect(rng.nextUInt32() == 3_992_670_690)
        var shuffle = LegacyRandomState(seed: 12345)
        #expect(shuffle.permutation(12) == [8, 0, 3, 7, 11, 10, 6, 9, 4, 1, 5, 2])
        let splits = try CrossValidation.fiveFold(ids.reversed())
        #expect(splits.map(\.val) == [["case_00", "case_03", "case_08"], ["case_07", "case_10", "case_11"], ["case_06", "case_09"],
                                      ["case_01", "case_04"], ["case_02", "case_05"]])
        #expect(splits.allSatisfy { Set($0.train).isDisjoint(with: $0.val) && $0.train.count + $0.val.count == 12 && $0.train == $0.train.sorted() })
        let extra = CrossValidation.randomSplit(ids, fold: 5)
        #expect(extra.train.count == 9 && extra.val.count == 3 && Set(extra.train + extra.val).count == 12)
        #expect(throws: DatasetPreprocessingError.self) { try CrossValidation.fiveFold(["a", "b"]) }
    }

    @Test func splitsNamingUnknownCasesAreRefused() throws {
        let dir = try SharedData.temporaryDirectory("splits")
        let url = dir.appendingPathComponent("splits_final.json")
        try CrossValidation.json([.init(train: ["a", "zz"], val: ["b"])]).write(to: url)
        #expect {
            try CrossValidation.read(url, cases: ["a", "b"])
        } throws: { error in
            (error as? DatasetPreprocessingError)?.description.contains("fold 0 names 1 case(s) not in the dataset") == true
        }
    }
}
