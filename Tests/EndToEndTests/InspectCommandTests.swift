import Foundation
import Testing
import TestSupport

/// `nnseg inspect` as an operator runs it.
struct InspectCommandTests {
    @Test func jsonListsBothSeriesOfTheMixedFolder() throws {
        let result = try CommandRunner.nnseg(["inspect", SharedData.dataFile("dicom-zoo/mr-multiseries-study3").path, "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let stacks = try #require(document["stacks"] as? [[String: Any]])
        #expect(stacks.count == 2)
        #expect(Set(stacks.map { $0["sizeXYZ"] as! [Int] }) == Set([[280, 320, 22], [34, 50, 40]]))
        #expect(stacks.allSatisfy { $0["modality"] as? String == "MR" && $0["orientation"] as? String == "AXIAL" })
        #expect(document["filesSeen"] as? Int == 62)
    }

    @Test func tiltedCTIsReportedInText() throws {
        let result = try CommandRunner.nnseg(["inspect", SharedData.dataFile("dicom-zoo/ct-gantry-tilt-ge").path, "--decode"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("tilt 18.50°"))
        #expect(result.stdout.contains("refused: GEOMETRY_NONUNIFORM"))
        #expect(result.stdout.contains("WARNING      gantry tilt / shear"))
        // The warnings are logged too, structured, with the series UID and no patient data.
        #expect(result.stderr.contains("series=1.2.826.0.1.3680043.9.4245.3115138630835728997848661150714813892"))
    }

    @Test func demoSeriesLoads() throws {
        let result = try CommandRunner.nnseg(["inspect", SharedData.fixtures.appendingPathComponent("demo/hippocampus-mr").path, "--decode"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("35×51×32 (x×y×z) from 32 instance(s)"))
        #expect(result.stdout.contains("loaded: values 2.0 … 154.0"))
    }

    @Test func niftiFileIsDescribed() throws {
        let path = SharedData.dataFile("totalseg-example/example_seg_dicom.nii.gz").path
        let result = try CommandRunner.nnseg(["inspect", path])
        #expect(result.status == 0)
        #expect(result.stdout.contains("NIfTI-1 uint8, size 512×512×20 (x×y×z)"))
    }

    @Test func missingFolderIsAClearError() throws {
        let result = try CommandRunner.nnseg(["inspect", "/nonexistent/study"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("READ_FAILED: /nonexistent/study: no such file or folder"))
    }

    @Test func folderWithoutImagesExitsNonZero() throws {
        let dir = try SharedData.temporaryDirectory("empty")
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("hello".utf8).write(to: dir.appendingPathComponent("readme.txt"))
        let result = try CommandRunner.nnseg(["inspect", dir.path])
        #expect(result.status == 2)
        #expect(result.stdout.contains("NOT_DICOM"))
    }
}
