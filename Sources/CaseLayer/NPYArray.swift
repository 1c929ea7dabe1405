import Foundation
import ZIPFoundation

/// A `.npy` array (format 1.x/2.x, little-endian, C order) — nnU-Net's preprocessed arrays and the
/// `probabilities` member of its `.npz` files. Every size in the header is checked against the data before
/// anything indexes it (callers compiled `-Ounchecked` rely on that).
public struct NPYArray: Sendable {
    public let file: String
    public let descr: String
    public let shape: [Int]
    /// The whole file (memory-mapped when read with `mapped`) and where the array starts in it.
    let raw: Data
    let offset: Int

    /// `mapped`: the file is memory-mapped, not read — pages come from disk when the array is touched and
    /// the kernel may drop them again (datasets larger than memory).
    public init(contentsOf url: URL, mapped: Bool = false) throws {
        let raw: Data
        do { raw = try Data(contentsOf: url, options: mapped ? .alwaysMapped : .mappedIfSafe) } catch {
            throw NPYError(file: url.path, problem: "cannot be read (\(error.localizedDescription))")
        }
        try self.init(data: raw, file: url.path)
    }

    /// `file`: names the array in errors (a path, or `archive.npz:member.npy`).
    public init(data raw: Data, file: String) throws {
        self.file = file
        guard raw.count > 10, raw.prefix(6) == Data([0x93]) + Data("NUMPY".utf8) else {
            throw NPYError(file: file, problem: "not a .npy file")
        }
        let major = raw[raw.startIndex + 6]
        let headerLength: Int, start: Int
        if major == 1 {
            headerLength = Int(raw[raw.startIndex + 8]) | Int(raw[raw.startIndex + 9]) << 8
            start = 10
        } else {
            guard raw.count > 12 else { throw NPYError(file: file, problem: "truncated .npy header") }
            headerLength = (0..<4).reduce(0) { $0 | Int(raw[raw.startIndex + 8 + $1]) << (8 * $1) }
            start = 12
        }
        guard raw.count >= start + headerLength,
              let header = String(data: raw.subdata(in: (raw.startIndex + start)..<(raw.startIndex + start + headerLength)), encoding: .ascii) else {
            throw NPYError(file: file, problem: "truncated .npy header")
        }
        func field(_ name: String) -> String? {
            guard let r = header.range(of: "'\(name)':") else { return nil }
            return String(header[r.upperBound...]).trimmingCharacters(in: .whitespaces)
        }
        guard let d = field("descr"), let q1 = d.firstIndex(of: "'"), let q2 = d[d.index(after: q1)...].firstIndex(of: "'") else {
            throw NPYError(file: file, problem: "no dtype in the .npy header")
        }
        descr = String(d[d.index(after: q1)..<q2])
        if let f = field("fortran_order"), f.hasPrefix("True") {
            throw NPYError(file: file, problem: "Fortran-ordered arrays are not supported")
        }
        guard let s = field("shape"), let open = s.firstIndex(of: "("), let close = s.firstIndex(of: ")") else {
            throw NPYError(file: file, problem: "no shape in the .npy header")
        }
        let parts = s[s.index(after: open)..<close].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let dims = parts.compactMap { Int($0) }
        guard dims.count == parts.count, dims.allSatisfy({ $0 >= 0 }) else {
            throw NPYError(file: file, problem: "shape (\(parts.joined(separator: ", "))) is not a list of sizes ≥ 0")
        }
        shape = dims
        self.raw = raw
        offset = start + headerLength
        let bodyCount = raw.count - offset
        let size: Int
        switch descr {
        case "<f4", "<i4", "<u4": size = 4
        case "<f8", "<i8": size = 8
        case "<i2", "<u2", "<f2": size = 2
        case "|u1", "|i1", "|b1": size = 1
        default: throw NPYError(file: file, problem: "dtype \(descr) is not supported")
        }
        var needed = size
        for n in shape {
            let (product, overflow) = needed.multipliedReportingOverflow(by: n)
            guard !overflow else { throw NPYError(file: file, problem: "shape \(shape) is too large to address") }
            needed = product
        }
        guard bodyCount >= needed else {
            throw NPYError(file: file, problem: "truncated: \(bodyCount) bytes for shape \(shape) of \(descr)")
        }
    }

    /// The array's bytes, in place (no copy of a mapped file).
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try raw.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
    }

    public var count: Int { shape.reduce(1, *) }

    public func floats() throws -> [Float] {
        withUnsafeBytes { raw in
            switch descr {
            case "<f4": return (0..<count).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
            case "<f8": return (0..<count).map { Float(raw.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self)) }
            case "<f2": return (0..<count).map { Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) }
            default: return (try? int64s().map { Float($0) }) ?? []
            }
        }
    }

    public func int64s() throws -> [Int64] {
        withUnsafeBytes { raw in
            switch descr {
            case "<i2": return (0..<count).map { Int64(raw.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self)) }
            case "<u2": return (0..<count).map { Int64(raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) }
            case "<i4": return (0..<count).map { Int64(raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
            case "<u4": return (0..<count).map { Int64(raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
            case "<i8": return (0..<count).map { raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self) }
            case "|u1", "|b1": return (0..<count).map { Int64(raw.load(fromByteOffset: $0, as: UInt8.self)) }
            case "|i1": return (0..<count).map { Int64(raw.load(fromByteOffset: $0, as: Int8.self)) }
            default: return (0..<count).map { Int64(raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self)) }
            }
        }
    }

    public func int16s() throws -> [Int16] {
        if descr == "<i2" { return withUnsafeBytes { raw in (0..<count).map { raw.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self) } } }
        return try int64s().map { v in
            guard let x = Int16(exactly: v) else { throw NPYError(file: file, problem: "label \(v) does not fit int16") }
            return x
        }
    }

    /// One member of an `.npz` archive (`numpy.savez[_compressed]`), e.g. `probabilities`.
    public static func member(_ name: String, of url: URL, maximumBytes: Int = 1 << 34) throws -> NPYArray {
        let archive: Archive
        do { archive = try Archive(url: url, accessMode: .read) } catch {
            throw NPYError(file: url.path, problem: "not a readable .npz archive (\(error))")
        }
        guard let entry = archive[name + ".npy"] else {
            throw NPYError(file: url.path, problem: "no '\(name)' array in the archive (it has \(archive.map(\.path).sorted().joined(separator: ", ")))")
        }
        guard entry.uncompressedSize <= UInt64(maximumBytes) else {
            throw NPYError(file: url.path, problem: "'\(name)' is \(entry.uncompressedSize) bytes, above the limit of \(maximumBytes)")
        }
        var data = Data()
        data.reserveCapacity(Int(entry.uncompressedSize))
        do {
            _ = try archive.extract(entry, skipCRC32: false) { data.append($0) }
        } catch {
            throw NPYError(file: url.path, problem: "'\(name)' cannot be extracted (\(error))")
        }
        return try NPYArray(data: data, file: url.path + ":" + name + ".npy")
    }
}

/// A `.npy`/`.npz` file that cannot be used: the file and what is wrong with it.
public struct NPYError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let problem: String
    public var description: String { "\(file): \(problem)" }
}
