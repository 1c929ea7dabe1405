import Digest
import Foundation
import Testing
import TestSupport
import ZIPFoundation
@testable import TorchCheckpoint

struct TorchCheckpointTests {
    static let fold0 = "Dataset004_Hippocampus/model/nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres/fold_0/"

    /// Every tensor of `network_weights`, in order, matches the manifest's name, shape, dtype and sha256.
    @Test(arguments: ["checkpoint_final.pth", "checkpoint_final_weights_only.pth"])
    func weightsMatchManifest(_ file: String) throws {
        let manifest = try #require(try SharedData.json(SharedData.reference.appendingPathComponent(Self.fold0 + "network_weights_manifest.json")) as? [String: Any])
        let expected = try #require(manifest["tensors"] as? [[String: Any]])
        #expect(expected.count == 188)
        let checkpoint = try TorchCheckpoint(contentsOf: SharedData.reference.appendingPathComponent(Self.fold0 + file))
        let weights = try checkpoint.stateDict(at: "network_weights")
        #expect(weights.map(\.name) == expected.map { $0["name"] as! String })
        var values = 0
        for (entry, reference) in zip(weights, expected) {
            let data = try checkpoint.tensor(entry.tensor)
            #expect(data.shape == reference["shape"] as! [Int], "\(entry.name)")
            #expect(data.dtype.rawValue == reference["dtype"] as! String)
            #expect(SHA256.hash(data.bytes).hex == reference["sha256_le"] as! String, "\(entry.name)")
            values += data.count
        }
        #expect(values == manifest["num_values"] as! Int)
    }

    @Test func trainerMetadataIsReadable() throws {
        let checkpoint = try TorchCheckpoint(contentsOf: SharedData.reference.appendingPathComponent(Self.fold0 + "checkpoint_final.pth"))
        let root = checkpoint.root
        #expect(root["trainer_name"]?.stringValue == "nnUNetTrainer_1epoch")
        #expect(root["init_args"]?["configuration"]?.stringValue == "3d_fullres")
        #expect(root["init_args"]?["fold"]?.intValue == 0)
        #expect(root["inference_allowed_mirroring_axes"]?.elements?.compactMap(\.intValue) == [0, 1, 2])
        #expect(root["current_epoch"]?.intValue == 1)
        // numpy scalars in the training log (via _codecs.encode bytes) decode to numbers.
        let losses = try #require(root["logging"]?["train_losses"]?.elements)
        #expect(losses.count == 1)
        #expect(abs((losses[0].doubleValue ?? 0) - (-0.326)) < 0.001)
        // Momentum buffers of the optimizer are tensors too.
        #expect(root["optimizer_state"]?["state"] != nil)
    }

    // MARK: Hand-made pickles

    /// Minimal protocol-2 pickle writer for tests.
    struct PickleWriter {
        var bytes: [UInt8] = [0x80, 0x02]
        mutating func global(_ module: String, _ name: String) { bytes += [0x63] + Array("\(module)\n\(name)\n".utf8) }
        mutating func string(_ s: String) {
            let u = Array(s.utf8)
            bytes += [0x58] + withUnsafeBytes(of: UInt32(u.count).littleEndian, Array.init) + u
        }
        mutating func int(_ i: Int) { bytes += [0x4A] + withUnsafeBytes(of: Int32(i).littleEndian, Array.init) }
        mutating func op(_ code: UInt8) { bytes.append(code) }
        static let mark: UInt8 = 0x28, tuple: UInt8 = 0x74, reduce: UInt8 = 0x52, stop: UInt8 = 0x2E
        static let emptyDict: UInt8 = 0x7D, emptyTuple: UInt8 = 0x29, setitem: UInt8 = 0x73, binpersid: UInt8 = 0x51
        static let newfalse: UInt8 = 0x89

        /// `_rebuild_tensor_v2(storage, offset, shape, stride, False, OrderedDict())`
        mutating func tensor(storageClass: String, key: String, count: Int, offset: Int, shape: [Int], strides: [Int]) {
            global("torch._utils", "_rebuild_tensor_v2")
            op(Self.mark)
            op(Self.mark); string("storage"); global("torch", storageClass); string(key); string("cpu"); int(count); op(Self.tuple)
            op(Self.binpersid)
            int(offset)
            op(Self.mark); shape.forEach { int($0) }; op(Self.tuple)
            op(Self.mark); strides.forEach { int($0) }; op(Self.tuple)
            op(Self.newfalse)
            global("collections", "OrderedDict"); op(Self.emptyTuple); op(Self.reduce)
            op(Self.tuple)
            op(Self.reduce)
        }
    }

