/// Plain, obviously-correct implementations of every primitive, for tests (ggml's `use_ref` idea): each
/// optimised kernel is checked against these on random shapes. Slow by design; 2-D and 3-D.
public enum ReferenceOps {
    /// Spatial dims padded to 3 (2-D tensors get a leading depth of 1) to share one loop nest.
    static func dims3(_ s: [Int]) -> (Int, Int, Int) {
        s.count == 3 ? (s[0], s[1], s[2]) : (1, s[0], s[1])
    }

    static func geometry3(_ g: ConvolutionGeometry) -> (k: (Int, Int, Int), s: (Int, Int, Int), p: (Int, Int, Int)) {
        g.kernel.count == 3
            ? ((g.kernel[0], g.kernel[1], g.kernel[2]), (g.stride[0], g.stride[1], g.stride[2]), (g.padding[0], g.padding[1], g.padding[2]))
            : ((1, g.kernel[0], g.kernel[1]), (1, g.stride[0], g.stride[1]), (0, g.padding[0], g.padding[1]))
    }

    /// Convolution. `weights` shape `(O, I, k…)`, `bias` `(O)` or nil.
    public static func convolution(_ x: Tensor, weights: Tensor, bias: [Float]?, geometry: ConvolutionGeometry) -> Tensor {
        let n = x.shape[0], ci = x.shape[1], co = weights.shape[0]
        let (id, ih, iw) = dims3(x.spatialShape)
        let outSpatial = geometry.outputShape(x.spatialShape)
        let (od, oh, ow) = dims3(outSpatial)
        let (k, s, p) = geometry3(geometry)
        var y = Tensor(zeros: [n, co] + outSpatial)
        for b in 0..<n {
            for o in 0..<co {
                for z in 0..<od {
                    for yy in 0..<oh {
                        for xx in 0..<ow {
                            var acc = Double(bias?[o] ?? 0)
                            for i in 0..<ci {
                                for kz in 0..<k.0 {
                                    let iz = z * s.0 - p.0 + kz
                                    if iz < 0 || iz >= id { continue }
                                    for ky in 0..<k.1 {
                                        let iy = yy * s.1 - p.1 + ky
                                        if iy < 0 || iy >= ih { continue }
                                        for kx in 0..<k.2 {
                                            let ix = xx * s.2 - p.2 + kx
                                            if ix < 0 || ix >= iw { continue }
                                            let xv = x.data[(((b * ci + i) * id + iz) * ih + iy) * iw + ix]
                                            let wv = weights.data[(((o * ci + i) * k.0 + kz) * k.1 + ky) * k.2 + kx]
                                            acc += Double(xv) * Double(wv)
                                        }
                                    }
                                }
                            }
                            y.data[(((b * co + o) * od + z) * oh + yy) * ow + xx] = Float(acc)
                        }
                    }
                }
            }
        }
        return y
    }

    /// Transposed convolution as PyTorch's ConvTranspose: `weights` shape `(I, O, k…)`.
    public static func transposedConvolution(_ x: Tensor, weights: Tensor, bias: [Float]?, geometry: ConvolutionGeometry) -> Tensor {
        let n = x.shape[0], ci = x.shape[1], co = weights.shape[1]
        let (id, ih, iw) = dims3(x.spatialShape)
        let outSpatial = geometry.transposedOutputShape(x.spatialShape)
        let (od, oh, ow) = dims3(outSpatial)
        let (k, s, p) = geometry3(geometry)
        var acc = [Double](repeating: 0, count: n * co * od * oh * ow)
        for b in 0..<n {
            for i in 0..<ci {
                for z in 0..<id { for yy in 0..<ih { for xx in 0..<iw {
                    let xv = Double(x.data[(((b * ci + i) * id + z) * ih + yy) * iw + xx])
                    for o in 0..<co {
                        for kz in 0..<k.0 {
                            let oz = z * s.0 - p.0 + kz
                            if oz < 0 || oz >= od { continue }
                            for ky in 0..<k.1 {
                                let oy = yy * s.1 - p.1 + ky
                                if oy < 0 || oy >= oh { continue }
                                for kx in 0..<k.2 {
                                    let ox = xx * s.2 - p.2 + kx
                                    if ox < 0 || ox >= ow { continue }
                                    let wv = Double(weights.data[(((i * co + o) * k.0 + kz) * k.1 + ky) * k.2 + kx])
                                    acc[(((b * co + o) * od + oz) * oh + oy) * ow + ox] += xv * wv
                                }
                            }
                        }
                    }
                } } }
            }
        }
        var y = Tensor(zeros: [n, co] + outSpatial)
        let volume = od * oh * ow
        for i in 0..<acc.count { y.data[i] = Float(acc[i] + Double(bias?[(i / volume) % co] ?? 0)) }
        return y
    }

    /// Instance normalisation (biased variance, eps) with affine γ, β, then LeakyReLU(slope) if given.
    public static func instanceNorm(_ x: Tensor, gamma: [Float], beta: [Float], epsilon: Float = 1e-5,
                                    leakyReLUSlope: Float? = 0.01) -> Tensor {
        let n = x.shape[0], c = x.shape[1], volume = x.spatialShape.reduce(1, *)
        var y = x
        for b in 0..<n {
            for ch in 0..<c {
                let base = (b * c + ch) * volume
                var mean = 0.0
                for i in 0..<volume { mean += Double(x.data[base + i]) }
                mean /= Double(volume)
                var variance = 0.0
                for i in 0..<volume { let d = Double(x.data[base + i]) - mean; variance += d * d }
                variance /= Double(volume)
                let scale = Double(gamma[ch]) / (variance + Double(epsilon)).squareRoot()
                for i in 0..<volume {
                    var v = Float((Double(x.data[base + i]) - mean) * scale + Double(beta[ch]))
                    if let slope = leakyReLUSlope, v < 0 { v *= slope }
                    y.data[base + i] = v
                }
            }
        }
        return y
    }

    /// Concatenation along channels, `first` then `second`.
    public static func concatenateChannels(_ first: Tensor, _ second: Tensor) -> Tensor {
        precondition(first.shape[0] == second.shape[0] && first.spatialShape == second.spatialShape)
        let n = first.shape[0], volume = first.spatialShape.reduce(1, *)
        var data: [Float] = []
        data.reserveCapacity(first.count + second.count)
        for b in 0..<n {
            data += first.data[(b * first.channels * volume)..<((b + 1) * first.channels * volume)]
            data += second.data[(b * second.channels * volume)..<((b + 1) * second.channels * volume)]
        }
        return Tensor(shape: [n, first.channels + second.channels] + first.spatialShape, data: data)
    }

    /// Softmax over the channel axis.
    public static func softmaxChannels(_ x: Tensor) -> Tensor {
        let n = x.shape[0], c = x.shape[1], volume = x.spatialShape.reduce(1, *)
        var y = x
        for b in 0..<n {
            for i in 0..<volume {
                var m = -Double.infinity
                for ch in 0..<c { m = max(m, Double(x.data[(b * c + ch) * volume + i])) }
                var sum = 0.0
                for ch in 0..<c { sum += exp(Double(x.data[(b * c + ch) * volume + i]) - m) }
                for ch in 0..<c {
                    y.data[(b * c + ch) * volume + i] = Float(exp(Double(x.data[(b * c + ch) * volume + i]) - m) / sum)
                }
            }
        }
        return y
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
