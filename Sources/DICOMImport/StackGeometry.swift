import Foundation
import VolumeGeometry

/// How the slices of a stack are spaced along the normal (spec R-RD-06…08).
public enum SpacingVerdict: Sendable, Equatable {
    /// One slice: the third spacing is SliceThickness (or 1 mm) and flagged (R-RD-10).
    case singleSlice
    /// `max |Δk − Δ̄| ≤ max(1 % Δ̄, 0.05 mm)`.
    case uniform
    /// Every step is a whole multiple of the smallest one, and some are > 1: slices are missing at
    /// `missingProjections` (positions along the normal, mm).
    case gaps(missingProjections: [Double])
    /// Steps vary and are not multiples of one step.
    case nonUniform

    public var name: String {
        switch self {
        case .singleSlice: return "single slice"
        case .uniform: return "uniform"
        case .gaps: return "gaps"
        case .nonUniform: return "non-uniform"
        }
    }
}

/// The geometry of a stack, analysed from Image Position/Orientation (Patient) — never from
/// InstanceNumber, SliceLocation or SliceThickness.
public struct StackGeometry: Sendable {
    public var rowDirection: SIMD3<Double>
    public var columnDirection: SIMD3<Double>
    /// `N = X × Y`.
    public var normal: SIMD3<Double>
    /// PixelSpacing as DICOM orders it: (row spacing, column spacing).
    public var pixelSpacing: SIMD2<Double>
    /// Steps between consecutive sorted slices along the normal, mm.
    public var steps: [Double]
    /// `(d_last − d_first) / (N − 1)`; 0 for one slice.
    public var meanStep: Double
    /// `max |Δk − Δ̄|`.
    public var maxStepDeviation: Double
    public var verdict: SpacingVerdict
    /// Angle between the slice stacking direction and the normal, degrees (0 without tilt).
    public var tiltDegrees: Double
    /// True when `|t · N| < 1 − 1e-3` (R-RD-09).
    public var isSheared: Bool
    /// GantryDetectorTilt (0018,1120) from the header, which may be stale; logged beside the measure.
    public var headerGantryTilt: Double?
    /// Number of sorted slice pairs that share a position (different instances).
    public var repeatedPositions: Int
    /// Voxel↔patient geometry in the DICOM multi-slice form: third direction along the stacking
    /// direction (the normal unless sheared), third spacing `‖IPP_last − IPP_first‖ / (N − 1)` — what
    /// SimpleITK reports for a stack without tilt.
    public var volumeGeometry: VolumeGeometry
    /// Problems an operator should know about (also the reason a load is refused).
    public var warnings: [String]

    /// Relative and absolute step tolerances of the uniformity test.
    public static let relativeTolerance = 0.01
    public static let absoluteTolerance = 0.05

    init(stack: ImageStack) throws(DICOMImportError) {
        guard let orientation = stack.orientation else {
            throw DICOMImportError(.noGeometry, stack.key.seriesInstanceUID,
                                   "frames have no Image Orientation (Patient)")
        }
        guard stack.slices.allSatisfy({ $0.position != nil }) else {
            throw DICOMImportError(.noGeometry, stack.key.seriesInstanceUID,
                                   "frames have no Image Position (Patient)")
        }
        let firstFrame = stack.instances[stack.slices[0].instanceIndex].frames[stack.slices[0].frameIndex]
        guard let spacing = firstFrame.pixelSpacing else {
            throw DICOMImportError(.noGeometry, stack.key.seriesInstanceUID, "frames have no Pixel Spacing")
        }
        let x = normalize(orientation.row), y = normalize(orientation.column)
        guard abs(dot(x, y)) < 1e-3 else {
            throw DICOMImportError(.noGeometry, stack.key.seriesInstanceUID,
                                   "Image Orientation (Patient) row and column are not orthogonal (cos \(dot(x, y)))")
        }
        let n = normalize(cross(x, y))
        rowDirection = x
        columnDirection = y
        normal = n
        pixelSpacing = spacing
        headerGantryTilt = stack.instances.compactMap(\.gantryDetectorTilt).first
        var warnings: [String] = []

        let positions = stack.slices.map { $0.position! }
        let d = stack.slices.map(\.projection)
        steps = zip(d.dropFirst(), d).map { $0 - $1 }
        repeatedPositions = steps.filter { abs($0) < 1e-3 }.count
        if repeatedPositions > 0 {
            warnings.append("\(repeatedPositions) slice position(s) occur more than once (several volumes in one series?)")
        }

        var stackDirection = n
        var sliceSpacing: Double
        if positions.count == 1 {
            meanStep = 0
            maxStepDeviation = 0
            verdict = .singleSlice
            tiltDegrees = 0
            isSheared = false
            sliceSpacing = firstFrame.sliceThickness.flatMap { $0 > 0 ? $0 : nil } ?? 1
            warnings.append("single slice: third spacing taken as \(sliceSpacing) mm")
        } else {
            let span = positions.last! - positions.first!
            let spanLength = length(span)
            let mean = (d.last! - d.first!) / Double(positions.count - 1)
            meanStep = mean
            maxStepDeviation = steps.map { abs($0 - mean) }.max() ?? 0
            sliceSpacing = spanLength / Double(positions.count - 1)
            let cosine = spanLength > 0 ? abs(dot(span / spanLength, n)) : 1
            tiltDegrees = acos(min(1, cosine)) * 180 / .pi
            isSheared = cosine < 1 - 1e-3
            if isSheared {
                stackDirection = span / spanLength
                let header = headerGantryTilt.map { String(format: "%.2f°", $0) } ?? "absent"
                warnings.append(String(format: "gantry tilt / shear: slices are stacked %.2f° off the normal (GantryDetectorTilt %@)",
                                       tiltDegrees, header))
            }
            let tolerance = max(Self.relativeTolerance * abs(meanStep), Self.absoluteTolerance)
            if maxStepDeviation <= tolerance {
                verdict = .uniform
            } else if let missing = Self.gaps(d, steps: steps) {
                verdict = .gaps(missingProjections: missing)
                warnings.append(String(format: "%d missing slice(s) in a regular grid (step %.3f mm)", missing.count,
                                       steps.filter { $0 > 1e-3 }.min() ?? 0))
            } else {
                verdict = .nonUniform
                let shown = steps.map { String(format: "%.3f", $0) }.joined(separator: ", ")
                warnings.append(String(format: "non-uniform slice spacing: steps %@ mm (max deviation %.3f mm from mean %.3f mm)",
                                       shown, maxStepDeviation, meanStep))
            }
        }
        volumeGeometry = VolumeGeometry(
            origin: positions[0], spacing: SIMD3(spacing.y, spacing.x, sliceSpacing),
            direction: Matrix3(columns: x, y, stackDirection))
        self.warnings = warnings
    }

    /// Missing positions when every step is a whole multiple of the smallest positive step.
    static func gaps(_ d: [Double], steps: [Double]) -> [Double]? {
        guard let unit = steps.filter({ $0 > 1e-3 }).min() else { return nil }
        let tolerance = max(relativeTolerance * unit, absoluteTolerance)
        var missing: [Double] = []
        for (k, step) in steps.enumerated() {
            let multiple = (step / unit).rounded()
            // A step of more than 10,000 slice spacings is not a gap to fill in: the spacing is non-uniform.
            guard multiple >= 1, multiple <= 10_000, abs(step - multiple * unit) <= tolerance else { return nil }
            if multiple > 1 { missing += (1..<Int(multiple)).map { d[k] + Double($0) * unit } }
        }
        return missing.isEmpty ? nil : missing
    }
}
