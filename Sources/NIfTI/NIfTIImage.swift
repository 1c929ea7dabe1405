import Foundation
import VolumeGeometry

/// Voxel values in the file's own datatype (no scaling applied), in NIfTI order (x fastest).
public enum NIfTIVoxels: Equatable, Sendable {
    case uint8([UInt8])
    case int8([Int8])
    case int16([Int16])
    case uint16([UInt16])
    case int32([Int32])
    case uint32([UInt32])
    case int64([Int64])
    case uint64([UInt64])
    case float32([Float])
    case float64([Double])

    public var dataType: NIfTIDataType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .int16: return .int16
        case .uint16: return .uint16
        case .int32: return .int32
        case .uint32: return .uint32
        case .int64: return .int64
        case .uint64: return .uint64
        case .float32: return .float32
        case .float64: return .float64
        }
    }

    public var count: Int { withDoubles { $0.count } }

    /// Calls `body` with a lazily converted view of the values as Double.
    public func withDoubles<R>(_ body: (AnyRandomAccessCollection<Double>) -> R) -> R {
        switch self {
        case .uint8(let a): return body(AnyRandomAccessCollection(a.lazy.map(Double.init)))
        case .int8(let a): return body(AnyRandomAccessCollection(a.lazy.map(Double.init)))
        case .int16(let a): return body(AnyRandomAccessCollection(a.lazy.map(Double.init)))
        case .uint16(let a): return body(AnyRandomAccessCollection(a.lazy.map(Double.init)))
        case .int32(let a): return body(AnyRandomAccessCollection(a.lazy.map(Double.init)))
        case .uint32(let a): return body(AnyRandomAccessCollection(a.lazy.map(Double.init)))
        case .int64(let a): return body(AnyRandomAccessCollection(a.lazy.map(Double.init)))
        case .uint64(let a): return body(AnyRandomAccessCollection(a.lazy.map(Double.init)))
        case .float32(let a): return body(AnyRandomAccessCollection(a.lazy.map(Double.init)))
        case .float64(let a): return body(AnyRandomAccessCollection(a))
        }
    }
}

/// Errors of NIfTI reading and writing. Each names the file and what is wrong with it.
public struct NIfTIError: Error, CustomStringConvertible, Equatable {
    public enum Code: String, Sendable, CaseIterable {
        case unreadable = "NIFTI_UNREADABLE"
        case notNIfTI = "NIFTI_NOT_NIFTI"
        case unsupportedDataType = "NIFTI_UNSUPPORTED_DATATYPE"
        case unsupportedDimensions = "NIFTI_UNSUPPORTED_DIMENSIONS"
        case truncated = "NIFTI_TRUNCATED"
        case notALabelMap = "NIFTI_NOT_A_LABEL_MAP"
        case unwritable = "NIFTI_UNWRITABLE"
    }

    public let code: Code
    public let path: String
    public let detail: String

    public var description: String { "\(code.rawValue): \(path): \(detail)" }
}

/// A NIfTI-1 image (`.nii` or `.nii.gz`) as stored: header, extensions and voxels in their datatype.
///
/// Geometry is derived the way ITK/SimpleITK derive it (``geometry``), so a volume read here lines up with
/// what nnU-Net sees through SimpleITK. Read, then write, gives the same bytes back (gzip framing aside).
///
/// ```swift
/// let image = try NIfTIImage(contentsOf: URL(fileURLWithPath: "hippocampus_001_0000.nii.gz"))
/// let volume = image.floatVolume()        // (z, y, x), scl_slope/scl_inter applied, LPS geometry
/// ```
public struct NIfTIImage: Equatable, Sendable {
    public var header: NIfTIHeader
    /// Bytes between the header and the voxel data (the 4-byte extender and any extensions), verbatim.
    public var extensions: [UInt8]
    public var voxels: NIfTIVoxels

    // MARK: Reading

    public init(contentsOf url: URL) throws {
        let path = url.path
        let fileData: Data
        do {
            fileData = try Data(contentsOf: url, options: .mappedIfSafe)
        } catch {
            throw NIfTIError(code: .unreadable, path: path, detail: "cannot read file (\(error.localizedDescription))")
        }
        var data = fileData
        if Gzip.isCompressed(fileData) {
            do {
                data = try Gzip.decompress(fileData)
            } catch {
                throw NIfTIError(code: .truncated, path: path, detail: "\(error)")
            }
        }
        try self.init(decompressed: data, path: path)
    }

