import Digest
import Foundation
import Testing
import TestSupport
import VolumeGeometry
@testable import NIfTI

/// NIfTI reading against SimpleITK (geometry, values) and bit-exact round trips, on the shared data.
struct NIfTITests {
    static let files: [String] = SimpleITKGolden.nifti.keys.sorted()

    @Test func goldenCoversTheDatasets() {
        #expect(Self.files.filter { $0.hasPrefix("Dataset004_Hippocampus/imagesTr/") }.count == 260)
        #expect(Self.files.filter { $0.hasPrefix("Dataset004_Hippocampus/labelsTr/") }.count == 260)
        #expect(Self.files.filter { $0.hasPrefix("totalseg-example/") }.count == 9)
    }

    @Test(arguments: files)
    func geometryAndValuesMatchSimpleITK(_ relative: String) throws {
        let sitk = try #require(SimpleITKGolden.nifti[relative])
        let image = try NIfTIImage(contentsOf: SharedData.dataFile(relative))
        let volume = image.floatVolume()
        #expect(volume.shape.xyz == sitk.size)
        let expected = VolumeGeometry(origin: SIMD3(sitk.origin[0], sitk.origin[1], sitk.origin[2]),
                                      spacing: SIMD3(sitk.spacing[0], sitk.spacing[1], sitk.spacing[2]),
                                      direction: Matrix3(rowMajor: sitk.direction))
        let difference = volume.geometry.maxAbsDifference(expected)
        #expect(difference <= 1e-4, "\(relative): geometry differs from SimpleITK by \(difference)")
        let sum = image.voxels.withDoubles { $0.reduce(0, +) }
        #expect(abs(sum - sitk.sum) <= 1e-9 * max(1, abs(sitk.sum)), "\(relative): voxel sum \(sum) vs \(sitk.sum)")
        #expect(Self.simpleITKPixelType(image.voxels.dataType) == sitk.pixelType)
    }

    static func simpleITKPixelType(_ type: NIfTIDataType) -> String {
        switch type {
        case .uint8: return "8-bit unsigned integer"
        case .int8: return "8-bit signed integer"
        case .int16: return "16-bit signed integer"
        case .uint16: return "16-bit unsigned integer"
        case .int32: return "32-bit signed integer"
        case .uint32: return "32-bit unsigned integer"
        case .int64: return "64-bit signed integer"
        case .uint64: return "64-bit unsigned integer"
        case .float32: return "32-bit float"
        case .float64: return "64-bit float"
        }
    }

    /// Read → encode gives back the uncompressed file byte for byte; write → read gives equal images.
    @Test(arguments: [
        "Dataset004_Hippocampus/imagesTr/hippocampus_001_0000.nii.gz",  // uint8
        "Dataset004_Hippocampus/imagesTr/hippocampus_003_0000.nii.gz",  // float32
        "Dataset004_Hippocampus/labelsTr/hippocampus_003.nii.gz",
        "totalseg-example/example_ct.nii.gz",                          // int32
        "totalseg-example/example_seg_dicom.nii.gz",                   // uint8 with a label-table extension
        "totalseg-example/example_mr_sm.nii.gz",                       // int16, LPS-stored affine
        "dicom-zoo/transfer-syntaxes-mr-slice/ref_1.nii",             // oblique, uncompressed
    ])
    func roundTripIsBitExact(_ relative: String) throws {
        let url = SharedData.dataFile(relative)
        let original = try NIfTIImage(contentsOf: url)
        var raw = try Data(contentsOf: url)
        if relative.hasSuffix(".gz") { raw = try Gzip.decompress(raw) }
        let expectedBytes = raw.prefix(original.encoded().count)
        #expect(original.encoded() == expectedBytes, "\(relative): re-encoded bytes differ from the file")

        let dir = try SharedData.temporaryDirectory("nifti")
        defer { try? FileManager.default.removeItem(at: dir) }
        for name in ["copy.nii.gz", "copy.nii"] {
            let out = dir.appendingPathComponent(name)
            try original.write(to: out)
            let back = try NIfTIImage(contentsOf: out)
            #expect(back == original)
            #expect(back.geometry == original.geometry)
        }
    }

