import Dispatch
import Foundation

/// A file the scanner looked at and did not use, with the reason (spec R-RD-01: every file seen ends in
/// exactly one bucket).
public struct SkippedFile: Sendable, Equatable {
    public var path: String
    public var code: DICOMImportError.Code?
    public var reason: String
}

/// A DICOM object that is not an image slice (SEG, RTSTRUCT, SR, …): indexed, never stacked.
public struct NonVolumeObject: Sendable, Equatable {
    public var path: String
    public var sopClassUID: String
    public var modality: String
    public var studyInstanceUID: String
    public var seriesInstanceUID: String
    public var sopInstanceUID: String
}

/// Everything found under a folder: image instances (grouped into ``stacks``), other DICOM objects, and
/// the files that were skipped.
public struct DICOMScan: Sendable {
    public var root: String
    public var filesSeen: Int
    public var instances: [InstanceHeader]
    public var nonVolumeObjects: [NonVolumeObject]
    public var skipped: [SkippedFile]
    /// Geometric stacks built from `instances` (see ``StackBuilder``).
    public var stacks: [ImageStack]
}

/// Scans a folder recursively for DICOM files, reading headers only.
///
/// ```swift
/// let scan = try DICOMScanner().scan(URL(fileURLWithPath: "/incoming/study"))
/// for stack in scan.stacks { print(stack.summary) }
/// ```
public struct DICOMScanner: Sendable {
    /// Parallel header readers (DCMTK handles are per thread).
    public var concurrency: Int
    public var limits: ReaderLimits

    public init(concurrency: Int = ProcessInfo.processInfo.activeProcessorCount, limits: ReaderLimits = .standard) {
        self.concurrency = max(1, concurrency)
        self.limits = limits
    }

    /// `progress` is called with (files done, files total) from the scanning threads.
    public func scan(_ folder: URL, progress: (@Sendable (Int, Int) -> Void)? = nil) throws -> DICOMScan {
        let (paths, unreadable) = try Self.listFiles(folder)
        let results = ScanResults(count: paths.count)
        let chunk = max(1, (paths.count + concurrency - 1) / concurrency)
        DispatchQueue.concurrentPerform(iterations: min(concurrency, max(paths.count, 1))) { worker in
            let start = worker * chunk
            guard start < paths.count else { return }
            for index in start..<min(start + chunk, paths.count) {
                results.set(index, Self.read(paths[index], limits: limits))
                if let progress { progress(results.incrementDone(), paths.count) }
            }
        }
        var instances: [InstanceHeader] = []
        var others: [NonVolumeObject] = []
        var skipped: [SkippedFile] = unreadable
        for outcome in results.all() {
            switch outcome {
            case .instance(let header):
                if header.isVolumeImage {
                    instances.append(header)
                } else {
                    others.append(NonVolumeObject(
                        path: header.path, sopClassUID: header.sopClassUID, modality: header.modality,
                        studyInstanceUID: header.studyInstanceUID, seriesInstanceUID: header.seriesInstanceUID,
                        sopInstanceUID: header.sopInstanceUID))
                }
            case .skipped(let file):
                skipped.append(file)
            case nil:
                break
            }
        }
        let built = StackBuilder().build(instances)
        skipped += built.droppedDuplicates
        return DICOMScan(root: folder.path, filesSeen: paths.count + unreadable.count, instances: instances, nonVolumeObjects: others,
                         skipped: skipped, stacks: built.stacks)
    }

    enum Outcome: Sendable {
        case instance(InstanceHeader)
        case skipped(SkippedFile)
    }

    static func read(_ path: String, limits: ReaderLimits) -> Outcome {
        do {
            let file = try DICOMFile(path: path)
            let header = file.header(limits: limits)
            try file.checkComplete(header)
            return .instance(header)
        } catch let error as DICOMImportError {
            return .skipped(SkippedFile(path: path, code: error.code, reason: error.detail))
        } catch {
            return .skipped(SkippedFile(path: path, code: .readFailed, reason: "\(error)"))
        }
    }

    /// Files under `folder` (or the file itself), sorted, following symbolic links to files and folders
    /// (each folder entered once per descent: no loops), hidden files and DICOMDIR included as candidates
    /// (DICOMDIR is recognised by its SOP class later). Broken links, loops and special files are returned
    /// as skipped, never dropped.
    static func listFiles(_ folder: URL) throws -> (paths: [String], skipped: [SkippedFile]) {
        var paths: [String] = []
        var skipped: [SkippedFile] = []
        for entry in try FolderWalker(followFolderLinks: true).walk(folder) {
            switch entry.kind {
            case .file: paths.append(entry.path)
            case .brokenLink: skipped.append(SkippedFile(path: entry.path, code: .readFailed, reason: "broken symbolic link (its target does not exist)"))
            case .loop: skipped.append(SkippedFile(path: entry.path, code: .readFailed, reason: "folder link loops back into a folder being read; not entered again"))
            case .linkedFolder: break  // only when links to folders are not followed
            case .special: skipped.append(SkippedFile(path: entry.path, code: .notDICOM, reason: "not a regular file (FIFO, socket or device)"))
            }
        }
        return (paths, skipped)
    }
}

/// Thread-safe result slots for the parallel header scan.
private final class ScanResults: @unchecked Sendable {
    private var slots: [DICOMScanner.Outcome?]
    private var done = 0
    private let lock = NSLock()

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func set(_ index: Int, _ outcome: DICOMScanner.Outcome) {
        lock.lock()
        slots[index] = outcome
        lock.unlock()
    }

    func incrementDone() -> Int {
        lock.lock()
        defer { lock.unlock() }
        done += 1
        return done
    }

    func all() -> [DICOMScanner.Outcome?] {
        lock.lock()
        defer { lock.unlock() }
        return slots
    }
}
