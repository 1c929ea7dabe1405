/// Sizes of a voxel grid as nnU-Net sees the array: `(z, y, x)`, x fastest in memory.
public struct VolumeShape: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var z: Int
    public var y: Int
    public var x: Int

    public init(z: Int, y: Int, x: Int) {
        precondition(z >= 0 && y >= 0 && x >= 0, "negative volume size")
        self.z = z
        self.y = y
        self.x = x
    }

    public var count: Int { z * y * x }
    /// (z, y, x), the numpy/SimpleITK array order.
    public var zyx: [Int] { [z, y, x] }
    /// (x, y, z), the ITK `GetSize()` order.
    public var xyz: [Int] { [x, y, z] }

    @inlinable public func linearIndex(z: Int, y: Int, x: Int) -> Int { (z &* self.y &+ y) &* self.x &+ x }

    public var description: String { "\(z)×\(y)×\(x) (z×y×x)" }
}

/// Element types a ``Volume`` may hold.
public protocol VoxelScalar: Numeric, Sendable, Equatable {
    /// The value as a Double (exact for every supported type up to 2^53).
    var doubleValue: Double { get }
}

extension Float: VoxelScalar { public var doubleValue: Double { Double(self) } }
extension Double: VoxelScalar { public var doubleValue: Double { self } }
extension UInt8: VoxelScalar { public var doubleValue: Double { Double(self) } }
extension Int8: VoxelScalar { public var doubleValue: Double { Double(self) } }
extension UInt16: VoxelScalar { public var doubleValue: Double { Double(self) } }
extension Int16: VoxelScalar { public var doubleValue: Double { Double(self) } }
extension UInt32: VoxelScalar { public var doubleValue: Double { Double(self) } }
extension Int32: VoxelScalar { public var doubleValue: Double { Double(self) } }
extension Int64: VoxelScalar { public var doubleValue: Double { Double(self) } }
extension UInt64: VoxelScalar { public var doubleValue: Double { Double(self) } }

/// A 3-D voxel grid with its place in patient space.
///
/// Layout: `voxels[(z * shape.y + y) * shape.x + x]` — the raw NIfTI buffer order and the `(z, y, x)`
/// array SimpleITK hands to nnU-Net. Geometry follows ITK (``VolumeGeometry``): index axis 0 is x.
///
/// ```swift
/// let ct = try DICOMSeriesLoader().load(stack)          // Volume<Float> in HU
/// let p = VoxelToPatient(ct.geometry)(SIMD3(0, 0, 0))   // LPS centre of the first voxel
/// ```
public struct Volume<Element: VoxelScalar>: Sendable, Equatable {
    public var shape: VolumeShape
    public var geometry: VolumeGeometry
    public var voxels: [Element]

    public init(shape: VolumeShape, geometry: VolumeGeometry, voxels: [Element]) {
        precondition(voxels.count == shape.count, "voxel count \(voxels.count) does not match shape \(shape)")
        self.shape = shape
        self.geometry = geometry
        self.voxels = voxels
    }

    public init(shape: VolumeShape, geometry: VolumeGeometry, repeating value: Element) {
        self.init(shape: shape, geometry: geometry, voxels: Array(repeating: value, count: shape.count))
    }

    @inlinable public subscript(z: Int, y: Int, x: Int) -> Element {
        get { voxels[shape.linearIndex(z: z, y: y, x: x)] }
        set { voxels[shape.linearIndex(z: z, y: y, x: x)] = newValue }
    }

    /// Same grid, voxels converted element by element.
    public func map<T: VoxelScalar>(_ transform: (Element) -> T) -> Volume<T> {
        Volume<T>(shape: shape, geometry: geometry, voxels: voxels.map(transform))
    }
}

/// Intensity image (what the network reads).
public typealias ImageVolume = Volume<Float>
/// Label map (what the network writes): label values 0…65535, as nnU-Net's uint16 segmentations — never
/// narrowed on the way to an output (a format that cannot hold a value refuses it).
public typealias LabelVolume = Volume<UInt16>

extension Volume {
    /// The same voxels indexed on another grid that covers exactly the same voxel centres — a
    /// permutation and/or flip of the axes (e.g. a NIfTI written with the row axis reversed, as dcm2niix
    /// does). Returns nil when the grids are not such a re-indexing (different spacing, shifted, rotated),
    /// which callers report as a grid mismatch rather than resample silently.
    public func reindexed(onto geometry: VolumeGeometry, shape: VolumeShape, tolerance: Double = 1e-3) -> Volume? {
        guard shape.count == self.shape.count, let toSource = PatientToVoxel(self.geometry) else { return nil }
        let toPatient = VoxelToPatient(geometry)
        // The map target index → source index is affine; find it from the origin and the three unit steps.
        let o = toSource(toPatient(.zero))
        let steps = [SIMD3<Double>(1, 0, 0), SIMD3(0, 1, 0), SIMD3(0, 0, 1)].map { toSource(toPatient($0)) - o }
        func integral(_ v: SIMD3<Double>) -> SIMD3<Int>? {
            let r = v.rounded(.toNearestOrEven)
            return maxAbs(v - r) <= tolerance ? SIMD3(Int(r.x), Int(r.y), Int(r.z)) : nil
        }
        guard let origin = integral(o), let sx = integral(steps[0]), let sy = integral(steps[1]), let sz = integral(steps[2]) else { return nil }
        // Each step must be a unit step along one source axis (a permutation with signs).
        for s in [sx, sy, sz] where abs(s.x) + abs(s.y) + abs(s.z) != 1 { return nil }
        var out = [Element]()
        out.reserveCapacity(shape.count)
        for k in 0..<shape.z {
            for j in 0..<shape.y {
                for i in 0..<shape.x {
                    let p = origin &+ sx &* i &+ sy &* j &+ sz &* k
                    guard p.x >= 0, p.y >= 0, p.z >= 0, p.x < self.shape.x, p.y < self.shape.y, p.z < self.shape.z else { return nil }
                    out.append(self[p.z, p.y, p.x])
                }
            }
        }
        return Volume(shape: shape, geometry: geometry, voxels: out)
    }
}
