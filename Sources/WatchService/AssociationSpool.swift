import DICOMImport
import Foundation
import Logging

/// What lets the watch service take deliveries from somewhere else than files dropped into its folder.
public protocol DeliveryGate: Sendable {
    /// Called at the start of every pass: moves what has fully arrived into the incoming folder.
    func transfer() throws
    /// Series still arriving elsewhere (an open association): not claimed even when their files in the
    /// incoming folder have been quiet.
    func seriesInFlight() -> Set<String>
}

/// The network intake of `nnseg serve` (issue #15): the storage SCP writes one spool folder per association
/// (`OPEN`, instances renamed into place, `manifest.tsv`, then `RELEASED` or `ABORTED`); this moves what a
/// released association delivered into the watch's incoming folder, so a series goes through the same
/// assembly, claim, worker and quarantine path as a folder delivery.
///
/// - A series is held back while any open association has delivered instances of it, so a series split
///   across associations (also concurrent ones) becomes one case.
/// - Files are moved with their modification time set to the moment of the move: the quiet period counts
///   from the release, not from the arrival of each file.
/// - An aborted association (or one left open by a receiver that died) yields nothing to process: its
///   folder goes to `aborted/` as received, for the operator, never to quarantine.
/// - SEG and RTSTRUCT objects are kept in `stored/<series>/`, not processed.
public final class AssociationSpool: DeliveryGate, @unchecked Sendable {
    public let spool: URL
    public let incoming: URL
    public let aborted: URL
    public let stored: URL
    /// Whether the receiver that wrote `OPEN` with this pid is still serving.
    let isReceiving: @Sendable (Int32) -> Bool
    let logger: Logger
    private let lock = NSLock()
    private var inFlight: Set<String> = []

