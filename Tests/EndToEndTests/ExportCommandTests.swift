import DICOMImport
import Foundation
import NIfTI
import Testing
import TestSupport

/// `nnseg export` on the real TotalSegmentator CT series with TotalSegmentator's own labels for it
/// (31 structures; the label NIfTI has the row axis flipped, as dcm2niix writes).
struct ExportCommandTests {
    static let series = SharedData.dataFile("totalseg-example/example_ct_dicom")
    static let labels = SharedData.dataFile("totalseg-example/example_seg_dicom.nii.gz")

    @Test func totalSegmentatorSeriesToSEGAndRTSTRUCT() throws {
        let dir = try SharedData.temporaryDirectory("export")
        defer { try? FileManager.default.removeItem(at: dir) }
        let seg = dir.appendingPathComponent("seg.dcm"), rt = dir.appendingPathComponent("rt.dcm")
        // Anonymised source (empty SOP/Study/Series UIDs): refused unless the repair is asked for.
        let refused = try CommandRunner.nnseg(["export", "--labels", Self.labels.path, "--reference", Self.series.path,
                                               "--seg", seg.path, "--rtstruct", rt.path])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("SOURCE_UIDS_MISSING"))
        #expect(!FileManager.default.fileExists(atPath: seg.path) && !FileManager.default.fileExists(atPath: rt.path))

        let result = try CommandRunner.nnseg(["export", "--labels", Self.labels.path, "--reference", Self.series.path,
                                              "--seg", seg.path, "--rtstruct", rt.path, "--repair-missing-uids",
                                              "--label-names", SharedData.dataFile("totalseg-example/example_seg_labels.json").path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("31 segment(s)") && result.stdout.contains("31 ROI(s)"))
        for file in [seg, rt] {
            let report = try CommandRunner.run("/usr/bin/dciodvfy", ["-new", file.path])
            let errors = (report.stdout + report.stderr).split(separator: "\n").filter { $0.hasPrefix("Error") }
            #expect(errors.isEmpty, "dciodvfy \(file.lastPathComponent): \(errors.prefix(5).joined(separator: "\n"))")
            #expect(try CommandRunner.run("/usr/bin/dcmdump", [file.path]).status == 0)
        }
        // plastimatch rasterises the RTSTRUCT: Dice per structure against the labels. With this series'
        // empty UIDs plastimatch cannot match --referenced-ct (it invents a grid from the contours), so the
        // CT grid is handed over as a NIfTI of the series (--fixed); the output header is checked first.
        let stack = try #require(try DICOMScanner().scan(Self.series).stacks.first)
        let ct = try DICOMSeriesLoader().load(stack).volume
        let ctFile = dir.appendingPathComponent("ct.nii.gz")
        try NIfTIImage(volume: ct).write(to: ctFile)
        let masks = dir.appendingPathComponent("masks")
        let pm = try CommandRunner.run("/usr/bin/plastimatch", ["convert", "--input", rt.path, "--fixed", ctFile.path,
                                                              "--output-prefix", masks.path, "--prefix-format", "nii.gz", "--xor-contours"])
        #expect(pm.status == 0)
        let names = try #require((try SharedData.json(SharedData.dataFile("totalseg-example/example_seg_labels.json")) as? [String: Any])?["labels"] as? [String: String])
        let reference = try NIfTIImage(contentsOf: Self.labels).floatVolume()
        let flipped = Overlap.flipRows(reference.voxels.map { UInt8($0) }, z: 20, y: 512, x: 512)
        var worst = 1.0
        for name in try FileManager.default.contentsOfDirectory(atPath: masks.path) where name.hasSuffix(".nii.gz") {
            let structure = String(name.dropLast(7))
            let label = try #require(names.first { $0.value == structure }.flatMap { UInt8($0.key) })
            let mask = try NIfTIImage(contentsOf: masks.appendingPathComponent(name)).floatVolume()
            #expect(mask.shape == ct.shape && mask.geometry.maxAbsDifference(ct.geometry) < 1e-3, "plastimatch grid differs from the CT")
            guard mask.shape == ct.shape else { continue }
            // plastimatch writes on the DICOM grid; the labels have rows flipped (dcm2niix), flipped back above.
            let (dice, voxels) = Overlap.dice(mask: mask.voxels, labels: flipped, label: label)
            let cubicCentimetres = Double(voxels) * 0.9765625 * 0.9765625 * 2 / 1000
            #expect(dice >= (cubicCentimetres < 1 ? 0.90 : 0.95), "\(structure): Dice \(dice) (\(cubicCentimetres) cm³)")
            worst = min(worst, dice)
        }
        print("plastimatch: worst Dice over 31 structures \(worst)")
        // highdicom maps the SEG back onto the source instances.
        let python = try #require(SharedData.validationPython, "run Ops/setup.sh --test")
        let expected = dir.appendingPathComponent("labels.npy")
        try writeNumpyUInt8(flipped, shape: [20, 512, 512], to: expected)
        let present = Set(flipped).subtracting([0]).sorted().map(String.init).joined(separator: ",")
        let hd = try CommandRunner.run(python, [SharedData.repositoryRoot.appendingPathComponent("Ops/validate/seg_highdicom.py").path,
                                                seg.path, Self.series.path, expected.path, present])
        #expect(hd.status == 0, "highdicom: \(hd.stdout) \(hd.stderr.suffix(2000))")
    }
}

struct ExportBadInputTests {
    @Test func labelsOffTheSeriesGridAreRefusedAndNothingIsWritten() throws {
        let dir = try SharedData.temporaryDirectory("export-bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        let seg = dir.appendingPathComponent("seg.dcm"), rt = dir.appendingPathComponent("rt.dcm")
        let result = try CommandRunner.nnseg([
            "export", "--labels", SharedData.dataFile("Dataset004_Hippocampus/labelsTr/hippocampus_001.nii.gz").path,
            "--reference", SharedData.fixtures.appendingPathComponent("demo/hippocampus-mr").path, "--seg", seg.path, "--rtstruct", rt.path,
        ])
        #expect(result.status != 0)
        #expect(result.stderr.contains("LABELS_GRID_MISMATCH"))
        #expect(result.stderr.contains("hippocampus_001.nii.gz"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }
}
