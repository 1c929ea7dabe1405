import Foundation
import ZIPFoundation

/// Reads `.npy` arrays and `.npz` archives (the reference's golden data). Tests only.
public struct NumpyArray: Sendable {
    public let shape: [Int]
    public let descr: String
    public let floats: [Float]

    public init(npy data: Data) throws {
        let bytes = [UInt8](data)
        guard bytes.count > 10, bytes[0] == 0x93, String(decoding: bytes[1..<6], as: UTF8.self) == "NUMPY" else {
            throw NSError(domain: "npy", code: 1, userInfo: [NSLocalizedDescriptionKey: "not an .npy file"])
        }
        let major = bytes[6]
        let headerLength = major == 1 ? Int(bytes[8]) | Int(bytes[9]) << 8
            : Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
        let start = major == 1 ? 10 : 12
        let header = String(decoding: bytes[start..<(start + headerLength)], as: UTF8.self)
        func field(_ key: String) -> String {
            guard let r = header.range(of: "'\(key)': ") else { return "" }
            let rest = header[r.upperBound...]
            if rest.first == "(" { return String(rest[rest.startIndex...rest.firstIndex(of: ")")!]) }
            if rest.first == "'" { return String(rest.dropFirst().prefix { $0 != "'" }) }
            return String(rest.prefix { $0 != "," && $0 != "}" })
        }
        descr = field("descr")
        guard field("fortran_order").hasPrefix("False") else {
            throw NSError(domain: "npy", code: 3, userInfo: [NSLocalizedDescriptionKey: "Fortran-order arrays are not supported"])
        }
        shape = field("shape").trimmingCharacters(in: CharacterSet(charactersIn: "()")).split(separator: ",")
            .compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let body = Array(bytes[(start + headerLength)...])
        let count = shape.reduce(1, *)
        switch descr {
        case "<f4":
            floats = body.withUnsafeBytes { raw in (0..<count).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) } }
        case "<f8":
            floats = body.withUnsafeBytes { raw in (0..<count).map { Float(raw.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self)) } }
        case "<f2":
            floats = body.withUnsafeBytes { raw in (0..<count).map { Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) } }
        case "<i2":
            floats = body.withUnsafeBytes { raw in (0..<count).map { Float(raw.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self)) } }
        case "<i8":
            floats = body.withUnsafeBytes { raw in (0..<count).map { Float(raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) } }
        case "|u1":
            floats = body.prefix(count).map { Float($0) }
        default:
            throw NSError(domain: "npy", code: 2, userInfo: [NSLocalizedDescriptionKey: "dtype \(descr) not supported"])
        }
    }

    public init(contentsOf url: URL) throws { try self.init(npy: Data(contentsOf: url)) }

    /// Every array of an `.npz`, by name without the `.npy` suffix.
    public static func npz(_ url: URL) throws -> [String: NumpyArray] {
        let archive = try Archive(url: url, accessMode: .read)
        var out: [String: NumpyArray] = [:]
        for entry in archive {
            var data = Data()
            _ = try archive.extract(entry, skipCRC32: true) { data.append($0) }
            out[String(entry.path.dropLast(4))] = try NumpyArray(npy: data)
        }
        return out
    }
}

/// Writes a uint8 array as `.npy` (NPY v1, C order).
public func writeNumpyUInt8(_ values: [UInt8], shape: [Int], to url: URL) throws {
    var header = "{'descr': '|u1', 'fortran_order': False, 'shape': (\(shape.map(String.init).joined(separator: ", ")), ), }"
    while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)])
    data.append(contentsOf: Array(header.utf8))
    data.append(contentsOf: values)
    try data.write(to: url)
}
