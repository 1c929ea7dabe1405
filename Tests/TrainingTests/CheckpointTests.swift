import Foundation
import PlansModel
import TensorKernels
import Testing
import TestSupport
import TorchCheckpoint
@testable import Training

/// Checkpoints: written as PyTorch zip files nnseg reads back exactly (weights, momentum, progress),
/// with every alias nnU-Net's state dict has.
struct CheckpointTests {
    @Test func roundTripRestoresWeightsMomentumAndProgress() throws {
        let a = TrainingNetworkTests.architecture(3, features: [16, 16, 32])
        let net = try TrainingNetwork(architecture: a, inputChannels: 1, numClasses: 3, batch: 2, patch: [8, 8, 8], initialization: .kaiming(seed: 4))
        let step = TrainingStep(network: net, loss: DiceCrossEntropyLoss(numClasses: 3, batchDice: false))
        var rng = SplitMix(state: 8)
        let x = TrainingNetworkTests.random([2, 1, 8, 8, 8], &rng)
        let labels = (0..<1024).map { _ in Int16.random(in: 0...2, using: &rng) }
        try step.train(input: x, labels: labels, learningRate: 0.01)
        try step.train(input: x, labels: labels, learningRate: 0.01)
        var log = TrainingLog()
        log.trainLosses = [0.5, 0.25]
        log.learningRates = [0.01, polyLearningRate(epoch: 1, maxEpochs: 10)]
        log.emaForegroundDice = [0.1, 0.2]
        let state = CheckpointState(epoch: 2, log: log, bestEMA: 0.2)
        let folder = try SharedData.temporaryDirectory("checkpoint")
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("checkpoint_latest.pth")
        let context = CheckpointContext(plans: ["name": "p", "n": 1, "x": 1.5, "flag": true] as [String: Any], dataset: ["labels": ["background": 0]],
                                        configuration: "3d_fullres", fold: .index(0), trainerName: "nnUNetTrainer", mirrorAxes: [0, 1, 2])
        try TrainingCheckpoint.save(network: net, optimizer: step.optimizer, state: state, context: context, to: url)

        let fresh = try TrainingNetwork(architecture: a, inputChannels: 1, numClasses: 3, batch: 2, patch: [8, 8, 8], initialization: .kaiming(seed: 99))
        let optimizer = SGDNesterov()
        let restored = try TrainingCheckpoint.load(url, into: fresh, optimizer: optimizer)
        #expect(restored.epoch == 2 && restored.bestEMA == 0.2 && restored.log.learningRates == log.learningRates)
        #expect(restored.log.trainLosses == log.trainLosses)
        for (p, q) in zip(net.parameters, fresh.parameters) { #expect(p.value == q.value, "\(p.name)") }
        #expect(optimizer.buffers.count == step.optimizer.buffers.count)
        for (name, buffer) in step.optimizer.buffers { #expect(optimizer.buffers[name] == buffer, "\(name)") }

        // nnU-Net's key set: aliases for all_modules and the decoder's encoder reference.
        let checkpoint = try TorchCheckpoint(contentsOf: url)
        let names = Set(try checkpoint.stateDict(at: "network_weights").map(\.name))
        #expect(names.contains("encoder.stages.0.0.convs.0.all_modules.0.weight"))
        #expect(names.contains("decoder.encoder.stages.1.0.convs.1.norm.bias"))
        #expect(names.contains("decoder.encoder.stages.1.0.convs.1.all_modules.1.bias"))
        #expect(checkpoint.root["init_args"]?["configuration"]?.stringValue == "3d_fullres")
        #expect(checkpoint.root["init_args"]?["plans"]?["n"]?.intValue == 1)
        #expect(checkpoint.root["init_args"]?["plans"]?["x"]?.doubleValue == 1.5)
        #expect(checkpoint.root["inference_allowed_mirroring_axes"]?.elements?.compactMap(\.intValue) == [0, 1, 2])
        #expect(checkpoint.root["trainer_name"]?.stringValue == "nnUNetTrainer")
        // Parameter order as PyTorch's parameters(): encoder, decoder stages, transposed convs, heads.
        let order = TrainingCheckpoint.torchOrder(net.parameters.map(\.name))
        #expect(order.first == "encoder.stages.0.0.convs.0.conv.weight")
        #expect(order.firstIndex(of: "decoder.stages.1.convs.0.conv.weight")! < order.firstIndex(of: "decoder.transpconvs.0.weight")!)
        #expect(order.last == "decoder.seg_layers.1.bias")
    }

    /// A ResEnc checkpoint has exactly the keys torch's `state_dict()` has for the same network (180 for
    /// features 16/16/32, blocks 1/2/1, one decoder conv per stage — counted with dynamic-network-architectures 0.4.4).
    @Test func residualEncoderCheckpointHasTorchsKeySet() throws {
        let a = NetworkArchitecture(kind: .residualEncoderUNet, dimension: 3, featuresPerStage: [16, 16, 32], kernelSizes: [[3, 3, 3], [3, 3, 3], [3, 3, 3]],
                                    strides: [[1, 1, 1], [2, 2, 2], [2, 2, 2]], blocksPerStage: [1, 2, 1], convsPerDecoderStage: [1, 1])
        let net = try TrainingNetwork(architecture: a, inputChannels: 1, numClasses: 3, batch: 1, patch: [8, 8, 8], initialization: .kaiming(seed: 1))
        let folder = try SharedData.temporaryDirectory("checkpoint-resenc")
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("checkpoint_final.pth")
        let context = CheckpointContext(plans: [String: Any](), dataset: [String: Any](), configuration: "3d_fullres", fold: .all,
                                        trainerName: "nnUNetTrainer", mirrorAxes: [0, 1, 2])
        try TrainingCheckpoint.save(network: net, optimizer: SGDNesterov(), state: CheckpointState(epoch: 0, log: TrainingLog(), bestEMA: nil),
                                    context: context, to: url)
        let names = try TorchCheckpoint(contentsOf: url).stateDict(at: "network_weights").map(\.name)
        #expect(names.count == 180 && Set(names).count == 180)
        #expect(names.contains("encoder.stages.2.blocks.0.skip.1.all_modules.1.bias"))
        #expect(names.contains("decoder.encoder.stem.convs.0.all_modules.0.weight"))
        #expect(TrainingCheckpoint.torchOrder(net.parameters.map(\.name)).prefix(5) == [
            "encoder.stem.convs.0.conv.weight", "encoder.stem.convs.0.conv.bias", "encoder.stem.convs.0.norm.weight",
            "encoder.stem.convs.0.norm.bias", "encoder.stages.0.blocks.0.conv1.conv.weight"])
    }
}
