import CaseIdentity
import DICOMExport
import DICOMImport
import Foundation
import NIfTI
import Testing
import VolumeGeometry
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
        // The refusal names what is missing (this series has FoR and SOP Class UIDs, and the SOP Instance UIDs
        // only in the file meta).
        for attribute in ["StudyInstanceUID (0020,000D)", "SeriesInstanceUID (0020,000E)", "SOPInstanceUID (0008,0018) in 20 of 20"] {
            #expect(refused.stderr.contains(attribute), "\(attribute) not named: \(refused.stderr)")
        }
        #expect(!refused.stderr.contains("SOPClassUID"))
        #expect(!FileManager.default.fileExists(atPath: seg.path) && !FileManager.default.fileExists(atPath: rt.path))

        let result = try CommandRunner.nnseg(["export", "--labels", Self.labels.path, "--reference", Self.series.path,
                                              "--seg", seg.path, "--rtstruct", rt.path, "--repair-missing-uids",
                                              "--label-names", SharedData.dataFile("totalseg-example/example_seg_labels.json").path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("31 segment(s)") && result.stdout.contains("31 ROI(s)"))
        // Names, codes and colours from the structure catalog: TG-263 names, 31 distinct colours; the version in
        // SoftwareVersions; the repair in the derivation description.
        let rtDump = try CommandRunner.run("/usr/bin/dcmdump", ["+P", "3006,002a", "+P", "3006,0026", "+P", "0018,1020", "+P", "3006,0006", rt.path]).stdout
        let colours = rtDump.split(separator: "\n").filter { $0.contains("(3006,002a)") }.map { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst(2).first.map(String.init) ?? "" }
        #expect(colours.count == 31 && Set(colours).count == 31, "RTSTRUCT colours: \(Set(colours).count) distinct of \(colours.count)")
        #expect(rtDump.contains("[Spleen]") && rtDump.contains("[Rib10_L]") && rtDump.contains("[A_Aorta]"))
        #expect(rtDump.contains("(0018,1020) LO [\(SoftwareVersion.number)]"))
        #expect(rtDump.contains("repairMissingUIDs"))
        let segDump = try CommandRunner.run("/usr/bin/dcmdump", ["+P", "0062,000d", "+P", "0008,0100", seg.path]).stdout
        let segColours = segDump.split(separator: "\n").filter { $0.contains("(0062,000d)") }.map { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst(2).first.map(String.init) ?? "" }
        #expect(segColours.count == 31 && Set(segColours).count == 31, "SEG colours: \(Set(segColours).count) distinct")
        #expect(segDump.contains("[78961009]") && segDump.contains("[113197003]"), "SNOMED codes for spleen and ribs")
        // The same labels exported again: the same UIDs (PACS replaces); --new-uids: fresh ones.
        func uids(_ file: URL) throws -> [String] {
            // Top-level only (nested references to the source are not indented by dcmdump's +P; a full dump is).
            let dump = try CommandRunner.run("/usr/bin/dcmdump", [file.path]).stdout
            return dump.split(separator: "\n").filter { $0.hasPrefix("(0020,000e)") || $0.hasPrefix("(0008,0018)") }.map(String.init)
        }
        let again = dir.appendingPathComponent("again.dcm"), fresh = dir.appendingPathComponent("fresh.dcm")
        let base = ["export", "--labels", Self.labels.path, "--reference", Self.series.path, "--repair-missing-uids",
                    "--label-names", SharedData.dataFile("totalseg-example/example_seg_labels.json").path]
        #expect(try CommandRunner.nnseg(base + ["--rtstruct", again.path]).status == 0)
        #expect(try CommandRunner.nnseg(base + ["--rtstruct", fresh.path, "--new-uids"]).status == 0)
        #expect(try uids(again) == uids(rt) && uids(rt).count == 2)
        #expect(try Set(uids(fresh)).isDisjoint(with: uids(rt)))
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
            let structure = String(name.dropLast(7))  // the ROI name: TotalSegmentator's name through the catalog
            let label = try #require(names.first { (StructureCatalog.entry(for: $0.value)?.name ?? $0.value) == structure }.flatMap { UInt8($0.key) })
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
        // dcmqi, pydicom-seg and dcmrtstruct2nii read both back (issue #17).
        let onGrid = try #require(try NIfTIImage(contentsOf: Self.labels).labelVolume().reindexed(onto: ct.geometry, shape: ct.shape))
        let described = StructureCatalog.distinctColors(Set(onGrid.voxels).subtracting([0]).sorted().map {
            StructureCatalog.describe(label: Int($0), name: names[String($0)] ?? "Label \($0)")
        })
        try ThirdPartyReaders.check(seg: seg, rtstruct: rt, source: Self.series, labels: onGrid, structures: described)
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
        // The refusal says why (issue #17): here the size.
        #expect(result.stderr.contains("size "), "\(result.stderr)")
    }

    /// A label map on the series grid but rotated 10° (as a tilted acquisition resliced by another tool), or
    /// shifted by half a voxel: the refusal names the orientation angle / the shift, not only "not on the grid".
    @Test func refusalsNameTheActualCause() throws {
        let dir = try SharedData.temporaryDirectory("export-cause")
        defer { try? FileManager.default.removeItem(at: dir) }
        let series = SharedData.fixtures.appendingPathComponent("demo/hippocampus-mr")
        let stack = try #require(try DICOMScanner().scan(series).stacks.first)
        let image = try DICOMSeriesLoader().load(stack).volume
        var labels = LabelVolume(shape: image.shape, geometry: image.geometry, repeating: 0)
        labels.voxels[labels.voxels.count / 2] = 1
        let angle = 10.0 * Double.pi / 180
        let rotation = Matrix3(columns: SIMD3(cos(angle), sin(angle), 0), SIMD3(-sin(angle), cos(angle), 0), SIMD3(0, 0, 1))
        var rotated = labels
        rotated.geometry = VolumeGeometry(origin: image.geometry.origin, spacing: image.geometry.spacing, direction: rotation * image.geometry.direction)
        var shifted = labels
        shifted.geometry.origin.x += image.geometry.spacing.x / 2
        for (name, volume, cause) in [("rotated", rotated, "orientation differs by 10.00°"), ("shifted", shifted, "voxel centres are shifted")] {
            let file = dir.appendingPathComponent("\(name).nii.gz")
            try NIfTIImage(volume: volume).write(to: file)
            let result = try CommandRunner.nnseg(["export", "--labels", file.path, "--reference", series.path, "--seg", dir.appendingPathComponent("\(name).dcm").path])
            #expect(result.status != 0 && result.stderr.contains("LABELS_GRID_MISMATCH") && result.stderr.contains(cause), "\(name): \(result.stderr)")
        }
    }
}
