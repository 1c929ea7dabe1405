/// The keyhole form of a slice's contours, for planning systems that take the union of a structure's contours
/// and so cannot show holes (issue #17, `outputs.holes: keyhole`): each hole is joined to the outer boundary
/// around it by a zero-width cut between their closest vertices, so a ring is one polygon. Islands (outer
/// boundaries inside holes) stay separate polygons.
///
/// ```swift
/// let merged = Keyhole.merge(MarchingSquares.contours(mask: ring, rows: h, columns: w))   // 1 polygon
/// ```
public enum Keyhole {
    /// `polygons` as ``MarchingSquares`` gives them: outer boundaries counter-clockwise, holes clockwise.
    public static func merge(_ polygons: [Polygon]) -> [Polygon] {
        var outers = polygons.filter { !$0.isHole }
        let holes = polygons.filter(\.isHole)
        for hole in holes {
            guard let first = hole.points.first else { continue }
            // The smallest outer boundary around the hole.
            let candidates = outers.indices.filter { contains(outers[$0], first) }
            guard let o = candidates.min(by: { abs(outers[$0].signedArea) < abs(outers[$1].signedArea) }) else {
                outers.append(hole)  // not inside anything: keep it as it is
                continue
            }
            var outer = outers[o].points
            // The closest pair of vertices.
            var best = (i: 0, j: 0, d: Double.infinity)
            for (i, p) in outer.enumerated() {
                for (j, q) in hole.points.enumerated() {
                    let v = p - q
                    let d = (v * v).sum()
                    if d < best.d { best = (i, j, d) }
                }
            }
            // outer … p, q (hole from q around to q), p … outer.
            let h = hole.points
            let loop = Array(h[best.j...]) + Array(h[..<best.j]) + [h[best.j]]
            outer.insert(contentsOf: loop + [outer[best.i]], at: best.i + 1)
            outers[o] = Polygon(points: outer)
        }
        return outers
    }

    /// Even-odd point-in-polygon.
    static func contains(_ polygon: Polygon, _ p: SIMD2<Double>) -> Bool {
        var inside = false
        let v = polygon.points
        var j = v.count - 1
        for i in 0..<v.count {
            if (v[i].y > p.y) != (v[j].y > p.y) {
                let x = v[j].x + (p.y - v[j].y) / (v[i].y - v[j].y) * (v[i].x - v[j].x)
                if p.x < x { inside.toggle() }
            }
            j = i
        }
        return inside
    }
}
