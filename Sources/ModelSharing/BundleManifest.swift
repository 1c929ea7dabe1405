import Digest
import Foundation

/// A problem with a model bundle, its source folders or the models folder it goes into: a stable code, the file
/// and what is wrong.
public struct BundleError: Error, CustomStringConvertible, Equatable {
    public enum Code: String, Sendable, CaseIterable {
        /// A source model folder cannot be exported (no plans.json, no checkpoint for a fold, …).
        case modelInvalid = "BUNDLE_SOURCE_INVALID"
        /// The zip is not a bundle: no or unreadable manifest, an unsafe entry path, a link, a duplicate entry.
        case invalid = "BUNDLE_INVALID"
        /// A file differs from the manifest, is missing, or is there without being listed.
        case tampered = "BUNDLE_TAMPERED"
        /// The signature does not check out with the given public key (or names another key).
        case signatureInvalid = "BUNDLE_SIGNATURE_INVALID"
        /// A public key was given but the bundle carries no signature.
        case unsigned = "BUNDLE_UNSIGNED"
        /// Installing would replace a different file, or another bundle of the same ID.
        case conflict = "BUNDLE_CONFLICT"
        /// No installed bundle of that ID (or none with that hash).
        case notFound = "BUNDLE_NOT_FOUND"
    }
    public let code: Code
    public let path: String
    public let detail: String
    public init(_ code: Code, _ path: String, _ detail: String) {
        self.code = code
        self.path = path
        self.detail = detail
    }
    public var description: String { "\(code.rawValue): \(path): \(detail)" }
}

/// What a model bundle holds and where it came from: every file with its SHA-256 and size, the dataset (labels,
/// channels), each model's configuration, trainer, folds and training provenance. Written as
/// `<Dataset>/nnseg_bundles/<id>/manifest.json` inside the zip, so that nnU-Net's installer (which unzips into
/// `nnUNet_results`) leaves it beside the models, and nnseg finds it there after `nnseg model install`.
///
/// The bundle's hash is the SHA-256 of the manifest's bytes: the manifest lists every file's hash, so the one hash
/// pins the whole bundle (profiles name a bundle by ID and this hash). The optional signature (`signature.json`
/// beside it) is Ed25519 over the same bytes.
public struct BundleManifest: Codable, Equatable, Sendable {
    public static let currentFormat = "nnseg-model-bundle/1"

    public struct File: Codable, Equatable, Sendable {
        /// Path inside the bundle (and below the models folder once installed), `/`-separated.
        public var path: String
        public var sha256: String
        public var bytes: Int64
    }

    public struct Dataset: Codable, Equatable, Sendable {
        public var name: String
        /// Label name → value(s) (one value, or a region's values), as in dataset.json.
        public var labels: [String: [Int]]
        public var channels: [String]
        public var numTraining: Int?
        public var fileEnding: String
        enum CodingKeys: String, CodingKey { case name, labels, channels, numTraining = "num_training", fileEnding = "file_ending" }
    }

    public struct Fold: Codable, Equatable, Sendable {
        /// "0"…"4" or "all".
        public var name: String
        public var checkpoint: String
        /// Epochs trained (the checkpoint's `current_epoch`), when it records them.
        public var epochs: Int?
        /// Mean validation Dice per label name and over the foreground, from `validation/summary.json`.
        public var validationDice: [String: Double]?
        public var validationForegroundDice: Double?
        /// The first line of nnseg's training log (configuration, cases, batch, patch, epochs, seed, precision).
        public var training: String?
        enum CodingKeys: String, CodingKey {
            case name, checkpoint, epochs, training
            case validationDice = "validation_dice", validationForegroundDice = "validation_foreground_dice"
        }
    }

    public struct Model: Codable, Equatable, Sendable {
        /// The model folder inside the bundle: `<Dataset>/<trainer>__<plans>__<configuration>`.
        public var folder: String
        public var configuration: String
        public var trainer: String
        public var plans: String
        public var patchSize: [Int]
        public var spacing: [Double]
        public var folds: [Fold]
        enum CodingKeys: String, CodingKey { case folder, configuration, trainer, plans, folds, patchSize = "patch_size", spacing }
    }

    public var format: String
    public var id: String
    /// UTC, ISO 8601.
    public var created: String
    public var nnsegVersion: String
    public var description: String?
    public var dataset: Dataset
    public var models: [Model]
    public var files: [File]

