import BatchPipeline
import CaseLayer
import DICOMExport
import DICOMImport
import Foundation
import Testing
import TestSupport
import VolumeGeometry

/// Issue #17: every case reads its SEG and RTSTRUCT back and compares them with the label map.
struct OutputVerificationTests {
    /// The demo MR series and two box-shaped structures on its grid, one left of the midline and one right.
    static func fixture() throws -> (series: ReferencedSeries, labels: LabelVolume, structures: [StructureDescription]) {
        let stack = try #require(try DICOMScanner().scan(SharedData.fixtures.appendingPathComponent("demo/hippocampus-mr")).stacks.first)
        let loaded = try DICOMSeriesLoader().load(stack)
        let series = try ReferencedSeries(stack: stack, loaded: loaded)
        let s = loaded.volume.shape
        var labels = LabelVolume(shape: s, geometry: loaded.volume.geometry, repeating: 0)
        for z in (s.z / 4)..<(3 * s.z / 4) { for y in (s.y / 3)..<(2 * s.y / 3) {
            for x in 2..<(s.x / 2 - 2) { labels[z, y, x] = 1 }
            for x in (s.x / 2 + 2)..<(s.x - 2) { labels[z, y, x] = 2 }
        } }
        return (series, labels, [StructureDescription(label: 1, name: "Box_A"), StructureDescription(label: 2, name: "Box_B")])
    }

    @Test func writtenOutputsVerifyAndTamperedOnesAreNamed() throws {
        let (series, labels, structures) = try Self.fixture()
        let dir = try SharedData.temporaryDirectory("verify")
        defer { try? FileManager.default.removeItem(at: dir) }
        let seg = dir.appendingPathComponent("seg.dcm"), rt = dir.appendingPathComponent("rt.dcm")
        let written = try CaseOutputs.writeDICOM(labels: labels, series: series, structures: structures,
                                                 algorithm: AlgorithmIdentification(name: "t", version: "1", parameters: ""), seg: seg, rtstruct: rt)
        let report = try #require(written.verification)
        #expect(report.passed && report.referenceProblems.isEmpty, "\(report.failureSummary)")
        #expect(report.rois.map(\.segMismatchedVoxels) == [0, 0] && report.rois.map(\.rtstructDice) == [1, 1])
        #expect(report.rois.allSatisfy { $0.centroidShiftMM == 0 && $0.rtstructAddedDistanceMM == 0 })
        // The same files against the label map mirrored left/right: SEG and RTSTRUCT disagree, the centroids move.
        var mirrored = labels
        let s = labels.shape
        for z in 0..<s.z { for y in 0..<s.y { for x in 0..<s.x { mirrored[z, y, x] = labels[z, y, s.x - 1 - x] } } }
        let flipped = try OutputVerification.verify(labels: mirrored, series: series, structures: structures, seg: seg, rtstruct: rt)
        #expect(!flipped.passed)
        for roi in flipped.rois {
            #expect((roi.segMismatchedVoxels ?? 0) > 0 && (roi.rtstructDice ?? 1) < 0.9 && (roi.centroidShiftMM ?? 0) > 10, "\(roi)")
            #expect(roi.problems.contains { $0.contains("centroid") && $0.contains("L/R") }, "\(roi.problems)")
        }
        // Against another series' identity: the references are named.
        var other = series
        other.studyInstanceUID = "1.2.3.4"
        let elsewhere = try OutputVerification.verify(labels: labels, series: other, structures: structures, seg: seg, rtstruct: rt)
        #expect(elsewhere.referenceProblems.contains { $0.hasPrefix("SEG StudyInstanceUID") }, "\(elsewhere.referenceProblems)")
        #expect(elsewhere.referenceProblems.contains { $0.hasPrefix("RTSTRUCT referenced study") }, "\(elsewhere.referenceProblems)")
    }

    /// The TotalSegmentator example CT (512², 0.98 mm) with one structure on slices 4–15: a disc (radius 60 voxels,
    /// upper left) and, far from it (lower right), 400 single voxels a voxel apart in-plane (3 % of the structure).
    static func spreadStructure() throws -> (series: ReferencedSeries, labels: LabelVolume) {
        let stack = try #require(try DICOMScanner().scan(SharedData.dataFile("totalseg-example/example_ct_dicom")).stacks.first)
        let loaded = try DICOMSeriesLoader().load(stack)
        let series = try ReferencedSeries(stack: stack, loaded: loaded, repairMissingUIDs: true)
        var labels = LabelVolume(shape: loaded.volume.shape, geometry: loaded.volume.geometry, repeating: 0)
        for z in 4..<16 {
            for y in 20...140 { for x in 20...140 where (x - 80) * (x - 80) + (y - 80) * (y - 80) <= 60 * 60 { labels[z, y, x] = 1 } }
            for y in [440, 444, 448, 452] { for x in stride(from: 300, to: 500, by: 2) { labels[z, y, x] = 1 } }
        }
        return (series, labels)
    }