    static func writeArchive(_ records: [String: [UInt8]], to url: URL) throws {
        let archive = try Archive(url: url, accessMode: .create)
        for (name, data) in records.sorted(by: { $0.key < $1.key }) {
            try archive.addEntry(with: "archive/" + name, type: .file, uncompressedSize: Int64(data.count),
                                 compressionMethod: .none) { position, size in
                Data(data[Int(position)..<(Int(position) + size)])
            }
        }
    }

    @Test func maliciousPickleIsRefusedWithoutRunningIt() throws {
        let dir = try SharedData.temporaryDirectory("pickle")
        defer { try? FileManager.default.removeItem(at: dir) }
        let marker = dir.appendingPathComponent("pwned")
        var p = PickleWriter()
        p.global("os", "system")
        p.op(PickleWriter.mark); p.string("touch \(marker.path)"); p.op(PickleWriter.tuple)
        p.op(PickleWriter.reduce)
        p.op(PickleWriter.stop)
        let url = dir.appendingPathComponent("evil.pth")
        try Self.writeArchive(["data.pkl": p.bytes, "byteorder": Array("little".utf8)], to: url)
        let error = #expect(throws: CheckpointError.self) { try TorchCheckpoint(contentsOf: url) }
        #expect(error?.detail.contains("global 'os.system' is not allowed") == true)
        #expect(error?.path == url.path)
        #expect(!FileManager.default.fileExists(atPath: marker.path))

        // builtins.eval through STACK_GLOBAL (protocol 4 form) is refused the same way.
        var q = PickleWriter()
        q.string("builtins"); q.string("eval"); q.op(0x93)
        q.op(PickleWriter.stop)
        try Self.writeArchive(["data.pkl": q.bytes], to: dir.appendingPathComponent("evil2.pth"))
        let second = #expect(throws: CheckpointError.self) { try TorchCheckpoint(contentsOf: dir.appendingPathComponent("evil2.pth")) }
        #expect(second?.detail.contains("builtins.eval") == true)
    }

