import Foundation
import Testing
import TestSupport
import VolumeGeometry
@testable import DICOMImport
@testable import NIfTI

/// Third-party SEGs read onto their source series, compared with the label maps they were made from.
struct SegmentationReaderTests {
    /// The NRRD label maps dcmqi's examples were built from (gzip, little endian, short).
    static func nrrd(_ url: URL) throws -> (sizes: [Int], origin: [Double], values: [Int16]) {
        let data = try Data(contentsOf: url)
        let separator = try #require(data.range(of: Data("\n\n".utf8)))
        let header = String(decoding: data[..<separator.lowerBound], as: UTF8.self)
        func field(_ key: String) -> String? {
            header.split(separator: "\n").first { $0.hasPrefix(key + ":") }.map { String($0.dropFirst(key.count + 1)).trimmingCharacters(in: .whitespaces) }
        }
        #expect(field("type") == "short" && field("encoding") == "gzip" && field("endian") == "little")
        let sizes = try #require(field("sizes")).split(separator: " ").compactMap { Int($0) }
        let origin = try #require(field("space origin")).trimmingCharacters(in: CharacterSet(charactersIn: "()")).split(separator: ",")
            .compactMap { Double($0) }
        let raw = try Gzip.decompress(Data(data[separator.upperBound...]))
        let values = raw.withUnsafeBytes { buffer in (0..<(raw.count / 2)).map { buffer.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self) } }
        return (sizes, origin, values)
    }


    @Test func dcmqiBinaryLiverEqualsItsLabelMap() throws {
        let ct = try loadFirstSeries("dicom-zoo/seg-dcmqi-liver/ct-3slice")
        let seg = try SegmentationReader.read(SharedData.dataFile("dicom-zoo/seg-dcmqi-liver/liver.dcm"),
                                               onto: ct.volume.geometry, shape: ct.volume.shape)
        #expect(seg.segmentationType == "BINARY" && seg.segments == [.init(number: 1, label: "Liver")])
        let reference = try Self.nrrd(SharedData.dataFile("dicom-zoo/seg-dcmqi-liver/liver_seg.nrrd"))
        #expect(reference.sizes == [ct.volume.shape.x, ct.volume.shape.y, ct.volume.shape.z])
        let origin = ct.volume.geometry.origin
        #expect(abs(origin.x - reference.origin[0]) < 1e-3 && abs(origin.y - reference.origin[1]) < 1e-3 && abs(origin.z - reference.origin[2]) < 1e-3)
        let ours = seg.labels.voxels.map { Int16($0) }
        #expect(ours.filter { $0 != 0 }.count > 1000)
        let differing = zip(ours, reference.values.map { $0 != 0 ? Int16(1) : 0 }).filter { $0 != $1 }.count
        #expect(ours.count == reference.values.count && differing == 0, "\(differing) voxels differ")
        #expect(seg.overlappingVoxels == 0)
    }

    @Test(arguments: ["noppv", "ppv5"])
    func dcmqiLabelMapSEGEqualsItsLabelMap(variant: String) throws {
        let image = try loadFirstSeries("dicom-zoo/seg-dcmqi-labelmap/image")
        let seg = try SegmentationReader.read(SharedData.dataFile("dicom-zoo/seg-dcmqi-labelmap/sparse-labelmap-\(variant).dcm"),
                                               onto: image.volume.geometry, shape: image.volume.shape)
        #expect(seg.segmentationType == "LABELMAP")
        #expect(seg.segments.contains(.init(number: 1, label: "Liver")))
        let reference = try Self.nrrd(SharedData.dataFile("dicom-zoo/seg-dcmqi-labelmap/sparse_labelmap_\(variant)_seg.nrrd"))
        #expect(reference.sizes == [image.volume.shape.x, image.volume.shape.y, image.volume.shape.z])
        let ours = seg.labels.voxels.map { Int16($0) }
        #expect(ours.contains(1))
        // dcmqi fills the slice that has no frame with the padding value (5 in the ppv5 file); in DICOM
        // terms that slice holds no segment, so it is background for us.
        let expected = reference.values.map { variant == "ppv5" && $0 == 5 ? 0 : $0 }
        #expect(variant == "noppv" || reference.values.contains(5))
        let differing = zip(ours, expected).filter { $0 != $1 }.count
        #expect(ours.count == expected.count && differing == 0, "\(differing) voxels differ")
    }

    @Test func overlappingSegmentsAreCounted() throws {
        let ct = try loadFirstSeries("dicom-zoo/seg-dcmqi-liver/ct-3slice")
        let seg = try SegmentationReader.read(SharedData.dataFile("dicom-zoo/seg-dcmqi-liver/partial_overlaps.dcm"),
                                               onto: ct.volume.geometry, shape: ct.volume.shape)
        #expect(seg.segments.count == 5)
        #expect(seg.overlappingVoxels > 0)
    }

    @Test func aSEGOffTheGridIsRefusedWithTheFrameNamed() throws {
        let ct = try loadFirstSeries("dicom-zoo/seg-dcmqi-liver/ct-3slice")
        var shifted = ct.volume.geometry
        shifted.origin.z += 0.5
        #expect {
            try SegmentationReader.read(SharedData.dataFile("dicom-zoo/seg-dcmqi-liver/liver.dcm"), onto: shifted, shape: ct.volume.shape)
        } throws: { error in
            let e = error as? DICOMImportError
            return e?.code == .noGeometry && e?.detail.contains("frame 1 lies off the series grid") == true && e?.subject.hasSuffix("liver.dcm") == true
        }
    }
}

/// The first geometric stack of a shared-data folder, loaded.
func loadFirstSeries(_ folder: String) throws -> LoadedSeries {
    let scan = try DICOMScanner().scan(SharedData.dataFile(folder))
    return try DICOMSeriesLoader().load(try #require(scan.stacks.first))
}
