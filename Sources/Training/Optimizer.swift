import Foundation

/// PyTorch's SGD with Nesterov momentum and weight decay, as nnU-Net configures it (spec 6.1):
/// `g ← grad + wd·θ`; `buf ← μ·buf + g` (buf = g at the first step); `θ ← θ − lr·(g + μ·buf)`.
/// Parameters without a gradient this step are skipped (PyTorch's `grad is None`).
public final class SGDNesterov: @unchecked Sendable {
    public let momentum: Float
    public let weightDecay: Float
    /// Momentum buffers by parameter name (nil until the parameter's first step).
    public var buffers: [String: [Float]] = [:]

    public init(momentum: Float = 0.99, weightDecay: Float = 3e-5) {
        self.momentum = momentum
        self.weightDecay = weightDecay
    }

    public func step(_ parameters: [Parameter], learningRate lr: Float) {
        let mu = momentum, wd = weightDecay
        for p in parameters where p.hasGradient {
            // Taken out of the dictionary so that it is the array's only reference: updated in place, not copied (a
            // copy of every momentum buffer per step before, 124 MB for a CT network).
            var buffer = buffers.removeValue(forKey: p.name) ?? []
            let first = buffer.isEmpty
            if first { buffer = [Float](repeating: 0, count: p.count) }
            p.value.withUnsafeMutableBufferPointer { theta in
                p.gradient.withUnsafeBufferPointer { grad in
                    buffer.withUnsafeMutableBufferPointer { buf in
                        for i in 0..<theta.count {
                            let g = grad[i] + wd * theta[i]
                            let b = first ? g : mu * buf[i] + g
                            buf[i] = b
                            theta[i] -= lr * (g + mu * b)
                        }
                    }
                }
            }
            buffers[p.name] = buffer
        }
    }
}

/// nnU-Net's poly learning rate (spec 6.1): `initial·(1 − epoch/maxEpochs)^0.9`, fixed per epoch.
public func polyLearningRate(initial: Double = 1e-2, epoch: Int, maxEpochs: Int, exponent: Double = 0.9) -> Double {
    initial * pow(1 - Double(epoch) / Double(maxEpochs), exponent)
}

/// PyTorch's `clip_grad_norm_` over the parameters that have a gradient: scales every gradient by
/// `maxNorm / (norm + 1e-6)` when that is below 1. Returns the total L2 norm before clipping.
@discardableResult
public func clipGradientNorm(_ parameters: [Parameter], maxNorm: Double) -> Double {
    var squares = 0.0
    for p in parameters where p.hasGradient {
        p.gradient.withUnsafeBufferPointer { g in
            var s: Float = 0
            var partial = 0.0
            for i in 0..<g.count {
                s += g[i] * g[i]
                if i & 1023 == 1023 { partial += Double(s); s = 0 }
            }
            squares += partial + Double(s)
        }
    }
    let norm = squares.squareRoot()
    let coefficient = maxNorm / (norm + 1e-6)
    if coefficient < 1 {
        let c = Float(coefficient)
        for p in parameters where p.hasGradient {
            p.gradient.withUnsafeMutableBufferPointer { g in for i in 0..<g.count { g[i] *= c } }
        }
    }
    return norm
}
