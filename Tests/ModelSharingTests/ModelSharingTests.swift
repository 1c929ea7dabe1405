import Digest
import Foundation
import Testing
import TestSupport
import ZIPFoundation
@testable import ModelSharing

/// Model bundles (#21) on the project's demo model (a real nnU-Net v2 checkpoint, 11 MB) with the reference
/// model's real validation summary beside it: export, install, verify, list, and every kind of tampering refused
/// with nothing installed.
struct ModelSharingTests {
    /// A model folder under a folder named like its dataset (nnU-Net's results layout), with a validation summary
    /// and a training log as a fold of nnseg's has.
    static func modelFolder() throws -> URL {
        let root = try SharedData.temporaryDirectory("bundle-source")
        let folder = root.appendingPathComponent("Dataset004_Hippocampus/anything-the-user-named-it")
        let fm = FileManager.default
        try fm.createDirectory(at: folder.appendingPathComponent("fold_0/validation"), withIntermediateDirectories: true)
        let demo = SharedData.fixtures.appendingPathComponent("demo/model")
        for name in ["plans.json", "dataset.json", "fold_0/checkpoint_final.pth"] {
            try fm.copyItem(at: demo.appendingPathComponent(name), to: folder.appendingPathComponent(name))
        }
        let reference = SharedData.reference.appendingPathComponent("Dataset004_Hippocampus/model/nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres")
        try fm.copyItem(at: reference.appendingPathComponent("fold_0/validation/summary.json"),
                        to: folder.appendingPathComponent("fold_0/validation/summary.json"))
        try fm.copyItem(at: reference.appendingPathComponent("dataset_fingerprint.json"), to: folder.appendingPathComponent("dataset_fingerprint.json"))
        try Data("2026-12-04T06:00:00Z nnseg training: 3d_fullres, fold 0, 208 training and 52 validation cases, batch 9, seed 1\n".utf8)
            .write(to: folder.appendingPathComponent("fold_0/training_log_2026-12-04T060000Z.txt"))
        return folder
    }

    static func entries(_ zip: URL) throws -> [String: Data] {
        let archive = try Archive(url: zip, accessMode: .read)
        var result: [String: Data] = [:]
        for entry in archive {
            var data = Data()
            _ = try archive.extract(entry) { data.append($0) }
            result[entry.path] = data
        }
        return result
    }

    /// Writes a zip of the given entries (path order as given by `order`, else sorted).
    static func write(_ entries: [String: Data], to url: URL, order: [String]? = nil) throws {
        try? FileManager.default.removeItem(at: url)
        let archive = try Archive(url: url, accessMode: .create)
        for path in order ?? entries.keys.sorted() {
            let data = entries[path]!
            try archive.addEntry(with: path, type: .file, uncompressedSize: Int64(data.count), compressionMethod: .deflate) { position, size in
                data.subdata(in: Int(position)..<Int(position) + size)
            }
        }
    }

    static func listing(_ folder: URL) -> [String] {
        let enumerator = FileManager.default.enumerator(atPath: folder.path)
        return (enumerator?.allObjects as? [String] ?? []).sorted()
    }

    static let model = "Dataset004_Hippocampus/nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres"

