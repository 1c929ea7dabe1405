// Forward-pass benchmark of nnseg's U-Net against torch on the same machine (issue #3).
//
//   bash Ops/bench/network_forward.sh            # builds release and runs this
//
// Prints, for the reference Hippocampus model on its 40×56×40 patch and for a 3d_fullres-sized
// PlainConvUNet (6 stages, 32…320 features) on a 128³ patch: median forward time, achieved GFLOP/s
// (2 × multiply-accumulates of convolutions and transposed convolutions), torch's median — measured in the same
// run when network_forward.sh has REF_PYTHON (TORCH_REFERENCE names the file it wrote), else the recorded
// Ops/bench/torch_forward_reference.json (another session: not comparable, said so) — and the ratio torch ÷ nnseg.
import CPUPeak
import Foundation
import PlansModel
import TensorKernels
import UNet

struct Row {
    let name: String
    let seconds: Double
    let gflops: Double
    let torchSeconds: Double?
}

func median(_ values: [Double]) -> Double {
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func measure(_ compiled: CompiledUNet, repeats: Int) throws -> Double {
    var generator = SystemRandomNumberGenerator()
    let input = Tensor(shape: compiled.inputShape, data: (0..<compiled.inputShape.reduce(1, *)).map { _ in Float.random(in: -1...1, using: &generator) })
    _ = try compiled.forward(input)  // warm-up
    var times: [Double] = []
    for _ in 0..<repeats {
        let start = DispatchTime.now().uptimeNanoseconds
        _ = try compiled.forward(input)
        times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    return median(times)
}

let arguments = CommandLine.arguments
let root = URL(fileURLWithPath: arguments.count > 1 ? arguments[1] : FileManager.default.currentDirectoryPath)
let shared = root.deletingLastPathComponent().appendingPathComponent("shared")
let liveTorch = ProcessInfo.processInfo.environment["TORCH_REFERENCE"]
let torchFile = liveTorch.map { URL(fileURLWithPath: $0) } ?? root.appendingPathComponent("Ops/bench/torch_forward_reference.json")
let torch = (try? JSONSerialization.jsonObject(with: Data(contentsOf: torchFile))) as? [String: Any]
let torchNetworks = torch?["networks"] as? [String: [String: Any]] ?? [:]
print("oneDNN ISA: \(DNNLContext.effectiveISA); OMP_NUM_THREADS=\(ProcessInfo.processInfo.environment["OMP_NUM_THREADS"] ?? "unset")")
print("torch: \(torch?["torch"] as? String ?? "missing") on \(torch?["threads"] as? Int ?? 0) threads, \(torch?["cpu"] as? String ?? "") — "
      + (liveTorch != nil ? "measured in this run" : "RECORDED in another session (REF_PYTHON=… for a live ratio; absolute times do not compare across machines)"))

var rows: [Row] = []
let context = try DNNLContext()

// 1. The real Hippocampus model.
let model = shared.appendingPathComponent("reference/Dataset004_Hippocampus/model/nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres")
let bundle = try ModelBundle(folder: model)
let hippocampus = try UNet(bundle: bundle, fold: bundle.folds[0]).compile(patch: bundle.configuration.patchSize, context: context)
let t1 = try measure(hippocampus, repeats: 20)
rows.append(Row(name: "hippocampus 40×56×40", seconds: t1, gflops: 2 * Double(hippocampus.multiplyAccumulates) / t1 / 1e9,
                torchSeconds: torchNetworks["hippocampus_40x56x40"]?["median_s"] as? Double))

// 2. A 3d_fullres-sized network on 128³ with random weights.
let big = NetworkArchitecture(kind: .plainConvUNet, dimension: 3, featuresPerStage: [32, 64, 128, 256, 320, 320],
                              kernelSizes: Array(repeating: [3, 3, 3], count: 6),
                              strides: [[1, 1, 1]] + Array(repeating: [2, 2, 2], count: 5),
                              blocksPerStage: Array(repeating: 2, count: 6), convsPerDecoderStage: Array(repeating: 2, count: 5))
var weights: [String: Tensor] = [:]
var generator = SystemRandomNumberGenerator()
for (name, shape) in UNet.expectedTensors(big, inputChannels: 1, numClasses: 3) {
    let fan = Float(shape.dropFirst().reduce(1, *))
    let scale = 1 / max(fan, 1).squareRoot()
    weights[name] = Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in
        name.hasSuffix("norm.weight") ? 1 : Float.random(in: -scale...scale, using: &generator)
    })
}
let bigNet = try UNet(architecture: big, inputChannels: 1, numClasses: 3, weights: weights).compile(patch: [128, 128, 128], context: context)
let t2 = try measure(bigNet, repeats: 3)
rows.append(Row(name: "fullres 6-stage 128³", seconds: t2, gflops: 2 * Double(bigNet.multiplyAccumulates) / t2 / 1e9,
                torchSeconds: torchNetworks["fullres6_128cubed"]?["median_s"] as? Double))

