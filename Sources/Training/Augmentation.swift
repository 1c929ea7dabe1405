import Foundation

/// A seeded random source (SplitMix64) for the data pipeline, so a run can be repeated with `--seed`.
public struct RandomSource: Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }
    public mutating func uniform(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * uniform() }
    /// Uniform integer in `[lo, hi]`.
    public mutating func integer(_ lo: Int, _ hi: Int) -> Int { lo + Int(next() % UInt64(hi - lo + 1)) }
    public mutating func chance(_ p: Double) -> Bool { uniform() < p }
    public mutating func normal() -> Double { normalPair().0 }
    /// Two independent standard normal draws (Box–Muller from one pair of uniforms).
    public mutating func normalPair() -> (Double, Double) {
        var u = uniform()
        while u <= 0 { u = uniform() }
        let r = (-2 * log(u)).squareRoot(), angle = 2 * .pi * uniform()
        return (r * cos(angle), r * sin(angle))
    }
    /// An independent stream (for a worker thread).
    public mutating func split() -> RandomSource { RandomSource(seed: next()) }
}

/// The rotation / mirroring / enlarged-patch configuration nnU-Net derives from the patch size
/// (`configure_rotation_dummyDA_mirroring_and_inital_patch_size`, spec 6.4).
public struct AugmentationConfiguration: Sendable, Equatable {
    /// Final patch, always 3-D here: a 2-D configuration's patch `(x, y)` is `(1, x, y)`.
    public let patch: [Int]
    public let twoD: Bool
    public let dummy2D: Bool
    /// Maximum |angle| in radians.
    public let rotation: Double
    /// Axes (of the 3-D patch) that may be mirrored.
    public let mirrorAxes: [Int]
    /// Mirror axes as nnU-Net stores them (`inference_allowed_mirroring_axes`, in the configuration's own rank).
    public let inferenceMirrorAxes: [Int]
    /// The enlarged crop the spatial transform reads from (3-D).
    public let initialPatch: [Int]

    public init(patch configured: [Int]) {
        twoD = configured.count == 2
        patch = twoD ? [1] + configured : configured
        if twoD {
            dummy2D = false
            rotation = Double(configured.max()!) / Double(configured.min()!) > 1.5 ? 15 * .pi / 180 : .pi
            mirrorAxes = [1, 2]
            inferenceMirrorAxes = [0, 1]
        } else {
            dummy2D = Double(configured.max()!) / Double(configured[0]) > 3
            rotation = dummy2D ? .pi : 30 * .pi / 180
            mirrorAxes = [0, 1, 2]
            inferenceMirrorAxes = [0, 1, 2]
        }
        if twoD {
            initialPatch = [1] + Self.enlargedPatch(configured, rotation: rotation)
        } else if dummy2D {
            initialPatch = [configured[0]] + Self.enlargedPatch(Array(configured.dropFirst()), rotation: rotation)
        } else {
            initialPatch = Self.enlargedPatch(configured, rotation: rotation)
        }
    }

    /// batchgenerators' `get_patch_size(patch, rot, rot, rot, (0.85, 1.25))`.
    static func enlargedPatch(_ patch: [Int], rotation: Double) -> [Int] {
        let a = min(rotation, .pi / 2), c = cos(a), s = sin(a)
        let p = patch.map(Double.init)
        var result = p
        if p.count == 3 {
            // Row vector times the rotation matrices about x, y and z.
            let rx = [p[0], p[1] * c + p[2] * s, -p[1] * s + p[2] * c]
            let ry = [p[0] * c - p[2] * s, p[1], p[0] * s + p[2] * c]
            let rz = [p[0] * c + p[1] * s, -p[0] * s + p[1] * c, p[2]]
            for r in [rx, ry, rz] { for i in 0..<3 { result[i] = max(result[i], abs(r[i])) } }
        } else {
            let r = [p[0] * c + p[1] * s, -p[0] * s + p[1] * c]
            for i in 0..<2 { result[i] = max(result[i], abs(r[i])) }
        }
        return result.map { Int($0 / 0.85) }
    }
}

/// A multi-channel 3-D sample: `channels × (z, y, x)` floats and one label map.
public struct Sample: Sendable {
    public var shape: [Int]
    public var channels: Int
    public var data: [Float]
    public var labels: [Int16]
    /// A cascade's previous-stage labels on the same grid (transformed with the labels), until they become
    /// one-hot input channels (``CascadeAugmentation/appendOneHot(_:labels:)``).
    public var previous: [Int16]?
    var volume: Int { shape.reduce(1, *) }

