import Foundation

/// A closed polygon in pixel index coordinates `(x = column, y = row)` of one slice; the last vertex
/// connects to the first (not repeated).
public struct Polygon: Equatable, Sendable {
    public var points: [SIMD2<Double>]

    public init(points: [SIMD2<Double>]) { self.points = points }

    /// Shoelace area; positive when counter-clockwise in (x, y) — with x along the image row direction
    /// and y along the column direction that is counter-clockwise seen from +N = X × Y.
    public var signedArea: Double {
        var a = 0.0
        for i in 0..<points.count {
            let p = points[i], q = points[(i + 1) % points.count]
            a += p.x * q.y - q.x * p.y
        }
        return a / 2
    }

    /// Outer boundaries are counter-clockwise, hole boundaries clockwise.
    public var isHole: Bool { signedArea < 0 }
}

/// Contours of a binary slice by marching squares on the pixel-centre grid at iso-level 0.5 (spec §3.7,
/// R-RT-11): vertices lie halfway between an inside and an outside pixel centre, so rasterising the
/// polygons by pixel-centre inclusion gives back exactly the input mask. Diagonally touching pixels are
/// kept apart (4-connected foreground). Outer boundaries come out counter-clockwise, holes clockwise,
/// each starting at its lowest (row, column) vertex; output order is deterministic.
public enum MarchingSquares {
    /// - Parameters:
    ///   - mask: `rows × columns`, row-major, true inside.
    ///   - tolerance: Douglas–Peucker tolerance in pixels; 0 removes only collinear vertices (lossless).
    public static func contours(mask: [Bool], rows: Int, columns: Int, tolerance: Double = 0) -> [Polygon] {
        contours(mask: mask, rows: rows, columns: columns, tolerance: tolerance, keepAllVertices: false)
    }

    /// `keepAllVertices`: every edge midpoint of the loop (for ``isoContours``, which moves each one).
    static func contours(mask: [Bool], rows: Int, columns: Int, tolerance: Double, keepAllVertices: Bool) -> [Polygon] {
        precondition(mask.count == rows * columns)
        @inline(__always) func inside(_ x: Int, _ y: Int) -> Bool {
            x >= 0 && y >= 0 && x < columns && y < rows && mask[y * columns + x]
        }
        // Points are kept in doubled integer coordinates so that edge midpoints are exact, each encoded as one
        // integer whose order is (row, column) order: key = (y2 + 2) · width + (x2 + 2).
        let width = 2 * columns + 5
        @inline(__always) func key(_ x2: Int, _ y2: Int) -> UInt64 { UInt64((y2 + 2) * width + x2 + 2) }
        // Directed segments packed as from-key << 32 | to-key: sorting them orders the loops' starts and lets each
        // step find its successor by binary search (a dictionary of points was a third of contouring's time).
        precondition((2 * rows + 5) * width < 1 << 32, "slice too large for contour keys")
        var segments: [UInt64] = []
        // The table below lists each segment with the inside on its right; store it reversed so that
        // loops run with the inside on the left (outer boundaries counter-clockwise).
        @inline(__always) func add(_ a: UInt64, _ b: UInt64) { segments.append(b << 32 | a) }
        // Cell (x, y) spans pixel centres (x, y) … (x + 1, y + 1); corners a=(x,y) b=(x+1,y) c=(x+1,y+1) d=(x,y+1).
        for y in -1..<rows {
            for x in -1..<columns {
                let a = inside(x, y), b = inside(x + 1, y), c = inside(x + 1, y + 1), d = inside(x, y + 1)
                let code = (a ? 1 : 0) | (b ? 2 : 0) | (c ? 4 : 0) | (d ? 8 : 0)
                if code == 0 || code == 15 { continue }
                // Edge midpoints (doubled): ab on y, bc on x+1, cd on y+1, da on x.
                let ab = key(2 * x + 1, 2 * y), bc = key(2 * x + 2, 2 * y + 1)
                let cd = key(2 * x + 1, 2 * y + 2), da = key(2 * x, 2 * y + 1)
                switch code {
                case 1: add(da, ab)            // a
                case 2: add(ab, bc)            // b
                case 4: add(bc, cd)            // c
                case 8: add(cd, da)            // d
                case 3: add(da, bc)            // a b
                case 6: add(ab, cd)            // b c
                case 12: add(bc, da)           // c d
                case 9: add(cd, ab)            // d a
                case 7: add(da, cd)            // all but d
                case 11: add(cd, bc)           // all but c
                case 13: add(bc, ab)           // all but b
                case 14: add(ab, da)           // all but a
                case 5: add(da, ab); add(bc, cd)   // a and c apart
                case 10: add(ab, bc); add(cd, da)  // b and d apart
                default: break
                }
            }
        }
        // Link the directed segments into loops, each starting at its lowest (row, column) vertex. Every midpoint
        // has exactly one outgoing segment (the saddle rule keeps touching corners apart).
        segments.sort()
        let n = segments.count
        @inline(__always) func index(of from: UInt64) -> Int? {
            var lo = 0, hi = n
            while lo < hi {
                let mid = (lo + hi) >> 1
                if segments[mid] >> 32 < from { lo = mid + 1 } else { hi = mid }
            }
            return lo < n && segments[lo] >> 32 == from ? lo : nil
        }
        var used = [Bool](repeating: false, count: n)
        var polygons: [Polygon] = []
        var loop: [SIMD2<Double>] = []
        for start in 0..<n where !used[start] {
            loop.removeAll(keepingCapacity: true)
            var i: Int? = start
            while let j = i, !used[j] {
                used[j] = true
                let k = Int(segments[j] >> 32)
                loop.append(SIMD2(Double(k % width - 2) / 2, Double(k / width - 2) / 2))
                i = index(of: segments[j] & 0xFFFF_FFFF)
            }
            let simplified = keepAllVertices ? loop : simplify(loop, tolerance: tolerance)
            if simplified.count >= 3 { polygons.append(Polygon(points: simplified)) }
        }
        return polygons
    }