    @Test func halfBFloat16AndStridedTensors() throws {
        let dir = try SharedData.temporaryDirectory("pickle")
        defer { try? FileManager.default.removeItem(at: dir) }
        let halves: [Float16] = [1, -2.5, 0.099975586, 65504]
        let bf16: [Float] = [1, -2.5, 3.140625, -0.0078125]
        var p = PickleWriter()
        p.op(PickleWriter.emptyDict)
        p.string("half"); p.tensor(storageClass: "HalfStorage", key: "0", count: 4, offset: 0, shape: [2, 2], strides: [2, 1]); p.op(PickleWriter.setitem)
        p.string("halfT"); p.tensor(storageClass: "HalfStorage", key: "0", count: 4, offset: 0, shape: [2, 2], strides: [1, 2]); p.op(PickleWriter.setitem)
        p.string("bf16"); p.tensor(storageClass: "BFloat16Storage", key: "1", count: 4, offset: 1, shape: [3], strides: [1]); p.op(PickleWriter.setitem)
        p.op(PickleWriter.stop)
        let halfBytes = halves.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }
        let bfBytes = bf16.flatMap { withUnsafeBytes(of: UInt16($0.bitPattern >> 16).littleEndian, Array.init) }
        let url = dir.appendingPathComponent("mixed.pth")
        try Self.writeArchive(["data.pkl": p.bytes, "data/0": halfBytes, "data/1": bfBytes], to: url)
        let checkpoint = try TorchCheckpoint(contentsOf: url)
        let dict = try checkpoint.stateDict()
        #expect(dict.map(\.name) == ["half", "halfT", "bf16"])
        #expect(try checkpoint.tensor(dict[0].tensor).floats() == halves.map(Float.init))
        #expect(try checkpoint.tensor(dict[1].tensor).floats() == [1, 0.099975586, -2.5, 65504].map { Float(Float16($0)) })
        #expect(try checkpoint.tensor(dict[2].tensor).floats() == Array(bf16[1...]))
        #expect(try checkpoint.tensor(dict[2].tensor).dtype == .bfloat16)
    }

    /// Issue #14: tensor metadata that cannot index its storage (negative sizes or strides, a shape whose
    /// product overflows, a view past the storage) is refused with a named error, never read.
    @Test(arguments: [([-4], [1], 0), ([2, 2], [-1, 1], 0), ([1 << 30, 1 << 30, 1 << 30], [1, 1, 1], 0), ([4], [1], 3), ([2], [1, 1], 0)])
    func impossibleTensorViewsAreRefused(_ shape: [Int], _ strides: [Int], _ offset: Int) throws {
        let dir = try SharedData.temporaryDirectory("pickle")
        defer { try? FileManager.default.removeItem(at: dir) }
        var p = PickleWriter()
        p.op(PickleWriter.emptyDict)
        p.string("w"); p.tensor(storageClass: "FloatStorage", key: "0", count: 4, offset: offset, shape: shape, strides: strides); p.op(PickleWriter.setitem)
        p.op(PickleWriter.stop)
        let url = dir.appendingPathComponent("bad.pth")
        try Self.writeArchive(["data.pkl": p.bytes, "data/0": [UInt8](repeating: 0, count: 16)], to: url)
        let error = #expect(throws: CheckpointError.self) {
            let checkpoint = try TorchCheckpoint(contentsOf: url)
            for entry in try checkpoint.stateDict() { _ = try checkpoint.tensor(entry.tensor) }
        }
        #expect(error?.description.hasPrefix("CHECKPOINT_INVALID: \(url.path)") == true, "\(error?.description ?? "")")
    }

    /// Crashers found by fuzzing (Fixtures/fuzz/crashers/): each is read, or refused with a named error — the
    /// process survives.
    @Test func fuzzCrashersAreReadOrNamed() throws {
        // A zip header declaring a ~1.7 PiB data.pkl (its real content is small): reserving that size once
        // aborted the process; now the declared size is only a hint bounded by the file's size.
        let url = SharedData.fixtures.appendingPathComponent("fuzz/crashers/checkpoint-zip-declares-huge-pickle.pth")
        do {
            let checkpoint = try TorchCheckpoint(contentsOf: url)
            for key in [nil, "network_weights"] as [String?] {
                for entry in (try? checkpoint.stateDict(at: key)) ?? [] { _ = try checkpoint.tensor(entry.tensor) }
            }
        } catch let error as CheckpointError {
            #expect(error.description.hasPrefix("CHECKPOINT_INVALID: \(url.path)"))
        }
    }

    /// A fuzz timeout (FuzzCheckpoint, 14 s under ASan): a stored record whose header declares more bytes than
    /// the file holds was read chunk by chunk up to the declared size. Refused before extraction now, naming it.
    @Test func aStoredRecordLargerThanTheFileIsRefusedAtOnce() throws {
        let url = SharedData.fixtures.appendingPathComponent("fuzz/crashers/checkpoint-stored-record-larger-than-file.pth")
        let error = #expect(throws: CheckpointError.self) {
            let checkpoint = try TorchCheckpoint(contentsOf: url)
            for key in [nil, "network_weights"] as [String?] {
                for entry in (try? checkpoint.stateDict(at: key)) ?? [] { _ = try checkpoint.tensor(entry.tensor) }
            }
        }
        // The refusal names the declared size against the file's: it comes before any reading.
        #expect(error?.description.contains("bytes in a file of 722 bytes") == true, "\(error?.description ?? "")")
    }

    /// The fuzz seed (Fixtures/fuzz/PROVENANCE.md) is a readable checkpoint.
    @Test func fuzzSeedLoads() throws {
        let checkpoint = try TorchCheckpoint(contentsOf: SharedData.fixtures.appendingPathComponent("fuzz/seeds/tiny.pth"))
        let entries = try checkpoint.stateDict(at: "network_weights")
        #expect(entries.map(\.name) == ["a.weight", "b.bias"])
        #expect(try checkpoint.tensor(entries[0].tensor).floats() == [1, -2.5, 3.25, 0.5])
    }

    @Test func notACheckpointIsNamed() throws {
        let dir = try SharedData.temporaryDirectory("pickle")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("plans.pth")
        try Data("{}".utf8).write(to: url)
        let error = #expect(throws: CheckpointError.self) { try TorchCheckpoint(contentsOf: url) }
        #expect(error?.description.hasPrefix("CHECKPOINT_INVALID: \(url.path)") == true)
    }
}
