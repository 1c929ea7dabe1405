import Testing
@testable import Contours

struct MarchingSquaresTests {
    static func mask(_ rows: [String]) -> ([Bool], Int, Int) {
        (rows.flatMap { $0.map { $0 == "#" } }, rows.count, rows[0].count)
    }

    @Test func singlePixelIsACounterClockwiseDiamond() {
        let (m, r, c) = Self.mask(["...", ".#.", "..."])
        let polygons = MarchingSquares.contours(mask: m, rows: r, columns: c)
        #expect(polygons.count == 1)
        #expect(polygons[0].points.count == 4)
        #expect(polygons[0].signedArea == 0.5)
        #expect(MarchingSquares.rasterize(polygons, rows: r, columns: c) == m)
    }

    @Test func ringHasAnOuterAndAHoleAndRoundTrips() {
        let (m, r, c) = Self.mask([".......", ".#####.", ".#...#.", ".#...#.", ".#####.", "......."])
        let polygons = MarchingSquares.contours(mask: m, rows: r, columns: c)
        #expect(polygons.count == 2)
        #expect(polygons.filter(\.isHole).count == 1)
        #expect(MarchingSquares.rasterize(polygons, rows: r, columns: c) == m)
    }

    @Test func islandsInsideHolesAndDiagonalNeighbours() {
        let (m, r, c) = Self.mask([
            "##########",
            "#........#",
            "#..##....#",
            "#..##..#.#",
            "#.....#..#",
            "#........#",
            "##########",
        ])
        let polygons = MarchingSquares.contours(mask: m, rows: r, columns: c)
        // Outer frame, its hole, the 2×2 island, and two diagonal pixels kept apart.
        #expect(polygons.count == 5)
        #expect(polygons.filter(\.isHole).count == 1)
        #expect(MarchingSquares.rasterize(polygons, rows: r, columns: c) == m)
    }

    @Test func randomMasksRoundTripExactly() {
        var state: UInt64 = 12345
        func random() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 33 }
        for _ in 0..<50 {
            let rows = 5 + Int(random() % 20), columns = 5 + Int(random() % 20)
            let m = (0..<(rows * columns)).map { _ in random() % 3 == 0 }
            let polygons = MarchingSquares.contours(mask: m, rows: rows, columns: columns)
            #expect(MarchingSquares.rasterize(polygons, rows: rows, columns: columns) == m)
            #expect(polygons.allSatisfy { $0.points.count >= 3 })
        }
    }

    @Test func simplificationKeepsTheShapeWithinTolerance() {
        // A 20-pixel disc: simplification with 0.5 px removes vertices but keeps the area close.
        var m = [Bool](repeating: false, count: 30 * 30)
        for y in 0..<30 { for x in 0..<30 where (x - 15) * (x - 15) + (y - 15) * (y - 15) <= 100 { m[y * 30 + x] = true } }
        let exact = MarchingSquares.contours(mask: m, rows: 30, columns: 30)
        let simple = MarchingSquares.contours(mask: m, rows: 30, columns: 30, tolerance: 0.5)
        #expect(simple[0].points.count < exact[0].points.count)
        #expect(abs(simple[0].signedArea - exact[0].signedArea) / exact[0].signedArea < 0.03)
    }
}
