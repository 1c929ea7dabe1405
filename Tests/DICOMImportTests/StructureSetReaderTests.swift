import Foundation
import NIfTI
import Testing
import TestSupport
import VolumeGeometry
@testable import DICOMImport

/// Third-party RTSTRUCTs rasterised onto their source series.
struct StructureSetReaderTests {

    /// rt-utils' RTSTRUCT on its two CT slices, against plastimatch's rasterisation of the same file. Its
    /// ROI is a square with a second, inner square contour on the same slice: with the even-odd reading
    /// (what planning systems do with nested contours, plastimatch's --xor-contours) that is a ring.
    @Test func rtUtilsStructureMatchesPlastimatch() throws {
        let ct = try loadFirstSeries("dicom-zoo/rtstruct-rtutils/ct")
        let url = SharedData.dataFile("dicom-zoo/rtstruct-rtutils/rt.dcm")
        let rois = try StructureSetReader.rois(url)
        #expect(rois.count == 1 && rois[0].contourCount == 2)
        let name = rois[0].name
        let set = try StructureSetReader.read(url, onto: ct.volume.geometry, shape: ct.volume.shape, mapping: [(name.uppercased(), 3)])
        #expect(set.emptyROIs.isEmpty && set.overlappingVoxels == 0)
        let ours = set.labels.voxels.map { $0 == 3 }
        #expect(ours.filter { $0 }.count > 100)
        #expect(Set(set.labels.voxels) == [0, 3])

        let dir = try SharedData.temporaryDirectory("rt-read")
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try CommandRunner.run("/usr/bin/plastimatch", ["convert", "--input", url.path, "--referenced-ct",
                                                                    SharedData.dataFile("dicom-zoo/rtstruct-rtutils/ct").path,
                                                                    "--output-prefix", dir.path, "--prefix-format", "nii.gz", "--xor-contours"])
        #expect(result.status == 0, "plastimatch: \(result.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".nii.gz") }
        let mask = try NIfTIImage(contentsOf: dir.appendingPathComponent(try #require(files.first))).floatVolume()
        #expect(mask.shape == ct.volume.shape)
        let theirs = mask.voxels.map { $0 > 0 }
        let both = zip(ours, theirs).filter { $0 && $1 }.count
        let dice = 2 * Double(both) / Double(ours.filter { $0 }.count + theirs.filter { $0 }.count)
        print("rt-utils RTSTRUCT: Dice vs plastimatch \(dice), \(ours.filter { $0 }.count) voxels")
        #expect(dice >= 0.97)
    }

    /// MIM's RTSTRUCT references images that are not in the folder: the contours on them are refused,
    /// named, rather than dropped.
    @Test func contoursOnMissingImagesAreRefused() throws {
        let ct = try loadFirstSeries("dicom-zoo/rtstruct-rtutils/ct")
        let url = SharedData.dataFile("dicom-zoo/rtstruct-rtutils/invalid_reference_rt_mim.dcm")
        let rois = try StructureSetReader.rois(url)
        #expect(rois.count == 4)
        let mapping = rois.filter { $0.contourCount > 0 }.enumerated().map { ($0.element.name, $0.offset + 1) }
        #expect {
            try StructureSetReader.read(url, onto: ct.volume.geometry, shape: ct.volume.shape, mapping: mapping)
        } throws: { error in
            let e = error as? DICOMImportError
            return e?.code == .noGeometry && e?.detail.contains("lies off the series grid") == true
        }
        // Absent names are reported, not an error by themselves.
        let none = try StructureSetReader.read(url, onto: ct.volume.geometry, shape: ct.volume.shape, mapping: [("no such organ", 1)])
        #expect(none.emptyROIs == ["no such organ"] && !none.labels.voxels.contains { $0 != 0 })
    }

    @Test func aSEGIsNotAStructureSet() throws {
        #expect(throws: DICOMImportError.self) { try StructureSetReader.rois(SharedData.dataFile("dicom-zoo/seg-dcmqi-liver/liver.dcm")) }
    }
}