    public init(shape: [Int], channels: Int, data: [Float], labels: [Int16], previous: [Int16]? = nil) {
        self.shape = shape
        self.channels = channels
        self.data = data
        self.labels = labels
        self.previous = previous
    }
}

/// nnU-Net's training augmentation (batchgeneratorsv2 pipeline, spec 6.4) applied to one enlarged crop,
/// producing a final-size patch: spatial (rotation p 0.2, scaling p 0.2, no elastic), Gaussian noise,
/// Gaussian blur, brightness, contrast, low resolution, inverted and plain gamma, mirroring, image masking
/// (`use_mask_for_norm` channels), −1 → 0.
public struct Augmenter: Sendable {
    public let configuration: AugmentationConfiguration
    /// Channels normalised inside the non-zero mask (`use_mask_for_norm`): zeroed where the label is −1
    /// (outside the mask) before −1 becomes 0, as nnU-Net's MaskImageTransform does.
    public let maskedChannels: [Int]

    /// A cascade's foreground labels: the previous stage becomes one-hot channels for these, perturbed.
    public let cascadeLabels: [Int]

    public init(configuration: AugmentationConfiguration, useMaskForNorm: [Bool] = [], cascadeLabels: [Int] = []) {
        self.configuration = configuration
        maskedChannels = useMaskForNorm.enumerated().filter(\.element).map(\.offset)
        self.cascadeLabels = cascadeLabels
    }

    public func augment(_ input: Sample, _ rng: inout RandomSource) -> Sample {
        augment(input, drawn: draw(channels: input.channels, &rng), &rng)
    }

    /// ``augment(_:_:)`` with the sample's draw already made (a cascade's perturbation still draws from `rng`).
    public func augment(_ input: Sample, drawn: Draw, _ rng: inout RandomSource) -> Sample {
        var s = apply(drawn, to: input)
        if s.previous != nil {
            CascadeAugmentation.appendOneHot(&s, labels: cascadeLabels)
            CascadeAugmentation.perturb(&s, count: cascadeLabels.count, planar: configuration.twoD, &rng)
        }
        return s
    }

    /// Every random choice of one sample's augmentation, in the order nnU-Net's transforms make them; ``apply(_:to:)``
    /// is then deterministic. Given nnU-Net's own draws (`Ops/bench/nnunet_augmentation_log.py`), nnseg's augmenter
    /// must reproduce nnU-Net's sample (`TrainingBenchmark augreplay`).
    public struct Draw: Sendable {
        /// Angles (radians) about axes 0, 1, 2 and one scale for all axes; nil: no rotation or scaling (centre crop).
        public var rotationAndScale: (angles: [Double], scale: Double)?
        /// Additive Gaussian noise, `channels × patch`.
        public var noise: [Float]?
        /// Blur σ per axis for each channel blurred (nil: channel not blurred); nil: no blur.
        public var blur: [[Double]?]?
        /// Multiplicative brightness factor per channel.
        public var brightness: [Float]?
        /// Contrast factor per channel.
        public var contrast: [Float]?
        /// Low-resolution zoom per channel (nil: channel untouched).
        public var lowResolution: [Double?]?
        /// Gamma per channel on the inverted image, then on the image.
        public var invertedGamma: [Double]?
        public var gamma: [Double]?
        /// Axes mirrored.
        public var mirror: [Int] = []

        public init() {}
    }

