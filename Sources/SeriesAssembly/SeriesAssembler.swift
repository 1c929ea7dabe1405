import Foundation

/// Who a delivered file (or received instance) says it is.
public struct InstanceIdentity: Sendable, Equatable, Hashable {
    public var studyInstanceUID: String
    public var seriesInstanceUID: String
    public var sopInstanceUID: String

    public init(studyInstanceUID: String, seriesInstanceUID: String, sopInstanceUID: String) {
        self.studyInstanceUID = studyInstanceUID
        self.seriesInstanceUID = seriesInstanceUID
        self.sopInstanceUID = sopInstanceUID
    }
}

/// What reading a delivered file's header gave.
public enum DeliveredFileState: Sendable, Equatable {
    /// Not read yet, or unreadable while it may still be being written: its series is unknown.
    case unknown
    case identified(InstanceIdentity)
    /// Settled and still unreadable or incomplete: a stable error code and what is wrong.
    case problem(code: String, detail: String)
}

/// A series whose files have all settled: ready to be claimed.
public struct ReadySeries: Sendable, Equatable {
    public var seriesInstanceUID: String
    public var studyInstanceUID: String
    /// The delivered files' IDs (relative paths for a folder), sorted.
    public var files: [String]
    public var sopInstanceUIDs: [String]
}

/// What to do after one look at the deliveries.
public struct AssemblyPlan: Sendable, Equatable {
    /// Series to claim now.
    public var ready: [ReadySeries]
    /// Settled files that are not usable, each with its code and detail: quarantine them one by one.
    public var problems: [(file: String, code: String, detail: String)]
    /// Series seen but not ready, with their file counts.
    public var waiting: [String: Int]
    /// Files still arriving whose series is not known yet: while there are any, no series is claimed.
    public var unknownInFlight: [String]

    public static func == (a: AssemblyPlan, b: AssemblyPlan) -> Bool {
        a.ready == b.ready && a.waiting == b.waiting && a.unknownInFlight == b.unknownInFlight
            && a.problems.map { "\($0.file)\u{1}\($0.code)\u{1}\($0.detail)" } == b.problems.map { "\($0.file)\u{1}\($0.code)\u{1}\($0.detail)" }
    }
}

/// Series assembly for any intake (watch folder, DICOM network node): decides, from what was seen of each
/// file and when, which series are complete. One rule, in one place:
///
/// **A series is ready only when none of its files appeared or changed within the quiet period, and no
/// file whose series is still unknown is arriving.** A file counts as changed when its size or
/// modification time differs from the last look; the moment it was first seen counts as a change, so a
/// copy that keeps an old modification time (`cp -p`, `rsync -t`) is not taken for complete too early.
/// A file that cannot be read while it is still changing is *unknown* and holds back every claim (it may
/// belong to any series) until it settles; then it is read once more and either joins its series or is
/// reported as a problem with its code.
///
/// The assembler keeps no clock of its own: callers pass `now`, so tests drive it deterministically.
///
/// ```swift
/// var assembler = SeriesAssembler(quietPeriod: 10)
/// if assembler.observe("a.dcm", size: 4752, modified: mtime, now: now) { assembler.record("a.dcm", readHeader()) }
/// for id in assembler.needingFinalRead(now: now) { assembler.record(id, readAndCheck(id), final: true) }
/// let plan = assembler.plan(now: now)
/// ```
public struct SeriesAssembler: Sendable {
    public var quietPeriod: TimeInterval

    struct Tracked: Sendable {
        var size: Int
        var modified: Date
        /// When this assembler last saw the file appear or change.
        var lastChange: Date
        var state: DeliveredFileState
        /// The state was read after the file had settled (it is final).
        var final: Bool
    }

    private var files: [String: Tracked] = [:]

    public init(quietPeriod: TimeInterval) {
        self.quietPeriod = quietPeriod
    }

    /// Records one look at a file. Returns true when the file is new or changed since the last look: its
    /// header should be read again (and passed to ``record(_:_:final:)``).
    @discardableResult
    public mutating func observe(_ id: String, size: Int, modified: Date, now: Date) -> Bool {
        if let t = files[id], t.size == size, t.modified == modified { return false }
        files[id] = Tracked(size: size, modified: modified, lastChange: now, state: .unknown, final: false)
        return true
    }

    /// The result of reading a file's header; `final` when it was read after the file had settled.
    public mutating func record(_ id: String, _ state: DeliveredFileState, final: Bool = false) {
        guard var t = files[id] else { return }
        // An error while the file may still be written only means "not readable yet".
        if case .problem = state, !final { t.state = .unknown } else { t.state = state }
        t.final = final
        files[id] = t
    }

    /// Forgets files no longer present (claimed, moved away, deleted).
    public mutating func retain(only present: Set<String>) {
        files = files.filter { present.contains($0.key) }
    }

    public mutating func forget(_ ids: [String]) {
        for id in ids { files[id] = nil }
    }

    /// The last activity of a file: when it was seen to appear or change, or its modification time when
    /// that is later (a future modification time — clock skew on a share — is not waited for).
    func lastActivity(_ t: Tracked, now: Date) -> Date {
        t.modified <= now ? max(t.lastChange, t.modified) : t.lastChange
    }

    public func isSettled(_ id: String, now: Date) -> Bool {
        guard let t = files[id] else { return false }
        return now.timeIntervalSince(lastActivity(t, now: now)) >= quietPeriod
    }

    /// Settled files whose header was last read while they might still have been written: read them
    /// again (completely, with the completeness checks) and record the result with `final: true`.
    public func needingFinalRead(now: Date) -> [String] {
        files.filter { !$0.value.final && now.timeIntervalSince(lastActivity($0.value, now: now)) >= quietPeriod }.map(\.key).sorted()
    }

    /// The state of one file, for status displays and tests.
    public func state(of id: String) -> DeliveredFileState? { files[id]?.state }

    /// Which series are ready, which files are problems, and what still waits.
    public func plan(now: Date) -> AssemblyPlan {
        var groups: [String: [(String, InstanceIdentity)]] = [:]
        var blocked = Set<String>()
        var unknownInFlight: [String] = []
        var problems: [(file: String, code: String, detail: String)] = []
        for (id, t) in files {
            let settled = now.timeIntervalSince(lastActivity(t, now: now)) >= quietPeriod
            switch t.state {
            case .identified(let identity):
                groups[identity.seriesInstanceUID, default: []].append((id, identity))
                if !settled || !t.final { blocked.insert(identity.seriesInstanceUID) }
            case .unknown:
                unknownInFlight.append(id)
            case .problem(let code, let detail):
                if settled && t.final { problems.append((id, code, detail)) } else { unknownInFlight.append(id) }
            }
        }
        var ready: [ReadySeries] = []
        var waiting: [String: Int] = [:]
        for (series, members) in groups {
            if blocked.contains(series) || !unknownInFlight.isEmpty {
                waiting[series] = members.count
                continue
            }
            let sorted = members.sorted { $0.0 < $1.0 }
            ready.append(ReadySeries(seriesInstanceUID: series, studyInstanceUID: sorted[0].1.studyInstanceUID,
                                     files: sorted.map(\.0), sopInstanceUIDs: sorted.map(\.1.sopInstanceUID)))
        }
        return AssemblyPlan(ready: ready.sorted { $0.seriesInstanceUID < $1.seriesInstanceUID },
                            problems: problems.sorted { $0.file < $1.file }, waiting: waiting, unknownInFlight: unknownInFlight.sorted())
    }
}
