import DICOMImport
import FuzzSupport
import VolumeGeometry

/// Series geometry: the bytes become the headers of a series (positions, orientations, spacings, sizes,
/// frame counts, several series and frames of reference mixed), validated as a file's header is, then
/// grouped into stacks, analysed (sorting, spacing verdicts, gaps, tilt) and taken through the loader's
/// checks up to the point where it would open the files. Fast: no DCMTK, no pixels.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    var input = FuzzBytes(UnsafeBufferPointer(start: data, count: size))
    let limits = ReaderLimits(maximumFrames: 64, maximumSeriesVoxels: 1 << 16)
    let count = 1 + Int(input.byte() % 32)
    let rows = Int(input.uint16()), columns = Int(input.uint16())
    let sharedOrientation = (row: input.vector(), column: input.vector())
    let spacing = SIMD2(input.number(), input.number())
    var headers: [InstanceHeader] = []
    for index in 0..<count {
        let frameCount = 1 + Int(input.byte() % 4)
        let frames = (0..<frameCount).map { f -> FrameHeader in
            let own = input.byte() % 8 == 0
            return FrameHeader(frameIndex: f, imagePosition: input.byte() % 16 == 0 ? nil : input.vector(),
                               imageOrientation: own ? (row: input.vector(), column: input.vector()) : sharedOrientation,
                               pixelSpacing: input.byte() % 16 == 0 ? SIMD2(input.number(), input.number()) : spacing,
                               sliceThickness: input.number(), spacingBetweenSlices: nil,
                               rescaleSlope: 1, rescaleIntercept: input.number(), stackID: frameCount > 1 ? "1" : nil)
        }
        let series = "1.2.3.\(input.byte() % 3)"
        let format = PixelFormat(rows: rows, columns: columns, frames: frameCount, samplesPerPixel: 1, bitsAllocated: 16, bitsStored: 12,
                                 highBit: 11, isSigned: false, photometricInterpretation: "MONOCHROME2")
        headers.append(InstanceHeader(
            path: "/nonexistent/nnseg-fuzz/\(index).dcm", sopClassUID: frameCount > 1 ? "1.2.840.10008.5.1.4.1.1.2.1" : "1.2.840.10008.5.1.4.1.1.2",
            sopInstanceUID: "1.2.3.9.\(input.byte() % 64)", studyInstanceUID: "1.2.3", seriesInstanceUID: series,
            frameOfReferenceUID: "1.2.3.4.\(input.byte() % 2)", modality: "CT", pixelFormat: format, frames: frames,
            gantryDetectorTilt: input.byte() % 4 == 0 ? input.number() : nil, limits: limits))
    }
    // As a scan does: a header with a problem is refused, the rest are stacked.
    let built = StackBuilder().build(headers.filter { $0.problem == nil })
    let loader = DICOMSeriesLoader(policy: GeometryPolicy(allowShear: input.byte() % 2 == 0, limits: limits))
    for stack in built.stacks {
        _ = stack.orientationLabel
        if let geometry = stack.geometry {
            _ = geometry.volumeGeometry.affineRAS
            if let inverse = PatientToVoxel(geometry.volumeGeometry) { _ = inverse(geometry.volumeGeometry.origin) }
        }
        _ = try? loader.load(stack)  // refused by a check, or fails opening the (absent) first file
    }
    return 0
}

/// Reads numbers from the fuzz input; past the end every read is zero.
struct FuzzBytes {
    let bytes: UnsafeBufferPointer<UInt8>
    var offset = 0
    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func uint16() -> UInt16 { UInt16(byte()) << 8 | UInt16(byte()) }

    /// Mostly small multiples of 1/64 (plausible geometry), sometimes any double (NaN, ±inf, 1e308, …).
    mutating func number() -> Double {
        if byte() % 8 == 0 {
            var bits: UInt64 = 0
            for _ in 0..<8 { bits = bits << 8 | UInt64(byte()) }
            return Double(bitPattern: bits)
        }
        return Double(Int16(bitPattern: uint16())) / 64
    }

    mutating func vector() -> SIMD3<Double> { SIMD3(number(), number(), number()) }
}

@main
struct Main {
    static func main() throws { try FuzzDriver.main(fuzzOneInput) }
}