    @Test func anExportedBundleInstallsVerifiesAndLists() throws {
        let source = try Self.modelFolder()
        let work = try SharedData.temporaryDirectory("bundle")
        let zip = work.appendingPathComponent("hippo.zip")
        let key = try SigningKey(contentsOf: TestKeys.signingPath)
        let manifest = try BundleExporter(modelFolders: [source]).write(to: zip, id: "hippo-demo.v1", description: "demo", signingKey: key)

        // nnU-Net's layout: paths relative to nnUNet_results, the folder named <trainer>__<plans>__<configuration>.
        let zipped = try Self.entries(zip)
        #expect(Set(zipped.keys) == [
            "\(Self.model)/plans.json", "\(Self.model)/dataset.json", "\(Self.model)/dataset_fingerprint.json",
            "\(Self.model)/fold_0/checkpoint_final.pth", "\(Self.model)/fold_0/validation/summary.json",
            "\(Self.model)/fold_0/training_log_2026-12-04T060000Z.txt",
            "Dataset004_Hippocampus/nnseg_bundles/hippo-demo.v1/manifest.json", "Dataset004_Hippocampus/nnseg_bundles/hippo-demo.v1/signature.json",
        ])
        #expect(zipped["\(Self.model)/fold_0/checkpoint_final.pth"] == (try Data(contentsOf: source.appendingPathComponent("fold_0/checkpoint_final.pth"))))
        // The manifest: every file's hash, dataset and model summary, provenance from the fold.
        #expect(manifest.files.count == 6)
        for file in manifest.files {
            let relative = String(file.path.dropFirst(Self.model.count + 1))
            #expect(file.sha256 == (try SHA256.hash(contentsOf: source.appendingPathComponent(relative)).hex), "\(file.path)")
        }
        #expect(manifest.dataset.name == "Dataset004_Hippocampus")
        #expect(manifest.dataset.labels["Anterior"] == [1] && manifest.dataset.labels["Posterior"] == [2])
        let model = try #require(manifest.models.first)
        #expect(model.configuration == "3d_fullres" && model.trainer == "nnUNetTrainer_1epoch" && model.folds.map(\.name) == ["0"] && model.folds[0].epochs == 1)
        let fold = model.folds[0]
        // The reference's validation summary: Dice 0.8404 / 0.8300 after nnU-Net's 1-epoch run (shared/reference).
        #expect(fold.validationDice?["Anterior"].map { abs($0 - 0.840) < 0.005 } == true, "\(String(describing: fold.validationDice))")
        #expect(fold.validationDice?["Posterior"].map { abs($0 - 0.830) < 0.005 } == true)
        #expect(fold.training?.hasPrefix("nnseg training: 3d_fullres, fold 0") == true)

        // Install with the signer's public key: the files land byte for byte where nnU-Net expects them.
        let models = work.appendingPathComponent("models")
        let archive = try BundleArchive(url: zip)
        let publicKey = try VerifyingKey(contentsOf: TestKeys.publicKeyPath)
        let installed = try archive.install(into: models, publicKey: publicKey)
        #expect(installed.sha256 == SHA256.hash(Array(try manifest.encoded())).hex)
        for file in manifest.files {
            #expect(try SHA256.hash(contentsOf: models.appendingPathComponent(file.path)).hex == file.sha256)
        }
        #expect(!Self.listing(models).contains { $0.hasPrefix(".nnseg-staging") }, "the staging folder is removed")
        #expect(try installed.modelFolder(configuration: nil).path == models.appendingPathComponent(Self.model).path)
        try installed.verify(publicKey: publicKey)

        // Listed, found by ID and hash prefix; a wrong hash is not that bundle.
        let store = ModelStore(folder: models)
        #expect(try store.bundles().map(\.manifest.id) == ["hippo-demo.v1"])
        _ = try store.bundle(id: "hippo-demo.v1", sha256: String(installed.sha256.prefix(16)))
        #expect(throws: BundleError.self) { try store.bundle(id: "hippo-demo.v1", sha256: String(repeating: "0", count: 64)) }
        #expect(throws: BundleError.self) { try store.bundle(id: "hippo-demo.v1", sha256: String(installed.sha256.prefix(8))) }

        // Installing the same bundle again changes nothing; a different bundle of the same ID is a conflict.
        let before = Self.listing(models)
        _ = try archive.install(into: models, publicKey: publicKey)
        #expect(Self.listing(models) == before)
        let other = work.appendingPathComponent("other.zip")
        try BundleExporter(modelFolders: [source]).write(to: other, id: "hippo-demo.v1", description: "a second export")
        let conflict = #expect(throws: BundleError.self) { try BundleArchive(url: other).install(into: models) }
        #expect(conflict?.code == .conflict, "\(String(describing: conflict))")
        // A file edited after installing is named by verify.
        let plans = models.appendingPathComponent("\(Self.model)/plans.json")
        var text = try String(contentsOf: plans, encoding: .utf8)
        text = text.replacingOccurrences(of: "\"batch_size\": 9", with: "\"batch_size\": 8")
        try text.write(to: plans, atomically: true, encoding: .utf8)
        let edited = #expect(throws: BundleError.self) { try installed.verify() }
        #expect(edited?.code == .tampered && edited?.path == plans.path, "\(String(describing: edited))")
    }

    /// Each tampering is refused with its code, and the models folder is left as it was (here: empty).
    @Test func tamperedBundlesInstallNothing() throws {
        let source = try Self.modelFolder()
        let work = try SharedData.temporaryDirectory("bundle-tamper")
        let good = work.appendingPathComponent("good.zip")
        let key = try SigningKey(contentsOf: TestKeys.signingPath)
        let manifest = try BundleExporter(modelFolders: [source]).write(to: good, id: "hippo", signingKey: key)
        let publicKey = try VerifyingKey(contentsOf: TestKeys.publicKeyPath)
        let entries = try Self.entries(good)
        let manifestPath = "Dataset004_Hippocampus/nnseg_bundles/hippo/manifest.json"
        let signaturePath = "Dataset004_Hippocampus/nnseg_bundles/hippo/signature.json"
        let checkpoint = "\(Self.model)/fold_0/checkpoint_final.pth"

        // A second key pair, not the site's.
        let otherKeyPath = work.appendingPathComponent("other.key").path
        let otherKey = try SigningKey.create(at: otherKeyPath, publicKeyAt: otherKeyPath + ".pub")

        var flipped = entries
        var bytes = [UInt8](entries[checkpoint]!)
        bytes[bytes.count / 2] ^= 0x01
        flipped[checkpoint] = Data(bytes)
        var extra = entries
        extra["\(Self.model)/fold_0/extra.py"] = Data("print('not listed')\n".utf8)
        var missing = entries
        missing.removeValue(forKey: "\(Self.model)/dataset.json")
        var escaping = entries
        escaping["Dataset004_Hippocampus/../../outside.txt"] = Data("x".utf8)
        // The checkpoint changed and the manifest rewritten to match, under the old signature.
        var rewritten = flipped
        var m = manifest
        let index = m.files.firstIndex { $0.path == checkpoint }!
        m.files[index].sha256 = SHA256.hash(bytes).hex
        rewritten[manifestPath] = try m.encoded()
        // … and re-signed with another key.
        var resigned = rewritten
        resigned[signaturePath] = try BundleSignature.sign(rewritten[manifestPath]!, with: otherKey).encoded()
        var unsigned = entries
        unsigned.removeValue(forKey: signaturePath)
        // The manifest says fewer bytes than the entry inflates to.
        var longer = entries
        longer["\(Self.model)/plans.json"] = entries["\(Self.model)/plans.json"]! + Data(repeating: 0x20, count: 1 << 20)
        var brokenManifest = entries
        var future = manifest
        future.format = "nnseg-model-bundle/9"
        brokenManifest[manifestPath] = try future.encoded()

        let cases: [(String, [String: Data], VerifyingKey?, BundleError.Code, String)] = [
            ("one bit of the checkpoint", flipped, nil, .tampered, checkpoint),
            ("a file not in the manifest", extra, nil, .tampered, "extra.py"),
            ("a listed file missing", missing, nil, .tampered, "dataset.json"),
            ("a path leaving the models folder", escaping, nil, .invalid, "outside.txt"),
            ("manifest rewritten under the old signature", rewritten, publicKey, .signatureInvalid, "does not match"),
            ("manifest re-signed by another key", resigned, publicKey, .signatureInvalid, otherKey.id),
            ("signature removed, key required", unsigned, publicKey, .unsigned, "not signed"),
            ("an entry longer than listed", longer, nil, .tampered, "plans.json"),
            ("not a manifest", brokenManifest, nil, .invalid, "format"),
        ]
        for (what, content, requiredKey, code, mention) in cases {
            let zip = work.appendingPathComponent("bad.zip")
            try Self.write(content, to: zip)
            let models = work.appendingPathComponent("models-\(code.rawValue)")
            let error = #expect(throws: BundleError.self, "\(what)") { try BundleArchive(url: zip).install(into: models, publicKey: requiredKey) }
            #expect(error?.code == code, "\(what): \(String(describing: error))")
            #expect(error?.description.contains(mention) == true, "\(what): \(String(describing: error)) should name \(mention)")
            #expect(Self.listing(models).filter { !$0.hasPrefix(".") }.isEmpty, "\(what): nothing installed")
        }
        // The unmodified bundle installs, and the rewritten one without a key to check it is at least consistent.
        try BundleArchive(url: good).install(into: work.appendingPathComponent("models-good"), publicKey: publicKey)
    }
}
