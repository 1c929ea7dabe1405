import Foundation

/// NIfTI-1 datatype codes this reader understands (`datatype`, byte 70 of the header).
public enum NIfTIDataType: Int16, Sendable, CaseIterable {
    case uint8 = 2
    case int16 = 4
    case int32 = 8
    case float32 = 16
    case float64 = 64
    case int8 = 256
    case uint16 = 512
    case uint32 = 768
    case int64 = 1024
    case uint64 = 1280

    public var bytesPerVoxel: Int {
        switch self {
        case .uint8, .int8: return 1
        case .int16, .uint16: return 2
        case .int32, .uint32, .float32: return 4
        case .float64, .int64, .uint64: return 8
        }
    }

    public var name: String { "\(self)" }
}

/// The 348-byte NIfTI-1 header, kept as its raw little-endian bytes so that every field — including the
/// ones nnseg does not interpret (descrip, intent, cal_min/max, …) — survives a read/write round trip
/// bit for bit. Typed accessors read and write the fields in place.
public struct NIfTIHeader: Equatable, Sendable {
    public static let size = 348
    /// Raw header bytes, little endian.
    public private(set) var raw: [UInt8]

    /// A zeroed header with `sizeof_hdr` = 348 and the single-file magic `n+1`.
    public init() {
        raw = [UInt8](repeating: 0, count: Self.size)
        setInt32(Int32(Self.size), at: 0)
        raw.replaceSubrange(344..<348, with: Array("n+1\0".utf8))
    }