    /// Draws one sample's augmentation for `channels` image channels.
    public func draw(channels: Int, _ rng: inout RandomSource) -> Draw {
        var d = Draw()
        let planar = configuration.twoD || configuration.dummy2D
        let rotate = rng.chance(0.2), scaleIt = rng.chance(0.2)
        var angles = [0.0, 0.0, 0.0]
        if rotate {
            if planar {
                angles[0] = rng.uniform(-configuration.rotation, configuration.rotation)
            } else {
                for i in 0..<3 { angles[i] = rng.uniform(-configuration.rotation, configuration.rotation) }
            }
        }
        let scale = scaleIt ? rng.uniform(0.7, 1.4) : 1
        if rotate || scaleIt { d.rotationAndScale = (angles, scale) }
        if rng.chance(0.1) {
            let sigma = rng.uniform(0, 0.1)
            d.noise = (0..<(channels * configuration.patch.reduce(1, *))).map { _ in Float(rng.normal() * sigma) }
        }
        if rng.chance(0.2) { d.blur = (0..<channels).map { _ in rng.chance(0.5) ? (0..<3).map { _ in rng.uniform(0.5, 1.0) } : nil } }
        if rng.chance(0.15) { d.brightness = (0..<channels).map { _ in Float(contrastFactor(0.75, 1.25, &rng)) } }
        if rng.chance(0.15) { d.contrast = (0..<channels).map { _ in Float(contrastFactor(0.75, 1.25, &rng)) } }
        if rng.chance(0.25) { d.lowResolution = (0..<channels).map { _ in rng.chance(0.5) ? rng.uniform(0.5, 1) : nil } }
        if rng.chance(0.1) { d.invertedGamma = (0..<channels).map { _ in contrastFactor(0.7, 1.5, &rng) } }
        if rng.chance(0.3) { d.gamma = (0..<channels).map { _ in contrastFactor(0.7, 1.5, &rng) } }
        d.mirror = configuration.mirrorAxes.filter { _ in rng.chance(0.5) }
        return d
    }

    /// One sample's augmentation with its draws made: spatial, Gaussian noise, Gaussian blur, brightness, contrast,
    /// low resolution, inverted and plain gamma, mirroring, image masking, −1 → 0 (a cascade's previous stage is
    /// carried along, not yet one-hot).
    public func apply(_ d: Draw, to input: Sample) -> Sample {
        var s = d.rotationAndScale.map { spatial(input, angles: $0.angles, scale: $0.scale) } ?? centreCrop(input)
        let planar = configuration.twoD || configuration.dummy2D
        if let noise = d.noise {
            precondition(noise.count == s.data.count, "noise for \(noise.count) values, sample has \(s.data.count)")
            for i in 0..<s.data.count { s.data[i] += noise[i] }
        }
        if let blur = d.blur {
            for (c, sigmas) in blur.enumerated() where c < s.channels {
                guard let sigmas else { continue }
                for axis in 0..<3 where !(configuration.twoD && axis == 0) { self.blur(&s, channel: c, axis: axis, sigma: sigmas[axis]) }
            }
        }
        for (c, f) in (d.brightness ?? []).enumerated() where c < s.channels { brightness(&s, channel: c, factor: f) }
        for (c, f) in (d.contrast ?? []).enumerated() where c < s.channels { contrast(&s, channel: c, factor: f) }
        for (c, zoom) in (d.lowResolution ?? []).enumerated() where c < s.channels {
            if let zoom { lowResolution(&s, channel: c, zoom: zoom, skipAxis0: planar) }
        }
        for (c, g) in (d.invertedGamma ?? []).enumerated() where c < s.channels { gamma(&s, channel: c, gamma: g, invert: true) }
        for (c, g) in (d.gamma ?? []).enumerated() where c < s.channels { gamma(&s, channel: c, gamma: g, invert: false) }
        for axis in d.mirror { mirror(&s, axis: axis) }
        maskAndRemoveLabel(&s)
        return s
    }

    /// MaskImage (use_mask_for_norm channels set to 0 where the label is −1), then RemoveLabel (−1 → 0).
    func maskAndRemoveLabel(_ s: inout Sample) {
        let v = s.volume
        for c in maskedChannels where c < s.channels {
            for i in 0..<v where s.labels[i] < 0 { s.data[c * v + i] = 0 }
        }
        for i in 0..<s.labels.count where s.labels[i] < 0 { s.labels[i] = 0 }
        if var previous = s.previous {
            for i in 0..<previous.count where previous[i] < 0 { previous[i] = 0 }
            s.previous = previous
        }
    }

    // MARK: Spatial

    /// The spatial transform when neither rotation nor scaling is drawn: the patch from the middle of the crop.
    func centreCrop(_ input: Sample) -> Sample {
        crop(input, start: zip(input.shape, configuration.patch).map { $0 / 2 - $1 / 2 })
    }

