/// How the stored pixel values of an image are laid out (Image Pixel module).
public struct PixelFormat: Equatable, Sendable {
    public var rows: Int
    public var columns: Int
    public var frames: Int
    public var samplesPerPixel: Int
    public var bitsAllocated: Int
    public var bitsStored: Int
    public var highBit: Int
    /// PixelRepresentation 1: two's complement.
    public var isSigned: Bool
    public var photometricInterpretation: String

    public init(rows: Int, columns: Int, frames: Int, samplesPerPixel: Int, bitsAllocated: Int, bitsStored: Int,
                highBit: Int, isSigned: Bool, photometricInterpretation: String) {
        self.rows = rows
        self.columns = columns
        self.frames = frames
        self.samplesPerPixel = samplesPerPixel
        self.bitsAllocated = bitsAllocated
        self.bitsStored = bitsStored
        self.highBit = highBit
        self.isSigned = isSigned
        self.photometricInterpretation = photometricInterpretation
    }

    public var valuesPerFrame: Int { rows * columns * samplesPerPixel }
}

/// The stored values of every frame of one object, masked to BitsStored and sign-extended: what the
/// standard calls the stored pixel values, before the Modality LUT (rescale).
///
/// Layout: frame, then row (top to bottom), then column (left to right), then sample.
public struct DecodedPixels: Sendable {
    public let format: PixelFormat
    public let values: [Int32]

    /// Interprets the raw bytes from the DCMTK shim (little endian, BitsAllocated wide; 1-bit packed).
    public init(rawBytes: [UInt8], format: PixelFormat, source: String) throws {
        self.format = format
        let count = format.valuesPerFrame * format.frames
        guard count > 0 else {
            throw DICOMImportError(.unsupportedPixelFormat, source, "Rows, Columns or NumberOfFrames is zero")
        }
        switch format.bitsAllocated {
        case 1:
            guard rawBytes.count * 8 >= count else { throw Self.short(source, rawBytes.count, (count + 7) / 8) }
            values = (0..<count).map { Int32((rawBytes[$0 >> 3] >> UInt8($0 & 7)) & 1) }
        case 8, 16, 32:
            let width = format.bitsAllocated / 8
            guard rawBytes.count >= count * width else { throw Self.short(source, rawBytes.count, count * width) }
            guard format.bitsStored >= 1, format.bitsStored <= format.bitsAllocated,
                  format.highBit >= format.bitsStored - 1, format.highBit < format.bitsAllocated
            else {
                throw DICOMImportError(.unsupportedPixelFormat, source,
                                       "BitsStored \(format.bitsStored) / HighBit \(format.highBit) do not fit BitsAllocated \(format.bitsAllocated)")
            }
            let shift = UInt64(format.highBit + 1 - format.bitsStored)
            let mask: UInt64 = format.bitsStored == 64 ? .max : (1 << UInt64(format.bitsStored)) - 1
            let signBit: UInt64 = 1 << UInt64(format.bitsStored - 1)
            let signed = format.isSigned
            values = rawBytes.withUnsafeBytes { raw in
                (0..<count).map { i -> Int32 in
                    var word: UInt64
                    switch width {
                    case 1: word = UInt64(raw[i])
                    case 2: word = UInt64(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                    default: word = UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                    }
                    word = (word >> shift) & mask
                    if signed && word & signBit != 0 {
                        return Int32(truncatingIfNeeded: Int64(word) - Int64(mask) - 1)
                    }
                    return Int32(truncatingIfNeeded: word)
                }
            }
        default:
            throw DICOMImportError(.unsupportedPixelFormat, source, "BitsAllocated \(format.bitsAllocated) is not supported")
        }
    }

    private static func short(_ source: String, _ have: Int, _ need: Int) -> DICOMImportError {
        DICOMImportError(.decodeFailed, source, "Pixel Data holds \(have) bytes, the header needs \(need) (truncated?)")
    }

    /// Values as little-endian bytes of the numpy dtype pydicom gives the same data (uint8 for 1-bit,
    /// [u]int8/16/32 by BitsAllocated and PixelRepresentation): for comparing against recorded hashes.
    public func littleEndianBytes() -> [UInt8] {
        let width = format.bitsAllocated <= 8 ? 1 : format.bitsAllocated / 8
        var out = [UInt8]()
        out.reserveCapacity(values.count * width)
        for v in values {
            let u = UInt32(bitPattern: v)
            for b in 0..<width { out.append(UInt8(truncatingIfNeeded: u >> UInt32(8 * b))) }
        }
        return out
    }
}