    /// Smooth contours drop the single voxels (Dice stays high; kept by the cleanup here), which moves the centroid by centimetres; no
    /// one-voxel move of the contours fits better, so the case verifies (the shift is recorded). The same disc
    /// checked against the map moved by six voxels (5.9 mm) — Dice still above 0.9 — fails, naming the move.
    @Test func aSpreadStructureThatLosesAThinPartVerifiesAndADisplacedOneDoesNot() throws {
        let (series, labels) = try Self.spreadStructure()
        let dir = try SharedData.temporaryDirectory("verify-spread")
        defer { try? FileManager.default.removeItem(at: dir) }
        let rt = dir.appendingPathComponent("rt.dcm")
        var smooth = RTStructOptions()
        smooth.contours = .smooth
        smooth.minimumIslandMM3 = 0
        let structures = [StructureDescription(label: 1, name: "Spread")]
        let written = try CaseOutputs.writeDICOM(labels: labels, series: series, structures: structures,
                                                 algorithm: AlgorithmIdentification(name: "t", version: "1", parameters: ""), seg: nil,
                                                 rtstruct: rt, rtstructOptions: smooth)
        let roi = try #require(written.verification?.rois.first)
        #expect(roi.passed && (roi.rtstructDice ?? 0) >= 0.95 && (roi.centroidShiftMM ?? 0) > 5, "\(roi)")
        // The writer's cleaned masks (handed to the check) are what cleaning again gives: the same report.
        let again = try RTStructWriter.write(labels: labels, series: series, structures: structures,
                                             algorithm: AlgorithmIdentification(name: "t", version: "1", parameters: ""),
                                             options: smooth, to: dir.appendingPathComponent("again.dcm"))
        #expect(again.cleaned.count == 1)
        let handed = try OutputVerification.verify(labels: labels, series: series, structures: structures, seg: nil,
                                                   rtstruct: dir.appendingPathComponent("again.dcm"), rtstructOptions: smooth, cleaned: again.cleaned)
        let recleaned = try OutputVerification.verify(labels: labels, series: series, structures: structures, seg: nil,
                                                      rtstruct: dir.appendingPathComponent("again.dcm"), rtstructOptions: smooth)
        #expect(handed == recleaned && handed.rois.first == roi, "\(handed) vs \(recleaned)")

        // Only the disc, exported exact, against the map with the disc six voxels to the right.
        var disc = labels, moved = labels
        for i in disc.voxels.indices { disc.voxels[i] = 0; moved.voxels[i] = 0 }
        let s = labels.shape
        for z in 0..<s.z { for y in 0..<s.y { for x in 0..<200 where labels[z, y, x] == 1 {
            disc[z, y, x] = 1
            moved[z, y, x + 6] = 1
        } } }
        let discRT = dir.appendingPathComponent("disc.dcm")
        _ = try CaseOutputs.writeDICOM(labels: disc, series: series, structures: structures,
                                       algorithm: AlgorithmIdentification(name: "t", version: "1", parameters: ""), seg: nil, rtstruct: discRT)
        let displaced = try OutputVerification.verify(labels: moved, series: series, structures: structures, seg: nil, rtstruct: discRT)
        let verdict = try #require(displaced.rois.first)
        #expect(!verdict.passed && (verdict.rtstructDice ?? 0) > 0.9, "\(verdict)")
        #expect(verdict.problems.contains { $0.contains("centroid") && $0.contains("moved one voxel along +x") }, "\(verdict.problems)")
    }

    /// Two structures under one ROI name: the RTSTRUCT does not read back as the label map — the write fails with
    /// OUTPUT_VERIFICATION_FAILED naming the ROI, and neither file is left.
    @Test func outputsThatDoNotVerifyAreRemoved() throws {
        let (series, labels, _) = try Self.fixture()
        let dir = try SharedData.temporaryDirectory("verify-fail")
        defer { try? FileManager.default.removeItem(at: dir) }
        let seg = dir.appendingPathComponent("seg.dcm"), rt = dir.appendingPathComponent("rt.dcm")
        let twins = [StructureDescription(label: 1, name: "Box"), StructureDescription(label: 2, name: "Box")]
        let error = #expect(throws: OutputVerificationFailure.self) {
            try CaseOutputs.writeDICOM(labels: labels, series: series, structures: twins,
                                       algorithm: AlgorithmIdentification(name: "t", version: "1", parameters: ""), seg: seg, rtstruct: rt)
        }
        #expect(error?.description.hasPrefix("OUTPUT_VERIFICATION_FAILED: ROI Box: RTSTRUCT Dice") == true, "\(error?.description ?? "")")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }
}
