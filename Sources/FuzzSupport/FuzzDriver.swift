import Foundation

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32) -> Int32

/// The entry point every fuzz target shares. Built by `Ops/fuzz/run.sh` (`-sanitize=fuzzer,address -DFUZZING`)
/// it hands the target to libFuzzer; in a plain build it replays the files given as arguments through the
/// same function (a corpus, or a crasher kept as a regression fixture).
public enum FuzzDriver {
    public static func main(_ target: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32) throws -> Never {
        #if FUZZING
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, target))
        #else
        for path in CommandLine.arguments.dropFirst() {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            _ = bytes.withUnsafeBufferPointer { target($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) }
        }
        exit(0)
        #endif
    }

    /// Writes the input to this process's scratch file (for readers that take a path) and returns the path; the file
    /// is removed when the process exits.
    public static func scratchFile(_ data: UnsafePointer<UInt8>, _ size: Int, suffix: String = ".bin") -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("nnseg-fuzz-\(getpid())\(suffix)")
        ScratchFiles.shared.add(url.path)
        FileManager.default.createFile(atPath: url.path, contents: Data(bytes: data, count: size))
        return url
    }
}

/// The scratch files of this process, unlinked at exit.
private final class ScratchFiles: @unchecked Sendable {
    static let shared = ScratchFiles()
    private let lock = NSLock()
    private var paths: Set<String> = []
    private init() { atexit { ScratchFiles.shared.removeAll() } }
    func add(_ path: String) { lock.withLock { _ = paths.insert(path) } }
    func removeAll() { for path in lock.withLock({ paths }) { unlink(path) } }
}
