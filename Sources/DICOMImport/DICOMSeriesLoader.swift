import Foundation
import VolumeGeometry

/// What a loader may accept beyond a clean, uniform, orthogonal stack. Defaults refuse (spec R-RD-07…09).
public struct GeometryPolicy: Sendable, Equatable {
    /// Accept a gantry-tilted stack on its native pixel grid with the sheared affine (R-RD-09 opt-in).
    public var allowShear: Bool
    /// The most voxels one series may have (the volume is float32: 2³¹ voxels are 8 GiB). A larger series is
    /// refused with `SERIES_TOO_LARGE` before anything is allocated; raise it for what the machine can hold.
    public var maximumVoxels: Int

    public static let defaultMaximumVoxels = 1 << 31

    public init(allowShear: Bool = false, maximumVoxels: Int = defaultMaximumVoxels) {
        self.allowShear = allowShear
        self.maximumVoxels = maximumVoxels
    }

    public init(allowShear: Bool = false, limits: ReaderLimits) {
        self.init(allowShear: allowShear, maximumVoxels: limits.maximumSeriesVoxels)
    }
}

/// Limits on what a file may declare that real data can exceed: settings with safe defaults (profile
/// `geometry.maximumFrames` / `geometry.maximumSeriesVoxels`, or `--max-frames` / `--max-series-voxels`).
/// A file or series over one is refused with the limit and the setting named, before anything is allocated.
public struct ReaderLimits: Sendable, Equatable {
    /// Frames one (Enhanced multi-frame) object may declare: NumberOfFrames sizes the per-frame header array
    /// and the decode buffer. Real objects hold thousands at most.
    public var maximumFrames: Int
    /// Voxels one series may have (float32: 2³¹ voxels are 8 GiB). Raise it for what the machine can hold.
    public var maximumSeriesVoxels: Int

    public static let standard = ReaderLimits(maximumFrames: 65_536, maximumSeriesVoxels: GeometryPolicy.defaultMaximumVoxels)
    static let framesSetting = "setting geometry.maximumFrames / --max-frames"
    static let voxelsSetting = "setting geometry.maximumSeriesVoxels / --max-series-voxels"

    public init(maximumFrames: Int, maximumSeriesVoxels: Int) {
        self.maximumFrames = maximumFrames
        self.maximumSeriesVoxels = maximumSeriesVoxels
    }
}

/// A loaded stack: the volume plus what the writer and the auditor need (spec R-RD-16).
public struct LoadedSeries: Sendable {
    /// Intensities after the Modality LUT (rescale slope/intercept per slice), e.g. HU for CT.
    public var volume: ImageVolume
    public var geometry: StackGeometry
    /// SOP Instance UID and frame number of each slice, in volume order (k = 0 first).
    public var sliceSources: [(sopInstanceUID: String, frameIndex: Int, path: String)]
    public var transferSyntaxes: [String]
    public var isLossy: Bool
    /// True when every slice had slope 1 and a whole-number intercept (the values are integers).
    public var isIntegral: Bool
    public var warnings: [String]
}

/// Decodes the pixels of a stack into a ``Volume``.
///
/// ```swift
/// let scan = try DICOMScanner().scan(folder)
/// let series = try DICOMSeriesLoader().load(scan.stacks[0])
/// print(series.volume.shape, series.volume.geometry.spacing)
/// ```
public struct DICOMSeriesLoader: Sendable {
    public var policy: GeometryPolicy

    public init(policy: GeometryPolicy = GeometryPolicy()) {
        self.policy = policy
    }

