import Contours
import Testing

struct MaskCleanupTests {
    /// A 6×6×6 box: a 3×3×3 cube with a one-voxel hole in its centre, a one-voxel speck elsewhere, and a
    /// two-voxel island touching the cube only diagonally (6-connectivity: a separate island).
    @Test func islandsGoHolesFillLargestStays() {
        let (d, h, w) = (6, 6, 6)
        func index(_ z: Int, _ y: Int, _ x: Int) -> Int { (z * h + y) * w + x }
        var mask = [Bool](repeating: false, count: d * h * w)
        for z in 1...3 { for y in 1...3 { for x in 1...3 { mask[index(z, y, x)] = true } } }
        mask[index(2, 2, 2)] = false                    // the hole
        mask[index(5, 5, 5)] = true                     // a speck on the border
        mask[index(4, 4, 4)] = true; mask[index(4, 4, 5)] = true   // diagonal neighbour of (3,3,3)
        var cleaned = mask
        let counts = MaskCleanup.clean(&cleaned, depth: d, rows: h, columns: w, minimumIslandVoxels: 3, maximumHoleVoxels: 1)
        #expect(counts.islandsRemoved == 2 && counts.voxelsRemoved == 3 && counts.holesFilled == 1 && counts.voxelsFilled == 1)
        var expected = [Bool](repeating: false, count: d * h * w)
        for z in 1...3 { for y in 1...3 { for x in 1...3 { expected[index(z, y, x)] = true } } }
        #expect(cleaned == expected)
        // Thresholds 0: nothing changes. A structure made only of small parts keeps its largest.
        var untouched = mask
        #expect(MaskCleanup.clean(&untouched, depth: d, rows: h, columns: w, minimumIslandVoxels: 0, maximumHoleVoxels: 0) == MaskCleanup.Counts())
        #expect(untouched == mask)
        var specks = [Bool](repeating: false, count: d * h * w)
        specks[index(0, 0, 0)] = true; specks[index(3, 3, 3)] = true; specks[index(3, 3, 4)] = true
        MaskCleanup.clean(&specks, depth: d, rows: h, columns: w, minimumIslandVoxels: 100, maximumHoleVoxels: 0)
        #expect(specks.filter { $0 }.count == 2 && specks[index(3, 3, 3)] && specks[index(3, 3, 4)])
    }

    /// A hole larger than the limit stays; background reaching the border is never a hole.
    @Test func largeHolesAndOpenBackgroundStay() {
        let (d, h, w) = (7, 7, 7)
        var mask = [Bool](repeating: false, count: d * h * w)
        for z in 1...5 { for y in 1...5 { for x in 1...5 { mask[(z * h + y) * w + x] = true } } }
        for z in 2...4 { for y in 2...4 { for x in 2...4 { mask[(z * h + y) * w + x] = false } } }  // 27-voxel cavity
        var cleaned = mask
        let counts = MaskCleanup.clean(&cleaned, depth: d, rows: h, columns: w, minimumIslandVoxels: 0, maximumHoleVoxels: 26)
        #expect(counts.holesFilled == 0 && cleaned == mask)
        let filled = MaskCleanup.clean(&cleaned, depth: d, rows: h, columns: w, minimumIslandVoxels: 0, maximumHoleVoxels: 27)
        #expect(filled.holesFilled == 1 && filled.voxelsFilled == 27 && cleaned.filter { $0 }.count == 125)
    }
}
