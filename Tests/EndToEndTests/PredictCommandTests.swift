import Foundation
import Testing
import TestSupport

/// `nnseg predict` as a researcher or operator runs it.
struct PredictCommandTests {
    static let reference = SharedData.reference.appendingPathComponent("Dataset004_Hippocampus")
    static let model = reference.appendingPathComponent("model/nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres").path

    /// Raw voxel bytes of a NIfTI file (header and extensions skipped).
    static func voxels(_ url: URL) throws -> [UInt8] {
        let bytes = [UInt8](try SystemGzip.inflate(url).data)
        let offset = Int(Float(bitPattern: UInt32(bytes[108]) | UInt32(bytes[109]) << 8 | UInt32(bytes[110]) << 16 | UInt32(bytes[111]) << 24))
        return Array(bytes[offset...])
    }

    @Test func niftiFolderMatchesReferenceWithoutTTA() throws {
        let dir = try SharedData.temporaryDirectory("predict")
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        for name in ["hippocampus_033", "hippocampus_305"] {
            try FileManager.default.copyItem(at: Self.reference.appendingPathComponent("predictions/input/\(name)_0000.nii.gz"),
                                             to: input.appendingPathComponent("\(name)_0000.nii.gz"))
        }
        let out = dir.appendingPathComponent("out")
        let result = try CommandRunner.nnseg(["predict", "-i", input.path, "-o", out.path, "-m", Self.model, "-f", "0",
                                              "--disable-tta", "--save-probabilities", "--log-level", "info"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("case done"))
        #expect(result.stderr.contains("sliding_window_s="))
        #expect(result.stderr.contains("peakMemoryMiB="))
        for name in ["hippocampus_033", "hippocampus_305"] {
            let ours = try Self.voxels(out.appendingPathComponent("\(name).nii.gz"))
            let theirs = try Self.voxels(Self.reference.appendingPathComponent("predictions/notta/\(name).nii.gz"))
            #expect(ours == theirs, "\(name): segmentation differs from nnU-Net's")
            let probabilities = try #require(try NumpyArray.npz(out.appendingPathComponent("\(name).npz"))["probabilities"])
            let expected = try #require(try NumpyArray.npz(Self.reference.appendingPathComponent("predictions/notta/\(name).npz"))["probabilities"])
            #expect(probabilities.shape == expected.shape)
            #expect((zip(probabilities.floats, expected.floats).map { abs($0 - $1) }.max() ?? 1) <= 1e-3)
        }
    }

    @Test func dicomSeriesInNIfTIOut() throws {
        let dir = try SharedData.temporaryDirectory("predict-dicom")
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try CommandRunner.nnseg(["predict", "-i", SharedData.fixtures.appendingPathComponent("demo/hippocampus-mr").path,
                                              "-o", dir.path, "-m", Self.model, "--disable-tta"])
        #expect(result.status == 0, "\(result.stderr)")
        let outputs = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        #expect(outputs == ["1.2.826.0.1.3680043.8.498.10112548596522579645160189153146185462.nii.gz"])
        let inspect = try CommandRunner.nnseg(["inspect", dir.appendingPathComponent(outputs[0]).path])
        #expect(inspect.stdout.contains("size 35×51×32 (x×y×z)"))
        let labels = try Self.voxels(dir.appendingPathComponent(outputs[0]))
        #expect(Set(labels).isSubset(of: [0, 1, 2]) && labels.contains(1) && labels.contains(2))
    }

    @Test func ensembleOfIdenticalModelsEqualsOneModel() throws {
        let dir = try SharedData.temporaryDirectory("predict-ens")
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Self.reference.appendingPathComponent("predictions/input/hippocampus_017_0000.nii.gz"),
                                         to: input.appendingPathComponent("hippocampus_017_0000.nii.gz"))
        let single = try CommandRunner.nnseg(["predict", "-i", input.path, "-o", dir.appendingPathComponent("one").path, "-m", Self.model, "--disable-tta"])
        let pair = try CommandRunner.nnseg(["predict", "-i", input.path, "-o", dir.appendingPathComponent("two").path, "-m", Self.model,
                                            "-m", Self.model, "--disable-tta"])
        #expect(single.status == 0 && pair.status == 0)
        #expect(try Self.voxels(dir.appendingPathComponent("one/hippocampus_017.nii.gz")) == Self.voxels(dir.appendingPathComponent("two/hippocampus_017.nii.gz")))
    }

    @Test func badInputIsNamed() throws {
        let dir = try SharedData.temporaryDirectory("predict-bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("x".utf8).write(to: dir.appendingPathComponent("case.nii.gz"))
        let result = try CommandRunner.nnseg(["predict", "-i", dir.path, "-o", dir.appendingPathComponent("out").path, "-m", Self.model])
        #expect(result.status != 0)
        #expect(result.stderr.contains("INPUT_INVALID: \(dir.appendingPathComponent("case.nii.gz").path): name must end in _XXXX.nii.gz"))
        let noModel = try CommandRunner.nnseg(["predict", "-i", dir.path, "-o", dir.path, "-m", "/nonexistent/model"])
        #expect(noModel.status != 0)
        #expect(noModel.stderr.contains("/nonexistent/model/plans.json"))
    }
}
