import Crypto
import Foundation

/// SHA-256 for content hashes (pixel data, model files, outputs, the audit chain): swift-crypto's
/// (BoringSSL underneath on Linux), with the project's conveniences — streaming over files, lower-case hex.
///
/// ```swift
/// var hash = SHA256()
/// hash.update(bytes)
/// let hex = hash.finalize().hex
/// ```
public struct SHA256: Sendable {
    private var state = Crypto.SHA256()

    public init() {}

    /// Feeds bytes from contiguous memory.
    public mutating func update(buffer: UnsafeRawBufferPointer) {
        state.update(bufferPointer: buffer)
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { state.update(bufferPointer: $0) }
    }

    public func finalize() -> Digest256 {
        Digest256(bytes: Array(state.finalize()))
    }

    /// The hash of a file's bytes, read in 1 MiB chunks.
    public static func hash(contentsOf url: URL) throws -> Digest256 {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        var hash = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            chunk.withUnsafeBytes { hash.update(buffer: $0) }
        }
        return hash.finalize()
    }

    public static func hash(_ bytes: [UInt8]) -> Digest256 {
        Digest256(bytes: Array(Crypto.SHA256.hash(data: bytes)))
    }
}

/// A 32-byte digest.
public struct Digest256: Equatable, Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]
    public init(bytes: [UInt8]) { self.bytes = bytes }
    public var hex: String { Hex.encode(bytes) }
    public var description: String { hex }
}

/// Lower-case hexadecimal text of bytes, and back.
public enum Hex {
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// nil unless `text` is an even number of hexadecimal digits.
    public static func decode(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: c - 48
            case 97...102: c - 87
            case 65...70: c - 55
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count / 2)
        for i in stride(from: 0, to: utf8.count, by: 2) {
            guard let high = nibble(utf8[i]), let low = nibble(utf8[i + 1]) else { return nil }
            out.append(high << 4 | low)
        }
        return out
    }
}
