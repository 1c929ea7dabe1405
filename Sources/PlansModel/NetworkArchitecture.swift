import JSON
/// The U-Net a configuration describes, as typed values (no class lookup by string at run time: the two
/// architectures nnU-Net's planners produce are an explicit list).
public struct NetworkArchitecture: Equatable, Sendable {
    public enum Kind: String, Sendable {
        case plainConvUNet = "PlainConvUNet"
        case residualEncoderUNet = "ResidualEncoderUNet"
    }

    public var kind: Kind
    /// 2 or 3 spatial dimensions.
    public var dimension: Int
    public var featuresPerStage: [Int]
    public var kernelSizes: [[Int]]
    public var strides: [[Int]]
    /// Convs (Plain) or residual blocks (ResEnc) per encoder stage.
    public var blocksPerStage: [Int]
    public var convsPerDecoderStage: [Int]
    public var convBias: Bool
    public var normEpsilon: Double
    public var normAffine: Bool
    public var leakyReLUSlope: Double
    /// ResEnc stem width (nil: features[0]).
    public var stemChannels: Int?

    public var stages: Int { featuresPerStage.count }

    public init(kind: Kind, dimension: Int, featuresPerStage: [Int], kernelSizes: [[Int]], strides: [[Int]],
                blocksPerStage: [Int], convsPerDecoderStage: [Int], convBias: Bool = true, normEpsilon: Double = 1e-5,
                normAffine: Bool = true, leakyReLUSlope: Double = 0.01, stemChannels: Int? = nil) {
        self.kind = kind
        self.dimension = dimension
        self.featuresPerStage = featuresPerStage
        self.kernelSizes = kernelSizes
        self.strides = strides
        self.blocksPerStage = blocksPerStage
        self.convsPerDecoderStage = convsPerDecoderStage
        self.convBias = convBias
        self.normEpsilon = normEpsilon
        self.normAffine = normAffine
        self.leakyReLUSlope = leakyReLUSlope
        self.stemChannels = stemChannels
    }

    /// From a configuration's `architecture` block, or from the pre-2.3 keys (`UNet_class_name`, …).
    init(configuration json: JSONValue, dimension: Int, fail: (String, String) -> PlansError) throws {
        if let arch = json["architecture"] {
            guard let className = arch["network_class_name"]?.string else {
                throw fail("architecture.network_class_name", "missing")
            }
            let shortName = String(className.split(separator: ".").last ?? "")
            guard let kind = Kind(rawValue: shortName) else {
                throw fail("architecture.network_class_name",
                           "\(className) is not supported (PlainConvUNet and ResidualEncoderUNet are)")
            }
            guard let kw = arch["arch_kwargs"] else { throw fail("architecture.arch_kwargs", "missing") }
            func ints(_ key: String) throws -> [Int] {
                guard let v = kw[key]?.intArray else { throw fail("architecture.arch_kwargs.\(key)", "missing or not a list of integers") }
                return v
            }
            func matrix(_ key: String) throws -> [[Int]] {
                guard let v = kw[key]?.intMatrix else { throw fail("architecture.arch_kwargs.\(key)", "missing or not a list of lists") }
                return v
            }
            let features = try ints("features_per_stage")
            let blocksKey = kind == .plainConvUNet ? "n_conv_per_stage" : "n_blocks_per_stage"
            let convOp = kw["conv_op"]?.string ?? ""
            let dim = convOp.hasSuffix("Conv2d") ? 2 : convOp.hasSuffix("Conv3d") ? 3 : dimension
            let norm = kw["norm_op"]?.string ?? ""
            guard norm.isEmpty || norm.contains("InstanceNorm") else {
                throw fail("architecture.arch_kwargs.norm_op", "\(norm) is not supported (InstanceNorm is)")
            }
            if let d = kw["dropout_op"], !d.isNull {
                // Dropout is the identity at inference; nothing to build.
            }
            let nonlin = kw["nonlin"]?.string ?? "torch.nn.LeakyReLU"
            guard nonlin.hasSuffix("LeakyReLU") else {
                throw fail("architecture.arch_kwargs.nonlin", "\(nonlin) is not supported (LeakyReLU is)")
            }
            self.init(kind: kind, dimension: dim, featuresPerStage: features, kernelSizes: try matrix("kernel_sizes"),
                      strides: try matrix("strides"), blocksPerStage: try ints(blocksKey),
                      convsPerDecoderStage: try ints("n_conv_per_stage_decoder"),
                      convBias: kw["conv_bias"]?.bool ?? true,
                      normEpsilon: kw["norm_op_kwargs"]?["eps"]?.double ?? 1e-5,
                      normAffine: kw["norm_op_kwargs"]?["affine"]?.bool ?? true,
                      leakyReLUSlope: kw["nonlin_kwargs"]?["negative_slope"]?.double ?? 0.01,
                      stemChannels: kw["stem_channels"]?.int)
        } else {
            // Old plans format (spec §9.6).
            guard let className = json["UNet_class_name"]?.string, let kind = Kind(rawValue: className) else {
                throw fail("architecture", "missing (and no UNet_class_name of a supported network)")
            }
            guard let kernels = json["conv_kernel_sizes"]?.intMatrix, let pools = json["pool_op_kernel_sizes"]?.intMatrix,
                  let base = json["UNet_base_num_features"]?.int, let encoder = json["n_conv_per_stage_encoder"]?.intArray,
                  let decoder = json["n_conv_per_stage_decoder"]?.intArray
            else { throw fail("conv_kernel_sizes/pool_op_kernel_sizes/UNet_base_num_features", "old-format keys missing") }
            let maxFeatures = json["unet_max_num_features"]?.int ?? (dimension == 3 ? 320 : 512)
            let features = (0..<kernels.count).map { min(base << $0, maxFeatures) }
            self.init(kind: kind, dimension: dimension, featuresPerStage: features, kernelSizes: kernels, strides: pools,
                      blocksPerStage: encoder, convsPerDecoderStage: decoder)
        }
        try validate(fail: fail)
    }

    func validate(fail: (String, String) -> PlansError) throws {
        let n = stages
        guard n >= 1, kernelSizes.count == n, strides.count == n, blocksPerStage.count == n else {
            throw fail("architecture", "features_per_stage, kernel_sizes, strides and per-stage counts must all have \(n) entries")
        }
        guard convsPerDecoderStage.count == n - 1 else {
            throw fail("architecture.arch_kwargs.n_conv_per_stage_decoder", "needs \(n - 1) entries, has \(convsPerDecoderStage.count)")
        }
        guard (kernelSizes + strides).allSatisfy({ $0.count == dimension }) else {
            throw fail("architecture", "kernel sizes and strides must have \(dimension) entries each")
        }
        guard featuresPerStage.allSatisfy({ $0 > 0 }), blocksPerStage.allSatisfy({ $0 > 0 }), convsPerDecoderStage.allSatisfy({ $0 > 0 }) else {
            throw fail("architecture", "features and per-stage counts must be positive")
        }
        guard (kernelSizes + strides).allSatisfy({ $0.allSatisfy { (1...15).contains($0) } }) else {
            throw fail("architecture", "kernel sizes and strides must be 1…15")
        }
    }
}
