import VolumeGeometry

/// A case's image as nnU-Net's pipeline receives it — built in one place for every command (predict, run,
/// watch, plan's fingerprint, preprocess): the channels in array order `(z, y, x)`, the spacing in the
/// same order and positive (SimpleITK reports |spacing| whatever the direction's sign), and the geometry
/// to write results back on.
///
/// ```swift
/// let image = try CaseImage(channels: [series.volume], sources: [series.seriesInstanceUID])
/// let prediction = try engine.predict(image.channels, spacing: image.spacing, options: options)
/// ```
public struct CaseImage: Sendable {
    public var channels: ChannelArray
    /// Array-order spacing (z, y, x) in mm.
    public var spacing: [Double]
    public var geometry: VolumeGeometry

    /// `volumes`: one per channel, on one grid. `sources` names each channel (file or series) in errors.
    public init(channels volumes: [Volume<Float>], sources: [String]) throws {
        guard let first = volumes.first else { throw PreprocessingError(detail: "a case needs at least one channel") }
        for (k, v) in volumes.enumerated().dropFirst() {
            let name = k < sources.count ? sources[k] : "channel \(k)"
            guard v.shape == first.shape else {
                throw PreprocessingError(detail: "\(name): size \(v.shape.zyx) differs from channel 0 (\(first.shape.zyx))")
            }
            let d = v.geometry.spacing - first.geometry.spacing
            guard max(abs(d.x), abs(d.y), abs(d.z)) < 1e-5 else {
                throw PreprocessingError(detail: "\(name): spacing \(v.geometry.spacing) differs from channel 0 (\(first.geometry.spacing))")
            }
        }
        // Spacing and size drive resampling (compiled -Ounchecked) and the target shape: checked here, once.
        let s = Self.arraySpacing(first.geometry)
        guard s.allSatisfy({ $0.isFinite && $0 > 0 && $0 <= 1e4 }) else {
            throw PreprocessingError(detail: "\(sources.first ?? "channel 0"): spacing \(s) (z, y, x) is not a positive, finite size in mm")
        }
        guard first.shape.zyx.allSatisfy({ $0 > 0 }), first.voxels.count == first.shape.zyx.reduce(1, *) else {
            throw PreprocessingError(detail: "\(sources.first ?? "channel 0"): size \(first.shape.zyx) does not match its \(first.voxels.count) voxels")
        }
        channels = ChannelArray(shape: first.shape.zyx, channels: volumes.map(\.voxels))
        spacing = s
        geometry = first.geometry
    }

    /// A geometry's spacing in array order (z, y, x), positive.
    public static func arraySpacing(_ geometry: VolumeGeometry) -> [Double] {
        let s = geometry.spacing
        return [abs(s.z), abs(s.y), abs(s.x)]
    }
}
