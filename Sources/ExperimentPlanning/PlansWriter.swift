import Foundation
import PlansModel

/// JSON with the key order kept, written the way Python's `json.dump(obj, indent=4)` writes it, so that
/// our plans files are byte-comparable with nnU-Net's.
public indirect enum OrderedJSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([OrderedJSON])
    case object([(String, OrderedJSON)])

    public static func == (a: OrderedJSON, b: OrderedJSON) -> Bool { a.text() == b.text() }

    /// Python-style text: indent 4, ", " and ": " separators, ASCII-only strings, no trailing newline.
    public func text(indent: Int = 0) -> String {
        let pad = String(repeating: " ", count: indent + 4), closing = String(repeating: " ", count: indent)
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return Self.pythonFloat(d)
        case .string(let s): return Self.pythonString(s)
        case .array(let items):
            if items.isEmpty { return "[]" }
            return "[\n" + items.map { pad + $0.text(indent: indent + 4) }.joined(separator: ",\n") + "\n" + closing + "]"
        case .object(let members):
            if members.isEmpty { return "{}" }
            return "{\n" + members.map { pad + Self.pythonString($0.0) + ": " + $0.1.text(indent: indent + 4) }.joined(separator: ",\n")
                + "\n" + closing + "}"
        }
    }

    /// One line, Python's `json.dumps(obj)` separators (", ", ": ").
    public func compactText() -> String {
        switch self {
        case .array(let items): return "[" + items.map { $0.compactText() }.joined(separator: ", ") + "]"
        case .object(let members):
            return "{" + members.map { Self.pythonString($0.0) + ": " + $0.1.compactText() }.joined(separator: ", ") + "}"
        default: return text()
        }
    }

    /// `repr(float)`: shortest round-trip digits (Swift's description uses the same rule and exponent style).
    static func pythonFloat(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d > 0 ? "Infinity" : "-Infinity" }
        return d.description
    }

    static func pythonString(_ s: String) -> String {
        var out = "\""
        for unit in s.utf16 {
            switch unit {
            case 0x22: out += "\\\""
            case 0x5C: out += "\\\\"
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0x08: out += "\\b"
            case 0x0C: out += "\\f"
            case 0x20..<0x7F: out.unicodeScalars.append(Unicode.Scalar(unit)!)
            default: out += String(format: "\\u%04x", unit)
            }
        }
        return out + "\""
    }

    /// From an unordered value (keys sorted; whole numbers become ints).
    public init(_ value: JSONValue) {
        switch value {
        case .null: self = .null
        case .bool(let b): self = .bool(b)
        case .number(let n): self = n.rounded() == n && abs(n) < 1e15 ? .int(Int(n)) : .double(n)
        case .string(let s): self = .string(s)
        case .array(let a): self = .array(a.map(OrderedJSON.init))
        case .object(let o): self = .object(o.keys.sorted().map { ($0, OrderedJSON(o[$0]!)) })
        }
    }

    /// `foreground_intensity_properties_per_channel`: channel index → statistics, keys sorted.
    static func intensityStatistics(_ perChannel: [[String: Double]]) -> OrderedJSON {
        .object(perChannel.enumerated().map { index, properties in
            (String(index), .object(properties.keys.sorted().map { ($0, .double(properties[$0]!)) }))
        })
    }

    static func ints(_ values: [Int]) -> OrderedJSON { .array(values.map(OrderedJSON.int)) }
    static func doubles(_ values: [Double]) -> OrderedJSON { .array(values.map(OrderedJSON.double)) }
}

