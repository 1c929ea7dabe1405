import Foundation
import JSON
import PlansModel

/// Building blocks of the files nnseg writes in nnU-Net's byte layout (``JSONValue/pythonText(indent:)``).
extension JSONValue {
    /// `foreground_intensity_properties_per_channel`: channel index → statistics, keys sorted.
    static func intensityStatistics(_ perChannel: [[String: Double]]) -> JSONValue {
        .object(JSONObject(perChannel.enumerated().map { index, properties in
            (String(index), .object(JSONObject(properties.keys.sorted().map { ($0, JSONValue.double(properties[$0]!)) })))
        }))
    }

    static func ints(_ values: [Int]) -> JSONValue { .array(values.map { .int(Int64($0)) }) }
    static func doubles(_ values: [Double]) -> JSONValue { .array(values.map(JSONValue.double)) }
    static func strings(_ values: [String]) -> JSONValue { .array(values.map(JSONValue.string)) }
}

extension ExperimentPlanner.Plan {
    /// `<plans_name>.json` in nnU-Net v2's schema and key order (spec §3.10).
    /// - Parameter keeping: configurations of an earlier plans file that the planner does not produce
    ///   (user-added ones); nnU-Net keeps them on re-planning, after the planned ones.
    public func plansJSON(datasetName: String, preset: PlannerPreset = .default,
                          foregroundIntensityProperties: [[String: Double]], keeping: [(String, JSONValue)] = []) -> JSONValue {
        var configs: [(String, JSONValue)] = []
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
            ("original_median_spacing_after_transp", JSONValue.doubles(originalMedianSpacingAfterTranspose)),
            ("original_median_shape_after_transp", JSONValue.ints(originalMedianShapeAfterTranspose)),
            ("image_reader_writer", .string("SimpleITKIO")),
            ("transpose_forward", JSONValue.ints(transposeForward)),
            ("transpose_backward", JSONValue.ints(transposeBackward)),
            ("configurations", .object(JSONObject(configs))),
            ("experiment_planner_used", .string(preset.plannerClass)),
            ("label_manager", .string("LabelManager")),
            ("foreground_intensity_properties_per_channel", JSONValue.intensityStatistics(foregroundIntensityProperties)),
        ])
    }
}

extension PlannedConfiguration {
    func plansJSON(networkClassName: String) -> JSONValue {
        let dims = patchSize.count
        let convOp = dims == 3 ? "torch.nn.modules.conv.Conv3d" : "torch.nn.modules.conv.Conv2d"
        let normOp = dims == 3 ? "torch.nn.modules.instancenorm.InstanceNorm3d" : "torch.nn.modules.instancenorm.InstanceNorm2d"
        func resampling(isSeg: Bool, order: Int) -> JSONValue {
            .object([("is_seg", .bool(isSeg)), ("order", .int(Int64(order))), ("order_z", .int(0)), ("force_separate_z", .null)])
        }
        let arch: [(String, JSONValue)] = [
            ("n_stages", .int(Int64(featuresPerStage.count))),
            ("features_per_stage", JSONValue.ints(featuresPerStage)),
            ("conv_op", .string(convOp)),
            ("kernel_sizes", .array(kernelSizes.map(JSONValue.ints))),
            ("strides", .array(strides.map(JSONValue.ints))),
            (architecture == .plainConvUNet ? "n_conv_per_stage" : "n_blocks_per_stage", JSONValue.ints(convsPerStage)),
            ("n_conv_per_stage_decoder", JSONValue.ints(convsPerDecoderStage)),
            ("conv_bias", .bool(true)),
            ("norm_op", .string(normOp)),
            ("norm_op_kwargs", .object([("eps", .double(1e-5)), ("affine", .bool(true))])),
            ("dropout_op", .null),
            ("dropout_op_kwargs", .null),
            ("nonlin", .string("torch.nn.LeakyReLU")),
            ("nonlin_kwargs", .object([("inplace", .bool(true))])),
        ]
        var members: [(String, JSONValue)] = [
            ("data_identifier", .string(dataIdentifier)),
            ("preprocessor_name", .string("DefaultPreprocessor")),
            ("batch_size", .int(Int64(batchSize))),
            ("patch_size", JSONValue.ints(patchSize)),
            ("median_image_size_in_voxels", JSONValue.doubles(medianImageSize)),
            ("spacing", JSONValue.doubles(spacing)),
            ("normalization_schemes", JSONValue.strings(normalizationSchemes)),
            ("use_mask_for_norm", .array(useMaskForNorm.map(JSONValue.bool))),
            ("resampling_fn_data", .string("resample_data_or_seg_to_shape")),
            ("resampling_fn_seg", .string("resample_data_or_seg_to_shape")),
            ("resampling_fn_data_kwargs", resampling(isSeg: false, order: 3)),
            ("resampling_fn_seg_kwargs", resampling(isSeg: true, order: 1)),
            ("resampling_fn_probabilities", .string("resample_data_or_seg_to_shape")),
            ("resampling_fn_probabilities_kwargs", resampling(isSeg: false, order: 1)),
            ("architecture", .object([
                ("network_class_name", .string(networkClassName)),
                ("arch_kwargs", .object(JSONObject(arch))),
                ("_kw_requires_import", JSONValue.strings(["conv_op", "norm_op", "dropout_op", "nonlin"])),
            ])),
            ("batch_dice", .bool(batchDice)),
        ]
        if let next = nextStage { members.append(("next_stage", .string(next))) }
        return .object(JSONObject(members))
    }
}
