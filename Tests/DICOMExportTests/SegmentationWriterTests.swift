import BatchPipeline
import DICOMExport
import DICOMImport
import Foundation
import Testing
import TestSupport
import VolumeGeometry

struct SegmentationWriterTests {
    @Test(arguments: ["dicom-zoo/mr-hippocrop/study1", "dicom-zoo/mr-hippocrop/study2", "dicom-zoo/seg-dcmqi-liver/ct-3slice"])
    func segIsValidAndRoundTrips(_ folder: String) throws {
        let fixture = try ExportFixture(folder)
        let labels = fixture.syntheticLabels()
        let dir = try SharedData.temporaryDirectory("seg")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("seg.dcm")
        let result = try SegmentationWriter.write(labels: labels, series: fixture.series, structures: ExportFixture.structures,
                                                  algorithm: ExportFixture.algorithm, to: url)
        // dciodvfy: zero errors (R-VAL-01).
        let (_, report) = try runTool("/usr/bin/dciodvfy", ["-new", url.path])
        let errors = report.split(separator: "\n").filter { $0.hasPrefix("Error") }
        #expect(errors.isEmpty, "dciodvfy: \(errors.joined(separator: "\n"))")
        let (status, dump) = try runTool("/usr/bin/dcmdump", [url.path])
        #expect(status == 0)
        #expect(dump.contains("(0062,0001) CS [BINARY]"))
        // Read back with nnseg's own importer: frames, positions and references give the same labels.
        let file = try DICOMFile(path: url.path)
        let header = file.header()
        #expect(header.sopClassUID == "1.2.840.10008.5.1.4.1.1.66.4")
        #expect(header.frames.count == result.frames)
        let pixels = try file.decodePixels()
        var rebuilt = LabelVolume(shape: labels.shape, geometry: labels.geometry, repeating: 0)
        let sliceSize = labels.shape.y * labels.shape.x
        let toVoxel = try #require(PatientToVoxel(fixture.loaded.volume.geometry))
        for (f, frame) in header.frames.enumerated() {
            let k = Int(toVoxel(try #require(frame.imagePosition)).z.rounded())
            let segment = try #require(file.string(atPath: "5200,9230[\(f)]/0062,000a[0]/0062,000b").flatMap { Int($0) })
            let sop = file.string(atPath: "5200,9230[\(f)]/0008,9124[0]/0008,2112[0]/0008,1155")
            #expect(sop == fixture.series.slices[k].sopInstanceUID)
            for p in 0..<sliceSize where pixels.values[f * sliceSize + p] != 0 {
                rebuilt.voxels[k * sliceSize + p] = UInt16(ExportFixture.structures[segment - 1].label)
            }
        }
        #expect(rebuilt.voxels == labels.voxels)
        // Identity copied from the source, new series.
        #expect(header.studyInstanceUID == fixture.series.studyInstanceUID)
        #expect(header.frameOfReferenceUID == fixture.series.frameOfReferenceUID)
        #expect(header.seriesInstanceUID == result.seriesInstanceUID && header.seriesInstanceUID != fixture.series.seriesInstanceUID)
    }

    @Test func badInputWritesNothing() throws {
        let fixture = try ExportFixture("dicom-zoo/mr-hippocrop/study1")
        let dir = try SharedData.temporaryDirectory("seg-bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("seg.dcm")
        var wrongGrid = fixture.syntheticLabels()
        wrongGrid.geometry.origin.x += 5
        let e1 = #expect(throws: DICOMExportError.self) {
            try SegmentationWriter.write(labels: wrongGrid, series: fixture.series, structures: ExportFixture.structures,
                                         algorithm: ExportFixture.algorithm, to: url)
        }
        #expect(e1?.code == .gridMismatch)
        // The rt-utils oblique series really has no Frame of Reference UID.
        let oblique = try ExportFixture("dicom-zoo/ct-oblique-rtutils")
        let e2 = #expect(throws: DICOMExportError.self) {
            try SegmentationWriter.write(labels: oblique.syntheticLabels(), series: oblique.series, structures: ExportFixture.structures,
                                         algorithm: ExportFixture.algorithm, to: url)
        }
        #expect(e2?.code == .missingFrameOfReference)
        // The TotalSegmentator series has empty SOP Instance UIDs: no SEG may reference it (R-RD-03).
        let anonymised = try ExportFixture("totalseg-example/example_ct_dicom")
        let e3 = #expect(throws: DICOMExportError.self) {
            try SegmentationWriter.write(labels: LabelVolume(shape: anonymised.loaded.volume.shape, geometry: anonymised.loaded.volume.geometry, repeating: 1),
                                         series: anonymised.series, structures: ExportFixture.structures, algorithm: ExportFixture.algorithm, to: url)
        }
        #expect(e3?.code == .missingUIDs)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }
}

/// highdicom (independent reader) maps our SEG back onto the source instances: masks equal the labels.
struct HighdicomReadBackTests {
    @Test(arguments: ["dicom-zoo/mr-hippocrop/study1", "dicom-zoo/seg-dcmqi-liver/ct-3slice"])
    func highdicomReadsTheLabelsBack(_ folder: String) throws {
        let python = try #require(SharedData.validationPython, "run Ops/setup.sh --test to create the highdicom environment")
        let fixture = try ExportFixture(folder)
        let labels = fixture.syntheticLabels()
        let dir = try SharedData.temporaryDirectory("seg-hd")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("seg.dcm")
        _ = try SegmentationWriter.write(labels: labels, series: fixture.series, structures: ExportFixture.structures,
                                         algorithm: ExportFixture.algorithm, to: url)
        let expected = dir.appendingPathComponent("labels.npy")
        try writeNumpyUInt8(labels.voxels.map { UInt8($0) }, shape: labels.shape.zyx, to: expected)
        let script = SharedData.repositoryRoot.appendingPathComponent("Ops/validate/seg_highdicom.py").path
        let (status, output) = try runTool(python, [script, url.path, SharedData.dataFile(folder).path, expected.path, "1,2,3"])
        #expect(status == 0, "highdicom: \(output)")
        #expect(output.contains(#""equal": {"1": true, "2": true, "3": true}"#))
    }

