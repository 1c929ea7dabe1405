import Foundation
import Testing
@testable import Training

/// The cascade's one-hot previous stage and its perturbations (#21; batchgeneratorsv2's
/// MoveSegAsOneHotToData, ApplyRandomBinaryOperator, RemoveRandomConnectedComponentFromOneHotEncoding).
struct CascadeAugmentationTests {
    /// skimage's `ball(r)` / `disk(r)` voxel counts for real radii (skimage 0.25, as batchgeneratorsv2 uses it).
    @Test(arguments: [(1.0, 7, 5), (1.5, 8, 4), (2.3, 33, 15), (3.7, 160, 41), (7.9, 1736, 191)])
    func structuringElementsAreSkimages(_ radius: Double, _ ball: Int, _ disk: Int) {
        func count(_ e: StructuringElement) -> Int { e.rows.reduce(0) { $0 + $1.3 - $1.2 + 1 } }
        #expect(count(StructuringElement(radius: radius, planar: false)) == ball)
        #expect(count(StructuringElement(radius: radius, planar: true)) == disk)
    }

    @Test func dilationErosionAndTheirAnchor() {
        let shape = [7, 7, 7]
        func at(_ z: Int, _ y: Int, _ x: Int) -> Int { (z * 7 + y) * 7 + x }
        var point = [Bool](repeating: false, count: 343)
        point[at(3, 3, 3)] = true
        // ball(1): the 6-neighbourhood and the centre.
        let cross = StructuringElement(radius: 1, planar: false).dilate(point, shape: shape)
        #expect(cross.filter { $0 }.count == 7 && cross[at(2, 3, 3)] && cross[at(3, 3, 4)] && !cross[at(2, 2, 3)])
        // ball(1.5) is 2×2×2 at offsets {0, 1} ('same' padding of an even kernel): a point grows towards lower indices.
        let cube = StructuringElement(radius: 1.5, planar: false).dilate(point, shape: shape)
        #expect(cube.filter { $0 }.count == 8 && cube[at(2, 2, 2)] && cube[at(3, 3, 3)] && !cube[at(4, 4, 4)])
        // Erosion: a 3×3×3 block shrinks to its centre under ball(1); the whole volume stays whole (outside counts as set).
        var block = [Bool](repeating: false, count: 343)
        for z in 2...4 { for y in 2...4 { for x in 2...4 { block[at(z, y, x)] = true } } }
        let eroded = StructuringElement(radius: 1, planar: false).erode(block, shape: shape)
        #expect(eroded.filter { $0 }.count == 1 && eroded[at(3, 3, 3)], "only the centre keeps its whole cross inside the block")
        #expect(StructuringElement(radius: 2.3, planar: false).erode([Bool](repeating: true, count: 343), shape: shape).allSatisfy { $0 })
    }

    @Test func oneHotAndComponentRemoval() {
        // Previous stage: label 1 in two separate blobs (8 and 1 voxels), label 2 in one voxel; −1 already removed.
        var previous = [Int16](repeating: 0, count: 6 * 6 * 6)
        func at(_ z: Int, _ y: Int, _ x: Int) -> Int { (z * 6 + y) * 6 + x }
        for z in 0...1 { for y in 0...1 { for x in 0...1 { previous[at(z, y, x)] = 1 } } }
        previous[at(5, 5, 5)] = 1
        previous[at(3, 3, 0)] = 2
        var s = Sample(shape: [6, 6, 6], channels: 1, data: [Float](repeating: 0.5, count: 216), labels: [Int16](repeating: 0, count: 216),
                       previous: previous)
        CascadeAugmentation.appendOneHot(&s, labels: [1, 2])
        #expect(s.channels == 3 && s.previous == nil && s.data.count == 3 * 216)
        #expect(s.data[216 + at(5, 5, 5)] == 1 && s.data[2 * 216 + at(3, 3, 0)] == 1 && s.data[216 + at(3, 3, 0)] == 0)
        let (labels, sizes) = CascadeAugmentation.components((0..<216).map { s.data[216 + $0] != 0 }, shape: [6, 6, 6], planar: false)
        #expect(sizes.sorted() == [1, 8] && labels[at(1, 1, 1)] == labels[at(0, 0, 0)])
        // Both label-1 blobs are under 15 % of the patch: removing components only ever deletes whole blobs.
        var rng = RandomSource(seed: 20261204)
        for _ in 0..<20 {
            var t = s
            CascadeAugmentation.removeRandomComponents(&t, channels: [1, 2], planar: false, &rng)
            let blob = (0..<216).filter { t.data[216 + $0] != 0 }.count
            #expect([0, 1, 8, 9].contains(blob))
        }
        // Random operators keep the one-hot channels binary and mutually exclusive.
        for _ in 0..<10 {
            var t = s
            CascadeAugmentation.randomBinaryOperators(&t, channels: [1, 2], planar: false, &rng)
            for v in 0..<216 {
                let a = t.data[216 + v], b = t.data[432 + v]
                #expect((a == 0 || a == 1) && (b == 0 || b == 1) && a + b <= 1)
            }
        }
    }
}