    /// Parses a header; big-endian files are converted to little-endian field by field.
    /// Returns nil when the bytes are not a NIfTI-1 header (wrong `sizeof_hdr` in both byte orders).
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count >= Self.size else { return nil }
        var r = Array(bytes.prefix(Self.size))
        let le = Int32(r[0]) | Int32(r[1]) << 8 | Int32(r[2]) << 16 | Int32(r[3]) << 24
        if le != Int32(Self.size) {
            let be = Int32(r[3]) | Int32(r[2]) << 8 | Int32(r[1]) << 16 | Int32(r[0]) << 24
            guard be == Int32(Self.size) else { return nil }
            for (offset, width) in Self.numericFields { r[offset..<(offset + width)].reverse() }
            bigEndianSource = true
        }
        raw = r
    }

    /// True when the file this header came from was big endian (its voxels must be byte-swapped).
    public private(set) var bigEndianSource = false

    /// (offset, width) of every numeric field, for byte-order conversion.
    private static let numericFields: [(Int, Int)] = {
        var f: [(Int, Int)] = [(0, 4), (32, 4), (36, 2)]
        f += (0..<8).map { (40 + 2 * $0, 2) }                     // dim
        f += [(56, 4), (60, 4), (64, 4), (68, 2), (70, 2), (72, 2), (74, 2)]
        f += (0..<8).map { (76 + 4 * $0, 4) }                     // pixdim
        f += [(108, 4), (112, 4), (116, 4), (120, 2), (124, 4), (128, 4), (132, 4), (136, 4), (140, 4), (144, 4)]
        f += [(252, 2), (254, 2)]
        f += (0..<6).map { (256 + 4 * $0, 4) }                    // quatern_b..qoffset_z
        f += (0..<12).map { (280 + 4 * $0, 4) }                   // srow_x, srow_y, srow_z
        return f
    }()

    // MARK: Raw field access

    func int16(at o: Int) -> Int16 { Int16(bitPattern: UInt16(raw[o]) | UInt16(raw[o + 1]) << 8) }
    func int32(at o: Int) -> Int32 {
        Int32(bitPattern: UInt32(raw[o]) | UInt32(raw[o + 1]) << 8 | UInt32(raw[o + 2]) << 16 | UInt32(raw[o + 3]) << 24)
    }
    func float32(at o: Int) -> Float { Float(bitPattern: UInt32(bitPattern: int32(at: o))) }

    mutating func setInt16(_ v: Int16, at o: Int) {
        let u = UInt16(bitPattern: v)
        raw[o] = UInt8(truncatingIfNeeded: u)
        raw[o + 1] = UInt8(truncatingIfNeeded: u >> 8)
    }
    mutating func setInt32(_ v: Int32, at o: Int) {
        let u = UInt32(bitPattern: v)
        for b in 0..<4 { raw[o + b] = UInt8(truncatingIfNeeded: u >> (8 * UInt32(b))) }
    }
    mutating func setFloat32(_ v: Float, at o: Int) { setInt32(Int32(bitPattern: v.bitPattern), at: o) }

    // MARK: Fields

    /// `dim[0...7]`: dim[0] is the number of dimensions.
    public var dim: [Int16] {
        get { (0..<8).map { int16(at: 40 + 2 * $0) } }
        set { for (i, v) in newValue.prefix(8).enumerated() { setInt16(v, at: 40 + 2 * i) } }
    }
    public var datatypeCode: Int16 {
        get { int16(at: 70) }
        set { setInt16(newValue, at: 70) }
    }
    public var bitpix: Int16 {
        get { int16(at: 72) }
        set { setInt16(newValue, at: 72) }
    }
    /// `pixdim[0...7]`: pixdim[0] is qfac (−1 or 1; 0 means 1).
    public var pixdim: [Float] {
        get { (0..<8).map { float32(at: 76 + 4 * $0) } }
        set { for (i, v) in newValue.prefix(8).enumerated() { setFloat32(v, at: 76 + 4 * i) } }
    }
    public var voxOffset: Float {
        get { float32(at: 108) }
        set { setFloat32(newValue, at: 108) }
    }
    public var sclSlope: Float {
        get { float32(at: 112) }
        set { setFloat32(newValue, at: 112) }
    }
    public var sclInter: Float {
        get { float32(at: 116) }
        set { setFloat32(newValue, at: 116) }
    }
    public var xyztUnits: UInt8 {
        get { raw[123] }
        set { raw[123] = newValue }
    }
    public var qformCode: Int16 {
        get { int16(at: 252) }
        set { setInt16(newValue, at: 252) }
    }
    public var sformCode: Int16 {
        get { int16(at: 254) }
        set { setInt16(newValue, at: 254) }
    }
    /// quatern_b, quatern_c, quatern_d.
    public var quaternion: SIMD3<Double> {
        get { SIMD3(Double(float32(at: 256)), Double(float32(at: 260)), Double(float32(at: 264))) }
        set { for i in 0..<3 { setFloat32(Float(newValue[i]), at: 256 + 4 * i) } }
    }
    /// qoffset_x, qoffset_y, qoffset_z (RAS millimetres).
    public var qoffset: SIMD3<Double> {
        get { SIMD3(Double(float32(at: 268)), Double(float32(at: 272)), Double(float32(at: 276))) }
        set { for i in 0..<3 { setFloat32(Float(newValue[i]), at: 268 + 4 * i) } }
    }
    /// srow_x, srow_y, srow_z: three rows of four values (RAS).
    public var srow: [[Double]] {
        get { (0..<3).map { r in (0..<4).map { c in Double(float32(at: 280 + 16 * r + 4 * c)) } } }
        set {
            for r in 0..<3 { for c in 0..<4 { setFloat32(Float(newValue[r][c]), at: 280 + 16 * r + 4 * c) } }
        }
    }
    /// The 4-byte magic: "n+1\0" (single file) or "ni1\0" (header/image pair).
    public var magic: String { String(decoding: raw[344..<347], as: UTF8.self) }
    /// 80-character description field, trailing NULs removed.
    public var descrip: String {
        get { String(decoding: raw[148..<228].prefix { $0 != 0 }, as: UTF8.self) }
        set {
            var bytes = Array(newValue.utf8.prefix(79))
            bytes += [UInt8](repeating: 0, count: 80 - bytes.count)
            raw.replaceSubrange(148..<228, with: bytes)
        }
    }

    public var dataType: NIfTIDataType? { NIfTIDataType(rawValue: datatypeCode) }
}
