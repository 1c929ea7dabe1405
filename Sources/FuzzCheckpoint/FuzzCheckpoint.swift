import FuzzSupport
import TorchCheckpoint

/// PyTorch `.pth`: zip archive, restricted unpickler, tensor metadata and storage reads.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let url = FuzzDriver.scratchFile(data, size, suffix: ".pth")
    guard let checkpoint = try? TorchCheckpoint(contentsOf: url) else { return 0 }
    for key in [nil, "network_weights"] as [String?] {
        guard let entries = try? checkpoint.stateDict(at: key) else { continue }
        for entry in entries.prefix(64) { _ = try? checkpoint.tensor(entry.tensor).floats() }
    }
    return 0
}

@main
struct Main {
    static func main() throws { try FuzzDriver.main(fuzzOneInput) }
}
