import FuzzSupport
import NIfTI

/// NIfTI-1 header and data (plain or gzip), read as intensities and as a label map.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let url = FuzzDriver.scratchFile(data, size, suffix: ".nii.gz")
    guard let image = try? NIfTIImage(contentsOf: url) else { return 0 }
    _ = image.floatVolume()
    _ = image.geometry
    _ = try? image.labelVolume()
    return 0
}

@main
struct Main {
    static func main() throws { try FuzzDriver.main(fuzzOneInput) }
}