    /// Writing over an existing file replaces it (a second validation of a fold rewrites every case): before, on Linux
    /// `FileManager.replaceItemAt` deleted the old file and then failed with NIFTI_UNWRITABLE, losing both.
    @Test func writingOverAnExistingFileReplacesIt() throws {
        let first = try NIfTIImage(contentsOf: SharedData.dataFile("Dataset004_Hippocampus/labelsTr/hippocampus_003.nii.gz"))
        let second = try NIfTIImage(contentsOf: SharedData.dataFile("Dataset004_Hippocampus/labelsTr/hippocampus_004.nii.gz"))
        #expect(first != second)
        let dir = try SharedData.temporaryDirectory("nifti-overwrite")
        defer { try? FileManager.default.removeItem(at: dir) }
        for name in ["case.nii.gz", "case.nii"] {
            let out = dir.appendingPathComponent(name)
            try first.write(to: out)
            try second.write(to: out)
            #expect(try NIfTIImage(contentsOf: out) == second, "\(name): the second write did not replace the first")
            try first.write(to: out)
            #expect(try NIfTIImage(contentsOf: out) == first)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["case.nii", "case.nii.gz"], "no partial files left")
    }

    /// A volume written with a fresh header reads back on the same geometry (qform and sform set).
    @Test func freshHeaderKeepsObliqueGeometry() throws {
        let source = try NIfTIImage(contentsOf: SharedData.dataFile("dicom-zoo/transfer-syntaxes-mr-slice/ref_1.nii"))
        let volume = source.floatVolume()
        let written = NIfTIImage(volume: volume)
        #expect(written.header.qformCode == 1 && written.header.sformCode == 1)
        let back = try NIfTIImage(decompressed: written.encoded(), path: "memory")
        #expect(back.geometry.maxAbsDifference(volume.geometry) < 1e-5)
        #expect(back.floatVolume().voxels == volume.voxels)
        // The qform alone (sform removed) gives the same geometry.
        var qformOnly = back
        qformOnly.header.sformCode = 0
        #expect(qformOnly.transformSource == .qform)
        #expect(qformOnly.geometry.maxAbsDifference(volume.geometry) < 1e-5)
        // No transform at all: ITK's method-1 fallback, LPS diag(-1, -1, 1).
        var neither = back
        neither.header.qformCode = 0
        neither.header.sformCode = 0
        #expect(neither.geometry.direction == Matrix3.diagonal(SIMD3(-1, -1, 1)))
        #expect(neither.geometry.origin == .zero)
    }

    @Test func shearedGeometryIsKeptInTheSform() throws {
        let geometry = VolumeGeometry(origin: SIMD3(-125, -123.5, 48), spacing: SIMD3(0.49, 0.49, 4.2),
                                      direction: Matrix3(columns: SIMD3(1, 0, 0), normalize(SIMD3(0, 0.948, -0.317)),
                                                         normalize(SIMD3(0, 0, 1))))
        let volume = LabelVolume(shape: VolumeShape(z: 2, y: 3, x: 4), geometry: geometry, repeating: 1)
        let image = NIfTIImage(volume: volume)
        #expect(image.header.qformCode == 0)
        let back = try NIfTIImage(decompressed: image.encoded(), path: "memory")
        #expect(back.transformSource == .sform)
        let p = VoxelToPatient(back.geometry)(SIMD3(1, 2, 1))
        #expect(maxAbs(p - VoxelToPatient(geometry)(SIMD3(1, 2, 1))) < 1e-4)
        #expect(try back.labelVolume().voxels == volume.voxels)
    }

    @Test func bigEndianFileReadsTheSame() throws {
        let le = try NIfTIImage(contentsOf: SharedData.dataFile("totalseg-example/example_mr_sm.nii.gz"))
        // Swap every numeric header field and each int16 voxel by hand.
        var be = [UInt8](le.encoded())
        let header = try #require(NIfTIHeader(bytes: be))
        func swap(_ offset: Int, _ width: Int) { be[offset..<(offset + width)].reverse() }
        for (o, w) in [(0, 4), (32, 4), (36, 2), (56, 4), (60, 4), (64, 4), (68, 2), (70, 2), (72, 2), (74, 2),
                       (108, 4), (112, 4), (116, 4), (120, 2), (124, 4), (128, 4), (132, 4), (136, 4), (140, 4),
                       (144, 4), (252, 2), (254, 2)] { swap(o, w) }
        for i in 0..<8 { swap(40 + 2 * i, 2); swap(76 + 4 * i, 4) }
        for i in 0..<6 { swap(256 + 4 * i, 4) }
        for i in 0..<12 { swap(280 + 4 * i, 4) }
        let offset = Int(header.voxOffset)
        for i in stride(from: offset, to: be.count, by: 2) { be.swapAt(i, i + 1) }
        let read = try NIfTIImage(decompressed: Data(be), path: "be.nii")
        #expect(read.header.bigEndianSource)
        #expect(read.voxels == le.voxels)
        #expect(read.geometry == le.geometry)
    }

    @Test func badFilesGetNamedErrors() throws {
        let dir = try SharedData.temporaryDirectory("nifti-bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = try Data(contentsOf: SharedData.dataFile("Dataset004_Hippocampus/imagesTr/hippocampus_001_0000.nii.gz"))
        let cut = dir.appendingPathComponent("cut.nii.gz")
        try good.prefix(good.count / 2).write(to: cut)
        let truncated = #expect(throws: NIfTIError.self) { try NIfTIImage(contentsOf: cut) }
        #expect(truncated?.code == .truncated)
        #expect(truncated?.path == cut.path)

        let text = dir.appendingPathComponent("notes.nii")
        try Data(repeating: 65, count: 400).write(to: text)
        let notNIfTI = #expect(throws: NIfTIError.self) { try NIfTIImage(contentsOf: text) }
        #expect(notNIfTI?.code == .notNIfTI)
        #expect(notNIfTI?.description.contains(text.path) == true)

        let missing = #expect(throws: NIfTIError.self) { try NIfTIImage(contentsOf: dir.appendingPathComponent("none.nii")) }
        #expect(missing?.code == .unreadable)

        // A float image is not a label map.
        let float = try NIfTIImage(contentsOf: SharedData.dataFile("Dataset004_Hippocampus/imagesTr/hippocampus_003_0000.nii.gz"))
        #expect(throws: NIfTIError.self) { try float.labelVolume(path: "img") }
    }

    /// Labels that nnU-Net stored as float32 (two Hippocampus cases) still read as label maps.
    @Test func labelMapsFromEveryTrainingCase() throws {
        for relative in Self.files where relative.hasPrefix("Dataset004_Hippocampus/labelsTr/") {
            let labels = try NIfTIImage(contentsOf: SharedData.dataFile(relative)).labelVolume(path: relative)
            #expect(labels.voxels.allSatisfy { $0 <= 2 })
        }
    }
}

/// Issue #14: a gzip stream that inflates beyond its limit (a gzip bomb) is refused, not inflated.
struct GzipLimitTests {
    @Test func inflatingBeyondTheLimitIsRefused() throws {
        let zeros = Data(count: 8 << 20)
        let compressed = try Gzip.compress(zeros)
        #expect(compressed.count < 64 << 10)
        #expect(try Gzip.decompress(compressed, limit: 16 << 20) == zeros)
        let error = #expect(throws: Gzip.Failure.self) { try Gzip.decompress(compressed, limit: 1 << 20) }
        #expect(error?.description.contains("beyond the limit of 1 MiB") == true)
    }

    /// Issue #16: large inputs are deflated in parallel blocks joined into one gzip member; our reader and
    /// the system's gzip both inflate it to the input, and the ratio stays near the serial one.
    @Test func parallelBlocksAreOneValidGzipStream() throws {
        var rng = SplitMix(state: 1_616)
        // 2.3 MiB of label-like runs (compressible, not trivially): three blocks, the last one short.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(2 << 20 | 300 << 10)
        while bytes.count < 2 << 20 | 300 << 10 {
            bytes += repeatElement(UInt8.random(in: 0...7, using: &rng), count: Int.random(in: 1...300, using: &rng))
        }
        let data = Data(bytes)
        let parallel = try Gzip.compress(data)
        #expect(try Gzip.decompress(parallel) == data)
        let serial = try Gzip.compressSerially(data, level: 6)
        #expect(Double(parallel.count) < 1.02 * Double(serial.count), "parallel \(parallel.count) B, serial \(serial.count) B")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("parallel-\(getpid()).gz")
        try parallel.write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let inflated = try SystemGzip.inflate(file)
        #expect(inflated.status == 0)
        #expect(inflated.data == data)
    }
}