    /// The spatial transform with given parameters: angles (radians) about axes 0, 1, 2 and one scale for all axes
    /// (`Fixtures/golden/augmentation` holds nnU-Net's output for fixed ones).
    func spatial(_ input: Sample, angles: [Double], scale: Double) -> Sample {
        let patch = configuration.patch
        let planar = configuration.twoD || configuration.dummy2D
        // Matrix M = R·S mapping output offsets to input offsets (axis order z, y, x).
        var m = rotationMatrix(angles)
        for r in 0..<3 { for c in 0..<3 { m[r][c] *= (planar && c == 0) ? 1 : scale } }
        if planar { m[0] = [1, 0, 0]; m[1][0] = 0; m[2][0] = 0 }
        let centreIn = input.shape.map { Double($0 - 1) / 2 }
        let centreOut = patch.map { Double($0 - 1) / 2 }
        let outVolume = patch.reduce(1, *)
        var coordinates = [SIMD3<Double>](repeating: .zero, count: outVolume)
        var o = 0
        for z in 0..<patch[0] {
            for y in 0..<patch[1] {
                for x in 0..<patch[2] {
                    let p = [Double(z) - centreOut[0], Double(y) - centreOut[1], Double(x) - centreOut[2]]
                    coordinates[o] = SIMD3((0..<3).map { r in centreIn[r] + m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] })
                    o += 1
                }
            }
        }
        var out = Sample(shape: patch, channels: input.channels, data: [Float](repeating: 0, count: input.channels * outVolume),
                         labels: [Int16](repeating: -1, count: outVolume))
        let inVolume = input.volume
        input.data.withUnsafeBufferPointer { src in
            for c in 0..<input.channels {
                let channel = UnsafeBufferPointer(rebasing: src[(c * inVolume)..<((c + 1) * inVolume)])
                for i in 0..<outVolume {
                    out.data[c * outVolume + i] = Float(trilinear(channel, input.shape, coordinates[i]) { Double($0) })
                }
            }
        }
        out.labels = sampleLabels(input.labels, shape: input.shape, at: coordinates)
        out.previous = input.previous.map { sampleLabels($0, shape: input.shape, at: coordinates) }
        return out
    }

    /// Labels at the sampling coordinates as batchgeneratorsv2's SpatialTransform samples them for nnU-Net
    /// (`border_mode_seg='constant'`, padding label −1, `seg_tiebreak='nearest'`): every label's indicator ×1000 is
    /// interpolated trilinearly and rounded to float16, the highest score wins; the padding label −1 counts as present
    /// outside the crop (so a point up to half a voxel past the last voxel centre keeps that voxel's label) and joins
    /// the labels whenever the grid may reach outside (the same conservative bound on the normalised grid);
    /// ties go to the nearest neighbour's label where it is one of the tied labels, otherwise to the lowest label.
    /// With two labels only the higher one is scored (it wins above 500, the nearest neighbour settles exactly 500).
    /// 2-D patches and nnU-Net's dummy 2-D augmentation sample slice by slice (batchgeneratorsv2 sees 2-D images
    /// with the slices as channels), each slice with its own labels.
    func sampleLabels(_ input: [Int16], shape: [Int], at coordinates: [SIMD3<Double>]) -> [Int16] {
        let pad: Int16 = -1
        let planar = configuration.twoD || configuration.dummy2D
        // Normalised grid coordinate g = (2·p + 1)/n − 1 (align_corners false); batchgeneratorsv2 compares the grid's
        // extreme values with the smallest per-axis bound 1 − 1/n (over the in-plane axes for 2-D images).
        let axes = planar ? [1, 2] : [0, 1, 2]
        let bound = axes.map { 1 - 1 / Double(shape[$0]) }.min()!
        var extreme = 0.0
        for p in coordinates { for a in axes { extreme = max(extreme, abs((2 * p[a] + 1) / Double(shape[a]) - 1)) } }
        let mayReachOutside = extreme > bound
        // The nearest neighbour (grid_sample 'nearest': round half to even), the padding label outside.
        let nearest: [Int16] = coordinates.map { p in
            var index = 0
            for a in 0..<3 {
                let i = Int(p[a].rounded(.toNearestOrEven))
                if i < 0 || i >= shape[a] { return pad }
                index = index * shape[a] + i
            }
            return input[index]
        }
        // What one label set covers: the whole crop, or (2-D) each output slice and the input slice it samples.
        let inPlane = shape[1] * shape[2], slices = planar ? configuration.patch[0] : 1
        let outPlane = coordinates.count / slices
        var out = [Int16](repeating: pad, count: coordinates.count)
        var seen = [Bool](repeating: false, count: 1 << 16)  // by label + 32768: no hashing per voxel
        input.withUnsafeBufferPointer { labels in
            func score(_ u: Int16, _ p: SIMD3<Double>) -> Float16 {
                Float16(Float(trilinear(labels, shape, p, outside: u == pad ? 1000 : 0) { $0 == u ? 1000 : 0 }))
            }
            for slice in 0..<slices {
                let outRange = (slice * outPlane)..<((slice + 1) * outPlane)
                var inRange = 0..<labels.count
                if planar {
                    let z = min(max(Int(coordinates[outRange.lowerBound].x.rounded()), 0), shape[0] - 1)
                    inRange = (z * inPlane)..<((z + 1) * inPlane)
                }
                for i in seen.indices { seen[i] = false }
                for label in labels[inRange] { seen[Int(label) &+ 32768] = true }
                if mayReachOutside { seen[Int(pad) &+ 32768] = true }
                let present = seen.indices.filter { seen[$0] }.map { Int16($0 - 32768) }
                guard present.count > 1 else {
                    for i in outRange { out[i] = present.first ?? pad }
                    continue
                }
                if present.count == 2 {
                    let (low, high) = (present[0], present[1])
                    for i in outRange {
                        let v = score(high, coordinates[i])
                        out[i] = v > 500 ? high : (v == 500 ? nearest[i] : low)
                    }
                    continue
                }
                var best = [Float16](repeating: -.infinity, count: outRange.count)
                var nearestScore = [Float16](repeating: -.infinity, count: outRange.count)
                for u in present {
                    for i in outRange {
                        let v = score(u, coordinates[i]), k = i - outRange.lowerBound
                        if v > best[k] { best[k] = v; out[i] = u }
                        if nearest[i] == u { nearestScore[k] = v }
                    }
                }
                for i in outRange where nearestScore[i - outRange.lowerBound] == best[i - outRange.lowerBound] { out[i] = nearest[i] }
            }
        }
        return out
    }

    func rotationMatrix(_ a: [Double]) -> [[Double]] {
        func mul(_ x: [[Double]], _ y: [[Double]]) -> [[Double]] {
            (0..<3).map { r in (0..<3).map { c in (0..<3).reduce(0) { $0 + x[r][$1] * y[$1][c] } } }
        }
        let (c0, s0, c1, s1, c2, s2) = (cos(a[0]), sin(a[0]), cos(a[1]), sin(a[1]), cos(a[2]), sin(a[2]))
        // Rotation about axis 0 acts on axes (1, 2), about axis 1 on (0, 2), about axis 2 on (0, 1).
        let r0 = [[1, 0, 0], [0, c0, -s0], [0, s0, c0]]
        let r1 = [[c1, 0, s1], [0, 1, 0], [-s1, 0, c1]]
        let r2 = [[c2, -s2, 0], [s2, c2, 0], [0, 0, 1]]
        return mul(mul(r2, r1), r0)
    }

    /// Trilinear sample at `p`; corners outside the volume count as `outside` (zero for the image).
    @inline(__always)
    func trilinear<T>(_ v: UnsafeBufferPointer<T>, _ shape: [Int], _ p: SIMD3<Double>, outside: Double = 0, _ value: (T) -> Double) -> Double {
        let z0 = Int(p.x.rounded(.down)), y0 = Int(p.y.rounded(.down)), x0 = Int(p.z.rounded(.down))
        let fz = p.x - Double(z0), fy = p.y - Double(y0), fx = p.z - Double(x0)
        let (D, H, W) = (shape[0], shape[1], shape[2])
        var result = 0.0
        for dz in 0...1 {
            let z = z0 + dz
            let wz = dz == 0 ? 1 - fz : fz
            if wz == 0 { continue }
            for dy in 0...1 {
                let y = y0 + dy
                let wy = dy == 0 ? 1 - fy : fy
                if wy == 0 { continue }
                for dx in 0...1 {
                    let x = x0 + dx
                    let wx = dx == 0 ? 1 - fx : fx
                    if wx == 0 { continue }
                    if z >= 0 && z < D && y >= 0 && y < H && x >= 0 && x < W {
                        result += wz * wy * wx * value(v[(z * H + y) * W + x])
                    } else if outside != 0 {
                        result += wz * wy * wx * outside
                    }
                }
            }
        }
        return result
    }

    func crop(_ input: Sample, start: [Int]) -> Sample {
        let patch = configuration.patch
        let outVolume = patch.reduce(1, *), inVolume = input.volume
        var out = Sample(shape: patch, channels: input.channels, data: [Float](repeating: 0, count: input.channels * outVolume),
                         labels: [Int16](repeating: -1, count: outVolume), previous: input.previous.map { _ in [Int16](repeating: -1, count: outVolume) })
        var o = 0
        for z in 0..<patch[0] {
            for y in 0..<patch[1] {
                for x in 0..<patch[2] {
                    let (sz, sy, sx) = (z + start[0], y + start[1], x + start[2])
                    if sz >= 0 && sz < input.shape[0] && sy >= 0 && sy < input.shape[1] && sx >= 0 && sx < input.shape[2] {
                        let i = (sz * input.shape[1] + sy) * input.shape[2] + sx
                        for c in 0..<input.channels { out.data[c * outVolume + o] = input.data[c * inVolume + i] }
                        out.labels[o] = input.labels[i]
                        if let previous = input.previous { out.previous![o] = previous[i] }
                    }
                    o += 1
                }
            }
        }
        return out
    }

    // MARK: Intensity

    /// Separable Gaussian along one axis as batchgeneratorsv2 blurs: the kernel spans 6σ + 0.5 rounded to an odd size
    /// (half to even first, then to the odd neighbour on the side of the unrounded value), its weights exp(−x²/2σ²) at
    /// integer offsets, normalised; the line is padded by reflection without repeating the edge (torch's "reflect":
    /// …, 2, 1 | 0, 1, 2, …).
    func blur(_ s: inout Sample, channel: Int, axis: Int, sigma: Double) {
        let size = Self.blurKernelSize(sigma)
        let r = size / 2
        var k = (-r...r).map { exp(-0.5 * (Double($0) / sigma) * (Double($0) / sigma)) }
        let total = k.reduce(0, +)
        k = k.map { $0 / total }
        let shape = s.shape, n = shape[axis]
        guard n > 1 else { return }
        let strides = [shape[1] * shape[2], shape[2], 1]
        let base = channel * s.volume
        var line = [Double](repeating: 0, count: n)
        let others = (0..<3).filter { $0 != axis }
        for a in 0..<shape[others[0]] {
            for b in 0..<shape[others[1]] {
                let start = base + a * strides[others[0]] + b * strides[others[1]]
                for i in 0..<n { line[i] = Double(s.data[start + i * strides[axis]]) }
                for i in 0..<n {
                    var acc = 0.0
                    for j in -r...r {
                        var t = i + j
                        // Reflect about the edge sample (…, 2, 1 | 0, 1, 2, …), repeated for lines shorter than the kernel.
                        while t < 0 || t >= n { t = t < 0 ? -t : 2 * (n - 1) - t }
                        acc += k[j + r] * line[t]
                    }
                    s.data[start + i * strides[axis]] = Float(acc)
                }
            }
        }
    }

    /// batchgeneratorsv2's kernel size for σ: 6σ + 0.5 rounded half to even; an even result moves to the odd
    /// neighbour on the side of the unrounded value.
    static func blurKernelSize(_ sigma: Double) -> Int {
        let n = 6 * sigma + 0.5
        let rounded = Int(n.rounded(.toNearestOrEven))
        if rounded % 2 == 1 { return rounded }
        return n - Double(rounded) >= 0 ? rounded + 1 : rounded - 1
    }

    /// batchgeneratorsv2 BGContrast: with p 0.5 (when lo < 1) U(lo, 1), otherwise U(max(lo, 1), hi).
    func contrastFactor(_ lo: Double, _ hi: Double, _ rng: inout RandomSource) -> Double {
        if lo < 1 && rng.chance(0.5) { return rng.uniform(lo, 1) }
        return rng.uniform(max(lo, 1), hi)
    }

    func brightness(_ s: inout Sample, channel c: Int, factor f: Float) {
        let v = s.volume
        for i in (c * v)..<((c + 1) * v) { s.data[i] *= f }
    }

    /// `x ← (x − mean)·f + mean`, clamped to the channel's range before.
    func contrast(_ s: inout Sample, channel c: Int, factor f: Float) {
        let v = s.volume
        let range = (c * v)..<((c + 1) * v)
        var sum = 0.0, lo = Float.infinity, hi = -Float.infinity
        for i in range { sum += Double(s.data[i]); lo = min(lo, s.data[i]); hi = max(hi, s.data[i]) }
        let mean = Float(sum / Double(v))
        for i in range { s.data[i] = min(max((s.data[i] - mean) * f + mean, lo), hi) }
    }

    /// Downsample by a common zoom U(0.5, 1) with nearest-exact to round(n·zoom) (half to even, as Python rounds),
    /// upsample back with (tri)linear interpolation (align_corners false), per channel with p 0.5.
    func lowResolution(_ s: inout Sample, channel c: Int, zoom: Double, skipAxis0: Bool) {
        let v = s.volume, shape = s.shape
        let small = shape.enumerated().map { a, n in (skipAxis0 && a == 0) ? n : max(1, Int((Double(n) * zoom).rounded(.toNearestOrEven))) }
        let smallVolume = small.reduce(1, *)
        var low = [Float](repeating: 0, count: smallVolume)
        let maps = (0..<3).map { a in (0..<small[a]).map { nearestExactSource($0, input: shape[a], output: small[a]) } }
        var o = 0
        for z in 0..<small[0] { for y in 0..<small[1] { for x in 0..<small[2] {
            low[o] = s.data[c * v + (maps[0][z] * shape[1] + maps[1][y]) * shape[2] + maps[2][x]]
            o += 1
        } } }
        // Linear upsampling, align_corners false: source = (i + 0.5)·in/out − 0.5, clamped.
        let up = (0..<3).map { a -> [(Int, Int, Double)] in
            (0..<shape[a]).map { i in
                let src = max(0, (Double(i) + 0.5) * Double(small[a]) / Double(shape[a]) - 0.5)
                let i0 = min(Int(src), small[a] - 1), i1 = min(i0 + 1, small[a] - 1)
                return (i0, i1, src - Double(i0))
            }
        }
        o = 0
        for z in 0..<shape[0] {
            let (z0, z1, fz) = up[0][z]
            for y in 0..<shape[1] {
                let (y0, y1, fy) = up[1][y]
                for x in 0..<shape[2] {
                    let (x0, x1, fx) = up[2][x]
                    func at(_ a: Int, _ b: Int, _ d: Int) -> Double { Double(low[(a * small[1] + b) * small[2] + d]) }
                    let value = (1 - fz) * ((1 - fy) * ((1 - fx) * at(z0, y0, x0) + fx * at(z0, y0, x1)) + fy * ((1 - fx) * at(z0, y1, x0) + fx * at(z0, y1, x1)))
                        + fz * ((1 - fy) * ((1 - fx) * at(z1, y0, x0) + fx * at(z1, y0, x1)) + fy * ((1 - fx) * at(z1, y1, x0) + fx * at(z1, y1, x1)))
                    s.data[c * v + o] = Float(value)
                    o += 1
                }
            }
        }
    }

    /// Gamma with retained mean and standard deviation (unbiased), optionally on the inverted image.
    func gamma(_ s: inout Sample, channel c: Int, gamma g: Double, invert: Bool) {
        let v = s.volume
        let range = (c * v)..<((c + 1) * v)
        if invert { for i in range { s.data[i] = -s.data[i] } }
        func stats() -> (Double, Double) {
            var sum = 0.0
            for i in range { sum += Double(s.data[i]) }
            let mean = sum / Double(v)
            var sq = 0.0
            for i in range { let d = Double(s.data[i]) - mean; sq += d * d }
            return (mean, (sq / Double(max(v - 1, 1))).squareRoot())
        }
        let (mean, std) = stats()
        var lo = Float.infinity, hi = -Float.infinity
        for i in range { lo = min(lo, s.data[i]); hi = max(hi, s.data[i]) }
        let span = Double(hi - lo)
        for i in range { s.data[i] = Float(pow((Double(s.data[i]) - Double(lo)) / max(span, 1e-7), g) * span + Double(lo)) }
        let (mean2, std2) = stats()
        for i in range { s.data[i] = Float((Double(s.data[i]) - mean2) * std / max(std2, 1e-7) + mean) }
        if invert { for i in range { s.data[i] = -s.data[i] } }
    }

    func mirror(_ s: inout Sample, axis: Int) {
        let shape = s.shape, v = s.volume
        let strides = [shape[1] * shape[2], shape[2], 1]
        let n = shape[axis], st = strides[axis]
        for i in 0..<v {
            let coordinate = (i / st) % n
            guard coordinate < n / 2 else { continue }
            let j = i + (n - 1 - 2 * coordinate) * st
            for c in 0..<s.channels { s.data.swapAt(c * v + i, c * v + j) }
            s.labels.swapAt(i, j)
            s.previous?.swapAt(i, j)
        }
    }
}
