import CLibz
import Dispatch
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

    /// Inputs at least this large are deflated in parallel blocks.
    static let parallelBlock = 1 << 20

    /// Deflates `data` into one gzip member. Large inputs are split into 1 MiB blocks deflated in parallel
    /// (each primed with the 32 KiB before it, ended on a byte boundary with a sync flush, the last one
    /// finished) and joined under one header with the combined CRC-32, as pigz does: one ordinary gzip
    /// stream that every reader inflates.
    static func compress(_ data: Data, level: Int32 = 6) throws -> Data {
        guard data.count >= 2 * parallelBlock else { return try compressSerially(data, level: level) }
        let blocks = (data.count + parallelBlock - 1) / parallelBlock
        var pieces = [Data](repeating: Data(), count: blocks)
        var crcs = [uLong](repeating: 0, count: blocks)
        var failures = [String?](repeating: nil, count: blocks)
        data.withUnsafeBytes { (input: UnsafeRawBufferPointer) in
            nonisolated(unsafe) let base = input.bindMemory(to: Bytef.self).baseAddress!
            let count = input.count
            pieces.withUnsafeMutableBufferPointer { piecesBuffer in crcs.withUnsafeMutableBufferPointer { crcBuffer in
              failures.withUnsafeMutableBufferPointer { failureBuffer in
                nonisolated(unsafe) let (outPieces, outCRCs, outFailures) = (piecesBuffer.baseAddress!, crcBuffer.baseAddress!, failureBuffer.baseAddress!)
                DispatchQueue.concurrentPerform(iterations: blocks) { b in
                    let start = b * parallelBlock, end = min(count, start + parallelBlock)
                    outCRCs[b] = crc32(0, base + start, uInt(end - start))
                    do {
                        outPieces[b] = try deflateBlock(base, start: start, end: end, last: end == count, level: level)
                    } catch {
                        outFailures[b] = "\(error)"
                    }
                }
              }
            } }
        }
        if let failure = failures.compactMap({ $0 }).first { throw Failure(description: failure) }
        var crc = crcs[0]
        for b in 1..<blocks { crc = crc32_combine(crc, crcs[b], off_t(min(data.count - b * parallelBlock, parallelBlock))) }
        var output = Data([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3])
        output.reserveCapacity(pieces.reduce(10 + 8) { $0 + $1.count })
        for piece in pieces { output.append(piece) }
        for value in [UInt32(truncatingIfNeeded: crc), UInt32(truncatingIfNeeded: data.count)] {
            withUnsafeBytes(of: value.littleEndian) { output.append(contentsOf: $0) }
        }
        return output
    }

    /// Raw deflate of `[start, end)`, primed with up to 32 KiB before `start`; ends with a sync flush (byte
    /// aligned, not final) unless it is the last block.
    static func deflateBlock(_ base: UnsafePointer<Bytef>, start: Int, end: Int, last: Bool, level: Int32) throws -> Data {
        var stream = z_stream()
        guard deflateInit2_(&stream, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Failure(description: "zlib deflateInit failed")
        }
        defer { deflateEnd(&stream) }
        let dictionary = min(start, 32 << 10)
        if dictionary > 0, deflateSetDictionary(&stream, base + start - dictionary, uInt(dictionary)) != Z_OK {
            throw Failure(description: "zlib deflateSetDictionary failed")
        }
        var output = Data()
        var buffer = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(end - start))) + 64)
        stream.next_in = UnsafeMutablePointer(mutating: base + start)
        stream.avail_in = uInt(end - start)
        while true {
            let status: Int32 = buffer.withUnsafeMutableBufferPointer { out in
                stream.next_out = out.baseAddress
                stream.avail_out = uInt(out.count)
                return deflate(&stream, last ? Z_FINISH : Z_SYNC_FLUSH)
            }
            output.append(contentsOf: buffer[0..<(buffer.count - Int(stream.avail_out))])
            if last ? status == Z_STREAM_END : (status == Z_OK && stream.avail_in == 0 && stream.avail_out > 0) { return output }
            guard status == Z_OK || status == Z_BUF_ERROR else { throw Failure(description: "zlib deflate failed (\(status))") }
        }
    }

    static func compressSerially(_ data: Data, level: Int32) throws -> Data {
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
