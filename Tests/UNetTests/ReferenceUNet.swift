import PlansModel
import TensorKernels
@testable import UNet

/// The same network written with the plain reference ops only: the oracle for CompiledUNet on random
/// architectures (PlainConvUNet and ResidualEncoderUNet, 2-D and 3-D).
enum ReferenceUNet {
    static func forward(_ a: NetworkArchitecture, weights w: [String: Tensor], input: Tensor) -> Tensor {
        let slope = Float(a.leakyReLUSlope), eps = Float(a.normEpsilon)
        let one = Array(repeating: 1, count: a.dimension)
        func unit(_ prefix: String, _ x: Tensor, kernel: [Int], stride: [Int], activation: Bool = true, bias: Bool = true) -> Tensor {
            let y = ReferenceOps.convolution(x, weights: w["\(prefix).conv.weight"]!, bias: bias ? w["\(prefix).conv.bias"]?.data : nil,
                                             geometry: .same(kernel: kernel, stride: stride))
            return ReferenceOps.instanceNorm(y, gamma: w["\(prefix).norm.weight"]!.data, beta: w["\(prefix).norm.bias"]!.data,
                                             epsilon: eps, leakyReLUSlope: activation ? slope : nil)
        }
        var skips: [Tensor] = []
        var x = input
        switch a.kind {
        case .plainConvUNet:
            for s in 0..<a.stages {
                for i in 0..<a.blocksPerStage[s] {
                    x = unit("encoder.stages.\(s).0.convs.\(i)", x, kernel: a.kernelSizes[s], stride: i == 0 ? a.strides[s] : one)
                }
                skips.append(x)
            }
        case .residualEncoderUNet:
            x = unit("encoder.stem.convs.0", x, kernel: a.kernelSizes[0], stride: one)
            for s in 0..<a.stages {
                for b in 0..<a.blocksPerStage[s] {
                    let p = "encoder.stages.\(s).blocks.\(b)"
                    let stride = b == 0 ? a.strides[s] : one
                    let strided = stride != one
                    var main = unit("\(p).conv1", x, kernel: a.kernelSizes[s], stride: stride)
                    main = unit("\(p).conv2", main, kernel: a.kernelSizes[s], stride: one, activation: false)
                    var skip = x
                    if strided { skip = averagePool(skip, window: stride) }
                    if x.channels != a.featuresPerStage[s] {
                        skip = unit("\(p).skip.\(strided ? 1 : 0)", skip, kernel: one, stride: one, activation: false, bias: false)
                    }
                    for i in 0..<main.count {
                        let v = main.data[i] + skip.data[i]
                        main.data[i] = v < 0 ? v * slope : v
                    }
                    x = main
                }
                skips.append(x)
            }
        }
        let n = a.stages
        for s in 0..<(n - 1) {
            let up = ReferenceOps.transposedConvolution(x, weights: w["decoder.transpconvs.\(s).weight"]!,
                                                        bias: w["decoder.transpconvs.\(s).bias"]?.data,
                                                        geometry: ConvolutionGeometry(kernel: a.strides[n - 1 - s], stride: a.strides[n - 1 - s],
                                                                                      padding: a.strides[n - 1 - s].map { _ in 0 }))
            x = ReferenceOps.concatenateChannels(up, skips[n - 2 - s])
            for i in 0..<a.convsPerDecoderStage[s] {
                x = unit("decoder.stages.\(s).convs.\(i)", x, kernel: a.kernelSizes[n - 2 - s], stride: one)
            }
        }
        return ReferenceOps.convolution(x, weights: w["decoder.seg_layers.\(n - 2).weight"]!, bias: w["decoder.seg_layers.\(n - 2).bias"]!.data,
                                        geometry: .same(kernel: one, stride: one))
    }

    static func averagePool(_ x: Tensor, window: [Int]) -> Tensor {
        let spatial = x.spatialShape
        let out = zip(spatial, window).map { $0 / $1 }
        let (d, h, wd) = spatial.count == 3 ? (spatial[0], spatial[1], spatial[2]) : (1, spatial[0], spatial[1])
        let (od, oh, ow) = out.count == 3 ? (out[0], out[1], out[2]) : (1, out[0], out[1])
        let (kd, kh, kw) = window.count == 3 ? (window[0], window[1], window[2]) : (1, window[0], window[1])
        var y = Tensor(zeros: Array(x.shape.prefix(2)) + out)
        for c in 0..<x.channels {
            for z in 0..<od { for yy in 0..<oh { for xx in 0..<ow {
                var sum: Float = 0
                for a in 0..<kd { for b in 0..<kh { for e in 0..<kw {
                    sum += x.data[((c * d + z * kd + a) * h + yy * kh + b) * wd + xx * kw + e]
                } } }
                y.data[((c * od + z) * oh + yy) * ow + xx] = sum / Float(kd * kh * kw)
            } } }
        }
        return y
    }
}
