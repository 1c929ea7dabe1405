import Foundation
import VolumeGeometry

extension NIfTIImage {
    /// A new image on `geometry` holding `voxels` (NIfTI order, x fastest), with the header ITK would
    /// write: qform and sform both set (code 1, scanner), spacing in pixdim, units mm, no scaling.
    /// A sheared (non-orthogonal) geometry cannot be a quaternion: then only the sform is set.
    public init(voxels: NIfTIVoxels, shape: VolumeShape, geometry: VolumeGeometry) {
        precondition(voxels.count == shape.count, "voxel count does not match shape")
        var h = NIfTIHeader()
        h.dim = [3, Int16(shape.x), Int16(shape.y), Int16(shape.z), 1, 1, 1, 1]
        h.datatypeCode = voxels.dataType.rawValue
        h.bitpix = Int16(voxels.dataType.bytesPerVoxel * 8)
        h.voxOffset = 352
        h.sclSlope = 1
        h.sclInter = 0
        h.xyztUnits = 2  // NIFTI_UNITS_MM

        let flip = SIMD3<Double>(-1, -1, 1)
        let d = geometry.direction
        let directionRAS = Matrix3(columns: d[column: 0] * flip, d[column: 1] * flip, d[column: 2] * flip)
        let originRAS = geometry.origin * flip
        let linearRAS = directionRAS * Matrix3.diagonal(geometry.spacing)
        h.srow = (0..<3).map { i in [linearRAS[i, 0], linearRAS[i, 1], linearRAS[i, 2], originRAS[i]] }
        h.sformCode = 1

        var pixdim: [Float] = [1, Float(geometry.spacing.x), Float(geometry.spacing.y), Float(geometry.spacing.z), 0, 0, 0, 0]
        if geometry.isOrthogonal(tolerance: 1e-6) {
            let (quaternion, qfac) = Self.quaternion(of: directionRAS)
            pixdim[0] = Float(qfac)
            h.quaternion = quaternion
            h.qoffset = originRAS
            h.qformCode = 1
        } else {
            h.qformCode = 0
        }
        h.pixdim = pixdim
        self.header = h
        self.extensions = [0, 0, 0, 0]
        self.voxels = voxels
    }

    /// Convenience: writes a typed volume in its own datatype.
    public init(volume: Volume<Float>) {
        self.init(voxels: .float32(volume.voxels), shape: volume.shape, geometry: volume.geometry)
    }

    public init(volume: Volume<UInt8>) {
        self.init(voxels: .uint8(volume.voxels), shape: volume.shape, geometry: volume.geometry)
    }

    /// A label map: uint8 when every value fits (what nnU-Net's datasets hold), else uint16.
    public init(volume: Volume<UInt16>) {
        if volume.voxels.allSatisfy({ $0 <= 255 }) {
            self.init(voxels: .uint8(volume.voxels.map { UInt8($0) }), shape: volume.shape, geometry: volume.geometry)
        } else {
            self.init(voxels: .uint16(volume.voxels), shape: volume.shape, geometry: volume.geometry)
        }
    }

    public init(volume: Volume<Int16>) {
        self.init(voxels: .int16(volume.voxels), shape: volume.shape, geometry: volume.geometry)
    }

    /// The uncompressed file bytes: header, extensions, voxels, little endian.
    public func encoded() -> Data {
        var out = Data(capacity: header.raw.count + extensions.count + voxels.count * voxels.dataType.bytesPerVoxel)
        var h = header
        h.voxOffset = Float(NIfTIHeader.size + extensions.count)
        out.append(contentsOf: h.raw)
        out.append(contentsOf: extensions)
        func append<T: FixedWidthInteger>(_ values: [T]) {
            values.withUnsafeBufferPointer { buffer in
                if 1.littleEndian == 1 {
                    out.append(UnsafeBufferPointer(start: UnsafeRawPointer(buffer.baseAddress!)
                        .assumingMemoryBound(to: UInt8.self), count: buffer.count * MemoryLayout<T>.size))
                } else {
                    for v in buffer { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
                }
            }
        }
        switch voxels {
        case .uint8(let a): out.append(contentsOf: a)
        case .int8(let a): out.append(contentsOf: a.map { UInt8(bitPattern: $0) })
        case .int16(let a): append(a)
        case .uint16(let a): append(a)
        case .int32(let a): append(a)
        case .uint32(let a): append(a)
        case .int64(let a): append(a)
        case .uint64(let a): append(a)
        case .float32(let a): append(a.map(\.bitPattern))
        case .float64(let a): append(a.map(\.bitPattern))
        }
        return out
    }

    /// Writes the image; a path ending in `.gz` is gzip-compressed. The file is written to a temporary
    /// name beside the target and renamed, so a reader never sees a partial file.
    public func write(to url: URL) throws {
        let path = url.path
        var data = encoded()
        if url.pathExtension == "gz" {
            do {
                data = try Gzip.compress(data)
            } catch {
                throw NIfTIError(code: .unwritable, path: path, detail: "\(error)")
            }
        }
        let temporary = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).partial-\(UUID().uuidString)")
        do {
            try data.write(to: temporary)
            // rename(2) replaces an existing file atomically. (Foundation's replaceItemAt on Linux deleted the
            // existing file and then failed, so a second validation into the same folder lost its files.)
            guard rename(temporary.path, path) == 0 else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: String(cString: strerror(errno))])
            }
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw NIfTIError(code: .unwritable, path: path, detail: "cannot write (\(error.localizedDescription))")
        }
    }

    /// NIfTI quaternion (b, c, d) and qfac of an orthonormal RAS direction matrix.
    static func quaternion(of rotation: Matrix3) -> (SIMD3<Double>, Double) {
        var r = rotation
        var qfac = 1.0
        if r.determinant < 0 {
            qfac = -1
            r[column: 2] = -r[column: 2]
        }
        let (r11, r12, r13) = (r[0, 0], r[0, 1], r[0, 2])
        let (r21, r22, r23) = (r[1, 0], r[1, 1], r[1, 2])
        let (r31, r32, r33) = (r[2, 0], r[2, 1], r[2, 2])
        var a = r11 + r22 + r33 + 1
        var b, c, d: Double
        if a > 0.5 {
            a = 0.5 * a.squareRoot()
            b = 0.25 * (r32 - r23) / a
            c = 0.25 * (r13 - r31) / a
            d = 0.25 * (r21 - r12) / a
        } else {
            let xd = 1 + r11 - (r22 + r33), yd = 1 + r22 - (r11 + r33), zd = 1 + r33 - (r11 + r22)
            if xd > 1 {
                b = 0.5 * xd.squareRoot()
                c = 0.25 * (r12 + r21) / b
                d = 0.25 * (r13 + r31) / b
                a = 0.25 * (r32 - r23) / b
            } else if yd > 1 {
                c = 0.5 * yd.squareRoot()
                b = 0.25 * (r12 + r21) / c
                d = 0.25 * (r23 + r32) / c
                a = 0.25 * (r13 - r31) / c
            } else {
                d = 0.5 * zd.squareRoot()
                b = 0.25 * (r13 + r31) / d
                c = 0.25 * (r23 + r32) / d
                a = 0.25 * (r21 - r12) / d
            }
            if a < 0 {
                b = -b
                c = -c
                d = -d
            }
        }
        return (SIMD3(b, c, d), qfac)
    }
}