    /// Sub-pixel iso-contours of a scalar field at `level` (issue #17's smooth contours): the same cells,
    /// saddle rule (inside pixels touching only diagonally stay apart), orientation and order as
    /// ``contours(mask:rows:columns:tolerance:)`` with `inside = field > level`, but each vertex placed on its
    /// cell edge where the field, linearly interpolated between the two pixel centres, crosses `level`.
    /// Outside the field counts as 0.
    public static func isoContours(field: [Float], rows: Int, columns: Int, level: Float, tolerance: Double = 0) -> [Polygon] {
        precondition(field.count == rows * columns)
        @inline(__always) func value(_ x: Int, _ y: Int) -> Float {
            x >= 0 && y >= 0 && x < columns && y < rows ? field[y * columns + x] : 0
        }
        let mask = field.map { $0 > level }
        // The loops of the thresholded mask, in doubled coordinates, then each vertex moved along its edge.
        return contours(mask: mask, rows: rows, columns: columns, tolerance: 0, keepAllVertices: true).compactMap { polygon in
            let points = polygon.points.map { p -> SIMD2<Double> in
                let x2 = Int((p.x * 2).rounded()), y2 = Int((p.y * 2).rounded())
                // A vertex is the midpoint of the edge between two pixel centres (one inside, one outside).
                let (ax, ay, bx, by) = x2 % 2 != 0 ? ((x2 - 1) / 2, y2 / 2, (x2 + 1) / 2, y2 / 2) : (x2 / 2, (y2 - 1) / 2, x2 / 2, (y2 + 1) / 2)
                let fa = value(ax, ay), fb = value(bx, by)
                let t = fa == fb ? 0.5 : Double((level - fa) / (fb - fa))
                let clamped = min(max(t, 0.02), 0.98)
                return SIMD2(Double(ax) + clamped * Double(bx - ax), Double(ay) + clamped * Double(by - ay))
            }
            let simplified = simplify(points, tolerance: tolerance)
            return simplified.count >= 3 ? Polygon(points: simplified) : nil
        }
    }

    /// A light Gaussian blur (σ = `sigma` pixels, separable, clipped at the edges) of a mask, as 0…1 floats:
    /// the field smooth contours are drawn from when no probabilities are at hand.
    public static func smoothed(_ mask: [Bool], rows: Int, columns: Int, sigma: Double = 0.5) -> [Float] {
        smoothed(field: mask.map { $0 ? 1 : 0 }, rows: rows, columns: columns, sigma: sigma)
    }

