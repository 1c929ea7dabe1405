import Foundation

/// One preprocessed training case as `nnseg preprocess` (or nnU-Net with `.npy` storage) writes it:
/// `CASE.npy` (float32 `(c, z, y, x)`), `CASE_seg.npy` (int16 `(1, z, y, x)`), `CASE.json` (class locations).
public struct TrainingCase: Sendable {
    public let identifier: String
    public let channels: Int
    /// Spatial shape `(z, y, x)`.
    public let shape: [Int]
    public let data: [Float]
    public let segmentation: [Int16]
    /// Foreground voxel samples per class (or region) key, each `[z, y, x]`.
    public let classLocations: [(key: [Int], voxels: [[Int]])]
}

/// The preprocessed cases of one configuration folder, loaded on first use and kept in memory.
public final class PreprocessedDataset: @unchecked Sendable {
    public let folder: URL
    public let identifiers: [String]
    private var cache: [String: TrainingCase] = [:]
    private let lock = NSLock()

    /// All cases in `folder` (sorted identifiers, as nnU-Net lists them).
    public convenience init(folder: URL) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path)
        let ids = names.filter { $0.hasSuffix(".npy") && !$0.hasSuffix("_seg.npy") }.map { String($0.dropLast(4)) }.sorted()
        guard !ids.isEmpty else {
            throw TrainingError.dataset(file: folder.path, problem: "no preprocessed cases (CASE.npy); run `nnseg preprocess` first")
        }
        try self.init(folder: folder, identifiers: ids)
    }

    public init(folder: URL, identifiers: [String]) throws {
        self.folder = folder
        self.identifiers = identifiers
        for id in identifiers {
            for suffix in [".npy", "_seg.npy", ".json"] {
                let path = folder.appendingPathComponent(id + suffix).path
                guard FileManager.default.fileExists(atPath: path) else {
                    throw TrainingError.dataset(file: path, problem: "missing (every case needs CASE.npy, CASE_seg.npy and CASE.json)")
                }
            }
        }
    }

    public func load(_ identifier: String) throws -> TrainingCase {
        lock.lock()
        if let c = cache[identifier] { lock.unlock(); return c }
        lock.unlock()
        let c = try Self.read(folder: folder, identifier: identifier)
        lock.lock()
        cache[identifier] = c
        lock.unlock()
        return c
    }

    static func read(folder: URL, identifier: String) throws -> TrainingCase {
        let dataURL = folder.appendingPathComponent(identifier + ".npy")
        let segURL = folder.appendingPathComponent(identifier + "_seg.npy")
        let jsonURL = folder.appendingPathComponent(identifier + ".json")
        let data = try NumpyReader(url: dataURL)
        let seg = try NumpyReader(url: segURL)
        guard data.shape.count == 4 else { throw TrainingError.dataset(file: dataURL.path, problem: "shape \(data.shape), expected (c, z, y, x)") }
        guard seg.shape == [1] + data.shape.dropFirst() else {
            throw TrainingError.dataset(file: segURL.path, problem: "shape \(seg.shape) does not match the image \(data.shape)")
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(contentsOf: jsonURL))
        } catch {
            throw TrainingError.dataset(file: jsonURL.path, problem: "not readable JSON (\(error.localizedDescription))")
        }
        guard let json = object as? [String: Any], let locations = json["class_locations"] as? [String: Any] else {
            throw TrainingError.dataset(file: jsonURL.path, problem: "no class_locations object")
        }
        var parsed: [(key: [Int], voxels: [[Int]])] = []
        for (key, value) in locations {
            let digits = key.split { !$0.isNumber && $0 != "-" }.compactMap { Int($0) }
            guard !digits.isEmpty, let rows = value as? [[Int]] else {
                throw TrainingError.dataset(file: jsonURL.path, problem: "class_locations entry '\(key)' is not a list of voxel coordinates")
            }
            // Rows are (channel, z, y, x); keep the spatial part.
            parsed.append((digits, rows.map { Array($0.suffix(3)) }))
        }
        parsed.sort { $0.key.lexicographicallyPrecedes($1.key) }
        return TrainingCase(identifier: identifier, channels: data.shape[0], shape: Array(data.shape.dropFirst()), data: try data.floats(),
                            segmentation: try seg.int16s(), classLocations: parsed)
    }
}

