/// A dense float32 tensor in plain row-major layout: `(N, C, D, H, W)` for 3-D, `(N, C, H, W)` for 2-D
/// networks, last axis fastest (PyTorch's default layout).
public struct Tensor: Equatable, Sendable {
    public var shape: [Int]
    public var data: [Float]

    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count, "tensor data count \(data.count) does not match shape \(shape)")
        self.shape = shape
        self.data = data
    }

    public init(zeros shape: [Int]) {
        self.init(shape: shape, data: [Float](repeating: 0, count: shape.reduce(1, *)))
    }

    public var count: Int { data.count }
    /// Number of spatial axes (shape minus N and C).
    public var spatialRank: Int { shape.count - 2 }
    public var spatialShape: [Int] { Array(shape.dropFirst(2)) }
    public var channels: Int { shape[1] }

    /// Largest absolute element-wise difference (shapes must match).
    public func maxAbsDifference(_ other: Tensor) -> Float {
        precondition(shape == other.shape, "shape \(shape) vs \(other.shape)")
        var m: Float = 0
        for i in 0..<data.count { m = max(m, abs(data[i] - other.data[i])) }
        return m
    }
}

/// Static description of a convolution: `(kernel, stride, padding)` per spatial axis.
public struct ConvolutionGeometry: Equatable, Sendable {
    public var kernel: [Int]
    public var stride: [Int]
    /// Padding before and after each spatial axis (symmetric for nnU-Net convs).
    public var padding: [Int]

    public init(kernel: [Int], stride: [Int], padding: [Int]) {
        precondition(kernel.count == stride.count && stride.count == padding.count)
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
    }

    /// "Same" padding `(k − 1) / 2` as nnU-Net's convs use.
    public static func same(kernel: [Int], stride: [Int]) -> ConvolutionGeometry {
        ConvolutionGeometry(kernel: kernel, stride: stride, padding: kernel.map { ($0 - 1) / 2 })
    }

    public func outputShape(_ input: [Int]) -> [Int] {
        (0..<input.count).map { (input[$0] + 2 * padding[$0] - kernel[$0]) / stride[$0] + 1 }
    }

    /// Transposed convolution output (no output padding).
    public func transposedOutputShape(_ input: [Int]) -> [Int] {
        (0..<input.count).map { (input[$0] - 1) * stride[$0] - 2 * padding[$0] + kernel[$0] }
    }
}