    /// Parses an uncompressed single-file NIfTI-1 image; `path` only names the source in errors.
    public init(decompressed data: Data, path: String) throws {
        let bytes = [UInt8](data)
        guard let header = NIfTIHeader(bytes: bytes) else {
            throw NIfTIError(code: .notNIfTI, path: path, detail: "no NIfTI-1 header (sizeof_hdr is not 348)")
        }
        guard header.magic == "n+1" else {
            throw NIfTIError(code: .notNIfTI, path: path,
                             detail: "magic is '\(header.magic)', expected 'n+1' (single-file NIfTI-1)")
        }
        guard let type = header.dataType else {
            throw NIfTIError(code: .unsupportedDataType, path: path,
                             detail: "datatype code \(header.datatypeCode) is not supported (scalar integer and float types are)")
        }
        let dims = header.dim
        let rank = Int(dims[0])
        guard (1...7).contains(rank) else {
            throw NIfTIError(code: .unsupportedDimensions, path: path, detail: "dim[0] = \(rank) is out of range 1...7")
        }
        let extents = (1...rank).map { Int(dims[$0]) }
        guard extents.allSatisfy({ $0 >= 1 }) else {
            throw NIfTIError(code: .unsupportedDimensions, path: path, detail: "dimension sizes \(extents) must be positive")
        }
        guard extents.dropFirst(3).allSatisfy({ $0 == 1 }) else {
            throw NIfTIError(code: .unsupportedDimensions, path: path,
                             detail: "image is \(rank)-D with sizes \(extents); nnseg reads 2-D and 3-D images (one file per channel, as nnU-Net)")
        }
        // vox_offset and the sizes come from the file: finite, in range, and their product without overflow.
        guard header.voxOffset.isFinite, header.voxOffset >= Float(NIfTIHeader.size), header.voxOffset <= Float(bytes.count) else {
            throw NIfTIError(code: .notNIfTI, path: path, detail: "vox_offset \(header.voxOffset) is not a position inside the file after the header")
        }
        let offset = Int(header.voxOffset)
        var count = 1
        for e in extents {
            let (product, overflow) = count.multipliedReportingOverflow(by: e)
            guard !overflow, product <= bytes.count else {
                throw NIfTIError(code: .truncated, path: path, detail: "dimension sizes \(extents) need more voxels than the file's \(bytes.count) bytes hold")
            }
            count = product
        }
        let needed = offset + count * type.bytesPerVoxel
        guard bytes.count >= needed else {
            throw NIfTIError(code: .truncated, path: path,
                             detail: "file holds \(bytes.count) bytes, the header needs \(needed)")
        }
        self.header = header
        self.extensions = Array(bytes[NIfTIHeader.size..<offset])
        self.voxels = Self.decode(bytes[offset..<needed], type: type, bigEndian: header.bigEndianSource)
    }