    /// The same blur of a scalar field (zero outside it).
    public static func smoothed(field: [Float], rows: Int, columns: Int, sigma: Double = 0.5) -> [Float] {
        precondition(field.count == rows * columns)
        let radius = max(1, Int((3 * sigma).rounded(.up)))
        var kernel: [Float] = []
        for offset in -radius...radius {
            let d = Double(offset)
            kernel.append(Float(Foundation.exp(-d * d / (2 * sigma * sigma))))
        }
        let sum = kernel.reduce(0, +)
        kernel = kernel.map { $0 / sum }
        var horizontal = [Float](repeating: 0, count: field.count)
        for y in 0..<rows {
            for x in 0..<columns {
                let v = field[y * columns + x]
                guard v != 0 else { continue }
                for k in -radius...radius where x + k >= 0 && x + k < columns { horizontal[y * columns + x + k] += v * kernel[k + radius] }
            }
        }
        var out = [Float](repeating: 0, count: field.count)
        for y in 0..<rows {
            for x in 0..<columns {
                let v = horizontal[y * columns + x]
                guard v != 0 else { continue }
                for k in -radius...radius where y + k >= 0 && y + k < rows { out[(y + k) * columns + x] += v * kernel[k + radius] }
            }
        }
        return out
    }

    /// Removes collinear vertices, then (tolerance > 0) Douglas–Peucker on the closed loop, keeping the
    /// first vertex; never returns fewer than 3 points for a loop that had them.
    public static func simplify(_ points: [SIMD2<Double>], tolerance: Double) -> [SIMD2<Double>] {
        guard points.count > 3 else { return points }
        var kept: [SIMD2<Double>] = []
        let n = points.count
        for i in 0..<n {
            let prev = points[(i + n - 1) % n], p = points[i], nextPoint = points[(i + 1) % n]
            let cross = (p.x - prev.x) * (nextPoint.y - p.y) - (p.y - prev.y) * (nextPoint.x - p.x)
            if abs(cross) > 1e-12 { kept.append(p) }
        }
        guard tolerance > 0, kept.count > 3 else { return kept }
        // Douglas–Peucker on the open chain kept[0] … kept[n−1], kept[0].
        let chain = kept + [kept[0]]
        var keep = [Bool](repeating: false, count: chain.count)
        keep[0] = true
        keep[chain.count - 1] = true
        var stack = [(0, chain.count - 1)]
        while let (s, e) = stack.popLast() {
            guard e > s + 1 else { continue }
            var worst = -1.0, index = s
            for i in (s + 1)..<e {
                let d = distance(chain[i], chain[s], chain[e])
                if d > worst { worst = d; index = i }
            }
            if worst > tolerance {
                keep[index] = true
                stack.append((s, index))
                stack.append((index, e))
            }
        }
        let result = (0..<(chain.count - 1)).filter { keep[$0] }.map { chain[$0] }
        return result.count >= 3 ? result : kept
    }

    static func distance(_ p: SIMD2<Double>, _ a: SIMD2<Double>, _ b: SIMD2<Double>) -> Double {
        let ab = b - a
        let length2 = (ab * ab).sum()
        if length2 == 0 { let d = p - a; return (d * d).sum().squareRoot() }
        let t = max(0, min(1, ((p - a) * ab).sum() / length2))
        let q = a + t * ab
        let d = p - q
        return (d * d).sum().squareRoot()
    }

    /// Pixel-centre inclusion rasterisation with the even-odd rule (the usual reading of separate
    /// CLOSED_PLANAR contours): for round-trip checks.
    public static func rasterize(_ polygons: [Polygon], rows: Int, columns: Int) -> [Bool] {
        var mask = [Bool](repeating: false, count: rows * columns)
        // Each edge adds its crossing only to the rows it spans (lo ≤ y < hi): work in proportion to the edges'
        // extent, not rows × edges (a slice of a fragmented structure has 10⁵ edges).
        var crossings = [[Double]](repeating: [], count: rows)
        for polygon in polygons {
            let pts = polygon.points
            for i in 0..<pts.count {
                let a = pts[i], b = pts[(i + 1) % pts.count]
                guard a.y != b.y, a.y.isFinite, b.y.isFinite else { continue }
                let lo = min(a.y, b.y), hi = max(a.y, b.y)
                guard hi > 0, lo < Double(rows) else { continue }
                let first = max(0, Int(lo.rounded(.up))), last = min(rows - 1, Int(hi.rounded(.up)) - 1)
                guard first <= last else { continue }
                for y in first...last {
                    let py = Double(y)
                    crossings[y].append(a.x + (py - a.y) / (b.y - a.y) * (b.x - a.x))
                }
            }
        }
        for y in 0..<rows where crossings[y].count >= 2 {
            crossings[y].sort()
            let row = crossings[y]
            var i = 0
            while i + 1 < row.count {
                let from = max(0, Int(max(row[i], -1).rounded(.up))), to = min(columns - 1, Int(min(row[i + 1], Double(columns)).rounded(.down)))
                if from <= to { for x in from...to { mask[y * columns + x] = true } }
                i += 2
            }
        }
        return mask
    }
}