    /// Issue #17: the LABELMAP encoding (Label Map Segmentation Storage) — highdicom reads the same masks back,
    /// dciodvfy finds no error it can check, and nnseg's own reader gives the label map back.
    @Test func labelMapEncodingReadsBackTheSame() throws {
        let python = try #require(SharedData.validationPython, "run Ops/setup.sh --test to create the highdicom environment")
        let folder = "dicom-zoo/mr-hippocrop/study1"
        let fixture = try ExportFixture(folder)
        let labels = fixture.syntheticLabels()
        let dir = try SharedData.temporaryDirectory("seg-labelmap")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("seg.dcm"), binary = dir.appendingPathComponent("binary.dcm")
        let result = try SegmentationWriter.write(labels: labels, series: fixture.series, structures: ExportFixture.structures,
                                                  algorithm: ExportFixture.algorithm, options: SegmentationOptions(encoding: .labelmap), to: url)
        _ = try SegmentationWriter.write(labels: labels, series: fixture.series, structures: ExportFixture.structures,
                                         algorithm: ExportFixture.algorithm, to: binary)
        #expect(result.frames == labels.shape.z)
        let expected = dir.appendingPathComponent("labels.npy")
        try writeNumpyUInt8(labels.voxels.map { UInt8($0) }, shape: labels.shape.zyx, to: expected)
        let script = SharedData.repositoryRoot.appendingPathComponent("Ops/validate/seg_highdicom.py").path
        let (status, output) = try runTool(python, [script, url.path, SharedData.dataFile(folder).path, expected.path, "1,2,3"])
        #expect(status == 0 && output.contains(#""equal": {"1": true, "2": true, "3": true}"#), "highdicom: \(output)")
        let (_, report) = try runTool("/usr/bin/dciodvfy", ["-new", url.path])
        // Debian's dicom3tools predates the Label Map Segmentation IOD (2024): it can only say it does not know it.
        let errors = report.split(separator: "\n").filter { $0.hasPrefix("Error") && !$0.contains("Information Object Not found") }
        #expect(errors.isEmpty, "dciodvfy: \(errors.joined(separator: "\n"))")
        let back = try SegmentationReader.read(url, onto: labels.geometry, shape: labels.shape)
        #expect(back.labels.voxels == labels.voxels, "segment numbers 1…3 are labels 1…3 here")
        print("LABELMAP SEG \(try FileManager.default.attributesOfItem(atPath: url.path)[.size] ?? 0) bytes, BINARY \(try FileManager.default.attributesOfItem(atPath: binary.path)[.size] ?? 0)")
    }
}
