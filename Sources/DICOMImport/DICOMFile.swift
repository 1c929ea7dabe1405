import CDCMTK
import Foundation

/// One parsed DICOM file. Attribute values stay in DCMTK; pixel data is decoded on request.
///
/// Not thread-safe: use one `DICOMFile` per thread (different files may be read in parallel).
public final class DICOMFile {
    public let path: String
    private let handle: OpaquePointer

    /// Parses the file's header (large values such as Pixel Data are read later, on demand).
    public init(path: String) throws {
        self.path = path
        var file: OpaquePointer?
        var message = [CChar](repeating: 0, count: 512)
        let status = nnseg_dcm_open(path, &file, &message, message.count)
        guard status == NNSEG_DCM_OK, let file else {
            throw DICOMImportError(status.code, path, String(cString: message))
        }
        handle = file
    }

    deinit { nnseg_dcm_close(handle) }

    /// True when the file had a Part 10 preamble and meta header (false: raw dataset).
    public var hasMetaHeader: Bool { nnseg_dcm_has_meta_header(handle) != 0 }

    public var transferSyntaxUID: String {
        var buffer = [CChar](repeating: 0, count: 80)
        _ = nnseg_dcm_transfer_syntax_uid(handle, &buffer, buffer.count)
        return String(cString: buffer)
    }

