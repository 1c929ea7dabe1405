import Contours
import Testing

struct KeyholeTests {
    /// A ring with an island in its hole: the ring becomes one polygon (hole joined by a cut), the island stays
    /// its own; rasterised back (even-odd) the mask is what it was except on the cut's zero-width line.
    @Test func aRingIsOnePolygonAndAnIslandStaysApart() {
        let (rows, columns) = (16, 16)
        var mask = [Bool](repeating: false, count: rows * columns)
        for y in 2..<14 { for x in 2..<14 {
            let ring = (y < 4 || y >= 12 || x < 4 || x >= 12)
            let island = (7..<9).contains(y) && (7..<9).contains(x)
            mask[y * columns + x] = ring || island
        } }
        let separate = MarchingSquares.contours(mask: mask, rows: rows, columns: columns)
        #expect(separate.count == 3 && separate.filter(\.isHole).count == 1)
        let keyholed = Keyhole.merge(separate)
        #expect(keyholed.count == 2 && !keyholed.contains(where: \.isHole))
        let back = MarchingSquares.rasterize(keyholed, rows: rows, columns: columns)
        let differing = zip(back, mask).filter { $0 != $1 }.count
        #expect(differing <= 4, "\(differing) pixels differ")
        // The island, alone, is unchanged.
        let island = separate.filter { !$0.isHole }.min { abs($0.signedArea) < abs($1.signedArea) }!
        #expect(keyholed.contains { $0 == island })
    }
}
