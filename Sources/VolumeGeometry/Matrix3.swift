/// A 3×3 matrix of doubles stored by columns: `columns.0` is the first column.
///
/// Used for direction cosines and voxel→patient linear maps. For a direction matrix, column `j` is the
/// unit vector along index axis `j` (ITK convention), so `ITK GetDirection()` row-major values map to
/// `Matrix3(rowMajor:)`.
public struct Matrix3: Equatable, Sendable, CustomStringConvertible {
    public var columns: (SIMD3<Double>, SIMD3<Double>, SIMD3<Double>)

    public init(columns c0: SIMD3<Double>, _ c1: SIMD3<Double>, _ c2: SIMD3<Double>) {
        columns = (c0, c1, c2)
    }

    /// Builds from nine values in row-major order (as ITK/SimpleITK `GetDirection()` returns them).
    public init(rowMajor v: [Double]) {
        precondition(v.count == 9, "Matrix3 needs 9 values")
        columns = (SIMD3(v[0], v[3], v[6]), SIMD3(v[1], v[4], v[7]), SIMD3(v[2], v[5], v[8]))
    }

    public static let identity = Matrix3(columns: SIMD3(1, 0, 0), SIMD3(0, 1, 0), SIMD3(0, 0, 1))

    public static func diagonal(_ d: SIMD3<Double>) -> Matrix3 {
        Matrix3(columns: SIMD3(d.x, 0, 0), SIMD3(0, d.y, 0), SIMD3(0, 0, d.z))
    }

    public subscript(column j: Int) -> SIMD3<Double> {
        get {
            switch j {
            case 0: return columns.0
            case 1: return columns.1
            case 2: return columns.2
            default: preconditionFailure("column index \(j) out of range")
            }
        }
        set {
            switch j {
            case 0: columns.0 = newValue
            case 1: columns.1 = newValue
            case 2: columns.2 = newValue
            default: preconditionFailure("column index \(j) out of range")
            }
        }
    }

    /// Element at row `i`, column `j`.
    public subscript(i: Int, j: Int) -> Double { self[column: j][i] }

    /// Row-major values, the order ITK prints and SimpleITK returns.
    public var rowMajor: [Double] { (0..<3).flatMap { i in (0..<3).map { j in self[i, j] } } }

    public var transposed: Matrix3 {
        Matrix3(rowMajor: (0..<3).flatMap { j in (0..<3).map { i in self[i, j] } })
    }

    public static func * (m: Matrix3, v: SIMD3<Double>) -> SIMD3<Double> {
        m.columns.0 * v.x + m.columns.1 * v.y + m.columns.2 * v.z
    }

    public static func * (a: Matrix3, b: Matrix3) -> Matrix3 {
        Matrix3(columns: a * b.columns.0, a * b.columns.1, a * b.columns.2)
    }

    public var determinant: Double {
        dot(columns.0, cross(columns.1, columns.2))
    }

    /// The inverse, or nil when the matrix is singular (|det| below 1e-12 of the column scale).
    public var inverse: Matrix3? {
        let det = determinant
        let scale = max(length(columns.0) * length(columns.1) * length(columns.2), .leastNormalMagnitude)
        guard abs(det) > 1e-12 * scale else { return nil }
        // Rows of the inverse are the cross products of column pairs divided by the determinant.
        let r0 = cross(columns.1, columns.2) / det
        let r1 = cross(columns.2, columns.0) / det
        let r2 = cross(columns.0, columns.1) / det
        return Matrix3(rowMajor: [r0.x, r0.y, r0.z, r1.x, r1.y, r1.z, r2.x, r2.y, r2.z])
    }

    public var description: String {
        let rows = (0..<3).map { i in "[" + (0..<3).map { j in "\(self[i, j])" }.joined(separator: ", ") + "]" }
        return "[" + rows.joined(separator: ", ") + "]"
    }

    public static func == (a: Matrix3, b: Matrix3) -> Bool {
        a.columns.0 == b.columns.0 && a.columns.1 == b.columns.1 && a.columns.2 == b.columns.2
    }

    /// Largest absolute element-wise difference.
    public func maxAbsDifference(_ other: Matrix3) -> Double {
        zip(rowMajor, other.rowMajor).map { abs($0 - $1) }.max() ?? 0
    }
}

@inlinable public func dot(_ a: SIMD3<Double>, _ b: SIMD3<Double>) -> Double { (a * b).sum() }

@inlinable public func cross(_ a: SIMD3<Double>, _ b: SIMD3<Double>) -> SIMD3<Double> {
    SIMD3(a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x)
}

@inlinable public func length(_ a: SIMD3<Double>) -> Double { dot(a, a).squareRoot() }

@inlinable public func normalize(_ a: SIMD3<Double>) -> SIMD3<Double> { a / length(a) }

/// Largest absolute component.
@inlinable public func maxAbs(_ a: SIMD3<Double>) -> Double { max(abs(a.x), abs(a.y), abs(a.z)) }
