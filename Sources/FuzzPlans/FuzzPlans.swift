import Foundation
import FuzzSupport
import PlansModel

/// plans.json (every configuration resolved, with its invariants) and dataset.json.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Data(bytes: data, count: size)
    if let plans = try? Plans(data: bytes, source: "fuzz") {
        for name in plans.configurationNames { _ = try? plans.configuration(name) }
    }
    if let dataset = try? DatasetDescription(data: bytes, source: "fuzz") {
        _ = dataset.segmentationHeads
        _ = dataset.foregroundLabels
    }
    return 0
}

@main
struct Main {
    static func main() throws { try FuzzDriver.main(fuzzOneInput) }
}
