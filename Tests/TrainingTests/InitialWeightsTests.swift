import Foundation
import PlansModel
import Testing
import TestSupport
@testable import Training

/// nnseg's initial weights (`.kaiming(seed:)`) against the law of nnU-Net's (#25): a one-epoch run's outcome is
/// decided by its initial draw, so the draw must come from nnU-Net's law. The golden
/// (Fixtures/golden/training/init_law.json, Ops/golden/make_init_law_golden.py) holds, per tensor of the Hippocampus
/// 3d_fullres network as nnU-Net 2.8.1 builds it, the mean, standard deviation and kurtosis of its values pooled over
/// 20 torch seeds; the test pools nnseg's over 5 seeds and compares tensor by tensor, each within five standard
/// errors of the two samples — a wrong gain or fan-in (e.g. a transposed convolution's input channels instead of its
/// output channels, √2 in the standard deviation) or a non-normal law is far outside.
struct InitialWeightsTests {
    struct GoldenTensor: Decodable {
        let name: String
        let shape: [Int]
        let count: Int
        let mean: Double
        let sd: Double
        let kurtosis: Double
    }
    struct Golden: Decodable {
        let seeds: Int
        let tensors: [GoldenTensor]
    }

    @Test func initialWeightsFollowNnUNetsLawTensorByTensor() throws {
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: SharedData.fixtures
            .appendingPathComponent("golden/training/init_law.json")))
        let configuration = try Plans(contentsOf: SharedData.reference
            .appendingPathComponent("Dataset004_Hippocampus/nnUNetPlans.json")).configuration("3d_fullres")
        let seeds: [UInt64] = [1, 2, 3, 4, 5]
        var pooled: [String: [Float]] = [:]
        var shapes: [String: [Int]] = [:]
        for seed in seeds {
            let network = try TrainingNetwork(architecture: configuration.architecture, inputChannels: 1, numClasses: 3, batch: 1,
                                              patch: configuration.patchSize, initialization: .kaiming(seed: seed))
            for p in network.parameters {
                pooled[p.name, default: []] += p.value
                shapes[p.name] = p.shape
            }
        }
        #expect(Set(pooled.keys) == Set(golden.tensors.map(\.name)), "tensor names differ from nnU-Net's state dict")
        var weightTensors = 0
        for t in golden.tensors {
            guard let values = pooled[t.name] else { continue }
            #expect(shapes[t.name] == t.shape, "\(t.name): shape \(shapes[t.name] ?? []) against nnU-Net's \(t.shape)")
            if t.sd == 0 {
                // Biases and the norms' β start at 0, the norms' γ at 1, in every draw.
                #expect(values.allSatisfy { Double($0) == t.mean }, "\(t.name): not all \(t.mean) (seeds \(seeds))")
                continue
            }
            weightTensors += 1
            let n = Double(values.count), m = Double(t.count * golden.seeds)
            let mean = values.reduce(0.0) { $0 + Double($1) } / n
            let variance = values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / n
            let sd = variance.squareRoot()
            let kurtosis = values.reduce(0.0) { $0 + pow(Double($1) - mean, 4) } / n / (variance * variance)
            let meanTolerance = 5 * t.sd * (1 / n + 1 / m).squareRoot()
            let sdTolerance = 5 * (1 / (2 * n) + 1 / (2 * m)).squareRoot()
            let kurtosisTolerance = 5 * (24 / n + 24 / m).squareRoot()
            #expect(abs(mean - t.mean) <= meanTolerance,
                    "\(t.name): mean \(mean) against nnU-Net's \(t.mean) (tolerance \(meanTolerance), seeds \(seeds))")
            #expect(abs(sd / t.sd - 1) <= sdTolerance,
                    "\(t.name): standard deviation \(sd) against nnU-Net's \(t.sd) (ratio tolerance \(sdTolerance), seeds \(seeds))")
            #expect(abs(kurtosis - t.kurtosis) <= kurtosisTolerance,
                    "\(t.name): kurtosis \(kurtosis) against nnU-Net's \(t.kurtosis) (tolerance \(kurtosisTolerance), seeds \(seeds))")
        }
        // Every convolution (4 encoder stages × 2, 3 decoder stages × 2), transposed convolution (3) and segmentation layer (3).
        #expect(weightTensors == 20)
    }
}