    private static func decode(_ bytes: ArraySlice<UInt8>, type: NIfTIDataType, bigEndian: Bool) -> NIfTIVoxels {
        func read<T: FixedWidthInteger>(_: T.Type) -> [T] {
            bytes.withUnsafeBytes { raw in
                (0..<(raw.count / MemoryLayout<T>.size)).map { i in
                    let v = raw.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self)
                    return bigEndian ? T(bigEndian: v) : T(littleEndian: v)
                }
            }
        }
        switch type {
        case .uint8: return .uint8(Array(bytes))
        case .int8: return .int8(bytes.map { Int8(bitPattern: $0) })
        case .int16: return .int16(read(Int16.self))
        case .uint16: return .uint16(read(UInt16.self))
        case .int32: return .int32(read(Int32.self))
        case .uint32: return .uint32(read(UInt32.self))
        case .int64: return .int64(read(Int64.self))
        case .uint64: return .uint64(read(UInt64.self))
        case .float32: return .float32(read(UInt32.self).map { Float(bitPattern: $0) })
        case .float64: return .float64(read(UInt64.self).map { Double(bitPattern: $0) })
        }
    }

    // MARK: Shape and geometry

    /// Grid size as nnU-Net's array sees it: (z, y, x); 2-D images have z = 1.
    public var shape: VolumeShape {
        let d = header.dim
        let rank = Int(d[0])
        return VolumeShape(z: rank >= 3 ? Int(d[3]) : 1, y: rank >= 2 ? Int(d[2]) : 1, x: Int(d[1]))
    }

    /// Which header transform ``geometry`` was taken from.
    public enum TransformSource: String, Sendable {
        case sform, qform
        /// Neither form is set: pixdim only ("method 1" of the NIfTI-1 standard).
        case pixdimOnly
    }

    /// The transform ITK would use: the sform when its code is set and its 3×3 part is a rotation times
    /// a scaling, else the qform when its code is set, else pixdim alone.
    public var transformSource: TransformSource {
        if header.sformCode > 0, sformDirection != nil { return .sform }
        if header.qformCode > 0 { return .qform }
        if header.sformCode > 0 { return .sform }
        return .pixdimOnly
    }

    /// LPS geometry, as ITK/SimpleITK report it for this file (spacing from pixdim, RAS→LPS by negating
    /// the first two rows of direction and origin).
    public var geometry: VolumeGeometry {
        let p = header.pixdim
        let rank = Int(header.dim[0])
        func spacingValue(_ i: Int) -> Double {
            let v = i <= rank ? abs(Double(p[i])) : 1
            return v > 0 ? v : 1
        }
        let spacing = SIMD3(spacingValue(1), spacingValue(2), spacingValue(3))
        var directionRAS: Matrix3
        var originRAS: SIMD3<Double>
        switch transformSource {
        case .sform:
            let s = header.srow
            directionRAS = sformDirection ?? Self.columnNormalised(s)
            originRAS = SIMD3(s[0][3], s[1][3], s[2][3])
        case .qform:
            directionRAS = Self.rotation(quaternion: header.quaternion)
            let qfac: Double = p[0] < 0 ? -1 : 1
            directionRAS[column: 2] = directionRAS[column: 2] * qfac
            originRAS = header.qoffset
        case .pixdimOnly:
            directionRAS = .identity
            originRAS = .zero
        }
        let flip = SIMD3<Double>(-1, -1, 1)
        let directionLPS = Matrix3(columns: directionRAS[column: 0] * flip, directionRAS[column: 1] * flip,
                                   directionRAS[column: 2] * flip)
        return VolumeGeometry(origin: originRAS * flip, spacing: spacing, direction: directionLPS)
    }

    /// A word on the header's own geometry when it may surprise: an sform that is sheared (not a rotation times a
    /// scaling) is passed over for the qform, as ITK does — a label map "on the grid" of a tilted CT by its sform
    /// is then read on the qform's grid. nil when nothing is unusual.
    public var transformNote: String? {
        if header.sformCode > 0, sformDirection == nil {
            return header.qformCode > 0 ? "its sform is sheared (not a rotation × scaling), so its qform was used, as ITK does"
                                        : "its sform is sheared (not a rotation × scaling)"
        }
        return nil
    }

    /// The sform's direction columns when its 3×3 part has orthogonal columns; nil otherwise.
    private var sformDirection: Matrix3? {
        let m = Self.columnNormalised(header.srow)
        let g = VolumeGeometry(direction: m)
        return g.isOrthogonal(tolerance: 1e-4) && abs(abs(m.determinant) - 1) < 1e-3 ? m : nil
    }

    private static func columnNormalised(_ s: [[Double]]) -> Matrix3 {
        let columns = (0..<3).map { j -> SIMD3<Double> in
            let c = SIMD3(s[0][j], s[1][j], s[2][j])
            let n = length(c)
            return n > 0 ? c / n : SIMD3(repeating: 0)
        }
        return Matrix3(columns: columns[0], columns[1], columns[2])
    }

    /// Rotation matrix of the NIfTI quaternion (b, c, d); a = sqrt(1 − b² − c² − d²).
    static func rotation(quaternion q: SIMD3<Double>) -> Matrix3 {
        var (b, c, d) = (q.x, q.y, q.z)
        var a = 1 - (b * b + c * c + d * d)
        if a < 1e-7 {
            // Numerically a 180° rotation: renormalise (b, c, d) and take a = 0, as nifti1_io does.
            let n = (b * b + c * c + d * d).squareRoot()
            a = 0
            b /= n
            c /= n
            d /= n
        } else {
            a = a.squareRoot()
        }
        return Matrix3(rowMajor: [
            a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c),
            2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b),
            2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b,
        ])
    }

    // MARK: Volumes

    /// Intensities as Float32 with `scl_slope`/`scl_inter` applied (slope 0 means unscaled), on the ITK
    /// geometry — what SimpleITK's `ReadImage` + `GetArrayFromImage` give nnU-Net, as float32.
    public func floatVolume() -> ImageVolume {
        let slope = Double(header.sclSlope), inter = Double(header.sclInter)
        let scaled = slope != 0 && !(slope == 1 && inter == 0)
        let values: [Float]
        if !scaled, case .float32(let a) = voxels {
            values = a
        } else {
            values = voxels.withDoubles { d in d.map { Float(scaled ? $0 * slope + inter : $0) } }
        }
        return ImageVolume(shape: shape, geometry: geometry, voxels: values)
    }

    /// A label map: every value (after scaling) must be a whole number in 0...65535.
    public func labelVolume(path: String = "") throws -> LabelVolume {
        let image = floatVolume()
        var labels = [UInt16](repeating: 0, count: image.voxels.count)
        for (i, v) in image.voxels.enumerated() {
            guard v >= 0, v <= 65535, v.rounded() == v else {
                throw NIfTIError(code: .notALabelMap, path: path,
                                 detail: "voxel \(i) holds \(v); labels must be whole numbers 0...65535")
            }
            labels[i] = UInt16(v)
        }
        return LabelVolume(shape: image.shape, geometry: image.geometry, voxels: labels)
    }
}