extension ExperimentPlanner.Plan {
    /// `<plans_name>.json` in nnU-Net v2's schema and key order (spec §3.10).
    /// - Parameter keeping: configurations of an earlier plans file that the planner does not produce
    ///   (user-added ones); nnU-Net keeps them on re-planning, after the planned ones.
    public func plansJSON(datasetName: String, preset: PlannerPreset = .default,
                          foregroundIntensityProperties: [[String: Double]], keeping: [(String, OrderedJSON)] = []) -> OrderedJSON {
        var configs: [(String, OrderedJSON)] = []
        for name in ["2d", "3d_lowres", "3d_fullres"] {
            guard let c = configurations[name] else { continue }
            configs.append((name, c.plansJSON(networkClassName: preset.networkClassName)))
        }
        if hasCascade {
            configs.append(("3d_cascade_fullres", .object([("inherits_from", .string("3d_fullres")), ("previous_stage", .string("3d_lowres"))])))
        }
        for (name, value) in keeping where !configs.contains(where: { $0.0 == name }) { configs.append((name, value)) }
        return .object([
            ("dataset_name", .string(datasetName)),
            ("plans_name", .string(preset.plansName)),
            ("original_median_spacing_after_transp", OrderedJSON.doubles(originalMedianSpacingAfterTranspose)),
            ("original_median_shape_after_transp", OrderedJSON.ints(originalMedianShapeAfterTranspose)),
            ("image_reader_writer", .string("SimpleITKIO")),
            ("transpose_forward", OrderedJSON.ints(transposeForward)),
            ("transpose_backward", OrderedJSON.ints(transposeBackward)),
            ("configurations", .object(configs)),
            ("experiment_planner_used", .string(preset.plannerClass)),
            ("label_manager", .string("LabelManager")),
            ("foreground_intensity_properties_per_channel", OrderedJSON.intensityStatistics(foregroundIntensityProperties)),
        ])
    }
}

extension PlannedConfiguration {
    func plansJSON(networkClassName: String) -> OrderedJSON {
        let dims = patchSize.count
        let convOp = dims == 3 ? "torch.nn.modules.conv.Conv3d" : "torch.nn.modules.conv.Conv2d"
        let normOp = dims == 3 ? "torch.nn.modules.instancenorm.InstanceNorm3d" : "torch.nn.modules.instancenorm.InstanceNorm2d"
        func resampling(isSeg: Bool, order: Int) -> OrderedJSON {
            .object([("is_seg", .bool(isSeg)), ("order", .int(order)), ("order_z", .int(0)), ("force_separate_z", .null)])
        }
        let arch: [(String, OrderedJSON)] = [
            ("n_stages", .int(featuresPerStage.count)),
            ("features_per_stage", OrderedJSON.ints(featuresPerStage)),
            ("conv_op", .string(convOp)),
            ("kernel_sizes", .array(kernelSizes.map(OrderedJSON.ints))),
            ("strides", .array(strides.map(OrderedJSON.ints))),
            (architecture == .plainConvUNet ? "n_conv_per_stage" : "n_blocks_per_stage", OrderedJSON.ints(convsPerStage)),
            ("n_conv_per_stage_decoder", OrderedJSON.ints(convsPerDecoderStage)),
            ("conv_bias", .bool(true)),
            ("norm_op", .string(normOp)),
            ("norm_op_kwargs", .object([("eps", .double(1e-5)), ("affine", .bool(true))])),
            ("dropout_op", .null),
            ("dropout_op_kwargs", .null),
            ("nonlin", .string("torch.nn.LeakyReLU")),
            ("nonlin_kwargs", .object([("inplace", .bool(true))])),
        ]
        var members: [(String, OrderedJSON)] = [
            ("data_identifier", .string(dataIdentifier)),
            ("preprocessor_name", .string("DefaultPreprocessor")),
            ("batch_size", .int(batchSize)),
            ("patch_size", OrderedJSON.ints(patchSize)),
            ("median_image_size_in_voxels", OrderedJSON.doubles(medianImageSize)),
            ("spacing", OrderedJSON.doubles(spacing)),
            ("normalization_schemes", .array(normalizationSchemes.map(OrderedJSON.string))),
            ("use_mask_for_norm", .array(useMaskForNorm.map(OrderedJSON.bool))),
            ("resampling_fn_data", .string("resample_data_or_seg_to_shape")),
            ("resampling_fn_seg", .string("resample_data_or_seg_to_shape")),
            ("resampling_fn_data_kwargs", resampling(isSeg: false, order: 3)),
            ("resampling_fn_seg_kwargs", resampling(isSeg: true, order: 1)),
            ("resampling_fn_probabilities", .string("resample_data_or_seg_to_shape")),
            ("resampling_fn_probabilities_kwargs", resampling(isSeg: false, order: 1)),
            ("architecture", .object([
                ("network_class_name", .string(networkClassName)),
                ("arch_kwargs", .object(arch)),
                ("_kw_requires_import", .array(["conv_op", "norm_op", "dropout_op", "nonlin"].map(OrderedJSON.string))),
            ])),
            ("batch_dice", .bool(batchDice)),
        ]
        if let next = nextStage { members.append(("next_stage", .string(next))) }
        return .object(members)
    }
}
