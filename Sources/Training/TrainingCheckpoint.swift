import ExperimentPlanning
import Foundation
import TensorKernels
import TorchCheckpoint
import UNet

/// Progress a checkpoint carries for resuming.
public struct CheckpointState: Sendable {
    /// Epochs completed.
    public var epoch: Int
    public var log: TrainingLog
    public var bestEMA: Double?
}

/// What a checkpoint records about the run (nnU-Net's `init_args`, trainer name, mirroring axes).
struct CheckpointContext: @unchecked Sendable {
    let plans: Any
    let dataset: Any
    let configuration: String
    let fold: FoldSpec
    let trainerName: String
    let mirrorAxes: [Int]
}

/// Checkpoints in nnU-Net's layout (spec 7), written as PyTorch zip files: `network_weights` with every
/// alias nnU-Net's modules register (`all_modules.*`, `decoder.encoder.*`) so `load_state_dict` in the
/// reference accepts it, `optimizer_state` with the SGD momentum buffers in PyTorch's parameter order,
/// `logging`, `_best_ema`, `current_epoch`, `init_args`, `trainer_name`, `inference_allowed_mirroring_axes`.
enum TrainingCheckpoint {
    /// Parameter names in PyTorch's `parameters()` order: encoder, decoder stages, transposed convs, heads.
    static func torchOrder(_ names: [String]) -> [String] {
        func group(_ n: String) -> Int {
            if n.hasPrefix("encoder.") { return 0 }
            if n.hasPrefix("decoder.stages.") { return 1 }
            if n.hasPrefix("decoder.transpconvs.") { return 2 }
            return 3
        }
        func index(_ n: String, after prefix: String) -> Int {
            Int(n.dropFirst(prefix.count).prefix { $0.isNumber }) ?? 0
        }
        return names.enumerated().sorted { a, b in
            let (ga, gb) = (group(a.element), group(b.element))
            if ga != gb { return ga < gb }
            // Within the decoder groups, order by stage index (our list interleaves them).
            let prefix = ga == 1 ? "decoder.stages." : ga == 2 ? "decoder.transpconvs." : ga == 3 ? "decoder.seg_layers." : ""
            if !prefix.isEmpty {
                let (ia, ib) = (index(a.element, after: prefix), index(b.element, after: prefix))
                if ia != ib { return ia < ib }
            }
            return a.offset < b.offset
        }.map(\.element)
    }

    /// `network_weights` (every alias, PyTorch's order) and the storages it points to, keyed "0", "1", …
    static func networkWeights(_ network: TrainingNetwork) -> (weights: [(String, PickleWritable)], storages: [String: [Float]], ordered: [String]) {
        var storages: [String: [Float]] = [:]
        let ordered = torchOrder(network.parameters.map(\.name))
        let byName = Dictionary(uniqueKeysWithValues: network.parameters.map { ($0.name, $0) })
        var weights: [(String, PickleWritable)] = []
        for (i, name) in ordered.enumerated() {
            let p = byName[name]!
            storages["\(i)"] = p.value
            for alias in UNet.stateDictionaryKeys(name) { weights.append((alias, .float32Tensor(shape: p.shape, storage: "\(i)"))) }
        }
        return (weights, storages, ordered)
    }

    /// The weights alone, with what inference reads beside them (configuration, trainer name, mirroring axes): for
    /// networks trained outside ``Trainer`` (the replay benchmark), to validate them as a fold.
    static func saveWeights(network: TrainingNetwork, configuration: String, mirrorAxes: [Int], to url: URL) throws {
        let (weights, storages, _) = networkWeights(network)
        let root: PickleWritable = .dict([
            (.string("network_weights"), .orderedDict(weights)),
            (.string("init_args"), .dict([(.string("configuration"), .string(configuration))])),
            (.string("trainer_name"), .string("nnUNetTrainer")),
            (.string("inference_allowed_mirroring_axes"), .tuple(mirrorAxes.map { .int($0) })),
        ])
        try CheckpointWriter.write(root, storages: storages, to: url)
    }

