import Crypto
import Foundation

/// A failure reading or making a key file (names the file; never prints key material).
public struct KeyFileError: Error, CustomStringConvertible, Equatable {
    public enum Code: String, Sendable {
        /// No key file where the configuration or environment says one is.
        case missing = "KEY_MISSING"
        /// The file is not a key of the expected kind.
        case invalid = "KEY_INVALID"
        /// Anyone but the owner may read a secret key file.
        case permissions = "KEY_PERMISSIONS"
        /// `keys init` would overwrite an existing key.
        case exists = "KEY_EXISTS"
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

/// The key files nnseg reads and writes: one line of text, `<kind> <base64 of the raw key>`, so a person can tell
/// them apart and any library can read them (`Ops/verify_audit.py` reads the public one with `cryptography`).
/// Secret keys are written 0600 and refused when group or others may read them.
enum KeyFile {
    static func read(_ path: String, kind: String, secret: Bool, bytes: Int) throws -> [UInt8] {
        guard FileManager.default.fileExists(atPath: path) else { throw KeyFileError(.missing, path, "no such file") }
        if secret, let attributes = try? FileManager.default.attributesOfItem(atPath: path),
           let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue, mode & 0o077 != 0 {
            throw KeyFileError(.permissions, path, String(format: "a secret key must be readable by its owner only (mode %o; chmod 600)", mode))
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw KeyFileError(.invalid, path, "not a text key file") }
        let parts = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ")
        guard parts.count == 2, parts[0] == kind, let raw = Data(base64Encoded: String(parts[1])), raw.count == bytes else {
            throw KeyFileError(.invalid, path, "expected one line '\(kind) <base64 of \(bytes) bytes>'")
        }
        return Array(raw)
    }

    static func write(_ raw: [UInt8], kind: String, to path: String, secret: Bool) throws {
        guard !FileManager.default.fileExists(atPath: path) else {
            throw KeyFileError(.exists, path, "a key is already there (keys are never overwritten; move it away first)")
        }
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        // Created with its final mode: a secret key is never readable by others, not even for a moment.
        guard FileManager.default.createFile(atPath: path, contents: Data("\(kind) \(Data(raw).base64EncodedString())\n".utf8),
                                             attributes: [.posixPermissions: secret ? 0o600 : 0o644]) else {
            throw KeyFileError(.invalid, path, "cannot be written")
        }
    }

    /// A short public name of a key: the first 16 hex digits of SHA-256 over a label and the key's public part.
    static func identifier(_ label: String, _ bytes: [UInt8]) -> String {
        String(Hex.encode(Crypto.SHA256.hash(data: Array(label.utf8) + bytes)).prefix(16))
    }
}

/// The site's secret key for pseudonyms: HMAC-SHA256(key, identifier). Kept outside the audit database, so a
/// pseudonym cannot be recomputed (or a medical record number tested) from the database alone.
public struct PseudonymKey: Sendable {
    static let kind = "nnseg-pseudonym-hmac-sha256"
    private let key: SymmetricKey
    /// The key's public name, recorded beside every pseudonym (which key made it), revealing nothing of it.
    public let id: String

    public init(raw: [UInt8]) {
        key = SymmetricKey(data: raw)
        id = KeyFile.identifier("nnseg pseudonym key id|", Array(Crypto.SHA256.hash(data: raw)))
    }

    public init(contentsOf path: String) throws {
        self.init(raw: try KeyFile.read(path, kind: Self.kind, secret: true, bytes: 32))
    }

    /// Writes a new random 256-bit key to `path` (0600); refuses to overwrite.
    @discardableResult
    public static func create(at path: String) throws -> PseudonymKey {
        let raw = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        try KeyFile.write(raw, kind: kind, to: path, secret: true)
        return PseudonymKey(raw: raw)
    }

    /// The pseudonym of an identifier: lower-case hex of HMAC-SHA256.
    public func pseudonym(_ identifier: String) -> String {
        Hex.encode(HMAC<Crypto.SHA256>.authenticationCode(for: Array(identifier.utf8), using: key))
    }
}

/// An Ed25519 signing key (the audit log's seals and receipts). The private key stays outside the database.
public struct SigningKey: Sendable {
    static let kind = "nnseg-ed25519-private"
    private let key: Curve25519.Signing.PrivateKey
    public var publicKey: VerifyingKey { VerifyingKey(key.publicKey) }
    public var id: String { publicKey.id }

    public init(contentsOf path: String) throws {
        let raw = try KeyFile.read(path, kind: Self.kind, secret: true, bytes: 32)
        do { key = try Curve25519.Signing.PrivateKey(rawRepresentation: raw) } catch {
            throw KeyFileError(.invalid, path, "not an Ed25519 private key")
        }
    }

    init(_ key: Curve25519.Signing.PrivateKey) { self.key = key }

    /// Writes a new key pair: the private key to `path` (0600) and the public key to `publicPath` (0644).
    @discardableResult
    public static func create(at path: String, publicKeyAt publicPath: String) throws -> SigningKey {
        let key = Curve25519.Signing.PrivateKey()
        guard !FileManager.default.fileExists(atPath: publicPath) else {
            throw KeyFileError(.exists, publicPath, "a key is already there (keys are never overwritten; move it away first)")
        }
        try KeyFile.write(Array(key.rawRepresentation), kind: kind, to: path, secret: true)
        try KeyFile.write(Array(key.publicKey.rawRepresentation), kind: VerifyingKey.kind, to: publicPath, secret: false)
        return SigningKey(key)
    }

    /// The Ed25519 signature of `message`, as lower-case hex (64 bytes).
    public func sign(_ message: String) throws -> String {
        Hex.encode(try key.signature(for: Array(message.utf8)))
    }
}

/// The public half of a ``SigningKey``: what an auditor holds to check seals and receipts.
public struct VerifyingKey: Sendable {
    static let kind = "nnseg-ed25519-public"
    private let key: Curve25519.Signing.PublicKey
    /// The key's name: the first 16 hex digits of SHA-256 over a label and the raw public key.
    public let id: String

    init(_ key: Curve25519.Signing.PublicKey) {
        self.key = key
        id = KeyFile.identifier("nnseg signing key id|", Array(key.rawRepresentation))
    }

    public init(contentsOf path: String) throws {
        let raw = try KeyFile.read(path, kind: Self.kind, secret: false, bytes: 32)
        do { self.init(try Curve25519.Signing.PublicKey(rawRepresentation: raw)) } catch {
            throw KeyFileError(.invalid, path, "not an Ed25519 public key")
        }
    }

    public func isValid(signature hex: String, for message: String) -> Bool {
        guard let signature = Hex.decode(hex), signature.count == 64 else { return false }
        return key.isValidSignature(signature, for: Array(message.utf8))
    }
}