    public init(spool: URL, incoming: URL, aborted: URL, stored: URL, isReceiving: @escaping @Sendable (Int32) -> Bool,
                logger: Logger = Logger(label: "nnseg.serve.intake")) throws {
        self.spool = spool
        self.incoming = incoming
        self.aborted = aborted
        self.stored = stored
        self.isReceiving = isReceiving
        self.logger = logger
        for folder in [spool, incoming, aborted, stored] { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) }
    }

    struct Entry {
        var file: String
        var sopClassUID: String
        var studyInstanceUID: String
        var seriesInstanceUID: String
        var sopInstanceUID: String
    }

    enum State { case open, released, aborted(String) }

    static func manifest(_ folder: URL) -> [Entry] {
        guard let text = try? String(contentsOf: folder.appendingPathComponent("manifest.tsv"), encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 5, !f[0].contains("/"), !f[0].hasPrefix(".") else { return nil }
            return Entry(file: f[0], sopClassUID: f[1], studyInstanceUID: f[2], seriesInstanceUID: f[3], sopInstanceUID: f[4])
        }
    }

    func state(_ folder: URL) -> State {
        let fm = FileManager.default
        if fm.fileExists(atPath: folder.appendingPathComponent("RELEASED").path) { return .released }
        if fm.fileExists(atPath: folder.appendingPathComponent("ABORTED").path) {
            let text = (try? String(contentsOf: folder.appendingPathComponent("ABORTED"), encoding: .utf8)) ?? ""
            let reason = text.split(separator: "\n").first { $0.hasPrefix("reason=") }.map { String($0.dropFirst(7)) } ?? "aborted"
            return .aborted(reason)
        }
        let pid = Int32((try? String(contentsOf: folder.appendingPathComponent("OPEN"), encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
        return pid > 0 && isReceiving(pid) ? .open : .aborted("the receiving process ended before the association did")
    }

    public func seriesInFlight() -> Set<String> {
        lock.lock()
        defer { lock.unlock() }
        return inFlight
    }

    public func transfer() throws {
        let fm = FileManager.default
        let all = (try? fm.contentsOfDirectory(at: spool, includingPropertiesForKeys: [.contentModificationDateKey])) ?? []
        // A receiver makes each folder under a hidden name and renames it once OPEN is inside; one killed in
        // between leaves the hidden folder (no instances yet), removed when it is old.
        for hidden in all where hidden.lastPathComponent.hasPrefix(".") {
            let modified = (try? hidden.resourceValues(forKeys: [.contentModificationDateKey]).contentModificationDate) ?? Date()
            let instances = ((try? fm.contentsOfDirectory(atPath: hidden.path)) ?? []).filter { $0.hasSuffix(".dcm") }
            if Date().timeIntervalSince(modified) > 600, instances.isEmpty { try? fm.removeItem(at: hidden) }
        }
        let folders = all.filter { !$0.lastPathComponent.hasPrefix(".") }.sorted { $0.lastPathComponent < $1.lastPathComponent }
        var states: [(URL, State)] = []
        var open: Set<String> = []
        for folder in folders {
            let s = state(folder)
            if case .open = s { open.formUnion(Self.manifest(folder).map(\.seriesInstanceUID)) }
            states.append((folder, s))
        }
        open.remove("")
        lock.lock()
        inFlight = open
        lock.unlock()
        for (folder, s) in states {
            switch s {
            case .open:
                continue
            case .aborted(let reason):
                let count = ((try? fm.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.hasSuffix(".dcm") }.count
                if count == 0 {
                    // Nothing was received (an echo, a probe, a peer that went away): nothing to keep.
                    try fm.removeItem(at: folder)
                    logger.info("association aborted before any instance", metadata: ["association": "\(folder.lastPathComponent)", "reason": "\(reason)"])
                    continue
                }
                let target = aborted.appendingPathComponent(folder.lastPathComponent)
                try? fm.removeItem(at: target)
                try fm.moveItem(at: folder, to: target)
                logger.warning("association aborted: nothing from it is processed", metadata: [
                    "association": "\(folder.lastPathComponent)", "instances": "\(count)", "reason": "\(reason)", "kept": "\(target.path)"])
            case .released:
                try deliver(folder, holding: open)
            }
        }
    }

    /// Moves a released association's instances out: images into incoming (unless their series is still
    /// arriving elsewhere), SEG/RTSTRUCT into `stored/`. The folder goes once it is empty.
    func deliver(_ folder: URL, holding open: Set<String>) throws {
        let fm = FileManager.default
        let byFile = Dictionary(Self.manifest(folder).map { ($0.file, $0) }, uniquingKeysWith: { a, _ in a })
        let files = ((try? fm.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.hasSuffix(".dcm") && !$0.hasPrefix(".") }
        var moved = 0, kept = 0
        let now = Date()
        for file in files.sorted() {
            let series = byFile[file]?.seriesInstanceUID ?? ""
            if !series.isEmpty, open.contains(series) { continue }
            let source = folder.appendingPathComponent(file)
            let target: URL
            if let sopClass = byFile[file]?.sopClassUID, SOPClass.isNonVolume(sopClass) {
                let safeSeries = series.isEmpty ? "unknown-series" : series
                target = stored.appendingPathComponent(safeSeries).appendingPathComponent("\(folder.lastPathComponent)-\(file)")
                kept += 1
            } else {
                target = incoming.appendingPathComponent("net-\(folder.lastPathComponent)").appendingPathComponent(file)
                moved += 1
            }
            try fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
            try fm.moveItem(at: source, to: target)
            try fm.setAttributes([.modificationDate: now], ofItemAtPath: target.path)
        }
        if moved + kept > 0 {
            logger.info("association delivered", metadata: ["association": "\(folder.lastPathComponent)", "images": "\(moved)", "stored_objects": "\(kept)"])
        }
        let remaining = ((try? fm.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.hasSuffix(".dcm") }
        if remaining.isEmpty { try fm.removeItem(at: folder) }
    }
}