/// A minimal `.npy` reader (format 1.x/2.x, little-endian, C order) for the preprocessed arrays.
struct NumpyReader {
    let url: URL
    let descr: String
    let shape: [Int]
    let body: Data

    init(url: URL) throws {
        self.url = url
        let raw: Data
        do { raw = try Data(contentsOf: url, options: .mappedIfSafe) } catch {
            throw TrainingError.dataset(file: url.path, problem: "cannot be read (\(error.localizedDescription))")
        }
        guard raw.count > 10, raw.prefix(6) == Data([0x93]) + Data("NUMPY".utf8) else {
            throw TrainingError.dataset(file: url.path, problem: "not a .npy file")
        }
        let major = raw[raw.startIndex + 6]
        let headerLength: Int, start: Int
        if major == 1 {
            headerLength = Int(raw[raw.startIndex + 8]) | Int(raw[raw.startIndex + 9]) << 8
            start = 10
        } else {
            headerLength = (0..<4).reduce(0) { $0 | Int(raw[raw.startIndex + 8 + $1]) << (8 * $1) }
            start = 12
        }
        guard raw.count >= start + headerLength, let header = String(data: raw.subdata(in: (raw.startIndex + start)..<(raw.startIndex + start + headerLength)), encoding: .ascii) else {
            throw TrainingError.dataset(file: url.path, problem: "truncated .npy header")
        }
        func field(_ name: String) -> String? {
            guard let r = header.range(of: "'\(name)':") else { return nil }
            return String(header[r.upperBound...]).trimmingCharacters(in: .whitespaces)
        }
        guard let d = field("descr"), let q1 = d.firstIndex(of: "'"), let q2 = d[d.index(after: q1)...].firstIndex(of: "'") else {
            throw TrainingError.dataset(file: url.path, problem: "no dtype in the .npy header")
        }
        descr = String(d[d.index(after: q1)..<q2])
        if let f = field("fortran_order"), f.hasPrefix("True") {
            throw TrainingError.dataset(file: url.path, problem: "Fortran-ordered arrays are not supported")
        }
        guard let s = field("shape"), let open = s.firstIndex(of: "("), let close = s.firstIndex(of: ")") else {
            throw TrainingError.dataset(file: url.path, problem: "no shape in the .npy header")
        }
        let parts = s[s.index(after: open)..<close].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        // This module is compiled -Ounchecked: sizes from the file are checked here, before any index uses them.
        let dims = parts.compactMap { Int($0) }
        guard dims.count == parts.count, dims.allSatisfy({ $0 >= 0 }) else {
            throw TrainingError.dataset(file: url.path, problem: "shape (\(parts.joined(separator: ", "))) is not a list of sizes ≥ 0")
        }
        shape = dims
        body = raw.subdata(in: (raw.startIndex + start + headerLength)..<raw.endIndex)
        let size: Int
        switch descr {
        case "<f4", "<i4", "<u4": size = 4
        case "<f8", "<i8": size = 8
        case "<i2", "<u2", "<f2": size = 2
        case "|u1", "|i1", "|b1": size = 1
        default: throw TrainingError.dataset(file: url.path, problem: "dtype \(descr) is not supported")
        }
        var needed = size
        for n in shape {
            let (product, overflow) = needed.multipliedReportingOverflow(by: n)
            guard !overflow else { throw TrainingError.dataset(file: url.path, problem: "shape \(shape) is too large to address") }
            needed = product
        }
        guard body.count >= needed else {
            throw TrainingError.dataset(file: url.path, problem: "truncated: \(body.count) bytes for shape \(shape) of \(descr)")
        }
    }

    var count: Int { shape.reduce(1, *) }

    func floats() throws -> [Float] {
        body.withUnsafeBytes { raw in
            switch descr {
            case "<f4": return (0..<count).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
            case "<f8": return (0..<count).map { Float(raw.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self)) }
            case "<f2": return (0..<count).map { Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) }
            default: return (try? int64s().map { Float($0) }) ?? []
            }
        }
    }

    func int64s() throws -> [Int64] {
        body.withUnsafeBytes { raw in
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

    func int16s() throws -> [Int16] {
        if descr == "<i2" { return body.withUnsafeBytes { raw in (0..<count).map { raw.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self) } } }
        return try int64s().map { v in
            guard let x = Int16(exactly: v) else { throw TrainingError.dataset(file: url.path, problem: "label \(v) does not fit int16") }
            return x
        }
    }
}