    public func load(_ stack: ImageStack) throws -> LoadedSeries {
        let subject = "series \(stack.seriesInstanceUID.isEmpty ? "(empty UID)" : stack.seriesInstanceUID)"
        guard let geometry = stack.geometry else {
            throw DICOMImportError(.noGeometry, subject, stack.missingGeometry ?? "no geometry")
        }
        try check(geometry, subject: subject)
        let format = stack.instances[0].pixelFormat
        guard format.samplesPerPixel == 1 else {
            throw DICOMImportError(.unsupportedPixelFormat, stack.instances[0].path,
                                   "SamplesPerPixel \(format.samplesPerPixel): colour images cannot be segmented")
        }
        guard format.photometricInterpretation == "MONOCHROME2" || format.photometricInterpretation.isEmpty else {
            throw DICOMImportError(.unsupportedPixelFormat, stack.instances[0].path,
                                   "PhotometricInterpretation \(format.photometricInterpretation) (MONOCHROME2 expected)")
        }
        if let lut = stack.instances.first(where: \.hasModalityLUTSequence) {
            throw DICOMImportError(.unsupportedModalityLUT, lut.path,
                                   "Modality LUT Sequence (0028,3000) instead of Rescale Slope/Intercept is not supported")
        }

        let shape = VolumeShape(z: stack.slices.count, y: format.rows, x: format.columns)
        let (plane, o1) = format.rows.multipliedReportingOverflow(by: format.columns)
        let (total, o2) = plane.multipliedReportingOverflow(by: stack.slices.count)
        guard !o1, !o2, total <= policy.maximumVoxels else {
            throw DICOMImportError(.seriesTooLarge, subject, "\(format.columns)×\(format.rows)×\(stack.slices.count) voxels exceed the limit of "
                                   + "\(policy.maximumVoxels) voxels per series (\(ReaderLimits.voxelsSetting))")
        }
        let sliceSize = format.rows * format.columns
        var voxels = [Float](repeating: 0, count: shape.count)
        var integral = true
        // Decode each instance once; place each of its frames where the sorted order puts it.
        let slicesByInstance = Dictionary(grouping: stack.slices.indices, by: { stack.slices[$0].instanceIndex })
        for (instanceIndex, sliceIndices) in slicesByInstance.sorted(by: { $0.key < $1.key }) {
            let instance = stack.instances[instanceIndex]
            let file = try DICOMFile(path: instance.path)
            let pixels = try DecodedPixels(rawBytes: file.decodedPixelBytes(), format: instance.pixelFormat,
                                           source: instance.path)
            for k in sliceIndices {
                let frameIndex = stack.slices[k].frameIndex
                let frame = instance.frames[frameIndex]
                let slope = frame.rescaleSlope, intercept = frame.rescaleIntercept
                if slope != 1 || intercept.rounded() != intercept { integral = false }
                let source = frameIndex * sliceSize
                voxels.withUnsafeMutableBufferPointer { out in
                    pixels.values.withUnsafeBufferPointer { values in
                        let base = k * sliceSize
                        for i in 0..<sliceSize {
                            out[base &+ i] = Float(Double(values[source &+ i]) * slope + intercept)
                        }
                    }
                }
            }
        }
        let volume = ImageVolume(shape: shape, geometry: geometry.volumeGeometry, voxels: voxels)
        let sources = stack.slices.map { s in
            (stack.instances[s.instanceIndex].sopInstanceUID, s.frameIndex, stack.instances[s.instanceIndex].path)
        }
        var warnings = stack.warnings + geometry.warnings
        if stack.isLossy { warnings.append("lossy compressed source images") }
        if stack.hasEmptySOPInstanceUIDs {
            warnings.append("SOP Instance UIDs are empty in the datasets (anonymised?): outputs cannot reference them")
        }
        return LoadedSeries(volume: volume, geometry: geometry, sliceSources: sources,
                            transferSyntaxes: stack.transferSyntaxes, isLossy: stack.isLossy, isIntegral: integral,
                            warnings: warnings)
    }

    /// Refuses geometry the policy does not accept, naming what is wrong.
    func check(_ geometry: StackGeometry, subject: String) throws {
        if geometry.repeatedPositions > 0 {
            throw DICOMImportError(.duplicatePositions, subject,
                                   "\(geometry.repeatedPositions) slice position(s) hold more than one image")
        }
        switch geometry.verdict {
        case .uniform, .singleSlice:
            break
        case .gaps(let missing):
            let shown = missing.prefix(10).map { String(format: "%.2f", $0) }.joined(separator: ", ")
            throw DICOMImportError(.gaps, subject, "\(missing.count) missing slice(s) at \(shown) mm along the normal")
        case .nonUniform:
            throw DICOMImportError(.nonUniform, subject, geometry.warnings.first { $0.hasPrefix("non-uniform") } ?? "non-uniform slice spacing")
        }
        if geometry.isSheared && !policy.allowShear {
            throw DICOMImportError(.tilt, subject, String(format: "slices are sheared %.2f° (gantry tilt); refused by the geometry policy", geometry.tiltDegrees))
        }
    }
}
