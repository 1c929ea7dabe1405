/// Where a voxel grid sits in patient space, in ITK's conventions.
///
/// * Patient coordinates are **LPS** millimetres (DICOM: +x Left, +y Posterior, +z Head).
/// * Index axes are `(i, j, k)` = (x, y, z) = (column, row, slice); `spacing` and `origin` are given in
///   that order, exactly as SimpleITK's `GetSpacing()` / `GetOrigin()` report them.
/// * `direction` column `n` is the unit vector along index axis `n` (SimpleITK's `GetDirection()` read
///   row-major). Columns are unit length but need **not** be orthogonal: a gantry-tilted stack keeps its
///   shear in the third column (DICOM "multi-slice" affine, spec R-RD-11); `isOrthogonal` tells.
/// * The centre of voxel `(i, j, k)` is `origin + direction · diag(spacing) · (i, j, k)`.
///
/// nnU-Net sees the voxel buffer as a `(z, y, x)` array with x fastest; see ``Volume``.
public struct VolumeGeometry: Equatable, Sendable {
    public var origin: SIMD3<Double>
    public var spacing: SIMD3<Double>
    public var direction: Matrix3

    public init(origin: SIMD3<Double> = .zero, spacing: SIMD3<Double> = .one, direction: Matrix3 = .identity) {
        self.origin = origin
        self.spacing = spacing
        self.direction = direction
    }

    /// The linear part of voxel→patient: `direction · diag(spacing)`.
    public var linear: Matrix3 { direction * Matrix3.diagonal(spacing) }

    /// True when the direction columns are mutually orthogonal within `tolerance` (cosine).
    public func isOrthogonal(tolerance: Double = 1e-4) -> Bool {
        let d = direction
        return abs(dot(d[column: 0], d[column: 1])) <= tolerance
            && abs(dot(d[column: 0], d[column: 2])) <= tolerance
            && abs(dot(d[column: 1], d[column: 2])) <= tolerance
    }

    /// 4×4 voxel→patient (LPS) affine, row-major.
    public var affineLPS: [[Double]] {
        let m = linear
        return (0..<3).map { i in [m[i, 0], m[i, 1], m[i, 2], origin[i]] } + [[0, 0, 0, 1]]
    }

    /// 4×4 voxel→RAS affine (NIfTI/nibabel convention), row-major.
    public var affineRAS: [[Double]] {
        var a = affineLPS
        for i in 0..<2 { a[i] = a[i].map { $0 == 0 ? 0 : -$0 } }
        return a
    }

    /// Largest absolute difference over origin, spacing and direction values; for tolerance checks.
    public func maxAbsDifference(_ other: VolumeGeometry) -> Double {
        max(maxAbs(origin - other.origin), maxAbs(spacing - other.spacing),
            direction.maxAbsDifference(other.direction))
    }
}

/// Maps continuous voxel indices `(i, j, k)` (x, y, z) to LPS patient millimetres.
public struct VoxelToPatient: Sendable {
    public let linear: Matrix3
    public let origin: SIMD3<Double>

    public init(_ geometry: VolumeGeometry) {
        linear = geometry.linear
        origin = geometry.origin
    }

    public func callAsFunction(_ index: SIMD3<Double>) -> SIMD3<Double> { origin + linear * index }
}

/// Maps LPS patient millimetres to continuous voxel indices `(i, j, k)` (x, y, z); the exact inverse of
/// ``VoxelToPatient`` (the 3×3 part is inverted, so sheared grids are handled).
public struct PatientToVoxel: Sendable {
    public let inverseLinear: Matrix3
    public let origin: SIMD3<Double>

    /// Returns nil for a degenerate geometry (zero spacing or collinear directions).
    public init?(_ geometry: VolumeGeometry) {
        guard let inv = geometry.linear.inverse else { return nil }
        inverseLinear = inv
        origin = geometry.origin
    }

    public func callAsFunction(_ point: SIMD3<Double>) -> SIMD3<Double> { inverseLinear * (point - origin) }
}
