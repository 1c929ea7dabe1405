import PlansModel
import TensorKernels

/// A weight tensor is missing, unexpected or of the wrong shape (names the tensor, expected and actual).
public struct WeightError: Error, CustomStringConvertible, Equatable {
    public let tensor: String
    public let detail: String
    public var description: String { "WEIGHTS_MISMATCH: \(tensor): \(detail)" }

    public init(tensor: String, detail: String) {
        self.tensor = tensor
        self.detail = detail
    }
}

/// nnU-Net's PlainConvUNet or ResidualEncoderUNet (dynamic-network-architectures 0.4.4), built from a
/// plans architecture and loaded with a state dict. Any number of stages, anisotropic kernels and
/// strides, 2-D or 3-D. Deep-supervision heads are loaded (and checked) but inference uses only the
/// full-resolution head.
///
/// ```swift
/// let unet = try UNet(bundle: bundle, fold: bundle.folds[0])
/// let compiled = try unet.compile(patch: [40, 56, 40])
/// let logits = try compiled.forward(tile)        // (1, classes, 40, 56, 40)
/// ```
public final class UNet: @unchecked Sendable {
    public let architecture: NetworkArchitecture
    public let inputChannels: Int
    public let numClasses: Int
    let weights: [String: Tensor]

    public init(architecture: NetworkArchitecture, inputChannels: Int, numClasses: Int, weights: [String: Tensor]) throws {
        self.architecture = architecture
        self.inputChannels = inputChannels
        self.numClasses = numClasses
        self.weights = weights
        let expected = Self.expectedTensors(architecture, inputChannels: inputChannels, numClasses: numClasses)
        let expectedNames = Set(expected.map(\.name))
        for (name, shape) in expected {
            guard let tensor = weights[name] else {
                throw WeightError(tensor: name, detail: "missing from the checkpoint (expected shape \(shape))")
            }
            guard tensor.shape == shape else {
                throw WeightError(tensor: name, detail: "shape \(tensor.shape), expected \(shape)")
            }
        }
        if let extra = weights.keys.sorted().first(where: { !expectedNames.contains($0) }) {
            throw WeightError(tensor: extra, detail: "unexpected tensor: the checkpoint does not fit this architecture")
        }
    }

    public convenience init(bundle: ModelBundle, fold: ModelBundle.Fold) throws {
        try self.init(architecture: bundle.configuration.architecture, inputChannels: bundle.inputChannels,
                      numClasses: bundle.dataset.segmentationHeads, weights: try bundle.weights(fold))
    }

    // MARK: Parameter layout

    /// Every parameter the architecture needs, with its shape, under its canonical state-dict name.
    /// Every state-dict key under which nnU-Net's networks expose a parameter: each conv–norm–nonlin unit
    /// also registers its conv and norm in `all_modules`, and the decoder re-exposes the encoder. A checkpoint
    /// needs all of them for `load_state_dict` in the reference to accept it.
    public static func stateDictionaryKeys(_ name: String) -> [String] {
        var names = [name]
        if name.contains(".conv.") || name.contains(".norm.") {
            names.append(name.replacingOccurrences(of: ".conv.", with: ".all_modules.0.").replacingOccurrences(of: ".norm.", with: ".all_modules.1."))
        }
        if name.hasPrefix("encoder.") { names += names.map { "decoder." + $0 } }
        return names
    }

    public static func expectedTensors(_ a: NetworkArchitecture, inputChannels: Int, numClasses: Int) -> [(name: String, shape: [Int])] {
        var list: [(String, [Int])] = []
        let f = a.featuresPerStage, n = a.stages
        func convUnit(_ prefix: String, out: Int, in inC: Int, kernel: [Int], bias: Bool = true, norm: Bool = true) {
            list.append(("\(prefix).conv.weight", [out, inC] + kernel))
            if bias && a.convBias { list.append(("\(prefix).conv.bias", [out])) }
            if norm && a.normAffine {
                list.append(("\(prefix).norm.weight", [out]))
                list.append(("\(prefix).norm.bias", [out]))
            }
        }
        switch a.kind {
        case .plainConvUNet:
            for s in 0..<n {
                for i in 0..<a.blocksPerStage[s] {
                    let inC = i > 0 ? f[s] : (s == 0 ? inputChannels : f[s - 1])
                    convUnit("encoder.stages.\(s).0.convs.\(i)", out: f[s], in: inC, kernel: a.kernelSizes[s])
                }
            }
        case .residualEncoderUNet:
            let stem = a.stemChannels ?? f[0]
            convUnit("encoder.stem.convs.0", out: stem, in: inputChannels, kernel: a.kernelSizes[0])
            for s in 0..<n {
                for b in 0..<a.blocksPerStage[s] {
                    let inC = b > 0 ? f[s] : (s == 0 ? stem : f[s - 1])
                    let strided = b == 0 && a.strides[s].contains { $0 != 1 }
                    let prefix = "encoder.stages.\(s).blocks.\(b)"
                    convUnit("\(prefix).conv1", out: f[s], in: inC, kernel: a.kernelSizes[s])
                    convUnit("\(prefix).conv2", out: f[s], in: f[s], kernel: a.kernelSizes[s])
                    if inC != f[s] {
                        convUnit("\(prefix).skip.\(strided ? 1 : 0)", out: f[s], in: inC,
                                 kernel: Array(repeating: 1, count: a.dimension), bias: false)
                    }
                }
            }
        }
        for s in 0..<(n - 1) {
            let below = f[n - 1 - s], skip = f[n - 2 - s]
            list.append(("decoder.transpconvs.\(s).weight", [below, skip] + a.strides[n - 1 - s]))
            if a.convBias { list.append(("decoder.transpconvs.\(s).bias", [skip])) }
            for i in 0..<a.convsPerDecoderStage[s] {
                convUnit("decoder.stages.\(s).convs.\(i)", out: skip, in: i == 0 ? 2 * skip : skip, kernel: a.kernelSizes[n - 2 - s])
            }
            list.append(("decoder.seg_layers.\(s).weight", [numClasses, skip] + Array(repeating: 1, count: a.dimension)))
            list.append(("decoder.seg_layers.\(s).bias", [numClasses]))
        }
        return list
    }

    func tensor(_ name: String) -> Tensor { weights[name]! }
    func vector(_ name: String) -> [Float]? { weights[name]?.data }

    // MARK: Compilation

    /// Builds the oneDNN primitives for batch 1 and one input size (e.g. the patch size).
    /// - Parameter sharing: a compiled network whose activation arena (and lock) this one reuses when it is
    ///   big enough — folds of one model run one at a time, so they need one workspace, not one each.
    public func compile(patch: [Int], context: DNNLContext? = nil, sharingWorkspaceWith sharing: CompiledUNet? = nil,
                        precision: ConvolutionPrecision = .float32) throws -> CompiledUNet {
        try CompiledUNet(network: self, patch: patch, context: context ?? DNNLContext(), sharing: sharing, precision: precision)
    }
}
