import Testing
import TestSupport
import VolumeGeometry

struct VolumeGeometryTests {
    /// A deterministic generator so that failures reproduce.
    static func randomGeometry(_ rng: inout SplitMix, sheared: Bool) -> VolumeGeometry {
        func unit() -> SIMD3<Double> {
            normalize(SIMD3(Double.random(in: -1...1, using: &rng), Double.random(in: -1...1, using: &rng),
                            Double.random(in: -1...1, using: &rng)))
        }
        let x = unit()
        let y = normalize(cross(cross(x, unit()), x))
        var z = cross(x, y)
        if sheared { z = normalize(z + 0.3 * y) }
        return VolumeGeometry(
            origin: SIMD3(Double.random(in: -500...500, using: &rng), Double.random(in: -500...500, using: &rng),
                          Double.random(in: -900...100, using: &rng)),
            spacing: SIMD3(Double.random(in: 0.2...5, using: &rng), Double.random(in: 0.2...5, using: &rng),
                           Double.random(in: 0.5...8, using: &rng)),
            direction: Matrix3(columns: x, y, z))
    }

    /// Spec R-RD-11: VoxelToPatient and PatientToVoxel are exact inverses (< 1e-6 mm), sheared or not.
    @Test(arguments: [false, true])
    func transformsAreInverses(sheared: Bool) throws {
        var rng = SplitMix(state: sheared ? 7 : 3)
        for _ in 0..<200 {
            let g = Self.randomGeometry(&rng, sheared: sheared)
            #expect(g.isOrthogonal() == !sheared)
            let toPatient = VoxelToPatient(g)
            let toVoxel = try #require(PatientToVoxel(g))
            for _ in 0..<10 {
                let index = SIMD3(Double.random(in: -10...600, using: &rng), Double.random(in: -10...600, using: &rng),
                                  Double.random(in: -10...400, using: &rng))
                let back = toVoxel(toPatient(index))
                #expect(maxAbs(toPatient(back) - toPatient(index)) < 1e-6)
                #expect(maxAbs(back - index) < 1e-6)
            }
        }
    }

    @Test func affineFollowsITKConventions() {
        // Spacing along each index axis, origin at voxel (0, 0, 0).
        let g = VolumeGeometry(origin: SIMD3(-249.51171875, -437.51171875, -804.5), spacing: SIMD3(0.9765625, 0.9765625, 2),
                               direction: .identity)
        #expect(VoxelToPatient(g)(SIMD3(511, 511, 19)) == SIMD3(249.51171875, 61.51171875, -766.5))
        // RAS affine negates the first two rows (nibabel's view of the same grid).
        #expect(g.affineRAS[0] == [-0.9765625, 0, 0, 249.51171875])
        #expect(g.affineRAS[1] == [0, -0.9765625, 0, 437.51171875])
        #expect(g.affineRAS[2] == [0, 0, 2, -804.5])
        #expect(PatientToVoxel(VolumeGeometry(spacing: SIMD3(1, 0, 1))) == nil)
    }

    @Test func volumeLayoutIsZYXWithXFastest() {
        var v = LabelVolume(shape: VolumeShape(z: 2, y: 3, x: 4), geometry: VolumeGeometry(), repeating: 0)
        v[1, 2, 3] = 7
        #expect(v.voxels[(1 * 3 + 2) * 4 + 3] == 7)
        #expect(v.shape.xyz == [4, 3, 2])
        #expect(v.map { Float($0) * 2 }[1, 2, 3] == 14)
    }

    @Test func matrixInverseAndRowMajorOrder() throws {
        let m = Matrix3(rowMajor: [2, 0, 1, 0, 3, 0, 1, 0, 4])
        #expect(m[0, 2] == 1 && m[2, 0] == 1 && m[1, 1] == 3)
        let inv = try #require(m.inverse)
        #expect((m * inv).maxAbsDifference(.identity) < 1e-12)
        #expect(m.rowMajor == [2, 0, 1, 0, 3, 0, 1, 0, 4])
        #expect(m.transposed.transposed == m)
    }
}
