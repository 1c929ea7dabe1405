import SiteProfile
import FuzzSupport

/// Site profile YAML: strict typed decoding and the checks after it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let url = FuzzDriver.scratchFile(data, size, suffix: ".yaml")
    _ = try? CaseProfile(contentsOf: url)
    return 0
}

@main
struct Main {
    static func main() throws { try FuzzDriver.main(fuzzOneInput) }
}