    enum CodingKeys: String, CodingKey {
        case format, id, created, description, dataset, models, files
        case nnsegVersion = "nnseg_version"
    }

    /// The manifest's bytes as written into a bundle (sorted keys, so the same content gives the same hash).
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self) + Data("\n".utf8)
    }

    /// Reads and checks a manifest's bytes: the format, a usable ID, and file paths that stay inside the bundle.
    public static func decode(_ data: Data, source: String) throws -> BundleManifest {
        let manifest: BundleManifest
        do { manifest = try JSONDecoder().decode(BundleManifest.self, from: data) } catch {
            throw BundleError(.invalid, source, "manifest.json is not a bundle manifest (\(error))")
        }
        guard manifest.format == currentFormat else {
            throw BundleError(.invalid, source, "manifest format \(manifest.format) (this nnseg reads \(currentFormat))")
        }
        try checkIdentifier(manifest.id, source: source)
        var seen = Set<String>()
        for file in manifest.files {
            try checkPath(file.path, source: source)
            guard seen.insert(file.path).inserted else { throw BundleError(.invalid, source, "\(file.path) is listed twice") }
            guard file.bytes >= 0, file.sha256.count == 64, file.sha256.allSatisfy(\.isHexDigit) else {
                throw BundleError(.invalid, source, "\(file.path): size or SHA-256 is not valid")
            }
        }
        return manifest
    }

    /// Where the manifest and signature of bundle `id` of dataset `dataset` lie, inside the zip and once installed.
    public static func folder(dataset: String, id: String) -> String { "\(dataset)/nnseg_bundles/\(id)" }
    public var folder: String { Self.folder(dataset: dataset.name, id: id) }

    /// Bundle IDs are file names: letters, digits, `.`, `_`, `-`, at most 100, not starting with a dot.
    public static func checkIdentifier(_ id: String, source: String) throws {
        let allowed = id.unicodeScalars.allSatisfy { ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || "._-".unicodeScalars.contains($0) }
        guard !id.isEmpty, id.count <= 100, allowed, !id.hasPrefix(".") else {
            throw BundleError(.invalid, source, "bundle ID \"\(id)\" must be 1–100 letters, digits, '.', '_' or '-', not starting with '.'")
        }
    }

    /// A path inside a bundle: relative, `/`-separated, no empty, `.` or `..` part, no backslash or NUL.
    public static func checkPath(_ path: String, source: String) throws {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard !path.isEmpty, !path.hasPrefix("/"), !path.contains("\\"), !path.contains("\0"), path.utf8.count <= 1024,
              parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else {
            throw BundleError(.invalid, source, "entry path \"\(path)\" would leave the models folder or is not a plain relative path")
        }
    }
}

/// The Ed25519 signature of a manifest (`signature.json` beside it).
public struct BundleSignature: Codable, Equatable, Sendable {
    public var algorithm: String
    /// The signing key's public name (`nnseg keys init`), so a verifier can tell which key it needs.
    public var keyID: String
    /// SHA-256 of the manifest bytes that were signed (the bundle's hash), for people reading the file.
    public var manifestSHA256: String
    /// Hex, 64 bytes.
    public var signature: String
    enum CodingKeys: String, CodingKey { case algorithm, signature, keyID = "key_id", manifestSHA256 = "manifest_sha256" }

    public static func sign(_ manifest: Data, with key: SigningKey) throws -> BundleSignature {
        BundleSignature(algorithm: "Ed25519", keyID: key.id, manifestSHA256: SHA256.hash(Array(manifest)).hex,
                        signature: try key.sign(String(decoding: manifest, as: UTF8.self)))
    }

    /// Throws `BUNDLE_SIGNATURE_INVALID` unless this is `key`'s valid signature of exactly these manifest bytes.
    public func check(_ manifest: Data, with key: VerifyingKey, source: String) throws {
        guard algorithm == "Ed25519" else { throw BundleError(.signatureInvalid, source, "signature algorithm \(algorithm) (expected Ed25519)") }
        guard keyID == key.id else {
            throw BundleError(.signatureInvalid, source, "signed with key \(keyID), not with the given public key \(key.id)")
        }
        guard key.isValid(signature: signature, for: String(decoding: manifest, as: UTF8.self)) else {
            throw BundleError(.signatureInvalid, source, "the signature of key \(keyID) does not match the manifest (manifest or signature changed)")
        }
    }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self) + Data("\n".utf8)
    }
}
