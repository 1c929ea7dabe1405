import Digest
import Foundation

/// A models folder (`nnUNet_results` layout) and the bundles installed in it, found through their manifests at
/// `<dataset>/nnseg_bundles/<id>/manifest.json`.
///
/// ```swift
/// let bundle = try ModelStore(folder: models).bundle(id: "hippo-v1", sha256: pinned)
/// let folder = try bundle.modelFolder(configuration: nil)
/// ```
public struct ModelStore {
    public let folder: URL

    public init(folder: URL) { self.folder = folder }

    /// Every installed bundle, by ID.
    public func bundles() throws -> [InstalledBundle] {
        let fm = FileManager.default
        var found: [InstalledBundle] = []
        let datasets = ((try? fm.contentsOfDirectory(atPath: folder.path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
        for dataset in datasets {
            let index = folder.appendingPathComponent(dataset).appendingPathComponent("nnseg_bundles")
            for id in ((try? fm.contentsOfDirectory(atPath: index.path)) ?? []).sorted() {
                let manifest = index.appendingPathComponent(id).appendingPathComponent("manifest.json")
                guard fm.fileExists(atPath: manifest.path) else { continue }
                found.append(try InstalledBundle(models: folder, manifestURL: manifest))
            }
        }
        return found.sorted { $0.manifest.id < $1.manifest.id }
    }

    /// The installed bundle of that ID; with `sha256` (full hex or a prefix of at least 16 digits) it must be that one.
    public func bundle(id: String, sha256: String? = nil) throws -> InstalledBundle {
        let all = try bundles()
        guard let bundle = all.first(where: { $0.manifest.id == id }) else {
            throw BundleError(.notFound, folder.path, "no bundle \(id) installed (installed: \(all.map(\.manifest.id).joined(separator: ", ")))")
        }
        if let sha256 {
            let pinned = sha256.lowercased()
            guard pinned.count >= 16, bundle.sha256.hasPrefix(pinned) else {
                throw BundleError(.notFound, bundle.manifestURL.path,
                                  "bundle \(id) is installed with hash \(bundle.sha256.prefix(16)), not \(pinned.prefix(16))"
                                  + (pinned.count < 16 ? " (give at least 16 hex digits)" : ""))
            }
        }
        return bundle
    }
}

/// One installed bundle: its manifest (and signature), checked against the files in the models folder.
public struct InstalledBundle: Sendable {
    public let models: URL
    public let manifestURL: URL
    public let manifest: BundleManifest
    public let manifestData: Data
    public let signature: BundleSignature?

    public init(models: URL, manifestURL: URL) throws {
        self.models = models
        self.manifestURL = manifestURL
        do { manifestData = try Data(contentsOf: manifestURL) } catch {
            throw BundleError(.invalid, manifestURL.path, "cannot read the manifest (\(error))")
        }
        manifest = try BundleManifest.decode(manifestData, source: manifestURL.path)
        let expected = models.appendingPathComponent(manifest.folder).appendingPathComponent("manifest.json")
        guard expected.standardizedFileURL.path == manifestURL.standardizedFileURL.path else {
            throw BundleError(.invalid, manifestURL.path, "the manifest names bundle \(manifest.id) of \(manifest.dataset.name); it belongs at \(expected.path)")
        }
        let signatureURL = manifestURL.deletingLastPathComponent().appendingPathComponent("signature.json")
        if let data = try? Data(contentsOf: signatureURL) {
            do { signature = try JSONDecoder().decode(BundleSignature.self, from: data) } catch {
                throw BundleError(.signatureInvalid, signatureURL.path, "not readable (\(error))")
            }
        } else {
            signature = nil
        }
    }

    /// SHA-256 of the manifest bytes: the bundle's hash.
    public var sha256: String { SHA256.hash(Array(manifestData)).hex }

    /// Re-hashes every file the manifest lists (and checks the signature with `publicKey`); throws on the first
    /// difference, naming the file.
    public func verify(publicKey: VerifyingKey? = nil, progress: (String) -> Void = { _ in }) throws {
        if let publicKey {
            guard let signature else { throw BundleError(.unsigned, manifestURL.path, "a public key was given but the bundle is not signed") }
            try signature.check(manifestData, with: publicKey, source: manifestURL.path)
        }
        let fm = FileManager.default
        for file in manifest.files {
            progress(file.path)
            let url = models.appendingPathComponent(file.path)
            guard fm.fileExists(atPath: url.path) else { throw BundleError(.tampered, url.path, "missing (bundle \(manifest.id))") }
            let size = (try? fm.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.int64Value
            guard size == file.bytes else {
                throw BundleError(.tampered, url.path, "\(size.map(String.init) ?? "?") bytes, the manifest of \(manifest.id) lists \(file.bytes)")
            }
            guard try SHA256.hash(contentsOf: url).hex == file.sha256 else {
                throw BundleError(.tampered, url.path, "differs from the manifest of \(manifest.id) (SHA-256 mismatch)")
            }
        }
    }

    /// The model folder for a configuration (nil: the bundle's only one).
    public func modelFolder(configuration: String?) throws -> URL {
        let candidates = manifest.models.filter { configuration == nil || $0.configuration == configuration }
        guard candidates.count == 1 else {
            throw BundleError(.notFound, manifestURL.path, candidates.isEmpty
                              ? "bundle \(manifest.id) has no configuration \(configuration ?? "") (it has \(manifest.models.map(\.configuration).joined(separator: ", ")))"
                              : "bundle \(manifest.id) has several configurations (\(manifest.models.map(\.configuration).joined(separator: ", "))); name one")
        }
        return models.appendingPathComponent(candidates[0].folder)
    }
}