    static func save(network: TrainingNetwork, optimizer: SGDNesterov, state: CheckpointState, context: CheckpointContext, to url: URL) throws {
        var (weights, storages, ordered) = networkWeights(network)
        let byName = Dictionary(uniqueKeysWithValues: network.parameters.map { ($0.name, $0) })
        var momentum: [(PickleWritable, PickleWritable)] = []
        for (i, name) in ordered.enumerated() {
            guard let buffer = optimizer.buffers[name] else { continue }
            let key = "\(ordered.count + i)"
            storages[key] = buffer
            momentum.append((.int(i), .dict([(.string("momentum_buffer"), .float32Tensor(shape: byName[name]!.shape, storage: key))])))
        }
        let group: PickleWritable = .dict([
            (.string("lr"), .float(state.log.learningRates.last ?? 0.01)), (.string("momentum"), .float(Double(optimizer.momentum))),
            (.string("dampening"), .int(0)), (.string("weight_decay"), .float(Double(optimizer.weightDecay))),
            (.string("nesterov"), .bool(true)), (.string("maximize"), .bool(false)), (.string("foreach"), .none),
            (.string("differentiable"), .bool(false)), (.string("fused"), .none), (.string("initial_lr"), .float(0.01)),
            (.string("params"), .list((0..<ordered.count).map { .int($0) })),
        ])
        let log = state.log
        func floats(_ v: [Double]) -> PickleWritable { .list(v.map { .float($0) }) }
        let logging: PickleWritable = .dict([
            (.string("mean_fg_dice"), floats(log.meanForegroundDice)), (.string("ema_fg_dice"), floats(log.emaForegroundDice)),
            (.string("dice_per_class_or_region"), .list(log.dicePerClass.map(floats))),
            (.string("train_losses"), floats(log.trainLosses)), (.string("val_losses"), floats(log.validationLosses)),
            (.string("lrs"), floats(log.learningRates)), (.string("epoch_start_timestamps"), floats(log.epochStart)),
            (.string("epoch_end_timestamps"), floats(log.epochEnd)),
        ])
        let fold: PickleWritable = { if case .index(let i) = context.fold { return .int(i) } else { return .string("all") } }()
        let root: PickleWritable = .dict([
            (.string("network_weights"), .orderedDict(weights)),
            (.string("optimizer_state"), .dict([(.string("state"), .dict(momentum)), (.string("param_groups"), .list([group]))])),
            (.string("grad_scaler_state"), .none),
            (.string("logging"), logging),
            (.string("_best_ema"), state.bestEMA.map { .float($0) } ?? .none),
            (.string("current_epoch"), .int(state.epoch)),
            (.string("init_args"), .dict([
                (.string("plans"), .json(context.plans)), (.string("configuration"), .string(context.configuration)),
                (.string("fold"), fold), (.string("dataset_json"), .json(context.dataset)), (.string("device"), .device("cpu")),
            ])),
            (.string("trainer_name"), .string(context.trainerName)),
            (.string("inference_allowed_mirroring_axes"), .tuple(context.mirrorAxes.map { .int($0) })),
            (.string("nnseg_parameter_order"), .list(ordered.map { .string($0) })),
        ])
        try CheckpointWriter.write(root, storages: storages, to: url)
    }

    /// Loads weights, momentum buffers and progress into `network` and `optimizer`.
    static func load(_ url: URL, into network: TrainingNetwork, optimizer: SGDNesterov) throws -> CheckpointState {
        let checkpoint: TorchCheckpoint
        do { checkpoint = try TorchCheckpoint(contentsOf: url) } catch {
            throw TrainingError.checkpoint(file: url.path, problem: "\(error)")
        }
        let entries = try checkpoint.stateDict(at: "network_weights")
        let byName = Dictionary(entries.map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        for p in network.parameters {
            guard let ref = byName[p.name] else { throw TrainingError.checkpoint(file: url.path, problem: "no tensor \(p.name)") }
            guard ref.shape == p.shape else {
                throw TrainingError.checkpoint(file: url.path, problem: "\(p.name) has shape \(ref.shape), the network needs \(p.shape)")
            }
            p.value = try checkpoint.tensor(ref).floats()
        }
        let order = checkpoint.root["nnseg_parameter_order"]?.elements?.compactMap(\.stringValue)
            ?? torchOrder(network.parameters.map(\.name))
        optimizer.buffers = [:]
        if case .dict(let state)? = checkpoint.root["optimizer_state"]?["state"] {
            for entry in state.entries {
                guard let i = entry.key.intValue.map(Int.init), i < order.count, case .tensor(let t)? = entry.value["momentum_buffer"] else { continue }
                optimizer.buffers[order[i]] = try checkpoint.tensor(t).floats()
            }
        }
        let logging = checkpoint.root["logging"]
        func doubles(_ key: String) -> [Double] { logging?[key]?.elements?.map { $0.doubleValue ?? .nan } ?? [] }
        var log = TrainingLog()
        log.meanForegroundDice = doubles("mean_fg_dice")
        log.emaForegroundDice = doubles("ema_fg_dice")
        log.dicePerClass = logging?["dice_per_class_or_region"]?.elements?.map { $0.elements?.map { $0.doubleValue ?? .nan } ?? [] } ?? []
        log.trainLosses = doubles("train_losses")
        log.validationLosses = doubles("val_losses")
        log.learningRates = doubles("lrs")
        log.epochStart = doubles("epoch_start_timestamps")
        log.epochEnd = doubles("epoch_end_timestamps")
        guard let epoch = checkpoint.root["current_epoch"]?.intValue else {
            throw TrainingError.checkpoint(file: url.path, problem: "no current_epoch")
        }
        return CheckpointState(epoch: Int(epoch), log: log, bestEMA: checkpoint.root["_best_ema"]?.doubleValue)
    }
}

extension TrainingNetwork {
    /// Writes the weights as a checkpoint that inference and `train --val` read (`network_weights`, `init_args`'s
    /// configuration, trainer name, mirroring axes), without optimizer state or progress: for networks trained outside
    /// ``Trainer`` (`TrainingBenchmark replay`).
    public func saveWeights(configuration: String, mirrorAxes: [Int], to url: URL) throws {
        try TrainingCheckpoint.saveWeights(network: self, configuration: configuration, mirrorAxes: mirrorAxes, to: url)
    }
}
