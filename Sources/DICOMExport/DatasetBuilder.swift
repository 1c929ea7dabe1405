import CDCMTK
import Foundation

/// A failure to write a DICOM object; names the output and what is wrong. Nothing partial is left.
public struct DICOMExportError: Error, CustomStringConvertible, Equatable {
    public enum Code: String, Sendable, CaseIterable {
        case gridMismatch = "LABELS_GRID_MISMATCH"
        case missingFrameOfReference = "NO_FRAME_OF_REFERENCE"
        case missingUIDs = "SOURCE_UIDS_MISSING"
        case invalidDescription = "INVALID_SEGMENT_DESCRIPTION"
        case writeFailed = "WRITE_FAILED"
        case contourTooLong = "CONTOUR_TOO_LONG"
        /// More contour points than the profile's budget allows, with `strict: true`.
        case pointBudgetExceeded = "POINT_BUDGET_EXCEEDED"
    }

    public let code: Code
    public let subject: String
    public let detail: String

    public init(_ code: Code, _ subject: String, _ detail: String) {
        self.code = code
        self.subject = subject
        self.detail = detail
    }

    public var description: String { "\(code.rawValue): \(subject): \(detail)" }
}

/// Builds a dataset attribute by attribute through the DCMTK shim and writes it as a Part 10 file.
/// Paths: "gggg,eeee", nested "gggg,eeee[i]/gggg,eeee" (items created as needed).
final class DatasetBuilder {
    private let handle: OpaquePointer
    private var message = [CChar](repeating: 0, count: 512)

    init() { handle = nnseg_dcm_builder_create() }
    deinit { nnseg_dcm_builder_destroy(handle) }

    func put(_ path: String, _ value: String) throws {
        guard nnseg_dcm_builder_put(handle, path, value, &message, message.count) == 0 else {
            throw DICOMExportError(.writeFailed, path, String(cString: message))
        }
    }

    func put(_ path: String, _ values: [Double]) throws {
        try put(path, values.map(DecimalString.format).joined(separator: "\\"))
    }

    func sequence(_ path: String) throws {
        guard nnseg_dcm_builder_put_sequence(handle, path, &message, message.count) == 0 else {
            throw DICOMExportError(.writeFailed, path, String(cString: message))
        }
    }

    func pixelData(_ bytes: [UInt8], bitsAllocated: Int) throws {
        guard nnseg_dcm_builder_put_pixel_data(handle, bytes, bytes.count, Int32(bitsAllocated), &message, message.count) == 0 else {
            throw DICOMExportError(.writeFailed, "Pixel Data", String(cString: message))
        }
    }

    /// Copies top-level attributes from an open source file (those it has).
    func copy(from file: OpaquePointer, tags: [String]) {
        var cStrings = tags.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        _ = cStrings.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buffer.count) {
                nnseg_dcm_builder_copy(handle, file, $0, buffer.count)
            }
        }
    }

    /// Writes atomically (temporary name, then rename).
    func save(to url: URL, implicitVR: Bool) throws {
        guard nnseg_dcm_builder_save(handle, url.path, implicitVR ? "implicit" : "explicit", &message, message.count) == 0 else {
            throw DICOMExportError(.writeFailed, url.path, String(cString: message))
        }
    }
}

/// Decimal String formatting that always fits DICOM's 16-byte limit (R-RT-07).
enum DecimalString {
    /// The shortest text of `value` with at most 6 decimals that fits a DS value (≤ 16 bytes). Values below 10⁸ in
    /// magnitude (every patient coordinate) are written digit by digit — `String(format:)` cost microseconds each,
    /// which on an RTSTRUCT of 10⁶ points was most of its writing time; others as before.
    static func format(_ value: Double) -> String {
        let magnitude = abs(value)
        guard value.isFinite, magnitude < 1e8 else { return formatted(value) }
        let units = Int64((magnitude * 1_000_000).rounded())
        if units == 0 { return "0" }
        var integer = units / 1_000_000, fraction = units % 1_000_000
        var decimals = 6
        while decimals > 0 && fraction % 10 == 0 {
            fraction /= 10
            decimals -= 1
        }
        return String(unsafeUninitializedCapacity: 17) { buffer in
            var digits: [UInt8] = []
            digits.reserveCapacity(16)
            for _ in 0..<decimals {
                digits.append(UInt8(48 + fraction % 10))
                fraction /= 10
            }
            if decimals > 0 { digits.append(46) }  // "."
            repeat {
                digits.append(UInt8(48 + integer % 10))
                integer /= 10
            } while integer > 0
            if value < 0 { digits.append(45) }  // "-"
            for (i, d) in digits.reversed().enumerated() { buffer[i] = d }
            return digits.count
        }
    }

    static func formatted(_ value: Double) -> String {
        for precision in stride(from: 6, through: 0, by: -1) {
            var s = String(format: "%.\(precision)f", value)
            if s.contains(".") {
                while s.hasSuffix("0") { s.removeLast() }
                if s.hasSuffix(".") { s.removeLast() }
            }
            if s == "-0" { s = "0" }
            if s.utf8.count <= 16 { return s }
        }
        return String(format: "%.6g", value)
    }
}

/// The header of a series' first source file, opened once and shared by every output written for the
/// series (SEG and RTSTRUCT copy patient/study attributes from it and probe Type 2 attributes).
final class SourceHeader: @unchecked Sendable {
    let path: String
    private let lock = NSLock()
    private var handle: OpaquePointer?
    private var failure: String?

    init(path: String) { self.path = path }

    deinit { if let handle { nnseg_dcm_close(handle) } }

    /// The open file (opened on first use).
    func file() throws -> OpaquePointer {
        lock.lock()
        defer { lock.unlock() }
        if let handle { return handle }
        if let failure { throw DICOMExportError(.writeFailed, path, "cannot reopen the source: \(failure)") }
        var file: OpaquePointer?
        var message = [CChar](repeating: 0, count: 256)
        guard nnseg_dcm_open(path, &file, &message, message.count) == NNSEG_DCM_OK, let file else {
            failure = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw DICOMExportError(.writeFailed, path, "cannot reopen the source: \(failure ?? "")")
        }
        handle = file
        return file
    }

    /// The value of a top-level attribute, trimmed; nil when absent.
    func string(_ tag: String) throws -> String? {
        let file = try file()
        lock.lock()
        defer { lock.unlock() }
        var buffer = [CChar](repeating: 0, count: 1024)
        guard nnseg_dcm_get_string(file, tag, &buffer, buffer.count) >= 0 else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).trimmingCharacters(in: .whitespaces)
    }

    func has(_ tag: String) throws -> Bool {
        let file = try file()
        lock.lock()
        defer { lock.unlock() }
        return nnseg_dcm_has(file, tag) != 0
    }

    /// Copies the attributes of `tags` that the source has into `builder`.
    func copy(into builder: DatasetBuilder, tags: [String]) throws {
        let file = try file()
        lock.lock()
        defer { lock.unlock() }
        builder.copy(from: file, tags: tags)
    }
}
