import ArgumentParser
import Digest
import Foundation
import ModelSharing

/// `nnseg model export|install|verify|list`: model bundles, the deployable unit a site profile names (#21).
struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "Model bundles: export, install, verify and list.",
        discussion: """
            A bundle is nnU-Net's export zip (nnUNetv2_install_pretrained_model_from_zip installs it) plus a manifest with the
            SHA-256 of every file, the dataset and plans summary, training provenance and an optional Ed25519 signature
            (keys from `nnseg keys init --signing-key`). A profile names an installed bundle with
            `model: {bundle: ID, sha256: HASH, models: FOLDER}`; nnseg refuses it if any file differs from the manifest.
            """,
        subcommands: [Export.self, Install.self, Verify.self, List.self])

    static func progress(_ enabled: Bool) -> (String) -> Void {
        enabled ? { FileHandle.standardError.write(Data("  \($0)\n".utf8)) } : { _ in }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write a bundle from trained model folders (one dataset).")
        @Option(name: .customLong("model"), help: "A model folder (<trainer>__<plans>__<configuration>); repeat for several configurations.")
        var models: [String]
        @Option(name: [.short, .customLong("folds")], parsing: .upToNextOption, help: "Folds to export (default: every fold with the checkpoint).")
        var folds: [String] = []
        @Option(help: "Checkpoint file name in each fold.") var checkpoint = "checkpoint_final.pth"
        @Option(help: "Bundle ID (letters, digits, . _ -); default <dataset>_<configurations>_folds<…>.") var id: String?
        @Option(help: "A line of description kept in the manifest.") var description: String?
        @Option(help: "Ed25519 signing key file (nnseg keys init --signing-key) to sign the manifest with.") var signingKey: String?
        @Option(name: [.short, .customLong("output")], help: "The zip to write.") var output: String
        @Flag(help: "Print each file as it is hashed and added.") var verbose = false

        func run() throws {
            let key = try signingKey.map { try SigningKey(contentsOf: $0) }
            let exporter = BundleExporter(modelFolders: models.map { URL(fileURLWithPath: $0).standardizedFileURL },
                                          folds: folds.isEmpty ? nil : folds, checkpoint: checkpoint)
            let url = URL(fileURLWithPath: output)
            let manifest = try exporter.write(to: url, id: id, description: description, signingKey: key, progress: ModelCommand.progress(verbose))
            let hash = SHA256.hash(Array(try manifest.encoded())).hex
            print("bundle    \(manifest.id)")
            print("sha256    \(hash)")
            print("dataset   \(manifest.dataset.name): \(manifest.models.map { "\($0.configuration) folds \($0.folds.map(\.name).joined(separator: ","))" }.joined(separator: "; "))")
            print("files     \(manifest.files.count), \(ByteCountFormatter.string(fromByteCount: manifest.files.reduce(0) { $0 + $1.bytes }, countStyle: .file))")
            print("signed    \(key.map { "by key \($0.id)" } ?? "no (unsigned)")")
            print("written   \(url.path)")
        }
    }

    struct Install: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a bundle and install it into a models folder (nnUNet_results layout).",
            discussion: "Everything is extracted and checked before any file is moved into place; a bundle whose hashes or signature do not check out installs nothing.")
        @Argument(help: "The bundle zip.") var bundle: String
        @Option(help: "The models folder (else NNSEG_MODELS).") var models: String?
        @Option(help: "Require a signature by this Ed25519 public key.") var publicKey: String?
        @Flag(help: "Install over a different bundle of the same ID or over different files.") var replace = false
        @Flag(help: "Print each file as it is checked.") var verbose = false

        func run() throws {
            let folder = try ModelCommand.modelsFolder(models)
            let key = try publicKey.map { try VerifyingKey(contentsOf: $0) }
            let archive = try BundleArchive(url: URL(fileURLWithPath: bundle))
            let installed = try archive.install(into: folder, publicKey: key, replace: replace, progress: ModelCommand.progress(verbose))
            print("installed \(installed.manifest.id) (sha256 \(installed.sha256)) into \(folder.path)")
            for model in installed.manifest.models { print("  \(model.configuration): \(folder.appendingPathComponent(model.folder).path)") }
            print("signature \(ModelCommand.signatureText(installed.signature, checkedWith: key))")
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a bundle zip, or the bundles installed in a models folder, file by file.")
        @Argument(help: "A bundle zip (else the installed bundles are checked).") var bundle: String?
        @Option(help: "The models folder (else NNSEG_MODELS).") var models: String?
        @Option(help: "Only this installed bundle ID (repeatable).") var id: [String] = []
        @Option(help: "Also require a signature by this Ed25519 public key.") var publicKey: String?
        @Flag(help: "Print each file as it is checked.") var verbose = false

        func run() throws {
            let key = try publicKey.map { try VerifyingKey(contentsOf: $0) }
            if let bundle {
                let archive = try BundleArchive(url: URL(fileURLWithPath: bundle))
                try archive.checkSignature(key)
                try archive.verify(progress: ModelCommand.progress(verbose))
                print("ok        \(archive.manifest.id) (sha256 \(archive.sha256)): \(archive.manifest.files.count) files match the manifest; "
                      + "signature \(ModelCommand.signatureText(archive.signature, checkedWith: key))")
                return
            }
            let store = ModelStore(folder: try ModelCommand.modelsFolder(models))
            let bundles = id.isEmpty ? try store.bundles() : try id.map { try store.bundle(id: $0) }
            guard !bundles.isEmpty else { throw CommandOutcome(code: "BUNDLE_NOT_FOUND", message: "BUNDLE_NOT_FOUND: \(store.folder.path): no bundle installed") }
            for installed in bundles {
                try installed.verify(publicKey: key, progress: ModelCommand.progress(verbose))
                print("ok        \(installed.manifest.id) (sha256 \(installed.sha256)): \(installed.manifest.files.count) files match; "
                      + "signature \(ModelCommand.signatureText(installed.signature, checkedWith: key))")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the bundles installed in a models folder, with their provenance.")
        @Option(help: "The models folder (else NNSEG_MODELS).") var models: String?
        @Flag(help: "Print the manifests as JSON (an array) instead of text.") var json = false

        func run() throws {
            let store = ModelStore(folder: try ModelCommand.modelsFolder(models))
            let bundles = try store.bundles()
            if json {
                let objects = try bundles.map { b -> Any in
                    var object = try JSONSerialization.jsonObject(with: b.manifestData) as! [String: Any]
                    object["sha256"] = b.sha256
                    object["signed_by"] = b.signature?.keyID ?? NSNull()
                    return object
                }
                let data = try JSONSerialization.data(withJSONObject: objects, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            if bundles.isEmpty { print("no bundles installed in \(store.folder.path)") }
            for b in bundles {
                let m = b.manifest
                print("\(m.id)")
                print("  sha256     \(b.sha256)")
                print("  dataset    \(m.dataset.name) (\(m.dataset.labels.count - (m.dataset.labels["background"] == nil ? 0 : 1)) labels, channels \(m.dataset.channels.joined(separator: ", ")))")
                print("  created    \(m.created) by nnseg \(m.nnsegVersion)\(m.description.map { " — \($0)" } ?? "")")
                print("  signed     \(b.signature.map { "by key \($0.keyID) (check with nnseg model verify --public-key)" } ?? "no")")
                for model in m.models {
                    print("  \(model.configuration) (\(model.trainer), \(model.plans), patch \(model.patchSize.map(String.init).joined(separator: "×")))")
                    for fold in model.folds {
                        let dice = fold.validationDice.map { d in d.keys.sorted().map { "\($0) \(String(format: "%.3f", d[$0]!))" }.joined(separator: ", ") }
                        print("    fold \(fold.name): \(fold.epochs.map { "\($0) epochs" } ?? "epochs ?")\(dice.map { "; validation Dice \($0)" } ?? "")")
                        if let training = fold.training { print("      \(training)") }
                    }
                }
            }
        }
    }

    static func modelsFolder(_ option: String?) throws -> URL {
        guard let path = option ?? ProcessInfo.processInfo.environment["NNSEG_MODELS"] else {
            throw ValidationError("name the models folder with --models or NNSEG_MODELS")
        }
        return URL(fileURLWithPath: path).standardizedFileURL
    }

    static func signatureText(_ signature: BundleSignature?, checkedWith key: VerifyingKey?) -> String {
        switch (signature, key) {
        case (nil, _): return "none (unsigned bundle)"
        case (let s?, nil): return "by key \(s.keyID), not checked (give --public-key)"
        case (let s?, _?): return "valid, key \(s.keyID)"
        }
    }
}