    /// The value at an attribute path (see nnseg_dcmtk.h), trimmed; nil when absent.
    public func string(atPath path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 256)
        var n = nnseg_dcm_get_string(handle, path, &buffer, buffer.count)
        if n < 0 { return nil }
        if n >= buffer.count {
            buffer = [CChar](repeating: 0, count: n + 1)
            n = nnseg_dcm_get_string(handle, path, &buffer, buffer.count)
        }
        return String(cString: buffer).dicomTrimmed()
    }

    public func string(_ tag: DICOMTag) -> String? { string(atPath: tag.path) }

    /// All values of a multi-valued attribute as numbers; nil when absent or not numeric.
    /// Parsed in place with `strtod` (an RTSTRUCT holds millions of values: no substring per value).
    public func doubles(atPath path: String) -> [Double]? {
        guard let s = string(atPath: path), !s.isEmpty else { return nil }
        return s.withCString { start -> [Double]? in
            var values: [Double] = []
            var p = start
            while true {
                var end: UnsafeMutablePointer<CChar>?
                let value = strtod(p, &end)
                guard let end, UnsafePointer(end) != p else { return nil }  // not a number
                var q = UnsafePointer(end)
                while q.pointee == 0x20 { q += 1 }                          // padding after a value
                values.append(value)
                if q.pointee == 0 { return values }
                guard q.pointee == 0x5C else { return nil }                 // "\\" between values
                p = q + 1
            }
        }
    }

    public func doubles(_ tag: DICOMTag) -> [Double]? { doubles(atPath: tag.path) }
    public func double(_ tag: DICOMTag) -> Double? { doubles(tag)?.first }
    public func int(_ tag: DICOMTag) -> Int? { double(tag).flatMap { $0.isFinite ? Int(exactly: $0.rounded()) : nil } }

    /// True when the attribute exists (its value is not loaded).
    public func has(_ tag: DICOMTag) -> Bool { nnseg_dcm_has(handle, tag.path) != 0 }

    /// Items in the sequence at `path`; nil when absent.
    public func itemCount(atPath path: String) -> Int? {
        let n = nnseg_dcm_item_count(handle, path)
        return n < 0 ? nil : n
    }

    /// Raw decoded Pixel Data of all frames (layout: nnseg_dcmtk.h), before masking and sign extension.
    public func decodedPixelBytes() throws -> [UInt8] {
        var bytes: UnsafeMutablePointer<UInt8>?
        var length = 0
        var message = [CChar](repeating: 0, count: 512)
        let status = nnseg_dcm_decode_pixels(handle, &bytes, &length, &message, message.count)
        guard status == NNSEG_DCM_OK, let bytes else {
            throw DICOMImportError(status.code, path, String(cString: message))
        }
        defer { nnseg_dcm_free(bytes) }
        return Array(UnsafeBufferPointer(start: bytes, count: length))
    }

    /// The header fields nnseg uses (identity, pixel format, per-frame geometry).
    public func header(limits: ReaderLimits = .standard) -> InstanceHeader { InstanceHeader(file: self, limits: limits) }

    /// Length of the stored Pixel Data value: nil when absent, -1 when encapsulated (compressed).
    public var pixelDataLength: Int? {
        let n = nnseg_dcm_pixel_data_length(handle)
        return n == -1 ? nil : (n < 0 ? -1 : n)
    }

    /// Refuses an attribute the header could not use (``InstanceHeader/problem``, `ATTRIBUTE_INVALID`), and
    /// (``DICOMImportError/Code/truncated``) an image whose content stops short of what its header
    /// declares: an image-storage SOP class without Pixel Data (the file ends before it), or native Pixel
    /// Data shorter than Rows × Columns × Frames × Samples × Bits Allocated. A file cut inside an element is
    /// refused when it is opened; this catches a cut that falls exactly between two elements.
    public func checkComplete(_ header: InstanceHeader) throws {
        if let problem = header.problem { throw problem }
        guard SOPClass.isImageStorage(header.sopClassUID) else { return }
        guard let length = pixelDataLength else {
            throw DICOMImportError(.truncated, path, "\(SOPClass.name(header.sopClassUID)) without Pixel Data (7FE0,0010): the file ends "
                                   + "before its pixels (\(fileSize.map { "\($0) bytes" } ?? "size unknown"))")
        }
        guard length >= 0 else { return }  // encapsulated: a cut fragment is refused on open or on decode
        let f = header.pixelFormat
        let (pixels, o1) = f.rows.multipliedReportingOverflow(by: f.columns)
        let (samples, o2) = pixels.multipliedReportingOverflow(by: max(f.frames, 1))
        let (perPixel, o3) = samples.multipliedReportingOverflow(by: max(f.samplesPerPixel, 1))
        let (bits, o4) = perPixel.multipliedReportingOverflow(by: f.bitsAllocated)
        let required = (o1 || o2 || o3 || o4) ? Int.max : (bits + 7) / 8
        if f.rows > 0, f.columns > 0, f.bitsAllocated > 0, length < required {
            throw DICOMImportError(.truncated, path, "Pixel Data holds \(length) bytes; Rows \(f.rows) × Columns \(f.columns) × Frames "
                                   + "\(f.frames) × Samples \(f.samplesPerPixel) × \(f.bitsAllocated) bits need \(required == Int.max ? "more than addressable" : String(required))")
        }
    }

    private var fileSize: Int? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue
    }

    /// Stored values of every frame, masked to BitsStored and sign-extended.
    public func decodePixels() throws -> DecodedPixels {
        try DecodedPixels(rawBytes: decodedPixelBytes(), format: header().pixelFormat, source: path)
    }

    /// The DCMTK version nnseg is linked against.
    public static var dcmtkVersion: String { String(cString: nnseg_dcm_dcmtk_version()) }
}

extension String {
    /// Without leading/trailing spaces and NULs (DICOM padding).
    func dicomTrimmed() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\0" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\0" { s.removeLast() }
        return String(s)
    }
}

extension nnseg_dcm_status {
    var code: DICOMImportError.Code {
        switch self {
        case NNSEG_DCM_NOT_DICOM: return .notDICOM
        case NNSEG_DCM_NO_PIXEL_DATA: return .noPixelData
        case NNSEG_DCM_UNSUPPORTED_TRANSFER_SYNTAX: return .unsupportedTransferSyntax
        case NNSEG_DCM_DECODE_FAILED: return .decodeFailed
        case NNSEG_DCM_TRUNCATED: return .truncated
        default: return .readFailed
        }
    }
}
