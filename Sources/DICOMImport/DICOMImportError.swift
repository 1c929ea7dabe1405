/// A failure to turn DICOM files into a volume. Each error names the file (or series) and what is wrong,
/// with a stable code an operator or a test can match on. Messages carry tags, UIDs and file paths, never
/// patient names or IDs.
public struct DICOMImportError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Code: String, Sendable, CaseIterable {
        /// Neither a Part 10 file nor a raw dataset.
        case notDICOM = "NOT_DICOM"
        /// Unreadable or corrupt file.
        case readFailed = "READ_FAILED"
        /// The file ends before the content its header declares or its SOP class requires (cut short while
        /// being copied or received): the meta header, an element, or Pixel Data shorter than
        /// Rows × Columns × Frames × Samples × Bits Allocated.
        case truncated = "TRUNCATED"
        /// An image without a Series Instance UID: it cannot be grouped with its series.
        case seriesUIDMissing = "SERIES_UID_MISSING"
        /// An attribute that sizes an allocation or enters geometry is out of range or not a finite number
        /// (NumberOfFrames beyond the limit, Image Position at ±1e308, BitsAllocated 7, …).
        case invalidAttribute = "ATTRIBUTE_INVALID"
        /// The series has more voxels than the loader's limit (``GeometryPolicy/maximumVoxels``).
        case seriesTooLarge = "SERIES_TOO_LARGE"
        /// The object carries no Pixel Data (RTSTRUCT, SR, …).
        case noPixelData = "NO_PIXEL_DATA"
        /// No decoder for the transfer syntax in this build.
        case unsupportedTransferSyntax = "UNSUPPORTED_TRANSFER_SYNTAX"
        /// A decoder exists but the compressed data is corrupt.
        case decodeFailed = "DECODE_FAILED"
        /// Pixel format a volume cannot hold (colour, MONOCHROME1 handled elsewhere, odd bit depths).
        case unsupportedPixelFormat = "UNSUPPORTED_PIXEL_FORMAT"
        /// A Modality LUT Sequence instead of Rescale Slope/Intercept.
        case unsupportedModalityLUT = "UNSUPPORTED_MODALITY_LUT"
        /// Frames without Image Position/Orientation (Patient) or Pixel Spacing.
        case noGeometry = "GEOMETRY_MISSING"
        /// Slices sheared against the normal (gantry tilt).
        case tilt = "GEOMETRY_TILT"
        /// Slice spacing varies and is not a whole multiple of one step.
        case nonUniform = "GEOMETRY_NONUNIFORM"
        /// Regular spacing with missing slices.
        case gaps = "GEOMETRY_GAPS"
        /// Two different instances at one slice position.
        case duplicatePositions = "GEOMETRY_DUPLICATE_POSITIONS"
        /// The folder holds no image series.
        case noImageSeries = "NO_IMAGE_SERIES"
    }

    public let code: Code
    /// The file, folder or series the error is about.
    public let subject: String
    public let detail: String

    public init(_ code: Code, _ subject: String, _ detail: String) {
        self.code = code
        self.subject = subject
        self.detail = detail
    }

    public var description: String { "\(code.rawValue): \(subject): \(detail)" }
}
