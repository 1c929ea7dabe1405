import CLibz
import Foundation

/// gzip (RFC 1952) through zlib, for `.nii.gz`.
enum Gzip {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// True when `data` starts with the gzip magic bytes.
    static func isCompressed(_ data: Data) -> Bool {
        data.count >= 2 && data[data.startIndex] == 0x1F && data[data.startIndex + 1] == 0x8B
    }

    /// The most a file may inflate to (4 GiB: a 512×512×2000 float32 CT is 2 GiB): a gzip bomb stops here.
    static let maximumInflatedBytes = 4 << 30

    /// Inflates every concatenated gzip member of `data`, refusing output beyond `limit` bytes.
    static func decompress(_ data: Data, limit: Int = maximumInflatedBytes) throws -> Data {
        var output = Data()
        var stream = z_stream()
        // 15 + 32: zlib or gzip header, detected automatically.
        guard inflateInit2_(&stream, 15 + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Failure(description: "zlib inflateInit failed")
        }
        defer { inflateEnd(&stream) }
        let chunk = 1 << 20
        var buffer = [UInt8](repeating: 0, count: chunk)
        try data.withUnsafeBytes { (input: UnsafeRawBufferPointer) in
            guard let base = input.bindMemory(to: Bytef.self).baseAddress else { return }
            stream.next_in = UnsafeMutablePointer(mutating: base)
            stream.avail_in = uInt(input.count)
            while true {
                let status: Int32 = buffer.withUnsafeMutableBufferPointer { out in
                    stream.next_out = out.baseAddress
                    stream.avail_out = uInt(chunk)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                output.append(contentsOf: buffer[0..<(chunk - Int(stream.avail_out))])
                guard output.count <= limit else {
                    throw Failure(description: "gzip data inflates beyond the limit of \(limit >> 20) MiB")
                }
                if status == Z_STREAM_END {
                    // Another member may follow (concatenated gzip); skip trailing zero padding.
                    guard stream.avail_in > 0, stream.next_in.pointee == 0x1F else { return }
                    guard inflateReset(&stream) == Z_OK else { throw Failure(description: "zlib reset failed") }
                    continue
                }
                if status == Z_BUF_ERROR && stream.avail_in == 0 {
                    throw Failure(description: "gzip stream is truncated")
                }
                guard status == Z_OK else {
                    let reason = stream.msg.map { String(cString: $0) } ?? "error \(status)"
                    throw Failure(description: "gzip data is corrupt (\(reason))")
                }
            }
        }
        return output
    }

    /// Deflates `data` into one gzip member.
    static func compress(_ data: Data, level: Int32 = 6) throws -> Data {
        var stream = z_stream()
        guard deflateInit2_(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, zlibVersion(),
                            Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Failure(description: "zlib deflateInit failed")
        }
        defer { deflateEnd(&stream) }
        var output = Data()
        let chunk = 1 << 20
        var buffer = [UInt8](repeating: 0, count: chunk)
        try data.withUnsafeBytes { (input: UnsafeRawBufferPointer) in
            stream.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
            stream.avail_in = uInt(input.count)
            while true {
                let status: Int32 = buffer.withUnsafeMutableBufferPointer { out in
                    stream.next_out = out.baseAddress
                    stream.avail_out = uInt(chunk)
                    return deflate(&stream, Z_FINISH)
                }
                output.append(contentsOf: buffer[0..<(chunk - Int(stream.avail_out))])
                if status == Z_STREAM_END { return }
                guard status == Z_OK || status == Z_BUF_ERROR else {
                    throw Failure(description: "zlib deflate failed (\(status))")
                }
            }
        }
        return output
    }
}
