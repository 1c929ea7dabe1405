import Foundation
import Testing
import TestSupport
import NIfTI

/// DICOM-annotated data as a training source: a dcmqi SEG and an rt-utils RTSTRUCT with their series
/// become an nnU-Net raw dataset that passes the integrity check and plans.
struct DatasetFromDICOMTests {
    static func studyFolder() throws -> URL {
        let root = try SharedData.temporaryDirectory("dicom-dataset")
        let fm = FileManager.default
        let study = root.appendingPathComponent("study")
        try fm.createDirectory(at: study, withIntermediateDirectories: true)
        try fm.copyItem(at: SharedData.dataFile("dicom-zoo/seg-dcmqi-liver/ct-3slice"), to: study.appendingPathComponent("ct-a"))
        try fm.copyItem(at: SharedData.dataFile("dicom-zoo/seg-dcmqi-liver/liver.dcm"), to: study.appendingPathComponent("liver-seg.dcm"))
        try fm.copyItem(at: SharedData.dataFile("dicom-zoo/rtstruct-rtutils/ct"), to: study.appendingPathComponent("ct-b"))
        try fm.copyItem(at: SharedData.dataFile("dicom-zoo/rtstruct-rtutils/rt.dcm"), to: study.appendingPathComponent("rt.dcm"))
        return study
    }

    @Test func segAndRTSTRUCTBecomeAPlannableDataset() throws {
        let study = try Self.studyFolder()
        let dataset = study.deletingLastPathComponent().appendingPathComponent("Dataset901_DICOM")
        // Without --allow-missing the RTSTRUCT case (no liver) is refused, naming what it holds, and nothing is written.
        let refused = try CommandRunner.nnseg(["dataset-from-dicom", study.path, "--output", dataset.path, "--label", "liver=1", "--label", "phantom|ROI-1=2"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("liver-seg.dcm: no voxels for label(s) [\"phantom\"]; the object holds [\"Liver\"]"))
        #expect(!FileManager.default.fileExists(atPath: dataset.path))
        let made = try CommandRunner.nnseg(["dataset-from-dicom", study.path, "--output", dataset.path, "--label", "liver=1", "--label", "phantom|ROI-1=2",
                                            "--allow-missing"])
        #expect(made.status == 0, "\(made.stderr)")
        #expect(made.stdout.contains("case_001: liver ") && made.stdout.contains("case_002: liver 0, phantom 1443"))
        let labels = try NIfTIImage(contentsOf: dataset.appendingPathComponent("labelsTr/case_002.nii.gz")).floatVolume()
        #expect(labels.voxels.filter { $0 == 2 }.count == 1443)
        let image = try NIfTIImage(contentsOf: dataset.appendingPathComponent("imagesTr/case_001_0000.nii.gz")).floatVolume()
        #expect(image.shape.zyx == [3, 512, 512])
        // The dataset goes on through the integrity check and planning.
        let plan = try CommandRunner.nnseg(["plan", "-d", dataset.path, "--output", study.deletingLastPathComponent().appendingPathComponent("pp").path])
        #expect(plan.status == 0, "\(plan.stderr)")
        #expect(plan.stdout.contains("CTNormalization"))
    }
}