print("")
print("network                 nnseg [s]   GFLOP/s   torch [s]   torch GFLOP/s   speed-up (torch ÷ nnseg)")
for r in rows {
    let torchText = r.torchSeconds.map { String(format: "%9.3f", $0) } ?? "        –"
    let torchRate = r.torchSeconds.map { String(format: "%13.1f", r.gflops * r.seconds / $0) } ?? "            –"
    let ratio = r.torchSeconds.map { String(format: "%.2f×", $0 / r.seconds) } ?? "–"
    print(String(format: "%-22@ %9.3f %9.1f ", r.name as NSString, r.seconds, r.gflops) + torchText + "   " + torchRate + "   " + ratio)
}
for (name, compiled) in [("hippocampus", hippocampus), ("fullres 128³", bigNet)] {
    var generator = SystemRandomNumberGenerator()
    let input = Tensor(shape: compiled.inputShape, data: (0..<compiled.inputShape.reduce(1, *)).map { _ in Float.random(in: -1...1, using: &generator) })
    var profile: [String: Double] = [:]
    _ = try compiled.forward(input, profile: &profile)
    let total = profile.values.reduce(0, +)
    print("\(name) profile: " + profile.sorted { $0.value > $1.value }
        .map { String(format: "%@ %.1f%%", $0.key as NSString, 100 * $0.value / total) }.joined(separator: ", "))
}
print("implementations: \(hippocampus.implementations.union(bigNet.implementations).sorted().joined(separator: ", "))")

// 3. Roofline of the 128³ network (issue #16): every layer type's achieved rate against this CPU's measured FMA
//    peak — independent float32 FMAs in the widest vectors it has, on as many threads as oneDNN uses (CPUPeak) —
//    and the memory rate of the steps without arithmetic. The best convolution rate is printed beside it.
let threads = max(1, Int(ProcessInfo.processInfo.environment["OMP_NUM_THREADS"] ?? "") ?? ProcessInfo.processInfo.activeProcessorCount)
var peakISA: UnsafePointer<CChar>?
var peakRates = [Double](repeating: 0, count: threads)
let peak = nnseg_fma_peak_gflops_threads(1.5, Int32(threads), &peakISA, &peakRates)
let peakISAName = peakISA.map { String(cString: $0) } ?? ""
let rooflineInput = Tensor(shape: bigNet.inputShape, data: (0..<bigNet.inputShape.reduce(1, *)).map { _ in Float.random(in: -1...1, using: &generator) })
let costs = try bigNet.layerCosts(rooflineInput)
let totalSeconds = costs.map(\.seconds).reduce(0, +)
print("")
let bestConvolution = costs.filter { $0.multiplyAccumulates > 0 }.map { 2 * Double($0.multiplyAccumulates) / $0.seconds / 1e9 }.max() ?? 0
print(String(format: "roofline, fullres 128³ (one pass %.2f s); measured FMA peak %.1f GFLOP/s (%@ FMA, %d thread(s): %@); best convolution %.1f GFLOP/s = %.0f%% of it",
             totalSeconds, peak, peakISAName as NSString, threads, peakRates.map { String(format: "%.1f", $0) }.joined(separator: " + ") as NSString,
             bestConvolution, 100 * bestConvolution / peak))
print("layer type                                     seconds   share   GFLOP/s  % of peak    GB/s")
for c in costs.sorted(by: { $0.seconds > $1.seconds }) {
    let rate = c.multiplyAccumulates > 0 ? 2 * Double(c.multiplyAccumulates) / c.seconds / 1e9 : 0
    let rateText = c.multiplyAccumulates > 0 ? String(format: "%9.1f %9.0f%%", rate, 100 * rate / peak) : "        –          –"
    print(String(format: "%-46@ %7.3f %6.1f%% ", c.layer as NSString, c.seconds, 100 * c.seconds / totalSeconds) + rateText
          + String(format: " %7.1f", Double(c.bytes) / c.seconds / 1e9))
}
