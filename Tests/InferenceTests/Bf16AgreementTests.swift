import Foundation
import Testing
import TestSupport
import TensorKernels
@testable import Inference

/// #16: `--precision bf16` against fp32 on the five Hippocampus reference cases, with and without mirroring: voxel
/// agreement ≥ 99.9 % and per-label Dice ≥ 0.999 (the issue's bar) in every case. Runs where oneDNN has bf16
/// convolutions (AVX-512); on an AVX2-only CPU the precision is refused before any case (`PRECISION_UNAVAILABLE`),
/// which this test checks instead.
struct Bf16AgreementTests {
    static let model = ParityTests.reference.appendingPathComponent("model/nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres")

    @Test func bf16AgreesWithFp32OnTheReferenceCases() throws {
        guard ConvolutionPrecision.bfloat16.isAvailable else {
            #expect(ConvolutionPrecision.bfloat16.unavailableReason.contains(DNNLContext.effectiveISA))
            print("bf16 not available on \(DNNLContext.effectiveISA): agreement not measured here")
            return
        }
        let fp32 = try ParityTests.engine.get()
        let bf16 = try InferenceEngine(modelFolder: Self.model, folds: ["0"], precision: .bfloat16)
        #expect(bf16.precision == .bfloat16 && bf16.networks[0].precision == .bfloat16)
        // Every convolution took a fast kernel in bf16 (none fell back to oneDNN's reference path).
        #expect(!bf16.networks[0].implementations.contains { $0.hasPrefix("ref") }, "\(bf16.networks[0].implementations)")
        var worstAgreement = 1.0, worstDice = 1.0
        for name in ParityTests.cases {
            let (image, spacing, _) = try ParityTests.input(name)
            for mirroring in [false, true] {
                let a = try fp32.predict(image, spacing: spacing, options: .init(mirroring: mirroring)).prediction.segmentation
                let b = try bf16.predict(image, spacing: spacing, options: .init(mirroring: mirroring)).prediction.segmentation
                #expect(a.count == b.count)
                let agreement = Double(zip(a, b).filter { $0 == $1 }.count) / Double(a.count)
                var dice: [Double] = []
                for label in UInt16(1)...2 {
                    let both = zip(a, b).filter { $0 == label && $1 == label }.count
                    let sum = a.filter { $0 == label }.count + b.filter { $0 == label }.count
                    dice.append(sum == 0 ? 1 : 2 * Double(both) / Double(sum))
                }
                print("bf16 vs fp32 \(name) mirroring \(mirroring): agreement \(String(format: "%.5f", agreement * 100)) %, "
                      + "Dice \(dice.map { String(format: "%.5f", $0) }.joined(separator: " / "))")
                #expect(agreement >= 0.999, "\(name) mirroring \(mirroring): voxel agreement \(agreement)")
                #expect(dice.allSatisfy { $0 >= 0.999 }, "\(name) mirroring \(mirroring): Dice \(dice)")
                worstAgreement = min(worstAgreement, agreement)
                worstDice = min(worstDice, dice.min()!)
            }
        }
        print("bf16 vs fp32 on \(DNNLContext.effectiveISA): worst agreement \(worstAgreement * 100) %, worst Dice \(worstDice)")
    }
}
