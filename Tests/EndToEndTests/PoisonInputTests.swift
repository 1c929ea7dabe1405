import Foundation
import NIfTI
import Testing
import TestSupport

/// Issue #14 (first part): the inputs that crashed nnseg — rebuilt the way they were found (zoo files
/// mutated with dcmodify) — and one input for other sites of the same kind, each ending with a named error,
/// a non-zero exit status and no signal, and nothing written.
struct PoisonInputTests {
    /// Runs nnseg and checks it exited (not killed by a signal) with `status`, naming `code`.
    func expectNamedFailure(_ arguments: [String], status: Int32, code: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let result = try CommandRunner.nnseg(arguments)
        #expect(result.status == status, "\(arguments): \(result.stderr)", sourceLocation: sourceLocation)
        #expect((result.stdout + result.stderr).contains(code), "\(arguments): \(result.stderr)", sourceLocation: sourceLocation)
        #expect(!result.stderr.contains("Fatal error") && !result.stderr.contains("Illegal instruction"), sourceLocation: sourceLocation)
    }

    func dcmodify(_ file: URL, _ assignment: String) throws {
        let result = try CommandRunner.run("/usr/bin/dcmodify", ["-nb", "-m", assignment, file.path])
        #expect(result.status == 0, "dcmodify \(assignment): \(result.stderr)")
    }

    @Test(arguments: ["99999999999", "2147483647"])
    func absurdNumberOfFramesIsNamed(_ frames: String) throws {
        let dir = try SharedData.temporaryDirectory("poison-frames")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("in/multiframe.dcm")
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: SharedData.dataFile("dicom-zoo/enhanced-ct-multiframe/eCT_Supplemental.dcm"), to: file)
        try dcmodify(file, "(0028,0008)=\(frames)")
        // inspect: the file is skipped with its reason; with nothing else to read, status 2.
        try expectNamedFailure(["inspect", "--decode", file.deletingLastPathComponent().path], status: 2, code: "ATTRIBUTE_INVALID")
        try expectNamedFailure(["predict", "-i", file.deletingLastPathComponent().path, "-o", dir.appendingPathComponent("out").path,
                                "-m", SharedData.fixtures.appendingPathComponent("demo/model").path, "-f", "0"], status: 2, code: "NO_IMAGE_SERIES")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("out").path)) ?? []).isEmpty)
    }

    /// The frame limit is a setting of the commands without a profile too; the refusal names it.
    @Test func theFrameLimitIsAnOption() throws {
        let folder = SharedData.dataFile("dicom-zoo/enhanced-ct-multiframe").path
        try expectNamedFailure(["inspect", "--max-frames", "1", folder], status: 2, code: "within the limit of 1 frames (setting geometry.maximumFrames / --max-frames)")
        #expect(try CommandRunner.nnseg(["inspect", "--max-frames", "2", folder]).status == 0)
    }

    @Test func anAbsurdSlicePositionIsNamedAndTheCaseFails() throws {
        let dir = try SharedData.temporaryDirectory("poison-position")
        defer { try? FileManager.default.removeItem(at: dir) }
        let series = dir.appendingPathComponent("series")
        try FileManager.default.copyItem(at: SharedData.fixtures.appendingPathComponent("demo/hippocampus-mr"), to: series)
        try dcmodify(series.appendingPathComponent("5.dcm"), #"(0020,0032)=1\1\-1e308"#)
        let inspect = try CommandRunner.nnseg(["inspect", "--decode", series.path])
        #expect(inspect.stdout.contains("ATTRIBUTE_INVALID: \(series.appendingPathComponent("5.dcm").path)"), "\(inspect.stdout)")
        #expect(inspect.stdout.contains("refused: GEOMETRY_GAPS"))
        let out = dir.appendingPathComponent("out")
        try expectNamedFailure(["run", "--profile", SharedData.repositoryRoot.appendingPathComponent("Profiles/hippocampus-demo.yaml").path,
                                series.path, "-o", out.path, "--audit-db", dir.appendingPathComponent("audit.sqlite").path],
                               status: 1, code: "GEOMETRY_GAPS")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? []).isEmpty, "nothing written for a failed case")
    }

    @Test(arguments: [Float.nan, Float.infinity, 1e30, 10])
    func niftiVoxOffsetOutOfRangeIsNamed(_ offset: Float) throws {
        let dir = try SharedData.temporaryDirectory("poison-nifti")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("image.nii")
        let image = try NIfTIImage(contentsOf: SharedData.dataFile("Dataset004_Hippocampus/imagesTr/hippocampus_001_0000.nii.gz"))
        try image.write(to: url)
        var bytes = try Data(contentsOf: url)
        withUnsafeBytes(of: offset.bitPattern.littleEndian) { bytes.replaceSubrange(108..<112, with: $0) }  // vox_offset
        try bytes.write(to: url)
        try expectNamedFailure(["inspect", url.path], status: 1, code: "NIFTI_NOT_NIFTI")
    }

    @Test func rtstructContourAtAnAbsurdPositionIsNamed() throws {
        let dir = try SharedData.temporaryDirectory("poison-rtstruct")
        defer { try? FileManager.default.removeItem(at: dir) }
        let study = dir.appendingPathComponent("study")
        try FileManager.default.copyItem(at: SharedData.dataFile("dicom-zoo/rtstruct-rtutils/ct"), to: study)
        let rt = study.appendingPathComponent("rt.dcm")
        try FileManager.default.copyItem(at: SharedData.dataFile("dicom-zoo/rtstruct-rtutils/rt.dcm"), to: rt)
        let dump = try CommandRunner.run("/usr/bin/dcmdump", ["+P", "3006,0050", rt.path])
        let first = try #require(dump.stdout.split(separator: "\n").first?.split(separator: "[").dropFirst().first?.split(separator: "]").first)
        var values = first.split(separator: "\\").map(String.init)
        values[2] = "1e308"
        try dcmodify(rt, "(3006,0039)[0].(3006,0040)[0].(3006,0050)=" + values.joined(separator: "\\"))
        let rois = try CommandRunner.run("/usr/bin/dcmdump", ["+P", "3006,0026", rt.path])
        let name = try #require(rois.stdout.split(separator: "[").dropFirst().first?.split(separator: "]").first)
        try expectNamedFailure(["dataset-from-dicom", study.path, "--output", dir.appendingPathComponent("Dataset990_Poison").path,
                                "--label", "\(name)=1"], status: 1, code: "GEOMETRY_MISSING")
    }
}
