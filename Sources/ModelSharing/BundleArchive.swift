import Digest
import Foundation
import ZIPFoundation

/// A bundle zip opened for checking and installing. Nothing in it is trusted: every entry must be a plain file
/// at a safe relative path, listed in the manifest with its size and SHA-256 (extraction stops at the listed
/// size, so a zip bomb or a lying header ends as an error), and the manifest's signature must check out when a
/// public key is given.
///
/// ```swift
/// let bundle = try BundleArchive(url: zip)
/// let installed = try bundle.install(into: modelsFolder, publicKey: key)
/// ```
public struct BundleArchive {
    public let url: URL
    public let manifest: BundleManifest
    /// The manifest's bytes as stored (what the hash and signature cover).
    public let manifestData: Data
    public let signature: BundleSignature?
    private let archive: Archive
    private let entries: [String: Entry]

    /// The largest manifest or signature read (a bundle of thousands of files has a manifest of a few hundred KB).
    static let maximumManifestBytes = 16 << 20

    public init(url: URL) throws {
        self.url = url
        let source = url.path
        let archive: Archive
        do { archive = try Archive(url: url, accessMode: .read) } catch {
            throw BundleError(.invalid, source, "not a zip archive (\(error))")
        }
        var entries: [String: Entry] = [:]
        for entry in archive {
            if entry.type == .directory { continue }
            guard entry.type == .file else { throw BundleError(.invalid, source, "\(entry.path) is a link; bundles hold plain files only") }
            try BundleManifest.checkPath(entry.path, source: source)
            guard entries.updateValue(entry, forKey: entry.path) == nil else {
                throw BundleError(.invalid, source, "\(entry.path) is in the zip twice")
            }
        }
        let manifests = entries.keys.filter { $0.hasSuffix("/manifest.json") && $0.split(separator: "/").dropLast(2).last == "nnseg_bundles" }
        guard manifests.count == 1, let manifestPath = manifests.first else {
            throw BundleError(.invalid, source, manifests.isEmpty ? "no nnseg_bundles/<id>/manifest.json: not an nnseg model bundle (an nnU-Net zip without a manifest cannot be verified)"
                              : "more than one manifest (\(manifests.sorted().joined(separator: ", ")))")
        }
        func read(_ entry: Entry) throws -> Data {
            var data = Data()
            _ = try archive.extract(entry, skipCRC32: true) { chunk in
                guard data.count + chunk.count <= Self.maximumManifestBytes else {
                    throw BundleError(.invalid, source, "\(entry.path) is larger than \(Self.maximumManifestBytes >> 20) MiB")
                }
                data.append(chunk)
            }
            return data
        }
        let manifestData = try read(entries[manifestPath]!)
        let manifest = try BundleManifest.decode(manifestData, source: "\(source) (\(manifestPath))")
        guard manifestPath == "\(manifest.folder)/manifest.json" else {
            throw BundleError(.invalid, source, "the manifest lies at \(manifestPath) but names bundle \(manifest.id) of \(manifest.dataset.name)")
        }
        let signaturePath = "\(manifest.folder)/signature.json"
        var signature: BundleSignature?
        if let entry = entries[signaturePath] {
            do { signature = try JSONDecoder().decode(BundleSignature.self, from: try read(entry)) } catch let error as BundleError {
                throw error
            } catch {
                throw BundleError(.signatureInvalid, source, "signature.json is not readable (\(error))")
            }
        }
        // Every entry listed, every listed file present.
        let listed = Set(manifest.files.map(\.path))
        for path in entries.keys.sorted() where !listed.contains(path) && path != manifestPath && path != signaturePath {
            throw BundleError(.tampered, source, "\(path) is in the zip but not in the manifest")
        }
        for file in manifest.files where entries[file.path] == nil {
            throw BundleError(.tampered, source, "\(file.path) is listed in the manifest but missing from the zip")
        }
        self.archive = archive
        self.manifest = manifest
        self.manifestData = manifestData
        self.signature = signature
        self.entries = entries
    }

    /// SHA-256 of the manifest bytes: the bundle's hash.
    public var sha256: String { SHA256.hash(Array(manifestData)).hex }

    /// Checks the signature: with a public key the bundle must be signed by it; without one, an existing signature
    /// is reported but cannot be checked.
    public func checkSignature(_ key: VerifyingKey?) throws {
        guard let key else { return }
        guard let signature else { throw BundleError(.unsigned, url.path, "a public key was given but the bundle is not signed") }
        try signature.check(manifestData, with: key, source: url.path)
        guard signature.manifestSHA256 == sha256 else {
            throw BundleError(.signatureInvalid, url.path, "signature.json names manifest \(signature.manifestSHA256.prefix(16)), this one is \(sha256.prefix(16))")
        }
    }

