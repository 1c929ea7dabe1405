import Digest
import Foundation
import Testing
import TestSupport
import VolumeGeometry
@testable import DICOMImport
import NIfTI

/// Series grouping, sorting and geometry against SimpleITK on the real series in `shared/data`.
struct SeriesImportTests {
    static let tolerance = 1e-4

    func scan(_ folder: String) throws -> DICOMScan {
        try DICOMScanner().scan(SharedData.dataFile(folder))
    }

    func expectGeometry(_ geometry: VolumeGeometry, shape: VolumeShape, equals sitk: SimpleITKImage,
                        sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(shape.xyz == sitk.size, sourceLocation: sourceLocation)
        let expected = VolumeGeometry(origin: SIMD3(sitk.origin[0], sitk.origin[1], sitk.origin[2]),
                                      spacing: SIMD3(sitk.spacing[0], sitk.spacing[1], sitk.spacing[2]),
                                      direction: Matrix3(rowMajor: sitk.direction))
        let difference = geometry.maxAbsDifference(expected)
        #expect(difference <= Self.tolerance, "geometry differs from SimpleITK by \(difference): \(geometry) vs \(expected)",
                sourceLocation: sourceLocation)
    }

    /// The HU volume as int16 little endian, in (z, y, x) order with z ascending.
    func int16SHA(_ volume: ImageVolume) -> String {
        var bytes = [UInt8]()
        bytes.reserveCapacity(volume.voxels.count * 2)
        for v in volume.voxels {
            let i = UInt16(bitPattern: Int16(v))
            bytes.append(UInt8(i & 0xFF))
            bytes.append(UInt8(i >> 8))
        }
        return SHA256.hash(bytes).hex
    }

    @Test func totalSegmentatorCTSeries() throws {
        let folder = "totalseg-example/example_ct_dicom"
        let result = try scan(folder)
        #expect(result.filesSeen == 20)
        #expect(result.skipped.isEmpty)
        #expect(result.stacks.count == 1)
        let stack = try #require(result.stacks.first)
        #expect(stack.slices.count == 20)
        #expect(stack.seriesInstanceUID == "")
        #expect(stack.hasEmptySOPInstanceUIDs)
        #expect(stack.transferSyntaxes == ["1.2.840.10008.1.2.4.90"])
        // Sorted by position, not InstanceNumber (which falls as z rises).
        let check = try #require(try SharedData.json(SharedData.dataFile("totalseg-example/example_ct_dicom_check.json")) as? [String: Any])
        #expect(stack.slices.map { stack.instances[$0.instanceIndex].instanceNumber! } == check["instance_numbers_in_ascending_z"] as! [Int])

        let series = try DICOMSeriesLoader().load(stack)
        let sitk = try #require(SimpleITKGolden.series(inFolder: folder).first?.image)
        expectGeometry(series.volume.geometry, shape: series.volume.shape, equals: sitk)
        #expect(series.geometry.verdict == .uniform)
        #expect(abs(series.geometry.meanStep - 2.0) < 1e-9)
        #expect(!series.geometry.isSheared)
        #expect(series.isIntegral)
        #expect(series.volume.voxels.min() == -1024 && series.volume.voxels.max() == 1839)
        #expect(int16SHA(series.volume) == check["hu_volume_sha256_int16_le_zyx_ascending_z"] as? String)
        #expect(int16SHA(series.volume) == sitk.arraySHA256)
        #expect(series.warnings.contains { $0.contains("SOP Instance UIDs are empty") })
    }

    @Test(arguments: ["dicom-zoo/mr-hippocrop/study1", "dicom-zoo/mr-hippocrop/study2"])
    func hippocampusSeries(_ folder: String) throws {
        let result = try scan(folder)
        #expect(result.stacks.count == 1)
        let series = try DICOMSeriesLoader().load(try #require(result.stacks.first))
        let expected = SimpleITKGolden.series(inFolder: folder)
        #expect(expected.count == 1)
        expectGeometry(series.volume.geometry, shape: series.volume.shape, equals: expected[0].image)
        #expect(int16SHA(series.volume) == expected[0].image.arraySHA256)
        #expect(series.volume.geometry.isOrthogonal())
    }

    @Test func mixedMRSeriesAreSeparated() throws {
        let folder = "dicom-zoo/mr-multiseries-study3"
        let result = try scan(folder)
        let expected = SimpleITKGolden.series(inFolder: folder)
        #expect(result.filesSeen == 62)
        #expect(result.stacks.count == 2)
        #expect(expected.count == 2)
        for (uid, sitk) in expected {
            let stack = try #require(result.stacks.first { $0.seriesInstanceUID == uid }, "series \(uid) not found")
            #expect(Set(stack.instances.map { URL(fileURLWithPath: $0.path).lastPathComponent }) == Set(sitk.files))
            let series = try DICOMSeriesLoader().load(stack)
            expectGeometry(series.volume.geometry, shape: series.volume.shape, equals: sitk)
            #expect(int16SHA(series.volume) == sitk.arraySHA256)
        }
        let t2 = try #require(result.stacks.first { $0.slices.count == 22 })
        #expect(t2.orientationLabel == "AXIAL")
    }

    @Test func obliqueAnisotropicSlices() throws {
        let folder = "dicom-zoo/ct-oblique-rtutils"
        let result = try scan(folder)
        let stack = try #require(result.stacks.first)
        #expect(result.stacks.count == 1)
        let series = try DICOMSeriesLoader().load(stack)
        let sitk = try #require(SimpleITKGolden.series(inFolder: folder).first?.image)
        expectGeometry(series.volume.geometry, shape: series.volume.shape, equals: sitk)
        // RescaleSlope 0.001: the values are not integers; SimpleITK read float64.
        #expect(!series.isIntegral)
        let sum = series.volume.voxels.reduce(0.0) { $0 + Double($1) }
        #expect(abs(sum - sitk.sum) <= 1e-6 * max(1, abs(sitk.sum)))
        #expect(stack.orientationLabel == "OBLIQUE")
        #expect(series.warnings.contains("3 different Study Instance UIDs in one series"))
    }

    @Test func gantryTiltIsReportedAndRefused() throws {
        let folder = "dicom-zoo/ct-gantry-tilt-ge"
        let result = try scan(folder)
        #expect(result.stacks.count == 1)
        let stack = try #require(result.stacks.first)
        let geometry = try #require(stack.geometry)
        #expect(geometry.isSheared)
        #expect(abs(geometry.tiltDegrees - 18.5) < 0.05)
        #expect(geometry.headerGantryTilt == 18.5)
        #expect(geometry.verdict == .nonUniform)
        #expect(geometry.warnings.contains { $0.contains("gantry tilt") })
        #expect(geometry.warnings.contains { $0.contains("non-uniform") })
        // Steps along the normal: 4.0 ×3, 1.08, 7.0 ×3 (spec §1.5, measured with SimpleITK/pydicom).
        let expectedSteps = [4.0, 4.0, 4.0, 1.08, 7.0, 7.0, 7.0]
        #expect(zip(geometry.steps, expectedSteps).allSatisfy { abs($0 - $1) < 0.01 })
        let error = #expect(throws: DICOMImportError.self) { try DICOMSeriesLoader().load(stack) }
        #expect(error?.code == .nonUniform)
        let permissive = #expect(throws: DICOMImportError.self) {
            try DICOMSeriesLoader(policy: GeometryPolicy(allowShear: true)).load(stack)
        }
        #expect(permissive?.code == .nonUniform)
    }

    @Test func uniformTiltedRunLoadsOnlyWithShearPolicy() throws {
        // Slices 11-14 are 4.0 mm apart: a uniform but sheared stack.
        let dir = try SharedData.temporaryDirectory("tilt")
        defer { try? FileManager.default.removeItem(at: dir) }
        for n in 11...14 {
            try FileManager.default.copyItem(at: SharedData.dataFile("dicom-zoo/ct-gantry-tilt-ge/\(n).dcm"),
                                             to: dir.appendingPathComponent("\(n).dcm"))
        }
        let stack = try #require(try DICOMScanner().scan(dir).stacks.first)
        #expect(stack.geometry?.verdict == .uniform)
        let refused = #expect(throws: DICOMImportError.self) { try DICOMSeriesLoader().load(stack) }
        #expect(refused?.code == .tilt)
        let series = try DICOMSeriesLoader(policy: GeometryPolicy(allowShear: true)).load(stack)
        #expect(!series.volume.geometry.isOrthogonal())
        // The sheared affine puts every slice's first voxel exactly at its Image Position (Patient).
        let toPatient = VoxelToPatient(series.volume.geometry)
        for (k, slice) in stack.slices.enumerated() {
            #expect(maxAbs(toPatient(SIMD3(0, 0, Double(k))) - slice.position!) < 1e-6)
        }
    }

    @Test func enhancedCTFunctionalGroups() throws {
        let result = try scan("dicom-zoo/enhanced-ct-multiframe")
        let stack = try #require(result.stacks.first)
        #expect(stack.instances.count == 1 && stack.slices.count == 2)
        let series = try DICOMSeriesLoader().load(stack)
        let f = stack.instances[0].frames
        #expect(f.map { $0.imagePosition!.z }.sorted() == [-159, -149])
        #expect(abs(series.volume.geometry.spacing.z - 10) < 1e-6)
        #expect(series.volume.shape == VolumeShape(z: 2, y: 512, x: 512))
        // Rescale comes from the shared Pixel Value Transformation group.
        #expect(f[0].rescaleIntercept == stack.instances[0].frames[1].rescaleIntercept)
        #expect(f[0].pixelSpacing != nil)
    }

    @Test func enhancedMRWithoutGeometryIsRefused() throws {
        let result = try scan("dicom-zoo/enhanced-mr-multiframe")
        #expect(result.instances.count == 5)
        for stack in result.stacks {
            #expect(stack.geometry == nil)
            let error = #expect(throws: DICOMImportError.self) { try DICOMSeriesLoader().load(stack) }
            #expect(error?.code == .noGeometry)
        }
    }

    @Test func nonDICOMAndNonImageFilesAreAccountedFor() throws {
        let folder = "dicom-zoo/transfer-syntaxes-mr-slice"
        let result = try scan(folder)
        #expect(result.skipped.map { URL(fileURLWithPath: $0.path).lastPathComponent }.sorted() == ["ref_1.json", "ref_1.nii"])
        #expect(result.skipped.allSatisfy { $0.code == .notDICOM })
        #expect(result.instances.count == 9)
        // Every file ends in exactly one bucket (R-RD-01).
        #expect(result.instances.count + result.skipped.count + result.nonVolumeObjects.count == result.filesSeen)
        // Nine encodings of one slice, each with its own SeriesNumber: nine stacks split by SeriesNumber.
        #expect(result.stacks.count == 9)
        #expect(result.stacks.allSatisfy { $0.splitReasons.contains("SeriesNumber") })
        let volumes = try result.stacks.map { try DICOMSeriesLoader().load($0).volume.voxels }
        #expect(volumes.allSatisfy { $0 == volumes[0] })

        let rt = try scan("dicom-zoo/rtstruct-rtutils")
        #expect(rt.nonVolumeObjects.count == 2)
        #expect(rt.nonVolumeObjects.allSatisfy { $0.modality == "RTSTRUCT" })
        let seg = try scan("dicom-zoo/seg-dcmqi-liver")
        #expect(seg.nonVolumeObjects.filter { $0.sopClassUID == "1.2.840.10008.5.1.4.1.1.66.4" }.count == 2)
        #expect(seg.stacks.count == 1 && seg.stacks[0].slices.count == 3)
    }

    @Test func exactDuplicatesAreDroppedWithAReason() throws {
        // 693_J2KR and 693_UNCR are one SOP instance in two encodings; MR_small comes in six.
        let result = try scan("dicom-zoo/pydicom-single-frame")
        let stack = try #require(result.stacks.first { $0.instances.contains { $0.path.hasSuffix("693_J2KR.dcm") || $0.path.hasSuffix("693_UNCR.dcm") } })
        #expect(stack.instances.count == 1 && stack.slices.count == 1)
        let dropped = result.skipped.filter { $0.reason.hasPrefix("duplicate of") }
        #expect(dropped.count == 6)
        #expect(dropped.filter { $0.path.contains("693_") }.count == 1)
        #expect(dropped.filter { $0.path.contains("MR_small") }.count == 5)
        #expect(result.instances.count + result.skipped.count + result.nonVolumeObjects.count - dropped.count == result.filesSeen)
    }

    @Test func unsupportedTransferSyntaxesAreRefusedByName() throws {
        let unknown = SharedData.fixtures.appendingPathComponent("dicom/htj2k_relabelled_MR_small.dcm").path
        let e1 = #expect(throws: DICOMImportError.self) { try DICOMFile(path: unknown) }
        #expect(e1?.code == .unsupportedTransferSyntax)
        #expect(e1?.detail.contains("1.2.840.10008.1.2.4.201 (HTJ2K Lossless)") == true)

        let known = SharedData.fixtures.appendingPathComponent("dicom/mpeg2_relabelled_MR_small.dcm").path
        let file = try DICOMFile(path: known)
        let e2 = #expect(throws: DICOMImportError.self) { try file.decodePixels() }
        #expect(e2?.code == .unsupportedTransferSyntax)
        #expect(e2?.detail.contains("1.2.840.10008.1.2.4.100") == true)
        #expect(e2?.subject == known)
    }

    /// Our DICOM geometry and our NIfTI geometry agree in patient space: TotalSegmentator's segmentation
    /// of the series (written by dcm2niix conventions) maps DICOM voxel (i, j, k) to NIfTI (i, 511 − j, k).
    @Test func dicomAndNIfTIGridsAgreeInPatientSpace() throws {
        let stack = try #require(try scan("totalseg-example/example_ct_dicom").stacks.first)
        let ct = try DICOMSeriesLoader().load(stack).volume
        let seg = try NIfTIImage(contentsOf: SharedData.dataFile("totalseg-example/example_seg_dicom.nii.gz")).labelVolume()
        let toPatient = VoxelToPatient(ct.geometry)
        let toSegVoxel = try #require(PatientToVoxel(seg.geometry))
        for (i, j, k) in [(0, 0, 0), (511, 0, 19), (100, 200, 7), (511, 511, 19)] {
            let p = toSegVoxel(toPatient(SIMD3(Double(i), Double(j), Double(k))))
            #expect(maxAbs(p - SIMD3(Double(i), Double(511 - j), Double(k))) < 1e-6)
        }
        // Sanity on content: liver (label 5) averages ~89 HU, spleen (1) ~80 HU (PROVENANCE.md).
        func meanHU(_ label: UInt8) -> Double {
            var sum = 0.0, n = 0
            for k in 0..<20 { for j in 0..<512 { for i in 0..<512 where seg[k, 511 - j, i] == label {
                sum += Double(ct[k, j, i]); n += 1
            } } }
            return sum / Double(n)
        }
        #expect(abs(meanHU(5) - 89) < 1.5)
        #expect(abs(meanHU(1) - 80) < 1.5)
    }

    @Test func truncatedFileGetsANamedError() throws {
        let dir = try SharedData.temporaryDirectory("truncated")
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = try Data(contentsOf: SharedData.dataFile("dicom-zoo/mr-hippocrop/study1/1.dcm"))
        let path = dir.appendingPathComponent("cut.dcm")
        try source.prefix(source.count - 1000).write(to: path)
        try Data("not dicom at all".utf8).write(to: dir.appendingPathComponent("notes.txt"))
        let result = try DICOMScanner().scan(dir)
        #expect(result.instances.count + result.skipped.count == 2)
        let text = try #require(result.skipped.first { $0.path.hasSuffix("notes.txt") })
        #expect(text.code == .notDICOM)
        let cut = try #require(result.skipped.first { $0.path.hasSuffix("cut.dcm") })
        #expect(cut.code == .truncated)
    }

    /// Issue #14: a series over the loader's voxel limit is refused before anything is allocated, naming the limit.
    @Test func aSeriesOverTheVoxelLimitIsRefused() throws {
        let scan = try DICOMScanner().scan(SharedData.fixtures.appendingPathComponent("demo/hippocampus-mr"))
        let stack = try #require(scan.stacks.first)
        let error = #expect(throws: DICOMImportError.self) { try DICOMSeriesLoader(policy: GeometryPolicy(maximumVoxels: 10_000)).load(stack) }
        #expect(error?.code == .seriesTooLarge)
        #expect(error?.detail == "35×51×32 voxels exceed the limit of 10000 voxels per series (setting geometry.maximumSeriesVoxels / --max-series-voxels)")
        #expect(try DICOMSeriesLoader().load(stack).volume.voxels.count == 35 * 51 * 32)
    }

    /// Issue #14: the frame limit is a setting; an object over it is refused by name (and the setting named),
    /// an object within it reads as before.
    @Test func theFrameLimitIsASetting() throws {
        let folder = SharedData.dataFile("dicom-zoo/enhanced-ct-multiframe")
        let strict = try DICOMScanner(limits: ReaderLimits(maximumFrames: 1, maximumSeriesVoxels: 1 << 31)).scan(folder)
        #expect(strict.stacks.isEmpty)
        let refused = try #require(strict.skipped.first)
        #expect(refused.code == .invalidAttribute)
        #expect(refused.reason == "NumberOfFrames (0028,0008) is 2: not a whole number within the limit of 1 frames "
                + "(setting geometry.maximumFrames / --max-frames)")
        #expect(try DICOMScanner(limits: ReaderLimits(maximumFrames: 2, maximumSeriesVoxels: 1 << 31)).scan(folder).stacks.count == 1)
    }

    /// A header built from values is validated as a file's header is (the series-geometry fuzz target uses it).
    @Test func headersFromValuesAreValidatedLikeFiles() throws {
        func header(rows: Int, position: SIMD3<Double>, frames: Int = 1) -> InstanceHeader {
            let frame = FrameHeader(frameIndex: 0, imagePosition: position, imageOrientation: (SIMD3(1, 0, 0), SIMD3(0, 1, 0)),
                                    pixelSpacing: SIMD2(1, 1))
            return InstanceHeader(path: "x.dcm", sopClassUID: "1.2.840.10008.5.1.4.1.1.2", sopInstanceUID: "1.2.3.1", studyInstanceUID: "1.2",
                                  seriesInstanceUID: "1.2.3", frameOfReferenceUID: "1.2.4", modality: "CT",
                                  pixelFormat: PixelFormat(rows: rows, columns: 8, frames: frames, samplesPerPixel: 1, bitsAllocated: 16,
                                                           bitsStored: 16, highBit: 15, isSigned: true, photometricInterpretation: "MONOCHROME2"),
                                  frames: Array(repeating: frame, count: frames), limits: ReaderLimits(maximumFrames: 2, maximumSeriesVoxels: 100))
        }
        #expect(header(rows: 8, position: SIMD3(0, 0, 1)).problem == nil)
        #expect(header(rows: 0, position: SIMD3(0, 0, 1)).problem?.detail == "Rows 0 / Columns 8 cannot describe an image")
        #expect(header(rows: 8, position: SIMD3(0, 0, -1e308)).problem?.code == .invalidAttribute)
        #expect(header(rows: 8, position: SIMD3(0, 0, .nan)).problem?.code == .invalidAttribute)
        #expect(header(rows: 8, position: SIMD3(0, 0, 1), frames: 3).problem?.detail.contains("limit of 2 frames") == true)
    }

    /// Pixel Data shorter than Rows × Columns × Frames × Bits Allocated (the header says 60 rows, the pixels hold 51).
    @Test func pixelDataShorterThanDeclaredIsNamedTruncated() throws {
        let dir = try SharedData.temporaryDirectory("short-pixels")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("short.dcm")
        try FileManager.default.copyItem(at: SharedData.dataFile("dicom-zoo/mr-hippocrop/study1/1.dcm"), to: path)
        let modified = try CommandRunner.run("/usr/bin/dcmodify", ["-nb", "-m", "(0028,0010)=60", path.path])
        #expect(modified.status == 0, "\(modified.stderr)")
        let scan = try DICOMScanner().scan(dir)
        let skipped = try #require(scan.skipped.first)
        #expect(skipped.code == .truncated)
        #expect(skipped.reason.contains("Pixel Data holds 3570 bytes; Rows 60 × Columns 35"), "\(skipped.reason)")
    }

    /// Issue #23: a file cut at any byte is named TRUNCATED — inside the meta header, inside an element
    /// before the Series Instance UID, exactly between two elements before it, and inside Pixel Data.
    @Test func aFileCutAnywhereIsNamedTruncated() throws {
        let dir = try SharedData.temporaryDirectory("truncated-offsets")
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = try Data(contentsOf: SharedData.dataFile("dicom-zoo/mr-hippocrop/study1/1.dcm"))
        let bytes = [UInt8](source)
        func offset(of group: UInt16, _ element: UInt16, from: Int = 132) throws -> Int {
            let needle: [UInt8] = [UInt8(group & 0xFF), UInt8(group >> 8), UInt8(element & 0xFF), UInt8(element >> 8)]
            return try #require((from..<(bytes.count - 4)).first { Array(bytes[$0..<$0 + 4]) == needle })
        }
        // The meta header ends after its group length element (12 bytes at 132) and the length it gives.
        let metaEnd = 144 + Int(bytes[140]) | Int(bytes[141]) << 8 | Int(bytes[142]) << 16 | Int(bytes[143]) << 24
        let series = try offset(of: 0x0020, 0x000E), pixel = try offset(of: 0x7FE0, 0x0010)
        let cuts = ["meta": 150, "meta-end": metaEnd - 3, "meta-only": metaEnd, "before-series-inside-element": series - 10,
                    "before-series-on-boundary": series, "pixel-header": pixel + 6, "pixel-data": pixel + 200, "last-byte": bytes.count - 1]
        for (name, length) in cuts {
            let path = dir.appendingPathComponent("\(name).dcm")
            try Data(bytes.prefix(length)).write(to: path)
            let scan = try DICOMScanner().scan(path)
            let skipped = try #require(scan.skipped.first, "\(name) (\(length) bytes) was not refused")
            #expect(skipped.code == .truncated, "\(name) (\(length) bytes): \(skipped.code?.rawValue ?? "") \(skipped.reason)")
            #expect(scan.instances.isEmpty && scan.nonVolumeObjects.isEmpty)
        }
    }
}
