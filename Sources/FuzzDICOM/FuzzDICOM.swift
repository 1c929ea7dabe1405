import DICOMImport
import FuzzSupport

/// DICOM parse (through the DCMTK shim), header, completeness checks and pixel decoding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let url = FuzzDriver.scratchFile(data, size, suffix: ".dcm")
    guard let file = try? DICOMFile(path: url.path) else { return 0 }
    let header = file.header()
    guard (try? file.checkComplete(header)) != nil else { return 0 }
    _ = try? file.decodePixels()
    return 0
}

@main
struct Main {
    static func main() throws { try FuzzDriver.main(fuzzOneInput) }
}
