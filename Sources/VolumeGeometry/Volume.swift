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
/// Label map (what the network writes); nnU-Net labels fit in 8 bits for all shipped datasets.
public typealias LabelVolume = Volume<UInt8>