    /// Streams every listed file through SHA-256 (and, with `into`, to disk below that folder), stopping at the
    /// listed size. Throws `BUNDLE_TAMPERED` for the first file whose bytes differ.
    public func verify(extractingInto folder: URL? = nil, progress: (String) -> Void = { _ in }) throws {
        let fm = FileManager.default
        for file in manifest.files {
            progress(file.path)
            let entry = entries[file.path]!
            var hash = SHA256()
            var written: Int64 = 0
            var handle: FileHandle?
            if let folder {
                let target = folder.appendingPathComponent(file.path)
                try fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
                guard fm.createFile(atPath: target.path, contents: nil) else {
                    throw BundleError(.conflict, target.path, "cannot create the file")
                }
                handle = try FileHandle(forWritingTo: target)
            }
            defer { try? handle?.close() }
            do {
                _ = try archive.extract(entry, bufferSize: 1 << 20, skipCRC32: true) { chunk in
                    written += Int64(chunk.count)
                    guard written <= file.bytes else {
                        throw BundleError(.tampered, url.path, "\(file.path) holds more than the \(file.bytes) bytes the manifest lists")
                    }
                    chunk.withUnsafeBytes { hash.update(buffer: $0) }
                    try handle?.write(contentsOf: chunk)
                }
            } catch let error as BundleError {
                throw error
            } catch {
                throw BundleError(.tampered, url.path, "\(file.path) cannot be read from the zip (\(error))")
            }
            guard written == file.bytes else {
                throw BundleError(.tampered, url.path, "\(file.path) holds \(written) bytes, the manifest lists \(file.bytes)")
            }
            guard hash.finalize().hex == file.sha256 else {
                throw BundleError(.tampered, url.path, "\(file.path) differs from the manifest (SHA-256 mismatch)")
            }
        }
    }

    /// Installs into a models folder laid out as `nnUNet_results`: everything is extracted into a staging folder
    /// inside it and checked (hashes, sizes, signature when a key is given) before any file is moved into place;
    /// a file already there must be identical (or `replace`). The manifest moves last, so a listed bundle is a
    /// complete one. Installing the same bundle again changes nothing.
    @discardableResult
    public func install(into models: URL, publicKey: VerifyingKey? = nil, replace: Bool = false,
                        progress: (String) -> Void = { _ in }) throws -> InstalledBundle {
        try checkSignature(publicKey)
        let fm = FileManager.default
        try fm.createDirectory(at: models, withIntermediateDirectories: true)
        let store = ModelStore(folder: models)
        if let existing = try store.bundles().first(where: { $0.manifest.id == manifest.id }) {
            if existing.sha256 == sha256 {
                try existing.verify()
                return existing
            }
            guard replace else {
                throw BundleError(.conflict, existing.manifestURL.path,
                                  "bundle \(manifest.id) is installed with hash \(existing.sha256.prefix(16)), this one is \(sha256.prefix(16)) (--replace to install over it)")
            }
        }
        let staging = models.appendingPathComponent(".nnseg-staging-\(UUID().uuidString)")
        try fm.createDirectory(at: staging, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: staging) }
        try verify(extractingInto: staging, progress: progress)
        // Conflicts first, then moves: a refusal leaves the models folder as it was.
        for file in manifest.files {
            let target = models.appendingPathComponent(file.path)
            guard fm.fileExists(atPath: target.path) else { continue }
            if !replace, try SHA256.hash(contentsOf: target).hex != file.sha256 {
                throw BundleError(.conflict, target.path, "a different file is already there (another bundle's or edited; --replace to overwrite)")
            }
        }
        for file in manifest.files {
            let target = models.appendingPathComponent(file.path)
            try fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
            if fm.fileExists(atPath: target.path) { try fm.removeItem(at: target) }
            try fm.moveItem(at: staging.appendingPathComponent(file.path), to: target)
        }
        let record = models.appendingPathComponent(manifest.folder)
        try fm.createDirectory(at: record, withIntermediateDirectories: true)
        for name in ["signature.json", "manifest.json"] { try? fm.removeItem(at: record.appendingPathComponent(name)) }
        if let signature { try signature.encoded().write(to: record.appendingPathComponent("signature.json"), options: .atomic) }
        try manifestData.write(to: record.appendingPathComponent("manifest.json"), options: .atomic)
        return try InstalledBundle(models: models, manifestURL: record.appendingPathComponent("manifest.json"))
    }
}
